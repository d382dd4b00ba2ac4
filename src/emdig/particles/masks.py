"""Regions of interest: a binary image (white = inside), a polygon CSV or an ImageJ ROI."""

from __future__ import annotations

import contextlib
import csv
import io
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CorruptFile, EmdigError, UnsupportedFormat

__all__ = ["load_mask", "polygon_mask"]


def polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Rasterise polygons (each ``(n, 2)`` of ``x_px, y_px``) into a boolean mask (even-odd)."""
    from PIL import Image, ImageDraw

    h, w = shape
    img = Image.new("1", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        pts = [(float(x), float(y)) for x, y in poly]
        if len(pts) >= 3:
            draw.polygon(pts, fill=1)
    return np.array(img, dtype=bool)


def _read_polygon_csv(path: Path) -> list[np.ndarray]:
    """Columns ``x_px,y_px`` and optionally ``polygon`` (an id; several polygons allowed)."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"x_px", "y_px"} <= set(rows[0]):
        raise CorruptFile("polygon CSV needs columns x_px,y_px (and optionally polygon)", path=path)
    groups: dict[str, list[tuple[float, float]]] = {}
    for i, r in enumerate(rows, start=2):
        try:
            xy = (float(r["x_px"]), float(r["y_px"]))
        except (TypeError, ValueError):
            raise CorruptFile(f"line {i}: x_px/y_px are not numbers", path=path) from None
        groups.setdefault(r.get("polygon") or "0", []).append(xy)
    return [np.asarray(v) for v in groups.values()]


def _roi_polygon(data: bytes, where: str) -> np.ndarray:
    """One ImageJ .roi (polygon, freehand, traced, rectangle or oval) as polygon vertices."""
    if len(data) < 64 or data[:4] != b"Iout":
        raise CorruptFile("not an ImageJ ROI (missing 'Iout' header)", path=where)
    kind = data[6]
    top, left, bottom, right, n = struct.unpack(">hhhhH", data[8:18])
    if kind == 1:  # rectangle
        return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], float)
    if kind == 2:  # oval: sample the ellipse
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        return np.c_[cx + (right - left) / 2 * np.cos(t), cy + (bottom - top) / 2 * np.sin(t)]
    if kind in (0, 7, 8):  # polygon, freehand, traced
        if len(data) < 64 + 4 * n:
            raise CorruptFile("ImageJ ROI is cut short", path=where)
        xs = np.frombuffer(data, ">i2", n, 64).astype(float) + left
        ys = np.frombuffer(data, ">i2", n, 64 + 2 * n).astype(float) + top
        return np.c_[xs, ys]
    raise UnsupportedFormat(
        f"ImageJ ROI type {kind} is not an area (use polygon, rectangle or oval)", path=where
    )


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a region of interest for an image of ``shape`` (rows, cols); True inside.

    Accepts a binary or greyscale image (white or any non-black value = inside; an RGB mask
    with Gold Digger's convention, pure white = outside, is recognised by having both pure white
    and coloured pixels), a CSV of polygon vertices (``x_px,y_px[,polygon]``), an ImageJ
    ``.roi`` or a ROI-set ``.zip``.

    Raises
    ------
    EmdigError
        Unreadable file, a mask of the wrong size, or an empty mask.
    """
    p = Path(path)
    try:
        head = p.read_bytes()[:8]
    except OSError as e:
        raise CorruptFile(f"cannot read mask: {e.strerror or e}", path=p) from None
    if head[:4] == b"Iout":
        mask = polygon_mask(shape, [_roi_polygon(p.read_bytes(), str(p))])
    elif head[:4] == b"PK\x03\x04":
        polys = []
        with zipfile.ZipFile(p) as z:
            for info in z.infolist()[:10_000]:
                if info.filename.endswith(".roi") and info.file_size < 1 << 24:
                    polys.append(_roi_polygon(z.read(info), f"{p}!{info.filename}"))
        mask = polygon_mask(shape, polys)
    elif head[:1].isascii() and head.strip()[:1].isalpha():
        mask = polygon_mask(shape, _read_polygon_csv(p))
    else:
        mask = _image_mask(p, shape)
    if mask.shape != tuple(shape):
        raise EmdigError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} px but the image is {shape[1]}x{shape[0]}"
            " px; masks must match the image",
            path=p,
        )
    if not mask.any():
        raise EmdigError("mask is empty: no pixel is inside the region of interest", path=p)
    return mask


def _image_mask(p: Path, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise UnsupportedFormat(
            f"mask is not an image, polygon CSV or ImageJ ROI: {e}", path=p
        ) from None
    white = (arr >= 250).all(axis=2)
    grey = (arr.max(axis=2) - arr.min(axis=2)) < 8
    if white.any() and not grey.all():  # Gold Digger: coloured = inside, pure white = outside
        return np.asarray(~white, dtype=bool)
    return np.asarray(arr.mean(axis=2) >= 128, dtype=bool)


def hull_mask(
    x_px: np.ndarray, y_px: np.ndarray, shape: tuple[int, int], *, margin_px: float = 50.0
) -> np.ndarray:
    """Raster of the convex hull of points dilated by ``margin_px``: the region proxy for
    annotations that cover only a region of interest."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull, QhullError

    pts = np.c_[np.asarray(x_px, float), np.asarray(y_px, float)]
    inside = np.zeros(shape, bool)
    if len(pts) >= 3:
        with contextlib.suppress(QhullError):  # collinear: the points themselves below
            inside = polygon_mask(shape, [pts[ConvexHull(pts).vertices]])
    for x, y in pts:
        iy, ix = round(y), round(x)
        if 0 <= iy < shape[0] and 0 <= ix < shape[1]:
            inside[iy, ix] = True
    if not inside.any():
        return inside
    return np.asarray(ndimage.distance_transform_edt(~inside) <= margin_px, dtype=bool)
