"""Training: synthetic and annotated images -> a :class:`ParticleNet` saved as safetensors + JSON.

Targets are built at the model's physical scale: a Gaussian centre heat-map (penalty-reduced
focal loss, as in CenterNet) and the diameter in nm around each centre (L1). Real annotations
usually cover only a region of interest, so each sample carries a weight mask and the loss is
taken only inside it.

Augmentations keep the physics the model must learn: flips and 90-degree rotations (a replica
has no preferred orientation), brightness, contrast and gamma changes and added noise (these
vary between sessions). There is no rescaling: the model works at one physical pixel size, and
a rescale would teach it wrong diameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .annotations import Points, synthetic_truth
from .detect import _resample, info_strip_rows, normalise
from .model import ModelConfig, ParticleNet, save_model

__all__ = [
    "TrainSample",
    "make_sample",
    "samples_from_annotations",
    "synthetic_samples",
    "train",
]


@dataclass(frozen=True)
class TrainSample:
    """One training image at the model's scale.

    Attributes
    ----------
    image
        Normalised float32 image, model pixels.
    x, y
        Particle centres in model pixels.
    diameter_nm
        Particle diameters.
    weight
        Where the loss counts (1) or not (0), float32, same shape as ``image``.
    name
        For logs and splits.
    """

    image: np.ndarray
    x: np.ndarray
    y: np.ndarray
    diameter_nm: np.ndarray
    weight: np.ndarray
    name: str


def make_sample(
    image: np.ndarray,
    points: Points,
    *,
    pixel_size_nm: float,
    config: ModelConfig,
    region: np.ndarray | None = None,
    name: str = "image",
) -> TrainSample:
    """Resample an image and its annotated points to the model's scale.

    ``region`` (True where the annotation is complete) becomes the loss weight; the bottom
    information strip is always excluded.
    """
    a = np.asarray(image)
    reg = np.ones(a.shape, bool) if region is None else np.asarray(region, bool).copy()
    strip = info_strip_rows(a)
    if strip:
        reg[-strip:] = False
    img01 = normalise(a, reg)
    scale = pixel_size_nm / config.pixel_size_nm
    small = _resample(torch.from_numpy(img01)[None, None], scale)[0, 0].numpy()
    w = _resample(torch.from_numpy(reg.astype(np.float32))[None, None], scale)[0, 0].numpy()
    x = (np.asarray(points.x_px) + 0.5) * scale - 0.5
    y = (np.asarray(points.y_px) + 0.5) * scale - 0.5
    d = np.asarray(points.diameter_nm, dtype=np.float64)
    d = np.where(np.isfinite(d), d, np.asarray(points.class_nm, dtype=np.float64))
    return TrainSample(small.astype(np.float32), x, y, d, (w > 0.5).astype(np.float32), name)


def _targets(
    s: TrainSample, y0: int, x0: int, size: int, config: ModelConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heat-map, diameter and diameter-weight targets for one crop."""
    heat = np.zeros((size, size), np.float32)
    dia = np.zeros_like(heat)
    dw = np.zeros_like(heat)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for cx, cy, dnm in zip(s.x - x0, s.y - y0, s.diameter_nm, strict=True):
        if not np.isfinite(dnm):
            continue
        r = 0.5 * dnm / config.pixel_size_nm
        if cx < -2 * r or cy < -2 * r or cx > size + 2 * r or cy > size + 2 * r:
            continue
        sigma = max(0.7, config.heatmap_sigma * r)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        ix, iy = round(cx), round(cy)
        if 0 <= ix < size and 0 <= iy < size:
            g[iy, ix] = 1.0
        np.maximum(heat, g, out=heat)
        near = (xx - cx) ** 2 + (yy - cy) ** 2 <= max(1.0, 0.5 * r) ** 2
        dia[near] = dnm
        dw[near] = 1.0
    return heat, dia, dw


def _augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = img * rng.uniform(0.8, 1.25) + rng.uniform(-0.15, 0.15)
    lo = float(img.min())
    gamma = rng.uniform(0.8, 1.25)
    img = np.sign(img - lo) * np.abs(img - lo) ** gamma + lo
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(0.0, 0.08), img.shape)
    return img.astype(np.float32)


def _batch(
    samples: Sequence[TrainSample],
    rng: np.random.Generator,
    *,
    n: int,
    size: int,
    config: ModelConfig,
) -> tuple[torch.Tensor, ...]:
    xs: list[np.ndarray] = []
    hs: list[np.ndarray] = []
    ds: list[np.ndarray] = []
    dws: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    for _ in range(n):
        s = samples[int(rng.integers(len(samples)))]
        h, w = s.image.shape
        y0 = int(rng.integers(0, max(1, h - size + 1)))
        x0 = int(rng.integers(0, max(1, w - size + 1)))
        if s.weight[::8, ::8].mean() < 0.9:  # partly annotated: centre crops on the region
            cand = np.flatnonzero(s.weight[::8, ::8])
            if cand.size:
                cy, cx = np.unravel_index(int(rng.choice(cand)), s.weight[::8, ::8].shape)
                y0 = int(np.clip(cy * 8 - size // 2, 0, max(0, h - size)))
                x0 = int(np.clip(cx * 8 - size // 2, 0, max(0, w - size)))
        img = np.zeros((size, size), np.float32)
        wt = np.zeros_like(img)
        crop = s.image[y0 : y0 + size, x0 : x0 + size]
        img[: crop.shape[0], : crop.shape[1]] = crop
        wt[: crop.shape[0], : crop.shape[1]] = s.weight[y0 : y0 + size, x0 : x0 + size]
        heat, dia, dw = _targets(s, y0, x0, size, config)
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        stack = [_augment(img, rng), heat, dia, dw * wt, wt]
        stack = [np.rot90(a, k) for a in stack]
        if flip:
            stack = [a[:, ::-1] for a in stack]
        for lst, a in zip((xs, hs, ds, dws, ws), stack, strict=True):
            lst.append(np.ascontiguousarray(a))
    return tuple(torch.from_numpy(np.stack(v))[:, None] for v in (xs, hs, ds, dws, ws))


def focal_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced pixel focal loss on a Gaussian heat-map (alpha 2, beta 4)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = (target >= 0.999).float() * weight
    neg = (1 - (target >= 0.999).float()) * weight
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def train(
    samples: Sequence[TrainSample],
    *,
    config: ModelConfig | None = None,
    init: ParticleNet | None = None,
    val_samples: Sequence[TrainSample] = (),
    steps: int = 2000,
    batch_size: int = 16,
    crop: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    out: str | Path | None = None,
    validate: Callable[[ParticleNet], dict[str, float]] | None = None,
    every: int = 250,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[ParticleNet, list[dict[str, Any]]]:
    """Train (or fine-tune ``init``) and return the model and its history.

    A checkpoint (safetensors + JSON) is written to ``out`` every ``every`` steps and at the
    end; ``validate(model)`` is called at the same points and its figures are logged.
    Deterministic for a given seed on one machine.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if not samples:
        raise ValueError("no training samples")
    model = init if init is not None else ParticleNet(config or ModelConfig())
    cfg = model.config
    if crop % model.multiple:
        raise ValueError(f"crop must be a multiple of {model.multiple}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(1, steps + 1):
        x, heat, dia, dw, wt = (
            v.to(device) for v in _batch(samples, rng, n=batch_size, size=crop, config=cfg)
        )
        out_t = model(x)
        l_heat = focal_loss(out_t[:, :1], heat, wt)
        l_dia = (F.l1_loss(out_t[:, 1:], dia, reduction="none") * dw).sum() / dw.sum().clamp(min=1)
        loss = l_heat + 0.1 * l_dia
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k, v in (("loss", loss.item()), ("heat", l_heat.item()), ("diam_nm", l_dia.item())):
            running[k] = 0.98 * running.get(k, v) + 0.02 * v
        if progress:
            progress(step, steps, dict(running))
        if step % every == 0 or step == steps:
            model.eval()
            entry: dict[str, Any] = {"step": step, "seconds": time.perf_counter() - t0, **running}
            if validate is not None:
                entry.update(validate(model.cpu()))
                model.to(device)
            history.append(entry)
            if out is not None:
                save_model(_with_meta(model, history, samples, val_samples, seed, steps), out)
            model.train()
    model.eval()
    return model.cpu(), history


def _with_meta(
    model: ParticleNet,
    history: list[dict[str, Any]],
    samples: Sequence[TrainSample],
    val: Sequence[TrainSample],
    seed: int,
    steps: int,
) -> ParticleNet:
    names = sorted({s.name.split("#")[0] for s in samples})
    meta = {
        "samples": len(samples),
        "sources": names[:20],
        "val_samples": len(val),
        "seed": seed,
        "steps": steps,
        "last": history[-1] if history else {},
    }
    model.config = replace(model.config, trained_on=meta)
    return model


def samples_from_annotations(
    annotations: Points,
    images: dict[str, tuple[np.ndarray, float]],
    *,
    config: ModelConfig,
    margin_px: float = 50.0,
) -> list[TrainSample]:
    """Training samples from annotated images (``name -> (pixels, pixel_size_nm)``).

    The loss counts only inside each image's annotated region: the convex hull of its points
    dilated by ``margin_px``, since annotations rarely cover a whole image.
    """
    from .masks import hull_mask

    out = []
    for name, (pixels, px) in images.items():
        pts = annotations.select(image=name)
        if len(pts) == 0:
            continue
        region = hull_mask(pts.x_px, pts.y_px, pixels.shape, margin_px=margin_px)
        out.append(make_sample(pixels, pts, pixel_size_nm=px, config=config, region=region,
                               name=name))  # fmt: skip
    return out


def synthetic_samples(
    n: int, *, seed: int, config: ModelConfig, side: int = 512
) -> list[TrainSample]:
    """``n`` synthetic FRIL images (see :mod:`emdig.particles.synth`) as training samples."""
    from .synth import SynthConfig, synth_batch

    out = []
    for k, s in enumerate(synth_batch(SynthConfig(shape=(side, side)), n, seed=seed)):
        p = s.particles
        pts = synthetic_truth(p, image=f"synth{k}")  # fmt: skip
        out.append(make_sample(s.image, pts, pixel_size_nm=s.pixel_size_nm, config=config,
                               region=s.region_mask, name=f"synth#{k}"))  # fmt: skip
    return out
