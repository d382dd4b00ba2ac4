"""Per-image outputs of a detection: CSV, overlay PNG, size histogram, summary statistics, and
Gold Digger's coordinate files."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import Points

__all__ = [
    "CLASS_COLOURS",
    "DETECTION_COLUMNS",
    "html_section",
    "summarize",
    "write_detections_csv",
    "write_golddigger",
    "write_histogram",
    "write_overlay",
]

DETECTION_COLUMNS = ("image", "x_px", "y_px", "x_nm", "y_nm", "diameter_nm", "class_nm", "score")
# colour-blind-safe (Okabe-Ito) colours, one per size class in ascending order
CLASS_COLOURS = ((0, 158, 115), (230, 159, 0), (204, 121, 167), (86, 180, 233), (213, 94, 0))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _colour(c: float, classes: Sequence[float]) -> tuple[int, int, int]:
    order = sorted(classes)
    i = order.index(c) if c in order else len(order)
    return CLASS_COLOURS[i % len(CLASS_COLOURS)]


def write_detections_csv(points: Points, path: str | Path, *, pixel_size_nm: float) -> Path:
    """The tidy detection table: ``image, x_px, y_px, x_nm, y_nm, diameter_nm, class_nm, score``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DETECTION_COLUMNS)
    for i in range(len(points)):
        x, y = float(points.x_px[i]), float(points.y_px[i])
        w.writerow(
            [
                points.image[i],
                f"{x:.2f}",
                f"{y:.2f}",
                f"{x * pixel_size_nm:.3f}",
                f"{y * pixel_size_nm:.3f}",
                f"{points.diameter_nm[i]:.2f}",
                f"{points.class_nm[i]:g}",
                f"{points.score[i]:.4f}",
            ]
        )
    p = Path(path)
    _atomic_write_bytes(p, buf.getvalue().encode())
    return p


def write_overlay(
    image: np.ndarray,
    points: Points,
    path: str | Path,
    *,
    pixel_size_nm: float,
    classes_nm: Sequence[float],
    region: np.ndarray | None = None,
) -> Path:
    """The image with a circle per detection (colour per class), the analysed region's outline
    and a legend."""
    from PIL import Image, ImageDraw

    a = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(
        a[:: max(1, a.shape[0] // 512), :: max(1, a.shape[1] // 512)], [0.5, 99.5]
    )
    grey = np.clip((a - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if region is not None and not region.all():
        edge = region ^ np.roll(region, 1, 0) | region ^ np.roll(region, 1, 1)
        rgb[edge] = (255, 255, 0)
        rgb[~region] = (rgb[~region] * 0.55).astype(np.uint8)
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    width = max(1, round(min(a.shape) / 700))
    for i in range(len(points)):
        r = 0.5 * float(points.diameter_nm[i]) / pixel_size_nm + 1.5
        x, y = float(points.x_px[i]), float(points.y_px[i])
        draw.ellipse(
            [x - r, y - r, x + r, y + r],
            outline=_colour(points.class_nm[i], classes_nm),
            width=width,
        )
    counts = {c: int(np.sum(points.class_nm == c)) for c in sorted(classes_nm)}
    for k, (c, n) in enumerate(counts.items()):
        y0 = 8 + 22 * k
        draw.rectangle([8, y0, 26, y0 + 16], fill=_colour(c, classes_nm))
        draw.text((32, y0 + 2), f"{c:g} nm: {n}", fill=(255, 255, 255))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=3)
    p = Path(path)
    _atomic_write_bytes(p, buf.getvalue())
    return p


def write_histogram(
    points: Points, path: str | Path, *, classes_nm: Sequence[float], title: str = ""
) -> Path:
    """Size histogram (nm), stacked by class, with the nominal sizes marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    d = np.asarray(points.diameter_nm)
    top = max([*classes_nm, float(np.nanmax(d)) if d.size else 0.0]) * 1.3
    bins = np.arange(0, top + 0.5, 0.5)
    classes = sorted(classes_nm)
    data = [d[points.class_nm == c] for c in classes]
    colours: list[tuple[float, float, float]] = []
    for c in classes:
        r, g, b = _colour(c, classes)
        colours.append((r / 255, g / 255, b / 255))
    ax.hist(
        data,
        bins=bins.tolist(),
        stacked=True,
        color=colours,
        label=[f"{c:g} nm (n={len(x)})" for c, x in zip(classes, data, strict=True)],
    )
    for c in classes:
        ax.axvline(c, color="0.3", lw=0.8, ls="--")
    ax.set_xlabel("diameter (nm)")
    ax.set_ylabel("particles")
    ax.set_title(title or "particle sizes", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    p = Path(path)
    _atomic_write_bytes(p, buf.getvalue())
    return p


def summarize(
    points: Points, *, region: np.ndarray, pixel_size_nm: float, classes_nm: Sequence[float]
) -> dict[str, Any]:
    """Counts per class, density per µm² of the analysed region, mean nearest-neighbour
    distance (nm) per class."""
    from scipy.spatial import cKDTree

    area_um2 = float(region.sum()) * (pixel_size_nm / 1000.0) ** 2
    row: dict[str, Any] = {"region_um2": round(area_um2, 5), "n_total": len(points)}
    for c in sorted(classes_nm):
        sel = points.class_nm == c
        n = int(sel.sum())
        row[f"n_{c:g}nm"] = n
        row[f"density_{c:g}nm_per_um2"] = round(n / area_um2, 4) if area_um2 > 0 else None
        if n >= 2:
            xy = np.c_[points.x_px[sel], points.y_px[sel]] * pixel_size_nm
            dist, _ = cKDTree(xy).query(xy, k=2)
            row[f"nn_mean_{c:g}nm_nm"] = round(float(dist[:, 1].mean()), 3)
        else:
            row[f"nn_mean_{c:g}nm_nm"] = None
    return row


def write_golddigger(
    points: Points,
    out_dir: str | Path,
    *,
    image: str,
    pixel_size_nm: float,
    classes_nm: Sequence[float],
) -> list[Path]:
    """Gold Digger's files: ``coordsGroup{k}-<image>.csv`` (``X,Y`` integer px, one per class,
    ascending) and ``coordinates-<image>.csv`` (``X,Y,Area`` with area in px²)."""
    d = Path(out_dir)
    written = []
    for k, c in enumerate(sorted(classes_nm), start=1):
        sel = points.class_nm == c
        rows = "".join(
            f"{round(x)},{round(y)}\n"
            for x, y in zip(points.x_px[sel], points.y_px[sel], strict=True)
        )
        p = d / f"coordsGroup{k}-{image}.csv"
        _atomic_write_bytes(p, ("X,Y\n" + rows).encode())
        written.append(p)
    r_px = 0.5 * np.asarray(points.diameter_nm) / pixel_size_nm
    rows = "".join(
        f"{round(x)},{round(y)},{np.pi * r * r:.1f}\n"
        for x, y, r in zip(points.x_px, points.y_px, r_px, strict=True)
    )
    p = d / f"coordinates-{image}.csv"
    _atomic_write_bytes(p, ("X,Y,Area\n" + rows).encode())
    written.append(p)
    return written


def html_section(
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    *,
    relative_to: str | Path,
    classes_nm: Sequence[float],
) -> str:
    """An HTML fragment: the summary table and each image's overlay and size histogram."""
    import html
    import os.path

    classes = sorted(classes_nm)
    head = "".join(f"<th>{c:g} nm</th>" for c in classes)
    dens = "".join(f"<th>{c:g} nm / µm²</th>" for c in classes)
    body, figs = [], []
    for r in rows:
        name = html.escape(str(r["image"]))
        counts = "".join(f"<td>{r.get(f'n_{c:g}nm', 0)}</td>" for c in classes)
        dvals = "".join(f"<td>{(r.get(f'density_{c:g}nm_per_um2') or 0):.3g}</td>" for c in classes)
        body.append(f"<tr><td>{name}</td>{counts}<td>{r['region_um2']:.3g}</td>{dvals}</tr>")
        base = Path(out_dir) / str(r["image"])
        ov = os.path.relpath(f"{base}_overlay.png", relative_to)
        hist = os.path.relpath(f"{base}_sizes.png", relative_to)
        figs.append(
            f'<figure><a href="{html.escape(ov)}"><img src="{html.escape(ov)}" '
            f'style="width:420px"></a><img src="{html.escape(hist)}" style="width:420px">'
            f"<figcaption>{name}</figcaption></figure>"
        )
    return (
        "<h2>Immunogold particles</h2><table><tr><th>image</th>"
        f"{head}<th>region µm²</th>{dens}</tr>{''.join(body)}</table>"
        f'<div style="display:flex;flex-wrap:wrap;gap:12px">{"".join(figs)}</div>'
    )
