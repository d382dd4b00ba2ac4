"""Classify figure panels as microscopy, diffraction, graph, illustration, photo or unclear.

The classifier is a small convolutional network in plain torch (a stride-2 stem and four
stride-2 residual stages, then average and max pooling). Its input is the panel resized, without
keeping the aspect ratio, to a fixed square of RGB values in [0, 1]. The network adds a fourth
channel itself: the luminance stretched between its 1st and 99th percentiles, so that structure
is seen whatever the contrast, while colour and the absolute level (white paper, the dark
background of a diffraction pattern) stay visible in the RGB channels.

Architecture is data: :class:`ClassifierConfig` is saved as JSON next to the safetensors
weights and :func:`load_classifier` rebuilds the network from it. The shipped model is
``"panel-classifier"`` in :mod:`emdig.models.registry`; ``recipes/panel_classifier.py``
reproduces it and stores its held-out evaluation in the JSON's ``"evaluation"`` key.

Examples
--------
>>> import numpy as np
>>> from emdig.figures.classify import PanelClassifier
>>> clf = PanelClassifier()  # the shipped model
>>> label, confidence = clf.classify([np.zeros((64, 64), np.uint8)])[0]
>>> label in clf.classes
True
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError, UnsupportedFormat
from ..models.registry import load_weights, resolve_model
from .records import PANEL_CLASSES, Box

__all__ = [
    "MIN_SIDE",
    "ClassifierConfig",
    "PanelClassifier",
    "PanelNet",
    "classify_panels",
    "load_classifier",
    "prepare_crop",
    "save_classifier",
]

log = logging.getLogger(__name__)

#: Crops with a side shorter than this (in pixels) are not classified: ``("unclear", 0.0)``.
MIN_SIDE = 8

ARCH = "panelnet-cnn"


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild and run a panel classifier.

    Attributes
    ----------
    classes
        Output order of the network.
    input_size
        Side of the square the panel is resized to, in pixels.
    widths
        Channels of the stride-2 stem convolution and of each stride-2 residual stage.
    threshold
        A top probability below this turns the answer into ``"unclear"`` (chosen by the recipe
        on held-out data).
    normalisation
        ``"rgb01+grey-percentile"``: RGB scaled to [0, 1] by the dtype (uint8) or by the
        0.5/99.5 percentiles (other dtypes); the network adds the luminance stretched between
        its 1st and 99th percentiles.
    trained_on, evaluation
        Informative: what the recipe trained on and what it measured on held-out data.
    """

    classes: tuple[str, ...] = PANEL_CLASSES
    input_size: int = 96
    widths: tuple[int, ...] = (24, 32, 64, 96, 96)
    threshold: float = 0.4
    normalisation: str = "rgb01+grey-percentile"
    trained_on: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["arch"] = ARCH
        return json.dumps(d, indent=1, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = "config") -> ClassifierConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"classifier config is not valid JSON: {e}", path=source) from None
        if not isinstance(d, dict) or d.pop("arch", None) != ARCH:
            raise ModelError(f"classifier config does not describe a {ARCH}", path=source)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelError(f"classifier config has unknown keys {sorted(unknown)}", path=source)
        for k in ("classes", "widths"):
            if k in d:
                d[k] = tuple(d[k])
        try:
            return cls(**d)
        except TypeError as e:
            raise ModelError(f"classifier config is invalid: {e}", path=source) from None


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Stage(nn.Module):
    """Stride-2 convolution, then a residual 3 x 3 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = _conv_bn(cin, cout, 2)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.relu(x + self.bn(self.conv(x)))


def grey_channel(rgb: torch.Tensor) -> torch.Tensor:
    """Luminance of ``(N, 3, H, W)`` RGB in [0, 1], stretched per image between its 1st and
    99th percentiles and clipped to [0, 1]: ``(N, 1, H, W)``. A flat image gives zeros."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    grey = torch.einsum("nchw,c->nhw", rgb, weights)
    flat = grey.reshape(grey.shape[0], -1)
    q = torch.quantile(flat, torch.tensor([0.01, 0.99], dtype=rgb.dtype), dim=1)
    lo, hi = q[0][:, None, None], q[1][:, None, None]
    span = hi - lo
    out = (grey - lo) / span.clamp_min(1e-3)
    out = torch.where(span > 1e-3, out, torch.zeros_like(out))
    return out.clamp(0, 1)[:, None]


class PanelNet(nn.Module):
    """Input ``(N, 3, S, S)`` RGB in [0, 1]; output ``(N, n_classes)`` logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = list(config.widths)
        if len(w) < 2:
            raise ModelError("classifier config needs at least two widths")
        self.stem = _conv_bn(4, w[0], 2)
        self.stages = nn.ModuleList(_Stage(a, b) for a, b in itertools.pairwise(w))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(2 * w[-1], len(config.classes))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = torch.cat([rgb - 0.5, grey_channel(rgb) - 0.5], dim=1)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def _as_rgb01(crop: np.ndarray, index: int) -> np.ndarray | None:
    """``(H, W, 3)`` float32 in [0, 1], or None for a crop too small to classify."""
    a = np.asarray(crop)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise UnsupportedFormat(
            f"panel crop {index} has shape {a.shape}: expected (H, W), (H, W, 3) or (H, W, 4)"
        )
    if a.dtype.kind not in "biuf":
        raise UnsupportedFormat(f"panel crop {index} has dtype {a.dtype}: expected numbers")
    if a.shape[0] < MIN_SIDE or a.shape[1] < MIN_SIDE:
        return None
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.bool_:
        f = a.astype(np.float32)
    else:
        f = a.astype(np.float32)
        finite = np.isfinite(f)
        if not finite.all():
            f = np.where(finite, f, float(np.median(f[finite])) if finite.any() else 0.0)
        if a.dtype.kind != "f" or f.min() < 0 or f.max() > 1:
            # instrument dtypes (uint16, float counts): their absolute level means nothing
            lo, hi = np.percentile(f, (0.5, 99.5))
            f = (f - lo) / max(float(hi - lo), 1e-12)
        f = np.clip(f, 0, 1).astype(np.float32)
    if f.ndim == 2:
        return np.repeat(f[:, :, None], 3, axis=2)
    if f.shape[2] == 2:  # grey + alpha
        f = np.concatenate([np.repeat(f[:, :, :1], 3, axis=2), f[:, :, 1:]], axis=2)
    if f.shape[2] == 4:  # figures sit on white paper: composite the transparency on white
        alpha = f[:, :, 3:]
        f = f[:, :, :3] * alpha + (1 - alpha)
    return np.ascontiguousarray(f)


def prepare_crop(crop: np.ndarray, *, size: int, index: int = 0) -> np.ndarray | None:
    """A panel crop as the network sees it: ``(size, size, 3)`` float32 RGB in [0, 1].

    Parameters
    ----------
    crop
        ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8 is scaled by 255, other
        dtypes by their 0.5/99.5 percentiles (floats already in [0, 1] are kept).
    size
        The model's input side in pixels.

    Returns
    -------
    numpy.ndarray or None
        None when a side is shorter than :data:`MIN_SIDE`.

    Raises
    ------
    UnsupportedFormat
        Not a 2-D grey or RGB(A) array of numbers.
    """
    f = _as_rgb01(crop, index)
    if f is None:
        return None
    h, w = f.shape[:2]
    shrink = h > size or w > size
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = cv2.resize(f, (size, size), interpolation=interp)
    return np.clip(out, 0, 1).astype(np.float32)


def save_classifier(model: PanelNet, directory: str | Path, *, name: str = "model") -> Path:
    """Write ``name.safetensors`` and ``name.json`` atomically; return the weights path."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    weights = d / f"{name}.safetensors"
    tmp = weights.with_name(weights.name + f".tmp{os.getpid()}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"arch": ARCH})
    os.chmod(tmp, 0o644)
    os.replace(tmp, weights)
    cfg = d / f"{name}.json"
    tmp_cfg = cfg.with_name(cfg.name + f".tmp{os.getpid()}")
    tmp_cfg.write_text(model.config.to_json() + "\n", encoding="utf-8")
    os.replace(tmp_cfg, cfg)
    return weights


def load_classifier(weights: str | Path, *, sha256: str | None = None) -> PanelNet:
    """Load a classifier from ``X.safetensors`` and its ``X.json`` config, in eval mode.

    Raises
    ------
    ModelError
        Missing files, a hash mismatch, a config that does not describe the weights, or a file
        that is not valid safetensors.
    """
    w = Path(weights)
    cfg_path = w.with_suffix(".json")
    if not w.is_file():
        raise ModelError("classifier weights not found", path=w)
    if not cfg_path.is_file():
        raise ModelError(f"classifier config {cfg_path.name} not found beside the weights", path=w)
    if sha256 is not None and hashlib.sha256(w.read_bytes()).hexdigest() != sha256:
        raise ModelError("classifier weights do not match their registered sha256", path=w)
    config = ClassifierConfig.from_json(cfg_path.read_text(encoding="utf-8"), source=str(cfg_path))
    net = PanelNet(config)
    load_weights(net, w)
    return net


class PanelClassifier:
    """A loaded panel classifier.

    Parameters
    ----------
    model
        A registry name (default ``"panel-classifier"``, the shipped model), a path to a
        ``.safetensors`` file with its ``.json`` config beside it, or a :class:`PanelNet`.
    """

    def __init__(self, model: str | Path | PanelNet = "panel-classifier") -> None:
        if isinstance(model, PanelNet):
            self.net = model.eval()
        else:
            path, sha = resolve_model(model, task="panel-classifier")
            self.net = load_classifier(path, sha256=sha)
        self.config = self.net.config
        self.classes: tuple[str, ...] = self.config.classes
        self.threshold = float(self.config.threshold)

    def probabilities(
        self,
        crops: Sequence[np.ndarray],
        *,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``; NaN rows for crops too small to classify."""
        n = len(crops)
        out = np.full((n, len(self.classes)), np.nan, np.float32)
        size = self.config.input_size
        for start in range(0, n, batch_size):
            idx, batch = [], []
            for i in range(start, min(n, start + batch_size)):
                x = prepare_crop(crops[i], size=size, index=i)
                if x is not None:
                    idx.append(i)
                    batch.append(x)
            if batch:
                t = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()
                # a figure's few panels are too little work to share between threads: with
                # two, torch's spin-waiting made this 40x slower on a busy machine (measured)
                threads = torch.get_num_threads()
                if len(batch) <= 16:
                    torch.set_num_threads(1)
                try:
                    with torch.inference_mode():
                        p = torch.softmax(self.net(t), dim=1).numpy()
                finally:
                    torch.set_num_threads(threads)
                out[idx] = p
            if progress is not None:
                progress(min(n, start + batch_size), n)
        return out

    def classify(
        self,
        crops: Sequence[np.ndarray],
        *,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[tuple[str, float]]:
        """``(class, confidence)`` per crop, batched.

        The confidence is the network's probability of the returned class. When the top class
        is not ``"unclear"`` but its probability is below the model's threshold, the answer is
        ``"unclear"`` with confidence ``1 - top probability``; crops with a side under
        :data:`MIN_SIDE` px give ``("unclear", 0.0)``.
        """
        probs = self.probabilities(crops, batch_size=batch_size, progress=progress)
        unclear = self.classes.index("unclear") if "unclear" in self.classes else None
        out: list[tuple[str, float]] = []
        for p in probs:
            if np.isnan(p).any():
                out.append(("unclear", 0.0))
                continue
            k = int(p.argmax())
            if p[k] < self.threshold and unclear is not None and k != unclear:
                out.append(("unclear", float(1.0 - p[k])))
            else:
                out.append((self.classes[k], float(p[k])))
        return out


@functools.lru_cache(maxsize=4)
def _shipped(name: str) -> PanelClassifier:
    return PanelClassifier(name)


def classify_panels(
    image: np.ndarray,
    boxes: Sequence[Box],
    *,
    model: PanelClassifier | str | Path | None = None,
) -> list[tuple[str, float]]:
    """Classify the panels ``boxes`` of a figure ``image``.

    Parameters
    ----------
    image
        The figure, ``(H, W)`` grey or ``(H, W, 3|4)`` colour.
    boxes
        ``(x0, y0, x1, y1)`` in figure pixels, ``x1``/``y1`` exclusive; clipped to the image.
    model
        A :class:`PanelClassifier`, a registry name or a weights path; None is the shipped
        ``"panel-classifier"`` (loaded once per process).

    Returns
    -------
    list of (class, confidence)
        One per box, in order; see :meth:`PanelClassifier.classify`.
    """
    if model is None:
        clf = _shipped("panel-classifier")
    elif isinstance(model, PanelClassifier):
        clf = model
    else:
        clf = _shipped(str(model))
    img = np.asarray(image)
    if img.ndim < 2:
        raise UnsupportedFormat(f"figure image has shape {img.shape}: expected (H, W[, C])")
    h, w = img.shape[:2]
    crops = []
    for x0, y0, x1, y1 in boxes:
        xa, xb = max(0, int(x0)), min(w, int(x1))
        ya, yb = max(0, int(y0)), min(h, int(y1))
        crops.append(img[ya : max(ya, yb), xa : max(xa, xb)])
    return clf.classify(crops)
