"""Lengths in scale-bar labels and captions: spellings, numbers and the PDF/OCR traps."""

from __future__ import annotations

import math
import re

import pytest

from conftest import SHARED
from emdig.figures.units import UNITS, Length, find_lengths, format_length, parse_length, to_nm

LABELS = SHARED / "literature" / "scalebar-labels"

# (text, value, unit, nm): written by hand
CASES: list[tuple[str, float, str, float | None]] = [
    ("50 nm", 50, "nm", 50),
    ("50nm", 50, "nm", 50),
    ("50-nm scale bar", 50, "nm", 50),
    ("5\u2009nm", 5, "nm", 5),  # thin space
    ("5\u00a0nm", 5, "nm", 5),  # no-break space
    ("2 \u00b5m", 2, "µm", 2000),  # micro sign
    ("2 \u03bcm", 2, "µm", 2000),  # Greek mu
    ("0,5 µm", 0.5, "µm", 500),
    ("2,5 nm", 2.5, "nm", 2.5),
    ("1,000 nm", 1000, "nm", 1000),
    ("5um", 5, "µm", 5000),
    ("20.0um", 20, "µm", 20000),
    (".2 um", 0.2, "µm", 200),
    ("2 u m", 2, "µm", 2000),
    ("3 \u03bc m", 3, "µm", 3000),
    ("10 microns", 10, "µm", 10000),
    ("1 micron", 1, "µm", 1000),
    ("5 micrometres", 5, "µm", 5000),
    ("5 lm", 5, "µm", 5000),  # PDF font maps µ to l
    ("2 \u00c5", 2, "Å", 0.2),
    ("2 \u212b", 2, "Å", 0.2),  # angstrom sign
    ("5 A", 5, "Å", 0.5),  # a label that is only number + A
    ("20 Ang", 20, "Å", 2),
    ("3 angstroms", 3, "Å", 0.3),
    ("100 pm", 100, "pm", 0.1),
    ("1 mm", 1, "mm", 1e6),
    ("50 NM", 50, "nm", 50),  # OCR capitals
    ("5 nm-1", 5, "1/nm", None),
    ("5 nm\u22121", 5, "1/nm", None),
    ("5 nm\u207b\u00b9", 5, "1/nm", None),
    ("2 nm^-1", 2, "1/nm", None),
    ("2 1/nm", 2, "1/nm", None),
    ("5O nm", 50, "nm", 50),  # OCR: letter O for zero
    ("1O0 nm", 100, "nm", 100),
    ("100 nm*", 100, "nm", 100),
    ("50x 200 um WD", 200, "µm", 2e5),  # SEM data bar: magnification, then the bar
    ("Scale bars, 50 nm (a), 2 µm (b–d)", 50, "nm", 50),
    ("(scale bar,10 nm)", 10, "nm", 10),
    ("the 10 nm-thick film", 10, "nm", 10),
    ("10 nm\u20131 µm", 10, "nm", 10),  # a range, not 10 nm^-1
]


@pytest.mark.parametrize(("text", "value", "unit", "nm"), CASES)
def test_parse_length(text: str, value: float, unit: str, nm: float | None) -> None:
    got = parse_length(text)
    assert got is not None
    assert got.value == pytest.approx(value)
    assert got.unit == unit
    assert unit in UNITS
    if nm is None:
        assert got.nm is None
    else:
        assert got.nm == pytest.approx(nm)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "b1",
        "5 nmol",  # amount, not length
        "5 Nm",  # torque
        "5 PM",  # time of day
        "4.3 m",  # metres are never a scale bar; the µ was lost
        "0 nm",
        "MoS2 nanosheets",
        "a 5 A current",  # A in running text is not ångström
        "5 of them",
    ],
)
def test_not_a_length(text: str) -> None:
    assert parse_length(text) is None


def test_find_lengths_spans_and_order() -> None:
    text = "Scale bars, 50 nm (a), 2 µm (b–d) and 5 1/nm (e)."
    found = find_lengths(text)
    assert [text[s:e] for s, e, _ in found] == ["50 nm", "2 µm", "5 1/nm"]
    assert [f.nm for _, _, f in found] == [50.0, 2000.0, None]


def test_to_nm_and_format() -> None:
    assert to_nm(3, "Å") == pytest.approx(0.3)
    assert to_nm(1.5, "mm") == pytest.approx(1.5e6)
    assert to_nm(250, "pm") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="1/nm"):
        to_nm(1, "1/nm")
    with pytest.raises(ValueError, match="cm"):
        to_nm(1, "cm")
    assert format_length(Length(0.5, "µm", 500.0)) == "0.5 µm"
    assert str(Length(2.0, "nm", 2.0)) == "2 nm"


@pytest.mark.shared_data
def test_human_transcribed_scale_labels() -> None:
    """Every human transcription of a scale-bar label (ImageDataExtractor) reads as its length."""
    files = sorted(LABELS.glob("*.gt.txt"))
    if not files:
        pytest.skip(f"scale-bar label transcriptions not found at {LABELS}")
    simple = re.compile(r"(\d*\.?\d+)\s*(nm|um|mm)")  # the only spellings in this set
    scale = {"nm": 1.0, "um": 1e3, "mm": 1e6}
    unreadable = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        got = parse_length(text)
        m = simple.search(text)
        if m is None:
            assert got is None, text
            unreadable.append(text)
            continue
        assert got is not None, text
        assert math.isclose(got.nm or 0.0, float(m.group(1)) * scale[m.group(2)]), text
    assert len(files) == 252
    assert unreadable == ["b1"]
