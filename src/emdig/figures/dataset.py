"""The dataset folder of a figures run: crops, ``figures.json``, tables and an HTML preview.

``figures.json`` follows EXSCLAIM's ``exsclaim.json``: a dict from figure name to a Figure record
with ``master_images`` (geometry as four corner points, ``classification``, ``subfigure_label``,
``scale_bars`` with their ``label``, ``caption``, ``keywords``, ``general``, ``nm_height`` and
``nm_width``) and ``unassigned``. Classes use EXSCLAIM's names, so ``photo`` is written
``basic_photo``. emdig adds keys EXSCLAIM readers ignore: ``nm_per_px``, ``calibration``
(``"scale_bar"``, ``"caption"`` or null), ``panel_path`` and ``emdig``.

Layout of ``out/``::

    figures.json
    figures/<figure>.png                         the whole figure
    images/<figure>/<label>/<figure>_<label>_<cls>.png   panel crops (EXSCLAIM's layout)
    boxes/<figure>.png                           the figure with panels, labels and bars drawn
    csv/article.csv figure.csv subfigure.csv scalebar.csv scalebarlabel.csv subfigurelabel.csv
    panels.parquet                               one row per panel
    preview.html
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .pipeline import FigureResult
from .records import Article, Box, Panel, ScaleBar

__all__ = [
    "EXSCLAIM_CLASS",
    "figure_record",
    "panel_matches",
    "write_dataset",
    "write_figure_files",
]

#: emdig class -> EXSCLAIM ``classification`` value.
EXSCLAIM_CLASS = {
    "microscopy": "microscopy",
    "diffraction": "diffraction",
    "graph": "graph",
    "illustration": "illustration",
    "photo": "basic_photo",
    "unclear": "unclear",
}
_CSV_CODE = {
    "microscopy": "MC",
    "diffraction": "DF",
    "graph": "GR",
    "basic_photo": "PH",
    "illustration": "IL",
    "unclear": "UN",
}
_COLOURS = {
    "microscopy": (0, 160, 255),
    "diffraction": (170, 60, 255),
    "graph": (0, 190, 90),
    "illustration": (255, 150, 0),
    "basic_photo": (230, 60, 160),
    "unclear": (140, 140, 140),
}


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _corners(box: Box | Sequence[int]) -> list[dict[str, int]]:
    x0, y0, x1, y1 = (int(v) for v in box)
    return [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x0, "y": y1}, {"x": x1, "y": y1}]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "figure"


def _bar_record(bar: ScaleBar) -> dict[str, Any]:
    lab = bar.label
    label = None
    if lab is not None:
        label = {
            "geometry": _corners(lab.box),
            "text": lab.text,
            "nm": lab.nm,
            "value": lab.value,
            "unit": lab.unit,
            "label_confidence": round(float(lab.confidence), 4),
            "box_confidence": round(float(lab.confidence), 4),
        }
    dist = -1.0
    if lab is not None:
        bx, by = (bar.box[0] + bar.box[2]) / 2, (bar.box[1] + bar.box[3]) / 2
        lx, ly = (lab.box[0] + lab.box[2]) / 2, (lab.box[1] + lab.box[3]) / 2
        dist = round((bx - lx) ** 2 + (by - ly) ** 2, 1)
    return {
        "geometry": _corners(bar.box),
        "length": round(float(bar.length_px), 2),
        "confidence": round(float(bar.confidence), 4),
        "label": label,
        "label_line_distance": dist,
    }


def _panel_record(p: Panel, figure_name: str) -> dict[str, Any]:
    x0, y0, x1, y1 = p.box
    cls = EXSCLAIM_CLASS.get(p.classification, "unclear")
    label = p.label or "0"
    rec: dict[str, Any] = {
        "geometry": _corners(p.box),
        "height": int(y1 - y0),
        "width": int(x1 - x0),
        "classification": cls,
        "confidence": round(float(p.class_confidence), 4),
        "subfigure_label": {
            "text": label,
            "geometry": _corners(p.label_box) if p.label_box else [],
            "label_confidence": round(float(p.label_confidence), 4),
        },
        "scale_bars": [_bar_record(b) for b in p.scale_bars],
        "caption": list(p.caption),
        "keywords": list(p.keywords),
        "general": list(p.general),
        "nm_per_px": None if p.nm_per_px is None else float(p.nm_per_px),
        "calibration": p.calibration,
        "panel_path": f"images/{figure_name}/{_safe(label)}/{figure_name}_{_safe(label)}_{cls[:3]}"
        ".png",
    }
    if p.nm_per_px is not None:
        rec["nm_height"] = round(float(p.nm_per_px) * rec["height"], 4)
        rec["nm_width"] = round(float(p.nm_per_px) * rec["width"], 4)
        labelled = [b.label for b in p.scale_bars if b.label is not None]
        if labelled:
            rec["scale_label"] = labelled[0].text
    return rec


def figure_record(
    result: FigureResult,
    *,
    article: Article | None = None,
    figure_number: str | None = None,
    image_url: str | None = None,
) -> dict[str, Any]:
    """The EXSCLAIM-style Figure record of ``result`` (JSON-ready)."""
    name = _safe(result.name)
    a = article or Article()
    return {
        "title": a.title,
        "article_url": a.url or (f"https://doi.org/{a.doi}" if a.doi else None),
        "article_name": Path(a.path).stem if a.path else None,
        "doi": a.doi,
        "image_url": image_url,
        "figure_name": name,
        "figure_number": figure_number,
        "figure_path": f"figures/{name}.png",
        "full_caption": result.caption,
        "caption_delimiter": "",
        "license": a.licence,
        "open": bool(a.licence and re.search(r"creativecommons|\bCC[ -]?BY|open", a.licence, re.I)),
        "master_images": [_panel_record(p, name) for p in result.panels],
        "unassigned": {
            "master_images": [],
            "dependent_images": [],
            "inset_images": [],
            "subfigure_labels": [],
            "scale_bar_labels": [],
            "scale_bar_lines": [],
            "captions": [
                {"label": list(c.labels), "description": c.text, "keywords": [], "general": []}
                for c in result.unassigned_chunks
            ],
            "scale_bar_objects": [_bar_record(b) for b in result.unassigned_bars],
        },
        "emdig": {
            "caption_letters": list(result.caption_letters),
            "seconds": round(result.seconds, 4),
            "image_height": int(result.image.shape[0]),
            "image_width": int(result.image.shape[1]),
        },
    }


# ----------------------------------------------------------------------- per-figure files
def _draw_overlay(rgb: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray(rgb).convert("RGB")
    scale = max(1.0, 900 / max(im.size))
    if scale > 1:
        im = im.resize(
            (round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS
        )
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=max(12, round(im.width / 55)))

    def box_of(geom: Sequence[Mapping[str, int]]) -> tuple[float, float, float, float]:
        xs = [g["x"] * scale for g in geom]
        ys = [g["y"] * scale for g in geom]
        return min(xs), min(ys), max(xs), max(ys)

    for mi in record["master_images"]:
        colour = _COLOURS.get(mi["classification"], (140, 140, 140))
        x0, y0, x1, y1 = box_of(mi["geometry"])
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=3)
        cal = "" if mi.get("nm_per_px") is None else f" · {mi['nm_per_px']:.3g} nm/px"
        text = f"{mi['subfigure_label']['text']} · {mi['classification']}{cal}"
        tb = draw.textbbox((x0 + 4, y0 + 4), text, font=font)
        draw.rectangle((tb[0] - 2, tb[1] - 2, tb[2] + 2, tb[3] + 2), fill=colour)
        draw.text((x0 + 4, y0 + 4), text, fill=(255, 255, 255), font=font)
        if mi["subfigure_label"]["geometry"]:
            draw.rectangle(
                box_of(mi["subfigure_label"]["geometry"]), outline=(255, 230, 0), width=2
            )
        for bar in mi["scale_bars"]:
            bx = box_of(bar["geometry"])
            draw.rectangle(bx, outline=(255, 0, 0), width=3)
            if bar["label"] is not None:
                draw.rectangle(box_of(bar["label"]["geometry"]), outline=(255, 0, 0), width=1)
    for bar in record["unassigned"]["scale_bar_objects"]:
        draw.rectangle(box_of(bar["geometry"]), outline=(255, 0, 0), width=1)
    return np.asarray(im)


def write_figure_files(result: FigureResult, record: Mapping[str, Any], out: str | Path) -> None:
    """Write the figure, its panel crops and its overlay under ``out`` (atomically)."""
    root = Path(out)
    rgb = result.image
    _atomic_bytes(root / record["figure_path"], _png(rgb))
    for mi, p in zip(record["master_images"], result.panels, strict=True):
        x0, y0, x1, y1 = p.box
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        if crop.size:
            _atomic_bytes(root / mi["panel_path"], _png(crop))
    _atomic_bytes(root / "boxes" / f"{record['figure_name']}.png", _png(_draw_overlay(rgb, record)))


# ------------------------------------------------------------------------------ filtering
def _term_pattern(term: str) -> re.Pattern[str]:
    stem = term.strip().lower()
    if len(stem) > 4 and stem.endswith("s"):
        stem = stem[:-1]
    return re.compile(r"(?<![a-z0-9])" + re.escape(stem).replace(r"\ ", r"[\s-]+"), re.I)


def panel_matches(
    panel: Mapping[str, Any], *, query: Sequence[str] = (), types: Sequence[str] = ()
) -> bool:
    """Whether a panel record is kept: its class is in ``types`` (if any) and every query term
    appears in its caption chunks, keywords or general terms (plural-insensitive)."""
    if types:
        wanted = {EXSCLAIM_CLASS.get(t, t) for t in types}
        if panel["classification"] not in wanted:
            return False
    if query:
        text = " ".join([*panel["caption"], *panel["keywords"], *panel["general"]])
        return all(_term_pattern(t).search(text) for t in query if t.strip())
    return True


# ------------------------------------------------------------------------- whole dataset
def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    _atomic_bytes(path, buf.getvalue().encode())


def _box_cols(geom: Sequence[Mapping[str, int]]) -> list[int]:
    if not geom:
        return [0, 0, 0, 0]
    xs, ys = [g["x"] for g in geom], [g["y"] for g in geom]
    return [min(xs), min(ys), max(xs), max(ys)]


def _tables(figures: Mapping[str, Mapping[str, Any]], out: Path) -> list[dict[str, Any]]:
    articles: dict[str, list[Any]] = {}
    fig_rows, sub_rows, bar_rows, lab_rows, sublab_rows = [], [], [], [], []
    panel_rows: list[dict[str, Any]] = []
    for fname, f in figures.items():
        aid = f.get("doi") or f.get("article_name") or ""
        articles.setdefault(aid, [aid, f.get("title"), f.get("article_url"), f.get("license")])
        articles[aid].append(f.get("open"))
        fig_rows.append(
            [
                fname,
                f["full_caption"],
                f["caption_delimiter"],
                f["image_url"],
                f["figure_path"],
                aid,
            ]
        )
        for i, mi in enumerate(f["master_images"]):
            sid = f"{fname}-{i}"
            x0, y0, x1, y1 = _box_cols(mi["geometry"])
            cap = " ".join(mi["caption"])
            sub_rows.append(
                [
                    sid,
                    _CSV_CODE.get(mi["classification"], "UN"),
                    mi["height"],
                    mi["width"],
                    mi.get("nm_height"),
                    mi.get("nm_width"),
                    x0,
                    y0,
                    x1,
                    y1,
                    cap,
                    ";".join(mi["keywords"]),
                    ";".join(mi["general"]),
                    fname,
                    mi.get("nm_per_px"),
                    mi.get("calibration"),
                    mi["panel_path"],
                ]
            )
            lab = mi["subfigure_label"]
            sublab_rows.append(
                [lab["text"], *_box_cols(lab["geometry"]), lab.get("label_confidence"), sid]
            )
            for j, bar in enumerate(mi["scale_bars"]):
                bid = f"{sid}-{j}"
                bar_rows.append(
                    [
                        bid,
                        *_box_cols(bar["geometry"]),
                        bar["length"],
                        bar["label_line_distance"],
                        bar["confidence"],
                        sid,
                    ]
                )
                if bar["label"] is not None:
                    lb = bar["label"]
                    lab_rows.append(
                        [
                            lb["text"],
                            *_box_cols(lb["geometry"]),
                            lb["label_confidence"],
                            lb["box_confidence"],
                            lb["nm"],
                            bid,
                        ]
                    )
            panel_rows.append(
                {
                    "figure": fname,
                    "doi": f.get("doi"),
                    "label": lab["text"],
                    "classification": mi["classification"],
                    "confidence": mi["confidence"],
                    "x0": x0,
                    "y0": y0,
                    "x1": x1,
                    "y1": y1,
                    "nm_per_px": mi.get("nm_per_px"),
                    "calibration": mi.get("calibration"),
                    "nm_height": mi.get("nm_height"),
                    "nm_width": mi.get("nm_width"),
                    "caption": cap,
                    "keywords": ";".join(mi["keywords"]),
                    "general": ";".join(mi["general"]),
                    "panel_path": mi["panel_path"],
                }
            )
    csv_dir = out / "csv"
    _write_csv(
        csv_dir / "article.csv",
        ["id", "title", "url", "license", "open"],
        [[*v[:4], any(bool(x) for x in v[4:])] for v in articles.values()],
    )
    _write_csv(
        csv_dir / "figure.csv",
        ["id", "caption", "caption_delimiter", "image_url", "path", "article_id"],
        fig_rows,
    )
    _write_csv(
        csv_dir / "subfigure.csv",
        [
            "id",
            "classification_code",
            "height",
            "width",
            "nm_height",
            "nm_width",
            "x1",
            "y1",
            "x2",
            "y2",
            "caption",
            "keywords",
            "general",
            "figure_id",
            "nm_per_px",
            "calibration",
            "path",
        ],
        sub_rows,
    )
    _write_csv(
        csv_dir / "scalebar.csv",
        [
            "id",
            "x1",
            "y1",
            "x2",
            "y2",
            "length",
            "label_line_distance",
            "confidence",
            "subfigure_id",
        ],
        bar_rows,
    )
    _write_csv(
        csv_dir / "scalebarlabel.csv",
        [
            "text",
            "x1",
            "y1",
            "x2",
            "y2",
            "label_confidence",
            "box_confidence",
            "nm",
            "scale_bar_id",
        ],
        lab_rows,
    )
    _write_csv(
        csv_dir / "subfigurelabel.csv",
        ["text", "x1", "y1", "x2", "y2", "label_confidence", "subfigure_id"],
        sublab_rows,
    )
    return panel_rows


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(rows[0]) if rows else ["figure"]
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fafafa;max-width:1200px}
.fig{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em;margin:1.2em 0}
.fig img.overlay{max-width:100%;border:1px solid #ccc}
.cap{color:#444;font-size:.9em;margin:.5em 0}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td img{max-height:90px;max-width:140px}
.k{color:#666}.legend span{display:inline-block;padding:.1em .5em;margin-right:.4em;color:#fff;
border-radius:4px;font-size:.85em}
"""


def _preview(figures: Mapping[str, Mapping[str, Any]], title: str) -> str:
    esc = html.escape
    legend = "".join(
        f'<span style="background:rgb{c}">{esc(k)}</span>' for k, c in _COLOURS.items()
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src 'self';"
        " style-src 'unsafe-inline'\">",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{len(figures)} figures, "
        f"{sum(len(f['master_images']) for f in figures.values())} panels. "
        "Boxes: panels coloured by class, labels in yellow, scale bars in red.</p>",
        f'<p class="legend">{legend}</p>',
    ]
    for name, f in figures.items():
        head = esc(name)
        if f.get("title"):
            head += f' <span class="k">— {esc(str(f["title"]))}</span>'
        rows = []
        for mi in f["master_images"]:
            bars = "; ".join(
                esc(b["label"]["text"]) + f" = {b['length']:.0f} px"
                if b["label"]
                else f"unlabelled, {b['length']:.0f} px"
                for b in mi["scale_bars"]
            )
            cal = "–"
            if mi.get("nm_per_px") is not None:
                cal = f"{mi['nm_per_px']:.4g} nm/px ({esc(str(mi['calibration']))})"
            rows.append(
                f"<tr><td><img alt='' src='{esc(mi['panel_path'])}'></td>"
                f"<td>{esc(mi['subfigure_label']['text'])}</td>"
                f"<td>{esc(mi['classification'])} {mi['confidence']:.2f}</td>"
                f"<td>{cal}</td><td>{bars or '–'}</td>"
                f"<td>{esc(' '.join(mi['caption']))}</td>"
                f"<td>{esc(', '.join(mi['keywords'] + mi['general']))}</td></tr>"
            )
        parts.append(
            f'<div class="fig"><h2>{head}</h2>'
            f"<img class='overlay' alt='' src='boxes/{esc(name)}.png'>"
            f'<div class="cap">{esc(f["full_caption"])}</div>'
            "<table><tr><th>panel</th><th>label</th><th>class</th><th>calibration</th>"
            "<th>scale bars</th><th>caption</th><th>terms</th></tr>"
            + "".join(rows)
            + "</table></div>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_dataset(
    figures: Mapping[str, Mapping[str, Any]], out: str | Path, *, title: str = "emdig figures"
) -> Path:
    """Write ``figures.json``, the CSV tables, ``panels.parquet`` and ``preview.html``.

    ``figures`` maps figure names to records from :func:`figure_record`; the per-figure files
    (:func:`write_figure_files`) are expected in ``out`` already. Returns the preview's path.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    data = json.dumps(figures, indent=1, ensure_ascii=False, sort_keys=False)
    _atomic_bytes(root / "figures.json", data.encode())
    rows = _tables(figures, root)
    _write_parquet(rows, root / "panels.parquet")
    preview = root / "preview.html"
    _atomic_bytes(preview, _preview(figures, title).encode())
    return preview
