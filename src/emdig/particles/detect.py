"""Detection: resample to the model's scale, run overlapping tiles, find peaks, measure and class.

Everything here works in physical units: the image is resampled from its own nm/px to the
model's, diameters are measured on the original image in nm, and classes are the nearest of the
user's nominal sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import MissingCalibration
from .annotations import Points
from .model import ParticleNet

__all__ = [
    "DEFAULT_CLASSES_NM",
    "DetectionResult",
    "assign_classes",
    "detect",
    "fit_size_classes",
    "info_strip_rows",
    "measure_diameters",
    "normalise",
    "predict_maps",
]

DEFAULT_CLASSES_NM: tuple[float, ...] = (6.0, 12.0, 18.0)


@dataclass(frozen=True)
class DetectionResult:
    """Detections of one image plus what a report needs.

    ``points`` are in the original image's pixels; ``region`` is the boolean mask that was
    analysed (ROI and no info strip); ``pixel_size_nm`` is the image's own.
    """

    points: Points
    region: np.ndarray
    pixel_size_nm: float


def info_strip_rows(image: np.ndarray) -> int:
    """Rows at the bottom that form a dark information strip (scale bar, labels); 0 if none.

    A row belongs to the strip when over half its pixels are darker than a tenth of the way
    from the image's 1st percentile to its median.
    """
    a = np.asarray(image, dtype=np.float32)
    lo, mid = np.percentile(a[:: max(1, a.shape[0] // 256), :: max(1, a.shape[1] // 256)], [1, 50])
    if mid - lo < 1e-6:
        return 0
    dark = (a < lo + 0.1 * (mid - lo)).mean(axis=1) > 0.5  # bars and labels sit on the strip
    n = 0
    for is_dark in dark[::-1]:
        if not is_dark:
            break
        n += 1
    return n if n >= 8 else 0


BAND_PIXELS = 16_000_000  # pixels per band of rows: bounds memory on huge images


def _levels(a: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """1st and 99th percentiles of the region, from a strided sample of at most ~4 Mpx."""
    step = max(1, int(math.sqrt(a.size / 4_000_000)))
    sample = a[::step, ::step][region[::step, ::step]]
    if sample.size == 0:
        sample = a[::step, ::step].ravel()
    lo, hi = np.percentile(sample, [1, 99])
    return float(lo), float(hi) if hi - lo > 1e-6 else float(lo) + 1.0


def _candidates(
    a: np.ndarray,
    pixel_size_nm: float,
    model: ParticleNet,
    lo: float,
    hi: float,
    thr: float,
    *,
    verify_: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detections of one image (or band): x, y in its pixels, score, and the network's diameter.

    Without a verifier the score is the heat-map peak and ``thr`` applies to it. With one,
    peaks above the verifier's ``candidate_threshold`` are candidates, the score is the
    verifier's probability and ``thr`` applies to that (``verify_=False``: the candidates,
    scored by the heat map, with ``thr`` as the heat-map threshold).
    """
    img01 = ((np.asarray(a, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)).astype(
        np.float32, copy=False
    )
    scale = pixel_size_nm / model.config.pixel_size_nm
    small = _resample(torch.from_numpy(img01)[None, None], scale)[0, 0].numpy()
    verifier = model.verifier if verify_ else None
    heat, dmap = predict_maps(model, small)
    del small
    fx, fy, score = _peaks(heat, verifier.config.candidate_threshold if verifier else thr)
    guess = np.clip(dmap[np.round(fy).astype(int), np.round(fx).astype(int)], 2.0, 60.0)
    # back to original pixels: model pixel centres map through the resampling geometry
    x, y = (fx + 0.5) / scale - 0.5, (fy + 0.5) / scale - 0.5
    if verifier is not None:
        from .verify import verify

        score = verify(verifier, img01, x, y, score, guess, pixel_size_nm=pixel_size_nm)
        ok = score >= thr
        x, y, score, guess = x[ok], y[ok], score[ok], guess[ok]
    return x, y, score, guess


def normalise(image: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """float32 image with the region's 1st and 99th percentiles mapped to 0 and 1."""
    a = np.asarray(image, dtype=np.float32)
    sample = a[region] if region is not None and region.any() else a
    step = max(1, sample.size // 1_000_000)
    lo, hi = np.percentile(sample.ravel()[::step], [1, 99])
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return ((a - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32, copy=False)


def _resample(x: torch.Tensor, scale: float) -> torch.Tensor:
    if abs(scale - 1.0) < 1e-6:
        return x
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


@torch.no_grad()
def predict_maps(
    model: ParticleNet, image01: np.ndarray, *, batch_pixels: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Heat-map (probabilities) and diameter map (nm) at the model's scale, tiled without seams.

    The image is split into as few equal tiles as fit in ``config.tile``; tiles overlap by
    ``config.overlap`` on each side and only their centres are kept, so every output pixel comes
    from a tile in which it is at least ``overlap`` pixels from the edge (more than the
    network's receptive radius): the result does not depend on the tiling.
    """
    cfg = model.config
    ov, m = cfg.overlap, model.multiple
    h, w = image01.shape

    def split(n: int) -> tuple[int, int]:  # as few, equal tiles as fit in config.tile
        count = max(1, math.ceil(n / (cfg.tile - 2 * ov)))
        core = math.ceil(math.ceil(n / count) / m) * m
        return count, core

    ny, cy = split(h)
    nx, cx = split(w)
    th, tw = cy + 2 * ov, cx + 2 * ov
    pad_y, pad_x = ny * cy - h + ov, nx * cx - w + ov
    padded = np.pad(image01, ((ov, pad_y), (ov, pad_x)), mode="reflect")
    heat = np.zeros((ny * cy, nx * cx), np.float32)
    diam = np.zeros_like(heat)
    origins = [(iy * cy, ix * cx) for iy in range(ny) for ix in range(nx)]
    src = torch.from_numpy(np.ascontiguousarray(padded))
    batch = max(1, batch_pixels // (th * tw))  # bounds the network's activation memory
    net = model if model.training else model.inference()
    for k in range(0, len(origins), batch):
        chunk = origins[k : k + batch]
        tiles = torch.stack([src[y : y + th, x : x + tw] for y, x in chunk])[:, None]
        out = net(tiles)
        prob = torch.sigmoid(out[:, 0, ov : ov + cy, ov : ov + cx]).numpy()
        dnm = out[:, 1, ov : ov + cy, ov : ov + cx].numpy()
        for (y, x), p, d in zip(chunk, prob, dnm, strict=True):
            heat[y : y + cy, x : x + cx] = p
            diam[y : y + cy, x : x + cx] = d
    return heat[:h, :w], diam[:h, :w]


def _peaks(heat: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local maxima above threshold (3x3 non-maximum suppression), refined to sub-pixel."""
    t = torch.from_numpy(heat)[None, None]
    is_max = (F.max_pool2d(t, 3, stride=1, padding=1) == t)[0, 0].numpy() & (heat >= threshold)
    ys, xs = np.nonzero(is_max)
    score = heat[ys, xs]
    padded = np.pad(heat, 1)
    win = np.stack([padded[ys + dy, xs + dx] for dy in range(3) for dx in range(3)], axis=1)
    win = win.reshape(-1, 3, 3)
    total = win.sum(axis=(1, 2)) + 1e-12
    offs = np.array([-1.0, 0.0, 1.0])
    fy = ys + (win.sum(axis=2) * offs).sum(axis=1) / total
    fx = xs + (win.sum(axis=1) * offs).sum(axis=1) / total
    return fx, fy, score


def _suppress_close(
    x: np.ndarray, y: np.ndarray, score: np.ndarray, d_px: np.ndarray
) -> np.ndarray:
    """Keep the strongest of detections closer than 0.6 of the larger radius (duplicates)."""
    from scipy.spatial import cKDTree

    order = np.argsort(-score)
    keep = np.ones(len(x), bool)
    if len(x) < 2:
        return keep
    tree = cKDTree(np.c_[x, y])
    for i in order:
        if not keep[i]:
            continue
        for j in tree.query_ball_point([x[i], y[i]], r=0.3 * float(d_px.max())):
            close = math.hypot(x[i] - x[j], y[i] - y[j]) < 0.3 * max(d_px[i], d_px[j])
            if j != i and keep[j] and score[j] <= score[i] and close:
                keep[j] = False
    return keep


def measure_diameters(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, guess_nm: np.ndarray, *, pixel_size_nm: float
) -> np.ndarray:
    """Diameter of dark discs from the original image's radial profile, in nm.

    The edge is where the azimuthally averaged profile crosses halfway between the particle's
    core and the surrounding background (an annulus at 1.4-2.2 guessed radii). This is where a
    blurred disc's true edge lies. Falls back to the guess where the profile is unusable.
    """
    a = np.asarray(image)  # patches are converted one by one: no full-size float copy
    h, w = a.shape
    out = np.asarray(guess_nm, dtype=np.float64).copy()
    for i in range(len(x)):
        r0 = max(2.0, 0.5 * out[i] / pixel_size_nm)
        half = math.ceil(2.4 * r0) + 1
        cx, cy = float(x[i]), float(y[i])
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 1)
        y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half + 1)
        patch = a[y0:y1, x0:x1].astype(np.float32)
        if patch.size < 9:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        r = np.hypot(xx - cx, yy - cy).ravel()
        v = patch.ravel()
        bg_sel = (r > 1.4 * r0) & (r < 2.2 * r0)
        core_sel = r < 0.35 * r0 + 0.5
        if bg_sel.sum() < 4 or core_sel.sum() < 1:
            continue
        bg, core = float(np.median(v[bg_sel])), float(v[core_sel].mean())
        if bg - core <= 1e-3:
            continue
        bins = np.arange(0.0, 2.2 * r0, 0.5)
        idx = np.digitize(r, bins) - 1
        sel = (idx >= 0) & (idx < len(bins))
        sums = np.bincount(idx[sel], weights=v[sel], minlength=len(bins))[: len(bins)]
        counts = np.bincount(idx[sel], minlength=len(bins))[: len(bins)]
        prof = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        centres = bins + 0.25
        level = 0.5 * (bg + core)
        ok = np.isfinite(prof)
        prof, centres = prof[ok], centres[ok]
        above = np.nonzero(prof >= level)[0]
        if len(above) == 0 or above[0] == 0:
            continue
        k = above[0]
        p0, p1 = prof[k - 1], prof[k]
        frac = (level - p0) / (p1 - p0) if p1 != p0 else 0.5
        radius_px = centres[k - 1] + frac * (centres[k] - centres[k - 1])
        if 0.4 * r0 < radius_px < 1.8 * r0:
            out[i] = 2.0 * radius_px * pixel_size_nm
    return out


def assign_classes(
    diameter_nm: np.ndarray, classes_nm: Sequence[float], *, adaptive: bool = False
) -> np.ndarray:
    """The class of each diameter: the nearest nominal size, or the nearest fitted size.

    With ``adaptive=False`` the split is geometric between nominal sizes (6 vs 12 at 8.5 nm).
    With ``adaptive=True`` the centres are first fitted to the diameters themselves
    (:func:`fit_size_classes`): a lot of "18 nm" colloid that measures 15.5 nm is then still
    told from the 12 nm one, where a fixed split at 14.7 nm would cut it in two.
    """
    c = np.asarray(sorted(classes_nm), dtype=np.float64)
    d = np.asarray(diameter_nm, dtype=np.float64)
    if d.size == 0:
        return d.copy()
    if adaptive and c.size > 1:
        centres, sigma, weight = fit_size_classes(d, c.tolist())
        z = (np.log(np.maximum(d, 1e-6))[:, None] - np.log(centres)[None, :]) / sigma[None, :]
        idx = (np.log(weight)[None, :] - np.log(sigma)[None, :] - 0.5 * z * z).argmax(axis=1)
    else:
        idx = np.abs(np.log(d[:, None] / c[None, :])).argmin(axis=1)
    return c[idx]


def fit_size_classes(
    diameter_nm: np.ndarray,
    classes_nm: Sequence[float],
    *,
    max_shift: float = 0.3,
    prior_count: float = 4.0,
    prior_cv: float = 0.1,
    iterations: int = 60,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one log-normal size population per nominal class to measured diameters.

    A colloid lot's true mean is often 10-15 % off its nominal size, and the measured size
    depends on the imaging too, so the classes are found where the diameters actually cluster.
    This is a maximum-a-posteriori EM fit of a Gaussian mixture in log diameter: each centre
    starts at its nominal size, is pulled towards it by ``prior_count`` pseudo-observations
    (so a class with few or no particles stays put) and may move at most ``max_shift`` (30 %)
    away from it. Diameters further than 1.6x outside the nominal range do not take part.

    Parameters
    ----------
    diameter_nm
        Measured diameters, nm.
    classes_nm
        Nominal sizes, nm, sorted ascending.

    Returns
    -------
    centres, sigma, weight
        Per class: fitted centre in nm, spread in log units and mixture weight.
    """
    c = np.asarray(sorted(classes_nm), dtype=np.float64)
    m0 = np.log(c)
    d = np.asarray(diameter_nm, dtype=np.float64)
    d = d[np.isfinite(d) & (d > c[0] / 1.6) & (d < c[-1] * 1.6)]
    x = np.log(d)
    mu, s2 = m0.copy(), np.full(c.size, prior_cv**2)
    w = np.full(c.size, 1.0 / c.size)
    if x.size == 0:
        return c.copy(), np.sqrt(s2), w
    lo, hi = m0 - np.log1p(max_shift), m0 + np.log1p(max_shift)
    for _ in range(iterations):
        z = (x[:, None] - mu[None, :]) ** 2 / s2[None, :]
        logp = np.log(w)[None, :] - 0.5 * np.log(s2)[None, :] - 0.5 * z
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        r /= r.sum(axis=1, keepdims=True)
        n = r.sum(axis=0)
        new_mu = np.clip((r.T @ x + prior_count * m0) / (n + prior_count), lo, hi)
        dev = (r * (x[:, None] - new_mu[None, :]) ** 2).sum(axis=0)
        s2 = np.clip((dev + prior_count * prior_cv**2) / (n + prior_count), 0.03**2, 0.25**2)
        w = (n + 1.0) / (n.sum() + c.size)
        done = np.abs(new_mu - mu).max() < 1e-6
        mu = new_mu
        if done:
            break
    return np.exp(mu), np.sqrt(s2), w


def detect(
    image: np.ndarray,
    *,
    pixel_size_nm: float | None,
    model: ParticleNet,
    classes_nm: Sequence[float] = DEFAULT_CLASSES_NM,
    mask: np.ndarray | None = None,
    threshold: float | None = None,
    adaptive_classes: bool = True,
    name: str = "image",
    progress: Callable[[float], None] | None = None,
) -> DetectionResult:
    """Find, measure and class gold particles in one image.

    Parameters
    ----------
    image
        2-D array, any dtype, gold dark on a lighter replica.
    pixel_size_nm
        The image's pixel size; required (raises :class:`MissingCalibration` when None).
    model
        A loaded :class:`ParticleNet`.
    classes_nm
        Nominal particle sizes.
    adaptive_classes
        Class by the sizes fitted to this image's diameters (:func:`fit_size_classes`), which
        copes with colloid lots off their nominal size; False: by the nearest nominal size.
    mask
        Region of interest, True inside, same shape as the image.
    threshold
        Heat-map probability a peak needs; default the model's own (``config.threshold``).
    name
        Image name written to the table.

    Returns
    -------
    DetectionResult
        ``points`` with ``x_px, y_px`` (original pixels), ``diameter_nm``, ``class_nm``,
        ``score``.
    """
    if pixel_size_nm is None:
        raise MissingCalibration(
            "image has no pixel size; pass --pixel-size-nm (nm per pixel)", path=name
        )
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {a.shape}")
    region = np.ones(a.shape, bool) if mask is None else np.asarray(mask, bool).copy()
    strip = info_strip_rows(a[-min(a.shape[0], 2048) :])
    if strip:
        region[-strip:, :] = False
    lo, hi = _levels(a, region)
    thr = model.config.threshold if threshold is None else threshold
    # Large images stream through in bands of rows, so memory stays bounded; a band's margins
    # are wider than the network can see, and each detection belongs to the band its centre is in.
    band = max(256, BAND_PIXELS // max(1, a.shape[1]))
    margin = math.ceil(2 * model.config.overlap * model.config.pixel_size_nm / pixel_size_nm) + 64
    parts = []
    for start in range(0, a.shape[0], band):
        y0, y1 = max(0, start - margin), min(a.shape[0], start + band + margin)
        x, y, score, guess = _candidates(a[y0:y1], pixel_size_nm, model, lo, hi, thr)
        y = y + y0
        own = (y >= start - 0.5) & (y < start + band - 0.5)
        parts.append((x[own], y[own], score[own], guess[own]))
        if progress:
            progress(0.8 * min(1.0, (start + band) / a.shape[0]))
    x, y, score, guess = (np.concatenate(v) for v in zip(*parts, strict=True))
    keep = _suppress_close(x, y, score, guess / pixel_size_nm)
    x, y, score, guess = x[keep], y[keep], score[keep], guess[keep]
    inside = region[
        np.clip(np.round(y).astype(int), 0, a.shape[0] - 1),
        np.clip(np.round(x).astype(int), 0, a.shape[1] - 1),
    ]
    x, y, score, guess = x[inside], y[inside], score[inside], guess[inside]
    diameter = measure_diameters(a, x, y, guess, pixel_size_nm=pixel_size_nm)
    points = Points.create(
        image=name,
        x_px=x,
        y_px=y,
        diameter_nm=diameter,
        class_nm=assign_classes(diameter, classes_nm, adaptive=adaptive_classes),
        score=score,
    )
    if progress:
        progress(1.0)
    return DetectionResult(points=points, region=region, pixel_size_nm=float(pixel_size_nm))
