"""The dataset writer: EXSCLAIM-compatible figures.json, tables, crops, preview, filtering."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from emdig.figures.dataset import (
    figure_record,
    panel_matches,
    write_dataset,
    write_figure_files,
)
from emdig.figures.pipeline import FigureResult
from emdig.figures.records import Article, CaptionChunk, Panel, ScaleBar, ScaleLabel

EXSCLAIM_FIGURE_KEYS = {
    "title",
    "article_url",
    "article_name",
    "image_url",
    "figure_name",
    "figure_path",
    "full_caption",
    "caption_delimiter",
    "license",
    "open",
    "master_images",
    "unassigned",
}
EXSCLAIM_MASTER_KEYS = {
    "geometry",
    "height",
    "width",
    "classification",
    "confidence",
    "subfigure_label",
    "scale_bars",
    "caption",
    "keywords",
    "general",
}


def _result() -> FigureResult:
    img = np.full((100, 210, 3), 255, np.uint8)
    img[10:90, 10:100] = 40
    img[10:90, 110:200] = 200
    label = ScaleLabel((60, 70, 90, 80), "50 nm", 50.0, "nm", 50.0, 0.97)
    bar = ScaleBar((60, 82, 85, 85), 25.0, 0.9, label)
    a = Panel(
        box=(10, 10, 100, 90),
        label="a",
        label_box=(12, 12, 20, 22),
        label_confidence=0.9,
        classification="microscopy",
        class_confidence=0.8,
        scale_bars=[bar],
        nm_per_px=2.0,
        calibration="scale_bar",
        caption=["Shared text.", "HAADF-STEM image <script>alert(1)</script>"],
        keywords=["HAADF"],
        general=["HAADF-STEM"],
    )
    b = Panel(
        box=(110, 10, 200, 90),
        label="b",
        classification="photo",
        class_confidence=0.6,
        caption=["Shared text.", "photograph of the cell"],
    )
    return FigureResult(
        name="art_fig1",
        image=img,
        caption="Shared text. a HAADF-STEM image. b photograph of the cell",
        panels=[a, b],
        chunks=[CaptionChunk((), "Shared text."), CaptionChunk(("c",), "an orphan chunk")],
        caption_letters=["a", "b"],
        unassigned_chunks=[CaptionChunk(("c",), "an orphan chunk")],
    )


def test_figure_record_has_exsclaim_structure() -> None:
    art = Article(title="T", doi="10.1/x", licence="CC BY 4.0", path="/x/art.html")
    rec = figure_record(_result(), article=art, figure_number="1", image_url="fig1.jpg")
    assert set(rec) >= EXSCLAIM_FIGURE_KEYS
    assert rec["article_url"] == "https://doi.org/10.1/x" and rec["open"] is True
    a, b = rec["master_images"]
    assert set(a) >= EXSCLAIM_MASTER_KEYS
    # four corner points, EXSCLAIM's box convention
    assert a["geometry"] == [
        {"x": 10, "y": 10},
        {"x": 100, "y": 10},
        {"x": 10, "y": 90},
        {"x": 100, "y": 90},
    ]
    assert (a["height"], a["width"]) == (80, 90)
    assert a["nm_height"] == pytest.approx(160.0) and a["nm_width"] == pytest.approx(180.0)
    assert a["scale_label"] == "50 nm" and a["calibration"] == "scale_bar"
    bar = a["scale_bars"][0]
    assert bar["length"] == 25.0 and bar["label"]["nm"] == 50.0
    # squared centre distance, as EXSCLAIM's label_line_distance
    assert bar["label_line_distance"] == pytest.approx((72.5 - 75) ** 2 + (83.5 - 75) ** 2)
    assert b["classification"] == "basic_photo"  # EXSCLAIM's name for photos
    assert "nm_height" not in b and b["subfigure_label"]["text"] == "b"
    assert rec["unassigned"]["captions"][0]["label"] == ["c"]


def test_dataset_files_tables_and_escaped_preview(tmp_path: Path) -> None:
    res = _result()
    rec = figure_record(res, article=Article(title="T <b>", doi="10.1/x"))
    write_figure_files(res, rec, tmp_path)
    preview = write_dataset({rec["figure_name"]: rec}, tmp_path)
    data = json.loads((tmp_path / "figures.json").read_text())
    assert list(data) == ["art_fig1"]
    for mi in data["art_fig1"]["master_images"]:
        crop = tmp_path / mi["panel_path"]
        assert crop.is_file()
        from PIL import Image

        with Image.open(crop) as im:
            assert (im.height, im.width) == (mi["height"], mi["width"])
    assert (tmp_path / "boxes" / "art_fig1.png").is_file()
    with open(tmp_path / "csv" / "subfigure.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["classification_code"] for r in rows] == ["MC", "PH"]
    assert float(rows[0]["nm_per_px"]) == 2.0
    with open(tmp_path / "csv" / "scalebarlabel.csv") as f:
        labels = list(csv.DictReader(f))
    assert len(labels) == 1 and float(labels[0]["nm"]) == 50.0
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "panels.parquet")
    assert t.num_rows == 2 and t.column("label").to_pylist() == ["a", "b"]
    page = preview.read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "T &lt;b&gt;" in page


def test_panel_matches_query_and_type() -> None:
    rec = figure_record(_result())
    a, b = rec["master_images"]
    assert panel_matches(a, query=["HAADF"]) and not panel_matches(b, query=["HAADF"])
    # every term must match; plurals are forgiven
    assert panel_matches(a, query=["haadf", "images"])
    assert not panel_matches(a, query=["haadf", "diffraction"])
    assert panel_matches(b, types=["photo"]) and not panel_matches(a, types=["photo"])
    assert panel_matches(a) and panel_matches(b)
