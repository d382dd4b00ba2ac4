"""The particle detector: a small fully convolutional U-Net that predicts a centre heat-map and a
diameter map at a fixed physical pixel size.

Architecture is data: :class:`ModelConfig` is saved as JSON next to the safetensors weights, and
:func:`load_model` rebuilds the network from it. Weights are never pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..models.registry import load_weights
from .verify import VerifierConfig, VerifierNet

__all__ = [
    "VERIFIER_MARGIN",
    "ModelConfig",
    "ParticleNet",
    "add_verifier",
    "load_model",
    "save_model",
]

#: Pixels around each verifier patch kept in training, for random shifts.
VERIFIER_MARGIN = 2


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild and run a particle model.

    Attributes
    ----------
    pixel_size_nm
        The physical pixel size the network sees; images are resampled to it.
    widths
        Channels per U-Net level, finest first.
    tile, overlap
        Inference tile side and overlap, in model pixels.
    sizes_nm
        The particle diameters it was trained on (informative; classes are user-defined).
    heatmap_sigma
        Width of the centre Gaussians used in training, as a fraction of the radius.
    threshold
        Default score a detection needs, chosen on validation data by the recipe: the
        verifier's probability when the model has one, else the heat-map peak's.
    verifier
        Settings of the full-resolution candidate verifier
        (:class:`~emdig.particles.verify.VerifierConfig` as a dict), or None for a model
        that scores detections by the heat map alone.
    normalisation
        ``"percentile"``: each image scaled so its 1st and 99th percentiles map to 0 and 1.
    """

    pixel_size_nm: float = 1.1174
    widths: tuple[int, ...] = (16, 32, 48)
    tile: int = 1152
    overlap: int = 32
    sizes_nm: tuple[float, ...] = (6.0, 12.0, 18.0)
    heatmap_sigma: float = 0.35
    normalisation: str = "percentile"
    threshold: float = 0.5
    verifier: dict[str, Any] | None = None
    trained_on: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["arch"] = "particlenet-unet"
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "config") -> ModelConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"model config is not valid JSON: {e}", path=source) from None
        if d.pop("arch", None) != "particlenet-unet":
            raise ModelError("model config does not describe a particlenet-unet", path=source)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"model config has unknown keys {sorted(unknown)}", path=source)
        for k in ("widths", "sizes_nm"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ParticleNet(nn.Module):
    """U-Net: input ``(N, 1, H, W)`` normalised image; output ``(N, 2, H, W)``:
    channel 0 is the centre heat-map logit, channel 1 the diameter in nm.

    H and W must be multiples of ``2 ** (len(widths) - 1)``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = list(config.widths)
        self.down = nn.ModuleList()
        cin = 1
        for c in w:
            self.down.append(_block(cin, c))
            cin = c
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for c_skip, c_deep in zip(reversed(w[:-1]), reversed(w[1:]), strict=True):
            self.up.append(nn.Conv2d(c_deep, c_skip, 1))
            self.fuse.append(_block(2 * c_skip, c_skip))
        self.head = nn.Conv2d(w[0], 2, 1)
        bias = self.head.bias
        assert bias is not None
        with torch.no_grad():  # start with a low prior of "centre here" (focal-loss practice)
            bias[0] = -4.0
            bias[1] = 10.0
        self.verifier: VerifierNet | None = None
        if config.verifier is not None:
            self.verifier = VerifierNet(VerifierConfig.from_dict(config.verifier))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1]), strict=True):
            x = F.interpolate(up(x), size=skip.shape[-2:], mode="nearest")
            x = fuse(torch.cat([x, skip], dim=1))
        return self.head(x)

    @property
    def multiple(self) -> int:
        return int(2 ** (len(self.config.widths) - 1))

    def inference(self) -> nn.Module:
        """The same function, faster on a CPU: batch norm folded into the convolutions, and the
        decoder's concatenation replaced by two convolutions that are summed (the identical
        arithmetic without copying the skip tensors), channels-last memory layout. Built once
        per model, in eval mode."""
        cached = self.__dict__.get("_inference")
        if cached is None:
            cached = _InferenceNet(self)
            self.__dict__["_inference"] = cached
        return cached


def _fold(conv_m: nn.Module, bn_m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``bn(conv(x))`` as one convolution (eval-mode statistics)."""
    conv, bn = cast(nn.Conv2d, conv_m), cast(nn.BatchNorm2d, bn_m)
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight * scale[:, None, None, None]
    b = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        b = b + conv.bias * scale
    return w.detach().contiguous(memory_format=torch.channels_last), b.detach().clone()


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None
    return conv.bias.detach().clone()


class _InferenceNet(nn.Module):
    def __init__(self, net: ParticleNet) -> None:
        super().__init__()
        seq = [cast(nn.Sequential, b) for b in net.down]
        self.down = [(_fold(b[0], b[1]), _fold(b[3], b[4])) for b in seq]
        ups = [cast(nn.Conv2d, u) for u in net.up]
        self.up = [(u.weight.detach().clone(), _bias(u)) for u in ups]
        self.fuse = []
        for module in net.fuse:
            block = cast(nn.Sequential, module)
            (w1, b1), second = _fold(block[0], block[1]), _fold(block[3], block[4])
            c = w1.shape[1] // 2
            cl = torch.channels_last
            wa = w1[:, :c].contiguous(memory_format=cl)
            self.fuse.append((wa, w1[:, c:].contiguous(memory_format=cl), b1, second))
        head = net.head
        self.head = (head.weight.detach().clone(), _bias(head))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout on CPU
        skips = []
        for i, ((w1, b1), (w2, b2)) in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = F.relu_(F.conv2d(x, w1, b1, padding=1))
            x = F.relu_(F.conv2d(x, w2, b2, padding=1))
            skips.append(x)
        for (uw, ub), (wa, wb, b1, (w2, b2)), skip in zip(
            self.up, self.fuse, reversed(skips[:-1]), strict=True
        ):
            t = F.interpolate(F.conv2d(x, uw, ub), size=skip.shape[-2:], mode="nearest")
            x = F.relu_(F.conv2d(t, wa, b1, padding=1) + F.conv2d(skip, wb, padding=1))
            x = F.relu_(F.conv2d(x, w2, b2, padding=1))
        return F.conv2d(x, self.head[0], self.head[1]).contiguous()


def add_verifier(
    model: ParticleNet, config: VerifierConfig | None = None, *, seed: int = 0
) -> ParticleNet:
    """A copy of ``model`` (same heat-map weights) with a new, untrained verifier initialised
    from ``seed``; a model that already has one keeps it (and its weights) unless ``config``
    is given."""
    if model.verifier is not None and config is None:
        return model
    cfg = replace(model.config, verifier=(config or VerifierConfig()).to_dict())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        out = ParticleNet(cfg)
    heat = {k: v for k, v in model.state_dict().items() if not k.startswith("verifier.")}
    out.load_state_dict(heat, strict=False)
    return out.eval()


def save_model(model: ParticleNet, directory: str | Path, *, name: str = "model") -> Path:
    """Write ``name.safetensors`` and ``name.json`` atomically; return the weights path."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    weights = d / f"{name}.safetensors"
    tmp = weights.with_name(weights.name + f".tmp{os.getpid()}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, weights)
    cfg = d / f"{name}.json"
    tmp_cfg = cfg.with_name(cfg.name + f".tmp{os.getpid()}")
    tmp_cfg.write_text(model.config.to_json())
    os.replace(tmp_cfg, cfg)
    return weights


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(weights: str | Path, *, sha256: str | None = None) -> ParticleNet:
    """Load a model from ``X.safetensors`` and its ``X.json`` config.

    Raises
    ------
    ModelError
        Missing files, a hash mismatch, a config that does not describe the weights, or a
        file that is not valid safetensors.
    """
    w = Path(weights)
    cfg_path = w.with_suffix(".json")
    if not w.is_file():
        raise ModelError("model weights not found", path=w)
    if not cfg_path.is_file():
        raise ModelError(f"model config {cfg_path.name} not found beside the weights", path=w)
    if sha256 is not None and file_sha256(w) != sha256:
        raise ModelError("model weights do not match their registered sha256", path=w)
    config = ModelConfig.from_json(cfg_path.read_text(), source=str(cfg_path))
    model = ParticleNet(config)
    load_weights(model, w)
    return model
