"""Second stage of detection: a full-resolution check of every heat-map candidate.

The heat-map network (:mod:`emdig.particles.model`) works at 1.117 nm/px, where a 6 nm particle
is five pixels across: enough to find it, too few to tell it reliably from a dark look-alike of
the same size (a shadowed pit, a debris clump, a soft blob), which is the distinction Gold
Digger was praised for. So the heat map only proposes candidates, at a low threshold that
misses almost no gold, and a small CNN looks at each candidate at twice that resolution
(:attr:`VerifierConfig.pixel_size_nm`): the flat black core and sharp rim of a colloid against
the softer, lighter profiles of look-alikes. Its probability is the detection's score.

The verifier is a submodule of :class:`~emdig.particles.model.ParticleNet` (its weights live
in the same safetensors file, its settings in the same JSON config), so a model is still one
file. It is trained by :func:`train_verifier` on the candidates the heat map itself proposes on
annotated images: the negatives it learns from are exactly the mistakes it has to undo.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from .synth import SynthConfig

__all__ = [
    "VerifierConfig",
    "VerifierItem",
    "VerifierNet",
    "annotated_items",
    "extract_patches",
    "label_candidates",
    "synthetic_items",
    "train_verifier",
    "verify",
]


@dataclass(frozen=True)
class VerifierConfig:
    """Settings of the candidate verifier (stored in the model's JSON as ``verifier``).

    Attributes
    ----------
    pixel_size_nm
        Scale of the patches it sees; images are resampled to it.
    patch
        Patch side in its pixels (48 px at 0.5587 nm/px: 27 nm, an 18 nm particle with a rim).
    widths
        Channels of its three convolution stages.
    candidate_threshold
        Heat-map probability a peak needs to become a candidate.
    heat_input
        Whether the heat map's logit is one of the verifier's inputs. Off by default: a
        verifier that sees it leans on it, and then rejects exactly the faint gold the heat
        map already doubts (leave-one-image-out on S7: 4 of 22 6 nm particles lost). Without
        it the verifier is a second, independent opinion from the pixels alone.
    context
        Whether the head also sees the whole patch's mean features (the surroundings:
        membrane edges, neighbours, IMPs), besides the centre cells'.
    tta
        Average the verifier's logits over the eight flips and quarter turns of each patch
        (gold has no preferred orientation). Off by default: it costs eight verifier passes
        (on one 2048 x 2115 MPFI image detection took 2.0 s with it against 0.75 s without)
        for a gain within noise (held-out synthetic F1 0.970 -> 0.973, one model).
    """

    pixel_size_nm: float = 0.5587
    patch: int = 48
    widths: tuple[int, ...] = (8, 16, 32)
    candidate_threshold: float = 0.1
    heat_input: bool = False
    context: bool = True
    tta: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerifierConfig:
        d = dict(d)
        # configs written before these settings existed: the behaviour they were trained with
        d.setdefault("heat_input", True)
        d.setdefault("tta", False)
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class VerifierNet(nn.Module):
    """Patches ``(N, 1, P, P)`` (normalised like the heat-map input) and per-candidate extras
    ``(N, 2)`` (heat-map logit, log2 of the network's diameter guess in nm) -> gold logits
    ``(N,)``."""

    def __init__(self, config: VerifierConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(config.widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers += [
                nn.Conv2d(cin, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            cin = c
        self.features = nn.Sequential(*layers)
        # the candidate sits at the centre: the centre cells' features, the whole patch's mean
        # (context: membrane edges, neighbours) and the extras
        self.head = nn.Sequential(
            nn.Linear((2 if config.context else 1) * cin + 2, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 1),
        )

    def forward(self, patches: torch.Tensor, extras: torch.Tensor) -> torch.Tensor:
        h = self.features(patches)
        n = h.shape[-1]
        c0 = max(0, n // 2 - 1)
        centre = h[..., c0 : c0 + 2, c0 : c0 + 2].mean(dim=(2, 3))
        parts = [centre, h.mean(dim=(2, 3)), extras] if self.config.context else [centre, extras]
        out: torch.Tensor = self.head(torch.cat(parts, dim=1))[:, 0]
        return out


def extract_patches(
    image01: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    pixel_size_nm: float,
    config: VerifierConfig,
    margin: int = 0,
) -> np.ndarray:
    """Square patches centred on ``(x, y)`` (original pixels) at the verifier's scale.

    Parameters
    ----------
    image01
        The normalised image (``float32``, its region's 1st/99th percentiles at 0 and 1).
    x, y
        Candidate centres in the image's pixels.
    pixel_size_nm
        The image's pixel size.
    margin
        Extra pixels on each side (training crops them at random offsets).

    Returns
    -------
    numpy.ndarray
        ``(N, P + 2 margin, P + 2 margin)`` float32; outside the image, the image's edge value.
    """
    from .detect import _resample

    side = config.patch + 2 * margin
    n = len(x)
    if n == 0:
        return np.zeros((0, side, side), np.float32)
    scale = pixel_size_nm / config.pixel_size_nm
    t = _resample(torch.from_numpy(np.ascontiguousarray(image01, np.float32))[None, None], scale)
    h, w = t.shape[-2:]
    # candidate centre in the resampled image, then a grid of pixel centres around it
    cx = (np.asarray(x, np.float64) + 0.5) * scale - 0.5
    cy = (np.asarray(y, np.float64) + 0.5) * scale - 0.5
    off = np.arange(side) - (side - 1) / 2.0
    out = []
    for k in range(0, n, 512):  # bounded memory: the sampling grid is built chunk by chunk
        gx = cx[k : k + 512, None, None] + off[None, None, :]
        gy = cy[k : k + 512, None, None] + off[None, :, None]
        m = len(gx)
        grid = np.stack(
            [
                np.broadcast_to(2.0 * gx / max(1, w - 1) - 1.0, (m, side, side)),
                np.broadcast_to(2.0 * gy / max(1, h - 1) - 1.0, (m, side, side)),
            ],
            axis=-1,
        )
        g = torch.from_numpy(grid.astype(np.float32))
        src = t.expand(len(g), -1, -1, -1)
        p = F.grid_sample(src, g, mode="bilinear", padding_mode="border", align_corners=True)
        out.append(p[:, 0].numpy())
    return np.concatenate(out)


def extras(score: np.ndarray, guess_nm: np.ndarray, *, heat_input: bool = True) -> np.ndarray:
    """The verifier's per-candidate scalars: heat-map logit (0 without ``heat_input``) and
    log2 diameter guess."""
    p = np.clip(np.asarray(score, np.float64), 1e-4, 1 - 1e-4)
    logit = np.log(p / (1 - p)) / 4.0 if heat_input else np.zeros(p.shape)
    d = np.log2(np.clip(np.asarray(guess_nm, np.float64), 1.0, 64.0)) - 3.5
    return np.stack([logit, d], axis=1).astype(np.float32)


@torch.no_grad()
def verify(
    net: VerifierNet,
    image01: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    score: np.ndarray,
    guess_nm: np.ndarray,
    *,
    pixel_size_nm: float,
) -> np.ndarray:
    """Gold probability of each candidate ``(N,)`` (with ``config.tta``, from the mean logit
    over the patch's eight flips and quarter turns)."""
    if len(x) == 0:
        return np.zeros(0, np.float32)
    cfg = net.config
    patches = extract_patches(image01, x, y, pixel_size_nm=pixel_size_nm, config=cfg)
    ex = torch.from_numpy(extras(score, guess_nm, heat_input=cfg.heat_input))
    views = [(k, f) for k in range(4) for f in (False, True)] if cfg.tta else [(0, False)]
    was = net.training
    net.eval()
    logits = []
    for k in range(0, len(patches), 1024):
        p = torch.from_numpy(patches[k : k + 1024])[:, None]
        e = ex[k : k + 1024]
        views_logits = []
        for r, f in views:
            q = torch.rot90(p, r, dims=(2, 3))
            views_logits.append(net(q.flip(-1) if f else q, e))
        logits.append(torch.stack(views_logits).mean(0))
    net.train(was)
    return torch.sigmoid(torch.cat(logits)).numpy()


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class VerifierItem:
    """One annotated image for :func:`train_verifier`.

    Attributes
    ----------
    image
        2-D pixels, gold dark.
    pixel_size_nm
        Its pixel size.
    truth
        Every gold particle inside ``region`` (x, y in pixels; ``diameter_nm`` or ``class_nm``
        give the matching radius).
    region
        Where ``truth`` is complete (True inside); None: the whole image.
    ignore
        ``(K, 2)`` x, y of objects that are neither gold to find nor look-alikes to reject
        (for example an unannotated label of another size): candidates near them are dropped.
    name
        For logs.
    """

    image: np.ndarray
    pixel_size_nm: float
    truth: Any  # Points
    region: np.ndarray | None = None
    ignore: np.ndarray | None = None
    name: str = "image"


def synthetic_items(
    n: int, *, seed: int, side: int = 512, config: SynthConfig | None = None
) -> list[VerifierItem]:
    """``n`` synthetic FRIL images (:mod:`emdig.particles.synth`) with their exact truth; their
    labelled look-alikes become the verifier's negatives wherever the heat map proposes them.
    ``config`` (a :class:`~emdig.particles.synth.SynthConfig`) replaces the default generator
    settings; its shape is then used and ``side`` ignored."""
    from .annotations import synthetic_truth
    from .synth import SynthConfig, synth_batch

    cfg = config if config is not None else SynthConfig(shape=(side, side))
    return [
        VerifierItem(
            s.image,
            s.pixel_size_nm,
            synthetic_truth(s.particles, image=f"synth{k}"),
            s.region_mask,
            name=f"synth#{k}",
        )
        for k, s in enumerate(synth_batch(cfg, n, seed=seed))
    ]


def annotated_items(
    annotations: Any, images: dict[str, tuple[np.ndarray, float]], *, margin_px: float = 50.0
) -> list[VerifierItem]:
    """Annotated images (``name -> (pixels, pixel_size_nm)``) as verifier items, each complete
    only within the convex hull of its points dilated by ``margin_px`` (as in
    :func:`~emdig.particles.train.samples_from_annotations`)."""
    from .masks import hull_mask

    out = []
    for name, (pixels, px) in images.items():
        pts = annotations.select(image=name)
        if len(pts) == 0:
            continue
        region = hull_mask(pts.x_px, pts.y_px, pixels.shape, margin_px=margin_px)
        out.append(VerifierItem(pixels, px, pts, region, name=name))
    return out


def label_candidates(
    cx: np.ndarray,
    cy: np.ndarray,
    truth: Any,
    *,
    pixel_size_nm: float,
) -> np.ndarray:
    """True where a candidate lies within half a truth particle's diameter of it, one
    candidate per particle (the nearest), as :func:`~emdig.particles.evaluate.evaluate`
    matches."""
    n = len(cx)
    lab = np.zeros(n, bool)
    if n == 0 or len(truth) == 0:
        return lab
    d_nm = np.where(np.isfinite(truth.diameter_nm), truth.diameter_nm, truth.class_nm)
    d_nm = np.where(np.isfinite(d_nm), d_nm, 6.0)
    r = np.maximum(0.5 * d_nm / pixel_size_nm, 2.0)
    dist = np.hypot(cx[:, None] - truth.x_px[None, :], cy[:, None] - truth.y_px[None, :])
    ok = dist <= r[None, :]
    pairs = np.argwhere(ok)
    order = np.argsort(dist[ok], kind="stable")
    used_c, used_t = set(), set()
    for i, j in pairs[order]:
        if i in used_c or j in used_t:
            continue
        used_c.add(int(i))
        used_t.add(int(j))
        lab[i] = True
    return lab


def _item_candidates(
    model: Any, item: VerifierItem, margin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patches (with margin), extras and labels of the heat map's candidates on one image."""
    from .detect import _candidates, _levels, _suppress_close, info_strip_rows

    a = np.asarray(item.image)
    analysed = np.ones(a.shape, bool)
    strip = info_strip_rows(a[-min(a.shape[0], 2048) :])
    if strip:
        analysed[-strip:] = False
    # the grey levels of the whole analysed image, as detect() sets them; the annotated
    # region only decides which candidates can be labelled
    lo, hi = _levels(a, analysed)
    region = analysed if item.region is None else analysed & np.asarray(item.region, bool)
    vcfg = model.verifier.config
    x, y, score, guess = _candidates(
        a, item.pixel_size_nm, model, lo, hi, vcfg.candidate_threshold, verify_=False
    )
    keep = _suppress_close(x, y, score, guess / item.pixel_size_nm)
    x, y, score, guess = x[keep], y[keep], score[keep], guess[keep]
    inside = region[
        np.clip(np.round(y).astype(int), 0, a.shape[0] - 1),
        np.clip(np.round(x).astype(int), 0, a.shape[1] - 1),
    ]
    if item.ignore is not None and len(item.ignore):
        ig = np.asarray(item.ignore, np.float64)
        near = np.hypot(x[:, None] - ig[None, :, 0], y[:, None] - ig[None, :, 1]).min(axis=1)
        inside &= near > 12.0 / item.pixel_size_nm
    x, y, score, guess = x[inside], y[inside], score[inside], guess[inside]
    labels = label_candidates(x, y, item.truth, pixel_size_nm=item.pixel_size_nm)
    img01 = ((a.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)
    patches = extract_patches(
        img01, x, y, pixel_size_nm=item.pixel_size_nm, config=vcfg, margin=margin
    )
    return patches, extras(score, guess, heat_input=vcfg.heat_input), labels


def train_verifier(
    model: Any,
    items: Sequence[VerifierItem],
    *,
    weights: Sequence[float] | None = None,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    hard_mining: float = 0.0,
    mine: Sequence[bool] | None = None,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model.verifier`` in place on the heat map's own candidates in ``items``.

    Each candidate is labelled gold when it matches a truth particle (:func:`label_candidates`)
    and look-alike otherwise. Augmentation: random shifts of up to 2 px (the heat map's
    localisation error), the eight flips and quarter turns, and small contrast and brightness
    changes. ``weights`` (one per item) set how often each item's candidates are drawn.
    ``hard_mining`` > 0 draws a candidate, after the first tenth of the steps, with its weight
    times ``1 + hard_mining * loss / mean loss`` (its running loss), on the items ``mine``
    allows (default all): use it on items with exact labels only, since mining an image whose
    annotations miss some gold teaches the verifier to reject gold. The heat-map network is
    not changed.

    Returns
    -------
    dict
        ``candidates``, ``gold``, ``seconds``, and the final running ``loss``.
    """
    from .model import VERIFIER_MARGIN

    if getattr(model, "verifier", None) is None:
        raise ValueError("the model has no verifier (config.verifier is None)")
    if mine is not None and len(mine) != len(items):
        raise ValueError(f"mine has {len(mine)} flags for {len(items)} items")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    margin = VERIFIER_MARGIN
    model.eval()
    parts = [_item_candidates(model, it, margin) for it in items]
    pw = np.concatenate(
        [
            np.full(len(p[2]), (1.0 if weights is None else weights[k]) / max(1, len(p[2])))
            for k, p in enumerate(parts)
        ]
    )
    patches = np.concatenate([p[0] for p in parts])
    ex = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts]).astype(np.float32)
    if len(labels) < 2 or labels.min() == labels.max():
        raise ValueError("the verifier needs candidates of both kinds (gold and look-alikes)")
    pw = pw / pw.sum()
    # hard-example mining: a candidate's draw weight grows with its running loss, on the items
    # ``mine`` allows only (exact synthetic labels; a real image's unannotated gold would be mined
    # as a "look-alike")
    minable = np.concatenate(
        [np.full(len(p[2]), True if mine is None else bool(mine[k])) for k, p in enumerate(parts)]
    )
    ema = np.ones(len(labels))
    net: VerifierNet = model.verifier
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    p = net.config.patch
    running = math.nan
    for step in range(1, steps + 1):
        if hard_mining > 0 and minable.any() and step > steps // 10:
            boost = np.where(minable, 1.0 + hard_mining * ema / ema[minable].mean(), 1.0)
            q = pw * boost
            idx = rng.choice(len(labels), size=batch_size, p=q / q.sum())
        else:
            idx = rng.choice(len(labels), size=batch_size, p=pw)
        oy, ox = rng.integers(0, 2 * margin + 1, size=(2, batch_size))
        rows = oy[:, None] + np.arange(p)[None, :]
        cols = ox[:, None] + np.arange(p)[None, :]
        b = patches[idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        k = int(rng.integers(4))
        b = np.rot90(b, k, axes=(1, 2))
        if rng.random() < 0.5:
            b = b[:, :, ::-1]
        gain = rng.uniform(0.9, 1.1, size=(batch_size, 1, 1))
        bias = rng.uniform(-0.05, 0.05, size=(batch_size, 1, 1))
        b = (b * gain + bias).astype(np.float32)
        xb = torch.from_numpy(np.ascontiguousarray(b))[:, None]
        logits = net(xb, torch.from_numpy(ex[idx]))
        bce = F.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(labels[idx]), reduction="none"
        )
        loss = bce.mean()
        if hard_mining > 0:
            ema[idx] = 0.5 * ema[idx] + 0.5 * bce.detach().numpy()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        v = float(loss.detach())
        running = v if math.isnan(running) else 0.98 * running + 0.02 * v
        if progress:
            progress(step, steps, {"loss": running})
    net.eval()
    return {
        "candidates": len(labels),
        "gold": int(labels.sum()),
        "steps": steps,
        "hard_mining": hard_mining,
        "loss": running,
        "seconds": time.perf_counter() - t0,
    }
