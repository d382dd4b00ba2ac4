"""Configuration of the contrastive image-metadata model, kept as data (JSON beside the weights).

A :class:`ContrastiveConfig` holds everything needed to rebuild the two encoders and to turn
raw metadata into network inputs: which fields are used and how (:class:`FieldSpec`), the
normalisation statistics and category vocabularies fitted on the training split, and the
image preprocessing. :func:`default_fields` is the field set of the default recipe.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ..errors import ModelError

__all__ = [
    "ARCH",
    "ContrastiveConfig",
    "FieldSpec",
    "ImageEncoderConfig",
    "MetadataEncoderConfig",
    "default_fields",
]

#: The ``arch`` tag written into every config; a config without it is not ours.
# v2: texture statistics with difference bins centred on zero (113 values, v1 had 115); a v1
# model must be trained again
ARCH = "emdig-contrastive-v2"

FieldKind = Literal["numeric", "categorical", "angle"]


@dataclass(frozen=True)
class FieldSpec:
    """How one metadata field enters the metadata encoder.

    Attributes
    ----------
    name
        An :class:`~emdig.micrograph.Acquisition` field, ``"pixel_size_nm"``, or a derived field
        (``"dose_e_per_px"``: beam current x dwell time / e, electrons per pixel).
    kind
        ``"numeric"`` (normalised, then Fourier features), ``"angle"`` (degrees; sine and
        cosine harmonics, no normalisation) or ``"categorical"`` (learned embedding).
    log
        Numeric only: take ``log10`` first (for quantities spread over decades). A value
        <= 0 is then treated as missing.
    mean, std
        Numeric only: statistics of the (log-)value on the training split; filled by
        :func:`emdig.contrastive.encoding.fit_fields`.
    vocab
        Categorical only: the values seen in the training split. Anything else maps to the
        "unknown" token; a missing value has its own learned vector.
    """

    name: str
    kind: FieldKind = "numeric"
    log: bool = False
    mean: float = 0.0
    std: float = 1.0
    vocab: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldSpec:
        d = dict(d)
        d["vocab"] = tuple(d.get("vocab", ()))
        if d.get("kind") not in ("numeric", "categorical", "angle"):
            raise ModelError(f"field {d.get('name')!r} has unknown kind {d.get('kind')!r}")
        return cls(**d)


def default_fields() -> tuple[FieldSpec, ...]:
    """The fields of the default model (statistics still unfitted)."""
    num = [
        ("pixel_size_nm", True),
        ("magnification", True),
        ("dose_e_per_px", True),
        ("dwell_us", True),
        ("beam_current_pa", True),
        ("camera_length_mm", True),
        ("voltage_kv", False),
        ("convergence_mrad", False),
        ("collection_inner_mrad", False),
        ("collection_outer_mrad", False),
        ("tilt_alpha_deg", False),
        ("tilt_beta_deg", False),
    ]
    out = [FieldSpec(n, "numeric", log=lg) for n, lg in num]
    out.append(FieldSpec("scan_rotation_deg", "angle"))
    out += [FieldSpec(n, "categorical") for n in ("mode", "detector", "instrument")]
    return tuple(out)


@dataclass(frozen=True)
class MetadataEncoderConfig:
    """Metadata tower: per-field tokens, concatenated, then an MLP.

    Attributes
    ----------
    fields
        The fields, in order.
    frequencies
        Number of Fourier frequencies per numeric field; frequency k is ``pi * 2**(k - 2)``
        (periods from 8 down to 8 / 2**(F-1) standard deviations).
    harmonics
        Sine/cosine harmonics per angle field (1 .. H): a lattice with n-fold symmetry makes
        only the n-th harmonic of the scan rotation visible.
    token_dim
        Width of each field's token.
    hidden, layers
        The MLP after concatenation.
    """

    fields: tuple[FieldSpec, ...] = field(default_factory=default_fields)
    frequencies: int = 6
    harmonics: int = 6
    token_dim: int = 32
    hidden: int = 384
    layers: int = 2
    dropout: float = 0.0


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Image tower and its preprocessing.

    Attributes
    ----------
    input_size
        Side of the square crop the network sees, at the image's native pixel scale.
    cache_size
        Side of the centre region kept (and normalised) per image; training crops move within
        it (translation is the only augmentation), inference takes its centre.
    global_features
        Where the spectrum and intensity statistics are computed: ``"region"`` (the whole
        cached region; more pixels, finer frequency resolution) or ``"crop"`` (the CNN's crop).
    low_pct, high_pct
        Percentiles of the centre region mapped to 0 and 1.
    unshuffle
        Space-to-depth factor before the CNN (2: each 2 x 2 block of pixels becomes 4
        channels, so the first layer still sees every pixel).
    widths
        Channels of the CNN stages (the first after space-to-depth, each next one at stride 2).
    radial_bins, angular_bins
        Polar grid of the log power spectrum side branch (radius log-spaced from 2 cycles per
        crop to Nyquist; angle over 0-180 degrees, the spectrum of a real image being
        centrosymmetric).
    spectral_hidden, stats_hidden
        Width of the spectrum and statistics branches' MLPs.
    hidden, dropout
        The MLP that mixes the three branches (dropout on its input, in training).
    """

    input_size: int = 128
    cache_size: int = 256
    global_features: Literal["region", "crop"] = "region"
    low_pct: float = 1.0
    high_pct: float = 99.0
    unshuffle: int = 2
    widths: tuple[int, ...] = (16, 32, 48, 64)
    radial_bins: int = 24
    angular_bins: int = 12
    spectral_hidden: int = 128
    stats_hidden: int = 128
    hidden: int = 384
    dropout: float = 0.2


@dataclass(frozen=True)
class ContrastiveConfig:
    """The whole model: both towers, the joint space and the loss.

    Attributes
    ----------
    embed_dim
        Dimension of the joint (L2-normalised) embedding space.
    loss
        ``"clip"`` (symmetric InfoNCE, learnable temperature) or ``"siglip"`` (pairwise
        sigmoid, learnable temperature and bias).
    members
        Number of independently trained pairs of towers (seeds ``seed``, ``seed + 1``, ...)
        whose similarities are averaged: an ensemble (see
        :class:`~emdig.contrastive.encoders.ContrastiveNet`). 1, a single model, is the default.
    trained_on
        Provenance and training figures, written by :func:`emdig.contrastive.train.train`.
    probes
        Descriptions of the linear probes stored with the weights (field, kind, transform,
        classes, held-out score); written by :func:`emdig.contrastive.evaluate.fit_probes`.
    """

    embed_dim: int = 128
    loss: Literal["clip", "siglip"] = "clip"
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    metadata: MetadataEncoderConfig = field(default_factory=MetadataEncoderConfig)
    members: int = 1
    trained_on: dict[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)

    def with_fields(self, specs: tuple[FieldSpec, ...]) -> ContrastiveConfig:
        return replace(self, metadata=replace(self.metadata, fields=specs))

    def to_json(self) -> str:
        d = asdict(self)
        d["arch"] = ARCH
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "config") -> ContrastiveConfig:
        """Parse a config; raise :class:`~emdig.errors.ModelError` if it is not one of ours."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"model config is not valid JSON: {e}", path=source) from None
        if not isinstance(d, dict) or d.pop("arch", None) != ARCH:
            raise ModelError(
                f"model config does not describe an {ARCH} model (one made by an older emdig "
                "must be trained again)",
                path=source,
            )
        try:
            img = d.pop("image", {})
            img["widths"] = tuple(img.get("widths", ImageEncoderConfig.widths))
            meta = d.pop("metadata", {})
            specs = tuple(FieldSpec.from_dict(f) for f in meta.pop("fields", []))
            _check_keys(ImageEncoderConfig, img, source)
            _check_keys(MetadataEncoderConfig, meta, source)
            _check_keys(cls, d, source)
            return cls(
                image=ImageEncoderConfig(**img),
                metadata=MetadataEncoderConfig(fields=specs, **meta),
                **d,
            )
        except (TypeError, KeyError, AttributeError) as e:
            raise ModelError(f"model config is malformed: {e}", path=source) from None


def _check_keys(cls: type, d: dict[str, Any], source: str) -> None:
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ModelError(f"model config has unknown keys {sorted(unknown)}", path=source)
