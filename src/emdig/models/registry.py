"""Model registry: a name -> weights file, sha256, input pixel size and normalisation.

Shipped models live beside this file. A name not listed here is an error, never a silent
fallback; a path to a ``.safetensors`` file with its ``.json`` config is accepted as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError

__all__ = ["MODELS", "ModelEntry", "load_weights", "resolve_model"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelEntry:
    """A shipped model: its file (beside this module), hash, task, scale and normalisation."""

    file: str
    sha256: str
    task: str
    pixel_size_nm: float
    normalisation: str
    recipe: str

    @property
    def path(self) -> Path:
        return HERE / self.file


MODELS: dict[str, ModelEntry] = {
    "particles-default": ModelEntry(
        file="particles-default.safetensors",
        sha256="1321dea0a3d0affd56e12871ed8beab6c6b9021c7f4d05496134d353c823ca47",
        task="particles",
        pixel_size_nm=1.1174,
        normalisation="percentile",
        recipe="recipes/particles_default.py (base, then finetune on the MPFI development images)",
    ),
    "panel-classifier": ModelEntry(
        file="panel-classifier.safetensors",
        sha256="276dde3ca70756a1bb19aaa9b1660633633afc704af201da116e8498739e0b62",
        task="panel-classifier",
        pixel_size_nm=0.0,  # figure panels have no physical scale: resized to 96 x 96 px
        normalisation="rgb01+grey-percentile",
        recipe="recipes/panel_classifier.py (synthetic panels + real micrograph crops)",
    ),
}


def resolve_model(name_or_path: str | Path, *, task: str) -> tuple[Path, str | None]:
    """``(weights path, expected sha256 or None)`` for a registry name or a file path."""
    key = str(name_or_path)
    if key in MODELS:
        entry = MODELS[key]
        if entry.task != task:
            raise ModelError(f"model {key!r} is a {entry.task} model, not a {task} model")
        if not entry.path.is_file():
            raise ModelError(
                f"shipped model {key!r} is missing from the installation", path=entry.path
            )
        return entry.path, entry.sha256
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.is_file():
        return p, None
    known = ", ".join(sorted(k for k, v in MODELS.items() if v.task == task)) or "none"
    raise ModelError(f"unknown model {key!r}: give a .safetensors path or one of: {known}")


def load_weights(net: Any, weights: str | Path) -> None:
    """Load ``weights`` (safetensors) into the torch module ``net`` exactly, then eval mode.

    Raises :class:`~emdig.errors.ModelError` for a file that is not valid safetensors or whose
    tensors do not fit the module built from the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    w = Path(weights)
    try:
        state = load_file(str(w))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"not valid safetensors: {e}", path=w) from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = " ".join(str(e).split())[:300]
        raise ModelError(f"weights do not fit the config: {msg}", path=w) from None
    net.eval()
