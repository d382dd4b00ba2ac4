"""The tag-table machinery and its converters, on hand-made metadata."""

from __future__ import annotations

import math

import pytest

from emdig.io.tags import (
    TABLES,
    Tag,
    apply_table,
    canonical_detector,
    dm_datetime,
    dwell_with_unit,
    flatten,
    magnification_text,
    mode_from_text,
    rad_to_mrad,
    velox_mode,
)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Fei HAADF-DE_location", "HAADF"),
        ("HAADF", "HAADF"),
        ("pnADF", "ADF"),
        ("MAADF", "ADF"),
        ("ABF", "ABF"),
        ("BF", "BF"),
        ("DF4", "DF"),
        ("ETD (SE)", "SE"),
        ("HE-SE2", "SE"),
        ("InLens", "SE"),
        ("BSD", "BSE"),
        ("BM-Ceta", "camera"),
        ("BM-UltraScan", "camera"),
        ("F416", "camera"),
        ("DigiScan", "DigiScan"),  # a scan unit, not a detector type: kept as the vendor said
        ("", None),
    ],
)
def test_canonical_detector(raw: str, want: str | None) -> None:
    assert canonical_detector(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("STEM NANOPROBE / SCANNING / DIFFRACTION", "STEM"),
        (" STEM nP SA Zoom Diffraction", "STEM"),  # TIA: the projector is in diffraction
        ("TEM / DIFFRACTION", "diffraction"),
        ("TEM uP SA Zoom Image", "TEM"),
        ("eosTEM / DIFF", "diffraction"),  # JEOL: "eosTEM" must not read as "STEM"
        ("eosASID / MAG", "STEM"),
        ("eosTEM / MAG", "TEM"),
        ("SEM", "SEM"),
        ("nonsense", None),
    ],
)
def test_mode_from_text(raw: str, want: str | None) -> None:
    assert mode_from_text(raw) == want


def test_velox_mode() -> None:
    assert velox_mode("Probe / 1") == "STEM"
    assert velox_mode("Parallel / 1") == "diffraction"
    assert velox_mode("Free / 2") == "TEM"


def test_unit_converters() -> None:
    assert magnification_text("50.00 K X") == 50_000
    assert magnification_text("10Mx") == 10_000_000
    assert magnification_text(("Mag", 105, "X")) == 105
    assert dwell_with_unit(("Dwell Time", 50, "ns")) == pytest.approx(0.05)
    assert dwell_with_unit("100 ns") == pytest.approx(0.1)
    assert rad_to_mrad("-0.0010461") == pytest.approx(1.0461)  # Velox stores it negative
    assert rad_to_mrad("0") is None


def test_dm_dates_follow_the_locale() -> None:
    assert dm_datetime("8/8/2016 / 4:26:37 PM") == "2016-08-08T16:26:37"
    assert dm_datetime("27/08/2016 / 20:54:33") == "2016-08-27T20:54:33"
    assert dm_datetime("27.08.2016 / 20:54:33") == "2016-08-27T20:54:33"
    assert dm_datetime("12/10/2019 / 15:32:41") == "2019-12-10T15:32:41"  # US default


def test_first_usable_row_wins_and_when_conditions() -> None:
    table = (
        Tag("voltage_kv", "a.hv", lambda v: None),  # unusable: falls through
        Tag("voltage_kv", "b.hv", float),
        Tag("magnification", "m", float, when=("mode", "^(?!DIFF)")),
        Tag("camera_length_mm", "m", float, when=("mode", "DIFF")),
    )
    flat = flatten({"a": {"hv": 1}, "b": {"hv": "200"}, "m": 320, "mode": "DIFFRACTION"})
    assert apply_table(flat, [table]) == {"voltage_kv": 200.0, "camera_length_mm": 320.0}
    flat["mode"] = "IMAGING"
    assert apply_table(flat, [table])["magnification"] == 320.0
    del flat["mode"]  # a missing condition tag tests as "": still imaging
    assert "magnification" in apply_table(flat, [table])


def test_flatten_survives_hostile_depth() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(10_000):
        node["g"] = {}
        node = node["g"]  # type: ignore[assignment]
    node["leaf"] = 1
    flat = flatten(deep)
    assert len(flat) == 1 and next(iter(flat.values())) == 1


def test_tables_name_real_fields() -> None:
    for name, rows in TABLES.items():
        assert rows, name
        for row in rows:
            assert isinstance(row.path, str | tuple)
    with pytest.raises(ValueError, match="unknown Acquisition field"):
        Tag("voltage", "x")
    assert math.isclose(TABLES["velox"][0].convert("300000"), 300.0)
