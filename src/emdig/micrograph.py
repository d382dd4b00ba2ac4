"""The central records: :class:`Micrograph`, :class:`Acquisition` and :class:`Source`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ACQUISITION_FIELDS", "Acquisition", "Micrograph", "Source"]


@dataclass(frozen=True, slots=True)
class Acquisition:
    """Normalized acquisition metadata. Every field is optional; each name carries its unit.

    ``mode`` is one of ``"STEM"``, ``"TEM"``, ``"SEM"``, ``"diffraction"``. ``detector`` is a short
    canonical name where one is known (``"HAADF"``, ``"ADF"``, ``"ABF"``, ``"BF"``, ``"DF"``,
    ``"SE"``, ``"BSE"``, ``"camera"`` ...), else the vendor's name. ``acquired_at`` is ISO 8601.
    """

    mode: str | None = None
    detector: str | None = None
    voltage_kv: float | None = None
    magnification: float | None = None
    camera_length_mm: float | None = None
    convergence_mrad: float | None = None
    collection_inner_mrad: float | None = None
    collection_outer_mrad: float | None = None
    dwell_us: float | None = None
    beam_current_pa: float | None = None
    tilt_alpha_deg: float | None = None
    tilt_beta_deg: float | None = None
    scan_rotation_deg: float | None = None
    instrument: str | None = None
    acquired_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (None for missing)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def present(self) -> dict[str, Any]:
        """Only the fields that are set."""
        return {k: v for k, v in self.to_dict().items() if v is not None}


ACQUISITION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Acquisition))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a micrograph came from.

    For a file: ``path``, ``sha256``, ``format`` and ``index`` (the position of this 2-D image
    among those the file yields), plus the ``signal`` title within the file. For a literature
    panel: ``doi``, ``figure`` and ``panel_box`` ``(x0, y0, x1, y1)`` in figure pixels.
    """

    path: str | None = None
    sha256: str | None = None
    format: str | None = None
    index: int = 0
    signal: str | None = None
    doi: str | None = None
    figure: str | None = None
    panel_box: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.panel_box is not None:
            d["panel_box"] = list(self.panel_box)
        return d


@dataclass(frozen=True, slots=True, eq=False)
class Micrograph:
    """One 2-D image with its calibration, normalized metadata and provenance.

    Attributes
    ----------
    pixels
        2-D array indexed ``[row, col]`` in the file's own dtype.
    pixel_size_nm
        Size of one pixel in nm, or None when the file has no spatial calibration (never guessed).
    acquisition
        Normalized metadata.
    raw_metadata
        The file's metadata verbatim, nested.
    source
        Provenance.
    """

    pixels: np.ndarray
    pixel_size_nm: float | None = None
    acquisition: Acquisition = field(default_factory=Acquisition)
    raw_metadata: dict[str, Any] = field(default_factory=dict)
    source: Source = field(default_factory=Source)

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, np.ndarray) or self.pixels.ndim != 2:
            shape = getattr(self.pixels, "shape", None)
            raise ValueError(f"Micrograph.pixels must be a 2-D numpy array, got shape {shape}")
        if self.pixel_size_nm is not None and not (self.pixel_size_nm > 0):
            raise ValueError(f"pixel_size_nm must be positive or None, got {self.pixel_size_nm}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        h, w = self.pixels.shape
        return int(h), int(w)

    @property
    def field_of_view_nm(self) -> tuple[float, float] | None:
        """``(height_nm, width_nm)``, or None without calibration."""
        if self.pixel_size_nm is None:
            return None
        h, w = self.shape
        return h * self.pixel_size_nm, w * self.pixel_size_nm

    def __repr__(self) -> str:
        h, w = self.shape
        px = "uncalibrated" if self.pixel_size_nm is None else f"{self.pixel_size_nm:.4g} nm/px"
        acq = ", ".join(f"{k}={v}" for k, v in self.acquisition.present().items())
        return f"Micrograph({h}x{w} {self.pixels.dtype}, {px}, {acq}, source={self.source.path!r})"
