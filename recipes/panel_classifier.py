"""Recipe that reproduces the shipped panel classifier ``panel-classifier``.

Data, all deterministic under ``--seed``:

- synthetic panels of every class from :mod:`emdig.figures.synth_panels` (train, validation
  and held-out test sets from different seeds);
- the 842 real crops in ``../shared/data/literature/micrographs/*.jpg``: micrographs, except
  the few whose description in ``labels.csv`` says SAED, FFT or diffraction pattern (class
  ``diffraction``). They are split by source article (the file-name prefix before ``_fig_``)
  into train (65 %), validation (10 %) and held-out test (25 %) articles, so that no article is
  in two of them. Each training crop is seen whole and as two random sub-crops.

Training: class-balanced batches (real crops make up half of the microscopy class and a tenth of
the diffraction class), flips and 90-degree turns where the class allows them, random re-crops
and brightness/contrast jitter, AdamW with a one-cycle schedule. The "unclear" threshold is
chosen on the validation sets. The held-out evaluation (accuracy per class and confusion matrix
for the synthetic and for the real crops) goes into the model's JSON under ``"evaluation"`` and
is printed.

Usage::

    python recipes/panel_classifier.py --out src/emdig/models --name panel-classifier

then put the printed sha256 into ``src/emdig/models/registry.py``. On the 2 shared cores of the
development machine (other jobs running) the data take about 3 minutes and training 8.
"""

from __future__ import annotations

import os

# Shared, busy cores: OpenMP threads that spin while waiting make training several times slower
# than one thread would be; they must sleep instead. Set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from emdig.figures.classify import (
    ClassifierConfig,
    PanelClassifier,
    PanelNet,
    prepare_crop,
    save_classifier,
)
from emdig.figures.records import PANEL_CLASSES
from emdig.figures.synth_panels import _panel_args, make_panel

MICROGRAPHS = Path(__file__).resolve().parents[2] / "shared" / "data" / "literature" / "micrographs"
SIZE_RANGE = (80, 420)
MICRO = PANEL_CLASSES.index("microscopy")
DIFFRACTION = PANEL_CLASSES.index("diffraction")
# classes whose content has no preferred orientation (text and axes do)
FLIP_H = {PANEL_CLASSES.index(c) for c in ("microscopy", "diffraction", "photo")}
TURN = {PANEL_CLASSES.index(c) for c in ("microscopy", "diffraction")}


DIFFRACTION_LABEL = re.compile(
    r"saed|electron diffraction|diffraction pattern|\bfft\b|fast fourier transform|cbed", re.I
)


def real_classes(directory: Path) -> dict[str, int]:
    """Class index per crop file name from ``labels.csv``: a few of the crops are diffraction
    patterns or FFTs (their description or instrument says so); the rest are micrographs."""
    out = {}
    for line in (directory / "labels.csv").read_text(encoding="utf-8").splitlines():
        cols = line.split("|")
        if len(cols) < 5:
            continue
        m = re.match(r"(.*)_f(\d+)_s(\d+)$", cols[1])
        if m is None:
            continue
        name = f"{m.group(1)}_fig_{m.group(2)}_{m.group(3)}.jpg"
        text = " ".join(cols[2:5])
        out[name] = DIFFRACTION if DIFFRACTION_LABEL.search(text) else MICRO
    return out


def article_of(path: str | Path) -> str:
    """The source article of a micrograph crop: its file name before ``_fig_``."""
    return Path(path).name.split("_fig_")[0]


def split_by_article(
    paths: Sequence[Path], *, seed: int, test: float = 0.25, val: float = 0.1
) -> tuple[list[Path], list[Path], list[Path]]:
    """Train, validation and test paths; every article's crops land in exactly one of them."""
    articles = sorted({article_of(p) for p in paths})
    order = np.random.default_rng(seed).permutation(len(articles))
    n_test = round(test * len(articles))
    n_val = round(val * len(articles))
    test_a = {articles[i] for i in order[:n_test]}
    val_a = {articles[i] for i in order[n_test : n_test + n_val]}
    tr, va, te = [], [], []
    for p in sorted(paths):
        a = article_of(p)
        (te if a in test_a else va if a in val_a else tr).append(p)
    return tr, va, te


def _quantise(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def _synthetic_chunk(args: tuple[int, int, int, int, int]) -> np.ndarray:
    seed, ci, start, stop, size = args
    import cv2

    cv2.setNumThreads(1)
    out = np.empty((stop - start, size, size, 3), np.uint8)
    for k, i in enumerate(range(start, stop)):
        rng, shape = _panel_args(seed, ci, i, SIZE_RANGE)
        panel = make_panel(PANEL_CLASSES[ci], rng, size=shape)
        x = prepare_crop(panel, size=size)
        assert x is not None
        out[k] = _quantise(x)
    return out


def synthetic_set(
    n_per_class: int, *, seed: int, size: int, workers: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: ``n_per_class`` prepared panels per class, ``X`` uint8 ``(N, S, S, 3)``."""
    chunk = 100
    jobs = [
        (seed, ci, s, min(n_per_class, s + chunk), size)
        for ci in range(len(PANEL_CLASSES))
        for s in range(0, n_per_class, chunk)
    ]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            parts = list(ex.map(_synthetic_chunk, jobs))
    else:
        parts = [_synthetic_chunk(j) for j in jobs]
    y = np.concatenate([np.full(j[3] - j[2], j[1], np.int64) for j in jobs])
    return np.concatenate(parts), y


def real_set(
    paths: Sequence[Path], labels: dict[str, int], *, size: int, views: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Prepared real crops and their classes: each image whole, plus ``views - 1`` random
    sub-crops (60-100 % of each side); ``X`` uint8 ``(N * views, S, S, 3)``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out, ys = [], []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = a.shape[:2]
        for v in range(views):
            if v:
                ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
                y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                crop = a[y0 : y0 + ch, x0 : x0 + cw]
            else:
                crop = a
            x = prepare_crop(crop, size=size)
            if x is not None:
                out.append(_quantise(x))
                ys.append(labels.get(p.name, MICRO))
    if not out:
        return np.empty((0, size, size, 3), np.uint8), np.empty(0, np.int64)
    return np.stack(out), np.array(ys, np.int64)


def sample_weights(y_synth: np.ndarray, y_real: np.ndarray, n_classes: int) -> np.ndarray:
    """Class-balanced weights over ``[synthetic, real]``; real crops take half of the
    microscopy class and a tenth of the diffraction class (there are only a few)."""
    share = {MICRO: 0.5, DIFFRACTION: 0.1}
    w = np.zeros(len(y_synth) + len(y_real))
    ws, wr = w[: len(y_synth)], w[len(y_synth) :]
    for c in range(n_classes):
        ns, nr = int((y_synth == c).sum()), int((y_real == c).sum())
        r = share.get(c, 0.0) if nr else 0.0
        if ns:
            ws[y_synth == c] = (1 - r) / ns
        if nr:
            wr[y_real == c] = (r if ns else 1.0) / nr
    return w


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips and turns where the class allows, random re-crops, brightness/contrast jitter.

    ``x``: ``(B, 3, S, S)`` float in [0, 1]; ``y``: ``(B,)`` class indices."""
    b = x.shape[0]
    r = torch.rand(b, 8, generator=gen)
    flip_ok = torch.tensor([int(c) in FLIP_H for c in y])
    turn_ok = torch.tensor([int(c) in TURN for c in y])

    def where(mask: torch.Tensor, a: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return torch.where(mask[:, None, None, None], a, other)

    x = where(flip_ok & (r[:, 0] < 0.5), x.flip(3), x)
    # a transpose and a vertical flip with the horizontal one give all eight turns and flips
    x = where(turn_ok & (r[:, 1] < 0.5), x.transpose(2, 3), x)
    x = where(turn_ok & (r[:, 2] < 0.5), x.flip(2), x)
    # a rougher or tighter crop of the same panel: zoom in by up to 20 %
    f = torch.where(r[:, 3] < 0.4, 0.8 + 0.2 * r[:, 4], torch.ones(b))
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = f
    theta[:, 1, 1] = f
    theta[:, 0, 2] = (1 - f) * (2 * r[:, 5] - 1)
    theta[:, 1, 2] = (1 - f) * (2 * r[:, 6] - 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 1 + 0.15 * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    bright = 0.04 * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    return ((x - 0.5) * contrast + 0.5 + bright).clamp(0, 1)


def _to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255)


def train(
    x: np.ndarray,
    y: np.ndarray,
    *,
    config: ClassifierConfig,
    steps: int,
    batch: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    sample_weights: np.ndarray | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> PanelNet:
    """Train a :class:`PanelNet` on prepared uint8 panels ``x`` ``(N, S, S, 3)`` with labels
    ``y``; batches are drawn with probability proportional to ``sample_weights``
    (default: class-balanced)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    net = PanelNet(config)
    net.train()
    if sample_weights is None:
        counts = np.bincount(y, minlength=len(config.classes)).astype(np.float64)
        sample_weights = 1.0 / counts[y]
    p = sample_weights / sample_weights.sum()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    labels = torch.from_numpy(y)
    for step in range(1, steps + 1):
        idx = rng.choice(len(y), size=batch, p=p)
        xb = augment(_to_tensor(x[idx]), labels[idx], gen)
        loss = F.cross_entropy(net(xb), labels[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step, steps, float(loss.detach()))
    net.eval()
    return net


@torch.inference_mode()
def predict(net: PanelNet, x: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """Softmax probabilities ``(N, n_classes)`` for prepared uint8 panels."""
    net.eval()
    out = [
        torch.softmax(net(_to_tensor(x[i : i + batch])), 1).numpy() for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.empty((0, len(net.config.classes)), np.float32)


def decide(probs: np.ndarray, threshold: float, classes: Sequence[str]) -> np.ndarray:
    """The classifier's answers: argmax, or ``unclear`` under the threshold."""
    k = probs.argmax(1)
    k[probs.max(1) < threshold] = list(classes).index("unclear")
    return k


def report(pred: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and the confusion matrix (rows: true class)."""
    n = len(classes)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    per = {
        c: {"n": int(cm[i].sum()), "accuracy": round(float(cm[i, i] / max(cm[i].sum(), 1)), 4)}
        for i, c in enumerate(classes)
        if cm[i].sum()
    }
    return {
        "n": len(y),
        "accuracy": round(float((pred == y).mean()), 4) if len(y) else None,
        "per_class": per,
        "confusion": cm.tolist(),
        "confusion_axes": "rows: true class, columns: predicted class, in 'classes' order",
    }


def choose_threshold(probs: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> float:
    """The threshold with the best validation accuracy (the larger one on ties)."""
    grid = [0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    scores = {t: float((decide(probs, t, classes) == y).mean()) for t in grid}
    return max(grid, key=lambda t: (round(scores[t], 4), t))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="panel-classifier")
    ap.add_argument("--n-per-class", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=300, help="held-out synthetic panels per class")
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    config = ClassifierConfig(input_size=args.size)
    classes = config.classes

    xs, ys = synthetic_set(args.n_per_class, seed=args.seed, size=args.size, workers=args.workers)
    xv, yv = synthetic_set(100, seed=args.seed + 1, size=args.size, workers=args.workers)
    xt, yt = synthetic_set(args.n_test, seed=args.seed + 2, size=args.size, workers=args.workers)
    if not MICROGRAPHS.is_dir():
        sys.exit(f"real micrograph crops not found at {MICROGRAPHS}")
    paths = sorted(MICROGRAPHS.glob("*.jpg"))
    p_tr, p_va, p_te = split_by_article(paths, seed=args.seed)
    labels = real_classes(MICROGRAPHS)
    xr, yr = real_set(p_tr, labels, size=args.size, views=3, seed=args.seed)
    xrv, yrv = real_set(p_va, labels, size=args.size, views=1, seed=args.seed)
    xrt, yrt = real_set(p_te, labels, size=args.size, views=1, seed=args.seed)
    t_data = time.perf_counter() - t0
    print(
        f"data: {len(xs)} synthetic, {len(xr)} real views of {len(p_tr)} crops "
        f"({len({article_of(p) for p in p_tr})} articles); validation {len(xv)} + {len(xrv)}; "
        f"held out {len(xt)} synthetic + {len(xrt)} real crops "
        f"({len({article_of(p) for p in p_te})} articles); {t_data:.0f} s",
        flush=True,
    )
    x = np.concatenate([xs, xr])
    y = np.concatenate([ys, yr])
    w = sample_weights(ys, yr, len(classes))

    def progress(step: int, total: int, loss: float) -> None:
        if step % 100 == 0 or step == total:
            print(
                f"step {step}/{total} loss {loss:.3f} {time.perf_counter() - t0:.0f} s", flush=True
            )

    t1 = time.perf_counter()
    net = train(
        x, y, config=config, steps=args.steps, seed=args.seed, sample_weights=w, progress=progress
    )
    t_train = time.perf_counter() - t1

    pv = predict(net, np.concatenate([xv, xrv]))
    yv_all = np.concatenate([yv, yrv])
    threshold = choose_threshold(pv, yv_all, classes)
    synth = report(decide(predict(net, xt), threshold, classes), yt, classes)
    pr = decide(predict(net, xrt), threshold, classes)
    real = report(pr, yrt, classes)
    real["n_articles"] = len({article_of(p) for p in p_te})
    real["called"] = {c: int((pr == i).sum()) for i, c in enumerate(classes)}
    evaluation = {
        "classes": list(classes),
        "threshold": threshold,
        "synthetic_held_out": synth,
        "real_crops_held_out": real,
        "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
    }
    trained_on = {
        "synthetic_per_class": args.n_per_class,
        "synthetic_seed": args.seed,
        "synthetic_size_range_px": list(SIZE_RANGE),
        "real_crops": len(p_tr),
        "real_crops_by_class": {
            c: sum(labels.get(p.name, MICRO) == i for p in p_tr) for i, c in enumerate(classes)
        },
        "real_views": len(xr),
        "real_articles": len({article_of(p) for p in p_tr}),
        "held_out_articles": sorted({article_of(p) for p in p_te}),
        "steps": args.steps,
        "batch": 64,
        "recipe": "recipes/panel_classifier.py",
    }
    net.config = replace(config, threshold=threshold, trained_on=trained_on, evaluation=evaluation)
    weights = save_classifier(net, args.out, name=args.name)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    PanelClassifier(weights)  # loads back
    print(json.dumps(evaluation, indent=1))
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) sha256 {sha}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
