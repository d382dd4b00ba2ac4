"""The records that pass between the figures stages.

Boxes are ``(x0, y0, x1, y1)`` in figure pixels: ``x`` is the column and ``y`` the row, origin
top-left, ``x1``/``y1`` exclusive (so ``width = x1 - x0``). Figure images are RGB ``uint8`` arrays
of shape ``(height, width, 3)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PANEL_CLASSES",
    "Article",
    "ArticleFigure",
    "Box",
    "CaptionChunk",
    "Panel",
    "ScaleBar",
    "ScaleLabel",
]

Box = tuple[int, int, int, int]

#: The panel classes, in the order the classifier's outputs use.
PANEL_CLASSES: tuple[str, ...] = (
    "microscopy",
    "diffraction",
    "graph",
    "illustration",
    "photo",
    "unclear",
)


@dataclass(slots=True)
class ArticleFigure:
    """One figure of an article.

    ``number`` is the figure's number as printed ("1", "2", "S3"), or None when unknown.
    ``image`` is None until the figure's pixels are known (an HTML page read without its images).
    ``image_ref`` is where the image came from: a file name, a URL or ``"page 3"`` for a PDF.
    """

    number: str | None
    caption: str
    image: np.ndarray | None = None
    image_ref: str | None = None


@dataclass(slots=True)
class Article:
    """An article with its figures, from PDF, HTML or JATS XML."""

    title: str | None = None
    doi: str | None = None
    licence: str | None = None
    url: str | None = None
    path: str | None = None
    authors: list[str] = field(default_factory=list)
    abstract: str | None = None
    journal: str | None = None
    figures: list[ArticleFigure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CaptionChunk:
    """The part of a caption that describes the panels in ``labels`` (lower-case letters).

    ``labels`` is empty for text that applies to the whole figure.
    """

    labels: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class ScaleLabel:
    """A scale-bar label as read: ``text`` verbatim, ``value`` and ``unit`` normalised.

    ``unit`` is one of ``"pm"``, ``"Å"``, ``"nm"``, ``"µm"``, ``"mm"``, ``"1/nm"``; ``nm`` is the
    length in nm (None for reciprocal units).
    """

    box: Box
    text: str
    value: float
    unit: str
    nm: float | None
    confidence: float


@dataclass(frozen=True, slots=True)
class ScaleBar:
    """A detected scale bar: its box, its length in pixels and its label, if one was paired."""

    box: Box
    length_px: float
    confidence: float
    label: ScaleLabel | None = None


@dataclass(slots=True)
class Panel:
    """One panel of a compound figure with what was found about it.

    ``calibration`` says where ``nm_per_px`` came from: ``"scale_bar"`` (a bar and its label
    read from the image), ``"caption"`` (a bar measured in the image, its length from the
    caption) or None (uncalibrated).
    """

    box: Box
    label: str | None = None
    label_box: Box | None = None
    label_confidence: float = 0.0
    classification: str = "unclear"
    class_confidence: float = 0.0
    scale_bars: list[ScaleBar] = field(default_factory=list)
    nm_per_px: float | None = None
    calibration: str | None = None
    caption: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    general: list[str] = field(default_factory=list)
