"""The metadata encoder: acquisition metadata -> a vector in the joint embedding space.

Each configured field (:class:`~emdig.contrastive.config.FieldSpec`) becomes one token:

- numeric fields are ``log10``-scaled where the quantity spans decades (magnification, pixel
  size, dwell time, beam current, camera length, dose), standardised with the mean and standard
  deviation of the *training* split (stored in the config), and expanded into Fourier features
  ``[z, sin(w_k z), cos(w_k z)]`` so the network can resolve both coarse and fine differences;
- angle fields (scan rotation) become harmonics ``sin(k theta), cos(k theta)``;
- categorical fields (mode, detector, instrument) get a learned embedding, with an "unknown"
  token for values not seen in training;
- a missing field is not a zero: its token is replaced by a learned per-field "missing" vector
  (so ``tilt = 0`` and "tilt unknown" are different inputs).

The tokens are concatenated and passed through an MLP into the joint space.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..micrograph import ACQUISITION_FIELDS, Acquisition, Micrograph
from .config import FieldSpec, MetadataEncoderConfig

__all__ = [
    "DERIVED_FIELDS",
    "ELEMENTARY_CHARGE_C",
    "EncodedMetadata",
    "MetadataEncoder",
    "encode_metadata",
    "field_value",
    "fit_fields",
    "metadata_keys",
    "metadata_record",
]

ELEMENTARY_CHARGE_C = 1.602176634e-19

#: Fields computed from others, with the fields they need.
DERIVED_FIELDS: dict[str, tuple[str, ...]] = {"dose_e_per_px": ("beam_current_pa", "dwell_us")}

MetadataLike = Mapping[str, Any] | Acquisition | Micrograph


def metadata_record(item: MetadataLike, *, pixel_size_nm: float | None = None) -> dict[str, Any]:
    """A plain dict of every acquisition field, ``pixel_size_nm`` and the derived fields.

    Parameters
    ----------
    item
        A :class:`Micrograph`, an :class:`Acquisition`, or a mapping such as a row of
        :meth:`emdig.Catalog.select` (extra keys are ignored).
    pixel_size_nm
        Overrides (or, for an ``Acquisition``, supplies) the pixel size.
    """
    if isinstance(item, Micrograph):
        rec = item.acquisition.to_dict()
        rec["pixel_size_nm"] = item.pixel_size_nm
    elif isinstance(item, Acquisition):
        rec = item.to_dict()
        rec["pixel_size_nm"] = None
    else:
        rec = {k: item.get(k) for k in (*ACQUISITION_FIELDS, "pixel_size_nm")}
        for k in DERIVED_FIELDS:
            if item.get(k) is not None:
                rec[k] = item.get(k)
    if pixel_size_nm is not None:
        rec["pixel_size_nm"] = pixel_size_nm
    current, dwell = _number(rec.get("beam_current_pa")), _number(rec.get("dwell_us"))
    if rec.get("dose_e_per_px") is None:
        rec["dose_e_per_px"] = (
            None
            if current is None or dwell is None
            else current * 1e-12 * dwell * 1e-6 / ELEMENTARY_CHARGE_C
        )
    return rec


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def field_value(spec: FieldSpec, rec: Mapping[str, Any]) -> float | str | None:
    """The field's value as the encoder sees it before normalisation: ``log10`` applied for
    log fields, degrees for angles, a stripped string for categories; None when missing
    (including non-positive values of a log field)."""
    v = rec.get(spec.name)
    if spec.kind == "categorical":
        if v is None:
            return None
        s = str(v).strip()
        return s or None
    x = _number(v)
    if x is None:
        return None
    if spec.log:
        return math.log10(x) if x > 0 else None
    return x


def fit_fields(
    specs: Sequence[FieldSpec], records: Sequence[Mapping[str, Any]], *, min_count: int = 1
) -> tuple[FieldSpec, ...]:
    """Fill each field's normalisation statistics and vocabulary from training records.

    Only pass the training split: these statistics become part of the model. A numeric field
    with fewer than two values keeps mean 0 and std 1; a category seen fewer than
    ``min_count`` times maps to "unknown".
    """
    out = []
    for spec in specs:
        vals = [field_value(spec, r) for r in records]
        present = [v for v in vals if v is not None]
        if spec.kind == "numeric":
            a = np.asarray(present, dtype=np.float64)
            if a.size >= 2 and float(a.std()) > 0:
                out.append(replace(spec, mean=float(a.mean()), std=float(a.std())))
            elif a.size >= 1:
                out.append(replace(spec, mean=float(a.mean()), std=1.0))
            else:
                out.append(replace(spec, mean=0.0, std=1.0))
        elif spec.kind == "categorical":
            counts = Counter(str(v) for v in present)
            vocab = tuple(sorted(k for k, c in counts.items() if c >= min_count))
            out.append(replace(spec, vocab=vocab))
        else:
            out.append(spec)
    return tuple(out)


@dataclass(frozen=True)
class EncodedMetadata:
    """Metadata as network inputs, one row per record.

    Attributes
    ----------
    numeric
        ``(N, n_numeric)`` float32, standardised values (0 where missing).
    numeric_mask
        ``(N, n_numeric)`` bool, True where present.
    angle
        ``(N, n_angle)`` float32, radians (0 where missing).
    angle_mask
        ``(N, n_angle)`` bool.
    categorical
        ``(N, n_categorical)`` int64: 0 is "unknown", i >= 1 is ``vocab[i - 1]``.
    categorical_mask
        ``(N, n_categorical)`` bool.
    """

    numeric: np.ndarray
    numeric_mask: np.ndarray
    angle: np.ndarray
    angle_mask: np.ndarray
    categorical: np.ndarray
    categorical_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    def subset(self, idx: np.ndarray | Sequence[int]) -> EncodedMetadata:
        i = np.asarray(idx, dtype=np.int64)
        return EncodedMetadata(*(getattr(self, f)[i] for f in _ENC_FIELDS))

    def tensors(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        return {f: torch.from_numpy(np.ascontiguousarray(getattr(self, f))).to(device)
                for f in _ENC_FIELDS}  # fmt: skip


_ENC_FIELDS = (
    "numeric",
    "numeric_mask",
    "angle",
    "angle_mask",
    "categorical",
    "categorical_mask",
)


def encode_metadata(
    records: Sequence[Mapping[str, Any]], specs: Sequence[FieldSpec]
) -> EncodedMetadata:
    """Turn records (see :func:`metadata_record`) into :class:`EncodedMetadata` using the
    fitted statistics and vocabularies in ``specs``."""
    num = [s for s in specs if s.kind == "numeric"]
    ang = [s for s in specs if s.kind == "angle"]
    cat = [s for s in specs if s.kind == "categorical"]
    n = len(records)
    numeric = np.zeros((n, len(num)), np.float32)
    numeric_mask = np.zeros((n, len(num)), bool)
    angle = np.zeros((n, len(ang)), np.float32)
    angle_mask = np.zeros((n, len(ang)), bool)
    categorical = np.zeros((n, len(cat)), np.int64)
    categorical_mask = np.zeros((n, len(cat)), bool)
    lookups = [{v: i + 1 for i, v in enumerate(s.vocab)} for s in cat]
    for r, rec in enumerate(records):
        for j, s in enumerate(num):
            v = field_value(s, rec)
            if v is not None:
                numeric[r, j] = (float(v) - s.mean) / (s.std or 1.0)
                numeric_mask[r, j] = True
        for j, s in enumerate(ang):
            v = field_value(s, rec)
            if v is not None:
                angle[r, j] = math.radians(float(v))
                angle_mask[r, j] = True
        for j, s in enumerate(cat):
            v = field_value(s, rec)
            if v is not None:
                categorical[r, j] = lookups[j].get(str(v), 0)
                categorical_mask[r, j] = True
    # extreme outliers would put Fourier features into aliasing; clip at 8 standard deviations
    np.clip(numeric, -8.0, 8.0, out=numeric)
    return EncodedMetadata(numeric, numeric_mask, angle, angle_mask, categorical, categorical_mask)


def metadata_keys(records: Sequence[Mapping[str, Any]], specs: Sequence[FieldSpec]) -> list[str]:
    """A string per record that is equal exactly when the records are identical in every
    configured field (floats compared to 9 significant digits). Items with equal keys are
    indistinguishable to the metadata encoder, so retrieval counts them as the same answer."""
    out = []
    for rec in records:
        vals: list[Any] = []
        for s in specs:
            v = field_value(s, rec)
            vals.append(float(f"{v:.9g}") if isinstance(v, float) else v)
        out.append(json.dumps(vals))
    return out


class MetadataEncoder(nn.Module):
    """Encoded metadata -> ``(N, embed_dim)`` (not normalised; the joint model normalises).

    Parameters
    ----------
    config
        The metadata tower's configuration (fitted fields).
    embed_dim
        Output dimension.
    """

    freqs: torch.Tensor
    harm: torch.Tensor
    cat_offset: torch.Tensor

    def __init__(self, config: MetadataEncoderConfig, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        specs = config.fields
        self.n_num = sum(s.kind == "numeric" for s in specs)
        self.n_ang = sum(s.kind == "angle" for s in specs)
        cat = [s for s in specs if s.kind == "categorical"]
        self.n_cat = len(cat)
        t = config.token_dim
        f = config.frequencies
        self.register_buffer(
            "freqs", math.pi * 2.0 ** (torch.arange(f, dtype=torch.float32) - 2), persistent=False
        )
        self.register_buffer(
            "harm", torch.arange(1, config.harmonics + 1, dtype=torch.float32), persistent=False
        )
        # one small linear map per field, stored stacked so all fields run in one einsum
        self.num_w = nn.Parameter(torch.randn(self.n_num, 1 + 2 * f, t) / math.sqrt(1 + 2 * f))
        self.num_b = nn.Parameter(torch.zeros(self.n_num, t))
        h = config.harmonics
        self.ang_w = nn.Parameter(torch.randn(self.n_ang, 2 * h, t) / math.sqrt(2 * h))
        self.ang_b = nn.Parameter(torch.zeros(self.n_ang, t))
        # categorical table: per field, row 0 is "unknown", rows 1.. the vocabulary
        sizes = [len(s.vocab) + 1 for s in cat]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes else np.zeros(0)
        self.register_buffer(
            "cat_offset", torch.as_tensor(offsets, dtype=torch.int64), persistent=False
        )
        self.cat_table = nn.Embedding(max(1, int(sum(sizes))), t)
        nn.init.normal_(self.cat_table.weight, std=1.0)
        n_fields = self.n_num + self.n_ang + self.n_cat
        self.missing = nn.Parameter(torch.randn(n_fields, t))
        layers: list[nn.Module] = [nn.LayerNorm(n_fields * t)]
        width = n_fields * t
        for _ in range(config.layers):
            layers += [nn.Linear(width, config.hidden), nn.GELU()]
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            width = config.hidden
        layers.append(nn.Linear(width, embed_dim))
        self.mlp = nn.Sequential(*layers)

    def tokens(
        self,
        numeric: torch.Tensor,
        numeric_mask: torch.Tensor,
        angle: torch.Tensor,
        angle_mask: torch.Tensor,
        categorical: torch.Tensor,
        categorical_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Per-field tokens ``(N, n_fields, token_dim)`` with missing fields replaced."""
        parts = []
        if self.n_num:
            zf = numeric[..., None] * self.freqs
            feats = torch.cat([numeric[..., None], torch.sin(zf), torch.cos(zf)], dim=-1)
            parts.append(torch.einsum("nfi,fit->nft", feats, self.num_w) + self.num_b)
        if self.n_ang:
            af = angle[..., None] * self.harm
            feats = torch.cat([torch.sin(af), torch.cos(af)], dim=-1)
            parts.append(torch.einsum("nfi,fit->nft", feats, self.ang_w) + self.ang_b)
        if self.n_cat:
            parts.append(self.cat_table(categorical + self.cat_offset))
        tok = torch.cat(parts, dim=1)
        mask = torch.cat([numeric_mask, angle_mask, categorical_mask], dim=1)
        return torch.where(mask[..., None], tok, self.missing.expand_as(tok))

    def forward(
        self,
        numeric: torch.Tensor,
        numeric_mask: torch.Tensor,
        angle: torch.Tensor,
        angle_mask: torch.Tensor,
        categorical: torch.Tensor,
        categorical_mask: torch.Tensor,
    ) -> torch.Tensor:
        tok = self.tokens(numeric, numeric_mask, angle, angle_mask, categorical, categorical_mask)
        out: torch.Tensor = self.mlp(tok.flatten(1))
        return out
