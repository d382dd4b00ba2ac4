"""Turning a :class:`Micrograph` into what the catalog stores: statistics and a thumbnail."""

from __future__ import annotations

import io

import numpy as np

from ..micrograph import Micrograph
from .store import ImageRecord

__all__ = ["image_record", "image_stats", "thumbnail"]


def image_stats(pixels: np.ndarray) -> dict[str, float]:
    """min, max, mean and std of the finite pixels (accumulated in float64)."""
    a = np.asarray(pixels)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        a = a[np.isfinite(a)]
    if a.size == 0:
        return {}
    mean = float(a.mean(dtype=np.float64))
    if a.dtype.kind in "iub":  # E[x^2] - E[x]^2 in float64 without a temporary: 3x faster
        x = a.ravel()
        var = float(np.einsum("i,i->", x, x, dtype=np.float64)) / x.size - mean * mean
        std = max(var, 0.0) ** 0.5
    else:
        std = float(a.std(dtype=np.float64))
    return {"min": float(a.min()), "max": float(a.max()), "mean": mean, "std": std}


def thumbnail(pixels: np.ndarray, *, max_side: int = 128) -> tuple[bytes, int, int]:
    """A greyscale PNG preview, contrast-stretched to the 0.5-99.5 % percentiles."""
    from PIL import Image

    a = np.asarray(pixels)
    h, w = a.shape
    step = max(1, int(np.ceil(max(h, w) / max_side)))
    if step > 4:  # subsample to 4x the preview first: a block mean over that is enough
        pre = step // 4
        a = a[::pre, ::pre]
        step = max(1, int(np.ceil(max(a.shape) / max_side)))
    a = a.astype(np.float32)
    if step > 1:  # block mean: cheap and alias-free enough for a preview
        hh, ww = (a.shape[0] // step) * step, (a.shape[1] // step) * step
        if hh and ww:
            a = a[:hh, :ww].reshape(hh // step, step, ww // step, step).mean(axis=(1, 3))
        else:
            a = a[::step, ::step]
    finite = a[np.isfinite(a)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    u8 = np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG", compress_level=1)  # 3x faster, same size here
    return buf.getvalue(), int(u8.shape[1]), int(u8.shape[0])


def image_record(m: Micrograph, raw_json: str) -> ImageRecord:
    """The stored form of ``m``: shape, calibration, metadata, statistics and a thumbnail."""
    png, tw, th = thumbnail(m.pixels)
    return ImageRecord(
        index=m.source.index,
        signal=m.source.signal,
        height=m.shape[0],
        width=m.shape[1],
        dtype=str(m.pixels.dtype),
        pixel_size_nm=m.pixel_size_nm,
        acquisition=m.acquisition.to_dict(),
        stats=image_stats(m.pixels),
        raw_metadata_json=raw_json,
        source=m.source.to_dict(),
        thumbnail_png=png,
        thumbnail_size=(tw, th),
    )
