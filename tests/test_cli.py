"""The CLI as a user drives it: demo, info, catalog list/show/stats/report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emdig.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("demo")
    db = out / "demo.db"
    r = runner.invoke(app, ["demo", "--out", str(out), "--catalog", str(db)])
    assert r.exit_code == 0, r.output
    assert "read" in r.output and "truncated" in r.output
    assert "against the synthetic ground truth: F1" in r.output
    assert "query voltage_kv >= 200 and detector = 'HAADF': 7 micrographs" in r.output
    return out, db


def test_demo_report(demo: tuple[Path, Path]) -> None:
    out, _ = demo
    html = (out / "report.html").read_text()
    # the sample archive (20), the figure panels (8) and the simulated STEM archive (400);
    # the report shows the first 200
    assert html.count('class="tile"') == 200
    assert "broken_transfer.tif" in html and "data:image/png;base64," in html
    # the particles part of the demo: the shipped model on two synthetic FRIL images
    assert "Immunogold particles" in html
    for name in ("synth_000", "synth_001"):
        assert (out / "particles" / f"{name}_overlay.png").is_file()
        assert (out / "particles" / f"{name}_sizes.png").is_file()
    # the figures part: a generated article page to a panel dataset
    assert "Literature figures" in html and (out / "figures" / "figures.json").is_file()
    assert (out / "figures" / "preview.html").is_file()
    # the contrastive part: a simulated archive, trained, embedded, searched, mapped
    assert "Contrastive image-metadata model" in html
    assert (out / "contrastive-map.png").read_bytes()[:4] == b"\x89PNG"
    # two files planted with wrong metadata rank among the first tenth of the 402 anomalies
    ranks = dict(re.findall(r"(mislabelled_\w+)\.hspy \([^)]*\) ranks (\d+)", html))
    assert set(ranks) == {"mislabelled_detector", "mislabelled_magnification"}
    assert all(int(r) <= 40 for r in ranks.values()), ranks


def test_catalog_list_where_and_json(demo: tuple[Path, Path]) -> None:
    _, db = demo
    r = runner.invoke(
        app,
        [
            "catalog",
            "list",
            "-c",
            str(db),
            "--json",
            "--where",
            "voltage_kv >= 200 and detector = 'HAADF' and path like '%sample%'",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 7
    assert all(x["voltage_kv"] >= 200 and x["detector"] == "HAADF" for x in rows)
    r = runner.invoke(
        app,
        [
            "catalog",
            "list",
            "-c",
            str(db),
            "--csv",
            "--search",
            "abf",
            "-w",
            "path like '%sample%'",
        ],
    )
    assert r.exit_code == 0 and r.output.count("\n") == 1 + 4  # header + 4 ABF images


def test_catalog_rejects_injection(demo: tuple[Path, Path]) -> None:
    _, db = demo
    r = runner.invoke(app, ["catalog", "stats", "-c", str(db), "--json"])
    before = json.loads(r.output)["micrographs"]
    assert before == 430  # 20 sample files, 8 figure panels, 400 + 2 simulated STEM images
    for bad in (
        "detector = 'x' or 1=1 --",
        "voltage_kv >= 200; DROP TABLE files",
        "nosuchcolumn = 3",
    ):
        r = runner.invoke(app, ["catalog", "list", "-c", str(db), "--where", bad])
        assert r.exit_code in (0, 2)
        if r.exit_code == 2:
            assert r.output.startswith("error: bad filter") or "unknown column" in r.output
    r = runner.invoke(app, ["catalog", "stats", "-c", str(db), "--json"])
    assert json.loads(r.output)["micrographs"] == before


def test_catalog_show_and_stats(demo: tuple[Path, Path]) -> None:
    _, db = demo
    r = runner.invoke(app, ["catalog", "show", "2", "-c", str(db), "--json", "--raw"])
    d = json.loads(r.output)
    assert d["id"] == 2 and d["source"]["sha256"] and isinstance(d["raw_metadata"], dict)
    r = runner.invoke(app, ["catalog", "show", "999", "-c", str(db)])
    assert r.exit_code == 2 and "no micrograph with id 999" in r.output
    r = runner.invoke(
        app, ["catalog", "stats", "-c", str(db), "--json", "-w", "path like '%sample%'"]
    )
    st = json.loads(r.output)
    assert st["errors"] == {"truncated": 1}
    assert st["by_detector"]["HAADF"] == 7 and st["calibrated"] == 19  # the PNG has no scale


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["catalog", "list", "-c", str(tmp_path / "none.db")])
    assert r.exit_code == 2 and "no catalog here" in r.output
    assert not (tmp_path / "none.db").exists()


def test_info_json(demo: tuple[Path, Path]) -> None:
    out, _ = demo
    r = runner.invoke(app, ["info", str(out / "sample" / "stem_000_HAADF.hspy"), "--json"])
    d = json.loads(r.output)
    [im] = d["images"]
    assert d["format"] == "hspy" and im["acquisition"]["voltage_kv"] == 300.0
    assert im["acquisition"]["detector"] == "HAADF" and im["pixel_size_nm"] > 0
    assert im["stats"]["max"] >= im["stats"]["mean"] >= im["stats"]["min"]
