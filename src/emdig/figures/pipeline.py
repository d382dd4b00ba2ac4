"""One figure in, calibrated and labelled panels out.

:func:`analyse_figure` runs the steps in order: panels, panel labels (guided by the letters the
caption names), scale bars, classification, caption chunks and keywords, and calibration per
panel (a read scale-bar label first, else the caption's stated length over a measured bar).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .captions import caption_labels, caption_scales, keywords, split_caption
from .classify import classify_panels
from .labels import label_panels
from .records import Box, CaptionChunk, Panel, ScaleBar
from .scalebar import find_scale_bars, panel_calibration

__all__ = ["FigureResult", "analyse_figure", "as_rgb"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FigureResult:
    """Everything found in one figure.

    ``unassigned_bars`` are scale bars outside every panel; ``unassigned_chunks`` are caption
    chunks whose letters match no panel. ``seconds`` is the time the analysis took.
    """

    name: str
    image: np.ndarray
    caption: str
    panels: list[Panel]
    chunks: list[CaptionChunk]
    caption_letters: list[str]
    unassigned_bars: list[ScaleBar] = field(default_factory=list)
    unassigned_chunks: list[CaptionChunk] = field(default_factory=list)
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The panel letters found, in panel order."""
        return [p.label for p in self.panels if p.label]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` as RGB uint8 ``(H, W, 3)``: grey repeated, alpha dropped, other dtypes scaled."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"expected a grey or RGB image, got shape {a.shape}")
    if a.dtype != np.uint8:
        f = a.astype(np.float32)
        finite = f[np.isfinite(f)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        f = (np.nan_to_num(f, nan=lo) - lo) / max(hi - lo, 1e-12) * 255.0
        a = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


def _inside(inner: Box, outer: Box, *, slack: int = 2) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - slack <= cx <= outer[2] + slack and outer[1] - slack <= cy <= outer[3] + slack


def _chunks_for(label: str | None, chunks: Sequence[CaptionChunk], n_panels: int) -> list[str]:
    """Caption text for one panel: the shared leading text plus the chunks naming its letter."""
    shared = [c.text for c in chunks if not c.labels]
    if label is None:
        # an unlabelled panel of a one-panel figure takes the whole caption
        return [c.text for c in chunks] if n_panels == 1 else shared
    own = [c.text for c in chunks if label in c.labels]
    return shared + own


def analyse_figure(
    image: np.ndarray,
    *,
    caption: str = "",
    name: str = "figure",
    query_terms: Sequence[str] = (),
    classifier: Any = None,
) -> FigureResult:
    """Split one figure into panels and describe each.

    Parameters
    ----------
    image
        The figure, RGB ``(H, W, 3)`` or grey ``(H, W)``.
    caption
        The figure's caption without its "Figure N" label; may be empty.
    name
        The figure's name in outputs.
    query_terms
        Terms (and synonyms) to report as ``keywords`` where a panel's caption names them.
    classifier
        A loaded :class:`~emdig.figures.classify.PanelClassifier`; the shipped one by default.

    Returns
    -------
    FigureResult
    """
    t0 = time.perf_counter()
    rgb = as_rgb(image)
    letters = caption_labels(caption) if caption else []
    layout = label_panels(rgb, expected=letters or None)
    boxes = list(layout.panels) or [(0, 0, rgb.shape[1], rgb.shape[0])]
    panels = [Panel(box=b) for b in boxes]
    for lab in layout.found:
        if lab.panel_index is None or not (0 <= lab.panel_index < len(panels)):
            continue
        p = panels[lab.panel_index]
        if p.label is None or lab.confidence > p.label_confidence:
            p.label, p.label_box, p.label_confidence = lab.letter, lab.box, lab.confidence
    for p, letter in zip(panels, layout.labels, strict=False):
        if p.label is None and letter is not None:
            p.label = letter  # inferred from the sequence, not read
    if len(panels) == 1 and panels[0].label is None and len(letters) == 1:
        panels[0].label = letters[0]  # a one-panel figure whose caption names its one letter

    bars = find_scale_bars(rgb)
    scales = caption_scales(caption) if caption else {}
    chunks = split_caption(caption) if caption else []
    for p, (cls, conf) in zip(panels, classify_panels(rgb, boxes, model=classifier), strict=True):
        p.classification, p.class_confidence = cls, float(conf)

    unassigned_bars = list(bars)
    for p in panels:
        own = [b for b in bars if _inside(b.box, p.box)]
        p.scale_bars = own
        for b in own:
            if b in unassigned_bars:
                unassigned_bars.remove(b)
        stated = scales.get(p.label) if p.label else None
        if stated is None:
            stated = scales.get(None)
        nm_px, source, _bar = panel_calibration(p.box, own, caption_length=stated)
        p.nm_per_px, p.calibration = nm_px, source
        p.caption = _chunks_for(p.label, chunks, len(panels))
        text = " ".join(p.caption)
        p.keywords, p.general = keywords(text, query_terms=query_terms)

    named = {p.label for p in panels if p.label}
    unassigned_chunks = [c for c in chunks if c.labels and not (set(c.labels) & named)]
    return FigureResult(
        name=name,
        image=rgb,
        caption=caption,
        panels=panels,
        chunks=chunks,
        caption_letters=letters,
        unassigned_bars=unassigned_bars,
        unassigned_chunks=unassigned_chunks,
        seconds=time.perf_counter() - t0,
    )
