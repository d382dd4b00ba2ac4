"""Figures end to end: an offline article page to a dataset and the catalog; resume; bad
articles; the split and extract commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emdig._demo import write_demo_article
from emdig.catalog.store import Catalog
from emdig.cli import app
from emdig.figures.extract import acquisition_from_terms, extract, find_articles
from emdig.figures.pipeline import analyse_figure


@pytest.fixture(scope="module")
def article(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_article(tmp_path_factory.mktemp("article"))


def test_analyse_generated_figure(article: Path) -> None:
    from PIL import Image

    img = np.asarray(Image.open(article.parent / "demo_fig1.png").convert("RGB"))
    caption = "Survey. (a) HAADF-STEM image. (b) Another. (c) Third. (d) Fourth. Scale bars, 20 nm."
    res = analyse_figure(img, caption=caption, query_terms=("HAADF",))
    assert res.caption_letters == ["a", "b", "c", "d"]
    assert sorted(p.label or "" for p in res.panels) == ["a", "b", "c", "d"]
    calibrated = [p for p in res.panels if p.nm_per_px is not None]
    assert calibrated, "the drawn scale bars with the caption's 20 nm should calibrate panels"
    truth = json.loads((article.parent / "truth.json").read_text())["bar_px"]["demo_fig1"]
    for p in calibrated:
        assert p.calibration == "caption"
        bar = p.scale_bars[0]
        # nm/px is the stated length over the bar's measured length, which is the drawn one
        assert p.nm_per_px == pytest.approx(20.0 / bar.length_px, rel=1e-6)
        assert bar.length_px == pytest.approx(truth[p.label], rel=0.03)
    a = next(p for p in res.panels if p.label == "a")
    assert any("HAADF-STEM image" in c for c in a.caption)
    assert "HAADF-STEM" in a.general


def test_extract_offline_html_into_dataset_and_catalog(article: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with Catalog(tmp_path / "c.db") as cat:
        s = extract([article.parent], out=out, catalog=cat)
        assert s.failures == [] and s.articles == 1 and s.figures == 2
        assert s.panels == 8 and s.calibrated >= 4
        data = json.loads((out / "figures.json").read_text())
        assert set(data) == {"demo-article_fig1", "demo-article_fig2"}
        fig = data["demo-article_fig2"]
        assert fig["doi"] == "10.0000/emdig.demo" and fig["license"] == "CC BY 4.0"
        rows = cat.select(where="format = 'png'")
        assert len(rows) == 8
        cal = [r for r in rows if r["pixel_size_nm"] is not None]
        assert len(cal) == s.calibrated
        full = cat.get(rows[0]["id"])
        assert full is not None
        src = full["source"] if isinstance(full["source"], dict) else json.loads(full["source"])
        assert src["doi"] == "10.0000/emdig.demo" and len(src["panel_box"]) == 4
        # panels from "HAADF-STEM" captions are catalogued as STEM/HAADF
        assert {r["detector"] for r in rows} == {"HAADF"}
        # a re-run does nothing twice
        again = extract([article.parent], out=out, catalog=cat)
        assert again.skipped == 1 and again.articles == 0 and again.figures == 2
        assert cat.count(where="format = 'png'") == 8
    page = (out / "preview.html").read_text()
    assert "never run" not in page and "<script>" not in page


def test_query_and_type_filters(article: Path, tmp_path: Path) -> None:
    from emdig.figures.extract import ExtractOptions

    none = extract([article], out=tmp_path / "a", options=ExtractOptions(query=("diffraction",)))
    assert none.panels == 0 and none.figures == 0
    some = extract(
        [article], out=tmp_path / "b", options=ExtractOptions(query=("gold", "nanoparticles"))
    )
    assert some.panels == 8
    typed = extract([article], out=tmp_path / "c", options=ExtractOptions(types=("graph",)))
    assert typed.panels == 0


def test_bad_articles_are_reported_and_the_batch_goes_on(article: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.html").write_bytes(article.read_bytes())
    for name in ("demo_fig1.png", "demo_fig2.png"):
        (folder / name).write_bytes((article.parent / name).read_bytes())
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <<")
    (folder / "bomb.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx">'
        '<!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;&x;&x;">]><article>&y;</article>'
    )
    assert len(find_articles([folder])) == 3
    s = extract([folder], out=tmp_path / "ds")
    assert s.articles == 1 and s.panels == 8
    codes = {Path(p).name: c for p, c, _ in s.failures}
    assert set(codes) == {"broken.pdf", "bomb.xml"}
    assert codes["bomb.xml"] == "xml_entities"
    for p, _, msg in s.failures:
        assert Path(p).name in msg and "\n" not in msg


def test_acquisition_from_terms() -> None:
    a = acquisition_from_terms(["HRTEM", "HAADF-STEM"])
    assert (a.mode, a.detector) == ("STEM", "HAADF")
    assert acquisition_from_terms(["SEM"]).mode == "SEM"
    assert acquisition_from_terms([]).mode is None


def test_cli_split_and_extract(article: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    fig = article.parent / "demo_fig1.png"
    r = run(
        app,
        ["figures", "split", str(fig), "--caption", "(a) A. (b) B. (c) C. (d) D.", "--json",
         "-o", str(tmp_path / "s")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert sorted(m["subfigure_label"]["text"] for m in rec["master_images"]) == list("abcd")
    assert (tmp_path / "s" / "figures.json").is_file()
    assert (tmp_path / "s" / "preview.html").is_file()
    r = run(app, ["figures", "split", str(tmp_path / "missing.png"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "missing.png" in r.output
    r = run(
        app,
        ["figures", "extract", str(article), "-o", str(tmp_path / "e"), "--no-catalog",
         "--json", "--type", "microscopy"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["panels"] == 8
    r = run(app, ["figures", "extract", str(article), "--type", "cats", "--no-catalog"])
    assert r.exit_code == 2


@pytest.mark.parametrize("kind", ["white", "noise", "tiny"])
def test_images_that_are_not_figures(kind: str, tmp_path: Path) -> None:
    from PIL import Image

    from emdig.figures.extract import split_figure_file

    rng = np.random.default_rng(0)
    img = {
        "white": np.full((300, 400, 3), 255, np.uint8),
        "noise": rng.integers(0, 256, (300, 400, 3), dtype=np.uint8),
        "tiny": np.zeros((3, 5, 3), np.uint8),
    }[kind]
    path = tmp_path / f"{kind}.png"
    Image.fromarray(img).save(path)
    rec = split_figure_file(path, caption="", out=tmp_path / "out")
    # one panel at most, no letters invented, nothing calibrated without a scale
    assert len(rec["master_images"]) <= 1
    for mi in rec["master_images"]:
        assert mi["subfigure_label"]["text"] == "0" and mi["nm_per_px"] is None
    assert (tmp_path / "out" / "figures.json").is_file()
