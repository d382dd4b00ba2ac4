"""Find the panel labels of a compound figure (a, b, c ...) and match them to the panels.

Candidates are small, isolated, glyph-sized blobs: dark marks on the page background (a label in
the gutter or on a plot's white area), or marks much brighter or darker than the image around
them in the top-left corner of an image panel (a white letter on a micrograph). Each candidate
is cleaned (only its own strokes, dark on white, padded) and read with RapidOCR's recogniser in
one batch. Readings that are one letter, optionally in a style such as "A", "(a)" or "a)", are
scored by the reader's confidence, by where they sit (at a panel's top-left corner, or at least
along its top edge) and by agreeing in size with the other labels. When the caption's letters
are known (``expected``) only those are taken.

:func:`label_panels` runs the whole step on a figure: it splits the panels, finds the labels,
merges the pieces that carry no letter into the lettered panel they belong to (an image and its
elemental maps under one "a"), splits a panel that holds two letters (touching panels that were
not cut), and infers a letter that could not be read from its place in the sequence.

Examples
--------
>>> import numpy as np
>>> from emdig.figures.synth import make_compound_figure
>>> fig, truth = make_compound_figure(np.random.default_rng(3), n_panels=4)
>>> result = label_panels(fig)                                  # doctest: +SKIP
>>> [lab for lab in result.labels]                               # doctest: +SKIP
['a', 'b', 'c', 'd']
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from emdig.errors import MissingDependency
from emdig.figures.panels import (
    as_rgb,
    background_colour,
    box_area,
    box_gap,
    box_union,
    cut_strength,
    ink_mask,
    reading_order,
    split_panels_detailed,
)
from emdig.figures.records import Box

__all__ = [
    "LabelReader",
    "LabelledLayout",
    "PanelLabel",
    "assign_labels",
    "default_reader",
    "find_labels",
    "label_panels",
    "parse_label",
]

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: A reader takes label crops (RGB uint8, dark text on white) and returns (text, score) each.
Reader = Callable[[Sequence[np.ndarray]], list[tuple[str, float]]]

#: Candidates read per panel (plus eight): the best placed first.
MAX_CANDS_PER_PANEL = 2
#: Side of the square crops given to the reader (its line height is 48 px).
CROP = 48

_LABEL_RE = re.compile(r"^[\(\[]?([A-Za-z])[\)\]\.:,]?$")


@dataclass(frozen=True, slots=True)
class PanelLabel:
    """A panel label: its letter (lower case), its box in figure pixels, a confidence in [0, 1]
    and the index of the panel it labels (None when it matches no panel).

    ``box`` is None for a letter inferred from the sequence rather than read.
    """

    letter: str
    box: Box | None
    confidence: float
    panel_index: int | None


@dataclass(slots=True)
class LabelledLayout:
    """Panels and their labels. ``labels[i]`` is panel i's letter or None, ``found`` the
    labels with ``panel_index`` into ``panels``; insets as in
    :class:`emdig.figures.panels.PanelLayout`."""

    panels: list[Box]
    labels: list[str | None]
    found: list[PanelLabel]
    insets: list[Box]
    inset_parent: list[int]


def parse_label(text: str) -> str | None:
    """The letter of a label reading ("a", "B", "(c)", "d)"), lower case, or None."""
    m = _LABEL_RE.match(text.strip().replace(" ", ""))
    return m.group(1).lower() if m else None


# ----------------------------------------------------------------------------- the reader


class LabelReader:
    """Reads label crops with RapidOCR's text recogniser. Construct once and reuse it.

    Parameters
    ----------
    engine
        A ``rapidocr.RapidOCR`` instance; a quiet one is made when None.

    The crops go through the recogniser in one batch when the engine exposes it (RapidOCR 3.x),
    else one by one through ``engine(crop, use_det=False, use_cls=False, use_rec=True)``.
    """

    def __init__(self, engine: Any | None = None) -> None:
        if engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as e:  # pragma: no cover - a declared dependency
                raise MissingDependency(
                    "reading panel labels needs rapidocr: pip install rapidocr onnxruntime"
                ) from e
            # one thread: figures are read in parallel by the batch runner, one per core
            engine = RapidOCR(
                params={
                    "Global.log_level": "warning",
                    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        self.engine = engine
        self._rec: Any | None = None

    def _recogniser(self) -> Any | None:
        if self._rec is None:
            rec = getattr(self.engine, "text_rec", None)
            if rec is None and hasattr(self.engine, "_load_rec_model"):
                rec = self.engine._load_rec_model()
            ok = rec is not None and all(
                hasattr(rec, a) for a in ("session", "resize_norm_img", "postprocess_op")
            )
            self._rec = rec if ok else False
        return self._rec or None

    def __call__(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
        rec = self._recogniser()
        if rec is not None:
            try:
                return self._batch(rec, crops)
            except (AttributeError, TypeError, ValueError, IndexError) as e:
                log.debug("batched recognition failed (%s); reading crops one by one", e)
                self._rec = False
        out: list[tuple[str, float]] = []
        for c in crops:
            r = self.engine(c, use_det=False, use_cls=False, use_rec=True)
            txts = getattr(r, "txts", None) or ("",)
            scores = getattr(r, "scores", None) or (0.0,)
            out.append((str(txts[0]), float(scores[0])))
        return out

    @staticmethod
    def _batch(rec: Any, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        ratios = [c.shape[1] / c.shape[0] for c in crops]
        max_ratio = max(max(ratios), 1.0)
        batch = np.concatenate([rec.resize_norm_img(c, max_ratio)[None] for c in crops])
        preds = rec.session(batch.astype(np.float32))
        lines, _ = rec.postprocess_op(preds, False, wh_ratio_list=ratios, max_wh_ratio=max_ratio)
        return [(str(t), float(s)) for t, s in lines]


@lru_cache(maxsize=1)
def default_reader() -> LabelReader:
    """The shared :class:`LabelReader` (its models load once per process)."""
    return LabelReader()


def _as_reader(ocr: Any | None) -> Reader:
    if ocr is None:
        return default_reader()
    if isinstance(ocr, LabelReader):
        return ocr
    if type(ocr).__name__ == "RapidOCR":
        return LabelReader(ocr)
    if callable(ocr):
        return ocr
    raise TypeError(f"ocr must be a LabelReader, a RapidOCR engine or a callable, not {ocr!r}")


# ----------------------------------------------------------------------------- candidates


@dataclass(slots=True)
class _Cand:
    box: Box
    crop: U8
    inside: bool  # drawn over an image rather than on the page
    dotted: bool = False  # two marks one above the other: an "i" or a "j"
    text: str = ""
    letter: str | None = None
    ocr: float = 0.0
    place: float = 0.0
    panel: int | None = None
    score: float = 0.0

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def _glyph_range(h: int, w: int) -> tuple[int, int]:
    """Smallest and largest label height in px for a figure of this size."""
    return 5, max(16, int(0.05 * max(h, w)))


def _words(boxes: npt.NDArray[np.int64], hmax: int) -> list[list[int]]:
    """Group glyph boxes (n, 4) into words: same line, gaps under half a glyph height."""
    order = np.argsort(boxes[:, 0], kind="stable").tolist()
    groups: list[list[int]] = []
    gbox: list[list[int]] = []
    active: list[int] = []  # groups whose right edge is still within reach
    rows = boxes.tolist()
    for i in order:
        b = rows[i]
        hb = b[3] - b[1]
        placed = False
        active = [k for k in active if gbox[k][2] >= b[0] - hmax]
        for k in active:
            g, gb = groups[k], gbox[k]
            gh = gb[3] - gb[1]
            ov = min(b[3], gb[3]) - max(b[1], gb[1])
            gap = b[0] - gb[2]
            # the dot of an "i" or "j": small, just above the stem, overlapping it in x
            xov = min(b[2], gb[2]) - max(b[0], gb[0])
            top, low = (b, gb) if b[1] < gb[1] else (gb, b)
            stacked = (
                xov >= 0.5 * min(b[2] - b[0], gb[2] - gb[0])
                and top[3] - top[1] <= 0.45 * (low[3] - low[1])
                and 0 <= low[1] - top[3] <= 0.4 * (low[3] - low[1])
            )
            alike = min(hb, gh) >= 0.45 * max(hb, gh)
            beside = ov >= 0.5 * min(hb, gh) and -2 <= gap <= 0.5 * max(hb, gh) and alike
            if stacked or beside:
                g.append(i)
                gb[0], gb[1] = min(gb[0], b[0]), min(gb[1], b[1])
                gb[2], gb[3] = max(gb[2], b[2]), max(gb[3], b[3])
                placed = True
                break
        if not placed:
            groups.append([i])
            gbox.append([int(v) for v in b])
            active.append(len(groups) - 1)
    return [g for g, gb in zip(groups, gbox, strict=True) if gb[3] - gb[1] <= hmax]


def _crop(
    mask: npt.NDArray[np.bool_], box: Box, grey: F32, *, page: bool = True, bright: bool = False
) -> U8:
    """A reader-ready crop: the word's strokes dark on white, padded, RGB uint8.

    The strokes keep their anti-aliased grey levels; everything beyond a pixel or two of them
    becomes white, so a texture behind a letter over an image (``page`` False) does not reach
    the reader. ``bright`` marks a light letter on a darker image: it is inverted.
    """
    x0, y0, x1, y1 = box
    h = y1 - y0
    pad = max(3, int(0.45 * h))
    H, W = mask.shape
    ex0, ey0, ex1, ey1 = max(0, x0 - 1), max(0, y0 - 1), min(W, x1 + 1), min(H, y1 + 1)
    m = mask[ey0:ey1, ex0:ex1]
    patch = grey[ey0:ey1, ex0:ex1]
    if bright:
        patch = 255.0 - patch
    keep = ndimage.binary_dilation(m, iterations=1)
    lo = float(np.percentile(patch[m], 5)) if m.any() else 0.0
    hi = 255.0
    if not page:
        around = patch[~keep]
        hi = float(np.median(around)) if around.size else float(patch.max())
    val = np.where(keep, np.clip((patch - lo) / max(hi - lo, 1.0) * 255.0, 0, 255), 255.0)
    out = np.full((ey1 - ey0 + 2 * pad, ex1 - ex0 + 2 * pad), 255, np.uint8)
    out[pad : pad + ey1 - ey0, pad : pad + ex1 - ex0] = val.astype(np.uint8)
    # the recogniser reads 48 px high lines: a square 48 x 48 crop keeps its batch narrow
    # (the cost grows with the widest crop) and gives a small letter a useful size
    ch, cw = out.shape
    f = 40.0 / max(ch, cw)
    zoom = ndimage.zoom(out.astype(np.float32), f, order=1, mode="nearest")
    zoom = np.clip(zoom, 0, 255).astype(np.uint8)
    sq = np.full((CROP, CROP), 255, np.uint8)
    zh, zw = min(CROP, zoom.shape[0]), min(CROP, zoom.shape[1])
    oy, ox = (CROP - zh) // 2, (CROP - zw) // 2
    sq[oy : oy + zh, ox : ox + zw] = zoom[:zh, :zw]
    return np.repeat(sq[:, :, None], 3, axis=2)


def _dotted(boxes: npt.NDArray[np.int64]) -> bool:
    """Whether a word of two marks has one above the other (the dot of an "i")."""
    if len(boxes) != 2:
        return False
    a, b = boxes.tolist()
    return bool(min(a[3], b[3]) <= max(a[1], b[1]))


def _light_row(patch: F32) -> bool:
    """Whether a dark mark has a much lighter row in its upper half (a dot joined to its stem
    by JPEG blur)."""
    rowmin = patch.min(axis=1)
    h = len(rowmin)
    for r in range(1, max(1, h // 2)):
        if rowmin[r] > rowmin[:r].min() + 80 and rowmin[r] > rowmin[r + 1 :].min() + 80:
            return True
    return False


def _isolated(lab: npt.NDArray[np.int32], ids: set[int], box: Box, margin: int) -> bool:
    """Whether no other component comes within ``margin`` px of the word's box."""
    x0, y0, x1, y1 = box
    H, W = lab.shape
    win = lab[max(0, y0 - margin) : min(H, y1 + margin), max(0, x0 - margin) : min(W, x1 + margin)]
    found = set(np.unique(win).tolist()) - {0}
    return found <= ids


def _label_without_specks(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int32], int]:
    """Connected components (8-connected) of a mask, without specks of 2 px or fewer (JPEG
    noise beside a letter must not make it look crowded)."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return lab, 0
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = sizes <= 2
    small[0] = False
    if small.any():
        lab[small[lab]] = 0
        lab, n = ndimage.label(lab > 0, structure=np.ones((3, 3), bool))
    return lab.astype(np.int32), int(n)


def _page_candidates(grey: F32, ink: npt.NDArray[np.bool_], hmin: int, hmax: int) -> list[_Cand]:
    """Isolated glyph-sized words of ink on the page (labels in gutters and on plots)."""
    lab, n = _label_without_specks(ink)
    if n == 0:
        return []
    objs = ndimage.find_objects(lab)
    boxes = np.array([(o[1].start, o[0].start, o[1].stop, o[0].stop) for o in objs], dtype=np.int64)
    bh = boxes[:, 3] - boxes[:, 1]
    bw = boxes[:, 2] - boxes[:, 0]
    small = (bh <= 1.4 * hmax) & (bw <= 1.6 * hmax) & (np.maximum(bh, bw) >= 3)
    idx = np.flatnonzero(small)
    out: list[_Cand] = []
    if idx.size == 0:
        return out
    for word in _words(boxes[idx], hmax):
        comp = [int(idx[k]) for k in word]
        if len(comp) > 3:
            continue
        b = boxes[comp]
        box = (int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max()))
        h, w = box[3] - box[1], box[2] - box[0]
        if h < hmin or w > 2.8 * h or w * 6 < h:
            continue
        ids = {c + 1 for c in comp}
        if not _isolated(lab, ids, box, max(2, int(0.2 * h))):
            continue
        sub = lab[box[1] : box[3], box[0] : box[2]]
        m = np.zeros(lab.shape, bool)
        m[box[1] : box[3], box[0] : box[2]] = np.isin(sub, list(ids))
        patch = grey[box[1] : box[3], box[0] : box[2]]
        dotted = _dotted(b) or _light_row(patch)
        out.append(_Cand(box, _crop(m, box, grey), False, dotted))
    return out


def _image_candidates(
    grey: F32,
    panel: Box,
    hmin: int,
    hmax: int,
    *,
    guide: tuple[float, float, float] | None = None,
) -> list[_Cand]:
    """Marks much brighter or darker than the image around them in a panel's top-left corner.

    With ``guide`` (the other labels' offset from their panel's corner and their height, px),
    look instead along the panel's top and left edges, where the letter of a touching panel
    that was not cut off would sit, at that offset and of that size.
    """
    x0, y0, x1, y1 = panel
    rw = min(x1 - x0, max(int(0.35 * (x1 - x0)), 5 * hmax))
    rh = min(y1 - y0, max(int(0.3 * (y1 - y0)), 3 * hmax))
    if rw < 2 * hmin or rh < 2 * hmin:
        return []
    corner = grey[y0 : y0 + rh, x0 : x0 + rw]
    if (corner > 235).mean() > 0.5:
        return []  # the corner is page, not image: page candidates cover it
    if guide is None:
        return _marks(grey, (x0, y0, x0 + rw, y0 + rh), hmin, hmax, lambda b: b[0] + b[1])
    gx, gy, gh = guide
    out: list[_Cand] = []
    sw, sh = min(x1 - x0, int(gx + 3 * gh)), min(y1 - y0, int(gy + 3 * gh))
    if x1 - (x0 + rw) > 2 * hmax:
        top = (x0 + rw - 2 * hmax, y0, x1, y0 + sh)
        out += _marks(
            grey,
            top,
            hmin,
            hmax,
            lambda b: abs(b[1] - y0 - gy) + abs(b[3] - b[1] - gh),
            2 + (top[2] - top[0]) // 150,
        )
    if y1 - (y0 + rh) > 2 * hmax:
        left = (x0, y0 + rh - 2 * hmax, x0 + sw, y1)
        out += _marks(
            grey,
            left,
            hmin,
            hmax,
            lambda b: abs(b[0] - x0 - gx) + abs(b[3] - b[1] - gh),
            2 + (left[3] - left[1]) // 150,
        )
    return out


def _near_same(a: Box, b: Box) -> bool:
    return all(abs(u - v) <= 1 for u, v in zip(a, b, strict=True))


def _marks(
    grey: F32,
    region: Box,
    hmin: int,
    hmax: int,
    rank: Callable[[Box], float],
    limit: int = 6,
) -> list[_Cand]:
    """Isolated glyph-sized words much brighter or darker than their surroundings in a region.

    A texture can hold hundreds: only the ``limit`` best by ``rank`` (lowest first; it sees
    figure coordinates) are kept, as a label sits at a known place.
    """
    rx0, ry0, rx1, ry1 = region
    g = grey[ry0:ry1, rx0:rx1]
    local = ndimage.uniform_filter(g, size=max(9, int(1.5 * hmax)))
    found: list[tuple[float, Box, npt.NDArray[np.int32], set[int], bool, bool]] = []
    marks = (
        (g - local > 50) & (g > 150),
        (local - g > 50) & (g < 90),
        # near-pure white or black: a letter over a busy texture (fringes as bright as 200)
        (g >= 230) & (g - local > 30),
        (g <= 25) & (local - g > 30),
    )
    for polarity, mark in enumerate(marks):
        lab, n = _label_without_specks(mark)
        if n == 0 or n > g.size / 150:
            continue  # nothing, or a texture full of marks
        objs = ndimage.find_objects(lab)
        boxes = np.array(
            [(o[1].start, o[0].start, o[1].stop, o[0].stop) for o in objs], dtype=np.int64
        )
        bh = boxes[:, 3] - boxes[:, 1]
        bw = boxes[:, 2] - boxes[:, 0]
        idx = np.flatnonzero((bh <= 1.4 * hmax) & (bw <= 1.6 * hmax) & (np.maximum(bh, bw) >= 3))
        if idx.size == 0:
            continue
        for word in _words(boxes[idx], hmax):
            comp = [int(idx[j]) for j in word]
            if len(comp) > 3:
                continue
            b = boxes[comp]
            box = (int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max()))
            h, w = box[3] - box[1], box[2] - box[0]
            if h < hmin or w > 2.8 * h or w * 6 < h:
                continue
            ids = {c + 1 for c in comp}
            if not _isolated(lab, ids, box, max(2, int(0.2 * h))):
                continue
            fbox = (box[0] + rx0, box[1] + ry0, box[2] + rx0, box[3] + ry0)
            found.append((rank(fbox), box, lab, ids, polarity % 2 == 0, _dotted(b)))
    found.sort(key=lambda f: f[0])
    out: list[_Cand] = []
    for _, box, lab, ids, bright, dotted in found:
        if len(out) == limit:
            break
        fbox = (box[0] + rx0, box[1] + ry0, box[2] + rx0, box[3] + ry0)
        if any(_near_same(fbox, o.box) for o in out):
            continue  # the same mark under two thresholds
        sub = lab[box[1] : box[3], box[0] : box[2]]
        m = np.zeros(lab.shape, bool)
        m[box[1] : box[3], box[0] : box[2]] = np.isin(sub, list(ids))
        out.append(_Cand(fbox, _crop(m, box, g, page=False, bright=bright), True, dotted))
    return out


# ----------------------------------------------------------------------------- geometry


def _placement(label: Box, panel: Box) -> float:
    """How well a label box sits as the label of a panel, in [0, 1].

    1 at the panel's top-left corner (just outside it in the gutter, or just inside it), less
    along the top edge (labels centred over a panel), falling off with distance.
    """
    lh = max(4, label[3] - label[1])
    pw, ph = panel[2] - panel[0], panel[3] - panel[1]
    dy = label[1] - panel[1]  # < 0: above the panel's top
    dx = label[0] - panel[0]  # < 0: left of the panel
    if label[3] < panel[1] - 4 * lh or label[1] > panel[1] + 0.35 * ph:
        return 0.0
    if label[2] < panel[0] - 6 * lh or label[0] > panel[2]:
        return 0.0
    v = 1.0 if -3 * lh <= dy <= 2 * lh else float(np.exp(-(abs(dy) - 2 * lh) / (3 * lh)))
    if -5 * lh <= dx <= 3 * lh:
        hz = 1.0
    else:
        hz = 0.55 - 0.3 * min(1.0, max(0.0, dx) / max(pw, 1)) if dx > 0 else 0.3
    return v * hz


def _assignment(
    panels: Sequence[Box], boxes: Sequence[Box | None], weights: Sequence[float]
) -> list[int | None]:
    """Match labels to panels one to one (Hungarian), maximising placement x weight."""
    if not panels or not boxes:
        return [None] * len(boxes)
    score = np.zeros((len(boxes), len(panels)))
    for i, b in enumerate(boxes):
        if b is None:
            continue
        for j, p in enumerate(panels):
            score[i, j] = _placement(b, p) * weights[i]
    rows, cols = linear_sum_assignment(-score)
    out: list[int | None] = [None] * len(boxes)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        if score[r, c] > 0.05:
            out[r] = c
    return out


def assign_labels(panels: Sequence[Box], labels: Sequence[PanelLabel]) -> list[str | None]:
    """Each panel's letter: one label per panel, matched by placement (Hungarian).

    A label matches a panel when it sits at the panel's top-left corner (in the gutter just
    outside, or just inside over the image) or, less well, along its top edge.
    """
    idx = _assignment(
        panels, [lab.box for lab in labels], [max(lab.confidence, 0.05) for lab in labels]
    )
    out: list[str | None] = [None] * len(panels)
    for lab, j in zip(labels, idx, strict=True):
        if j is not None:
            out[j] = lab.letter
    return out


# ----------------------------------------------------------------------------- selection


_TALL = set("bdfhklt" + "gjpqy" + "i")


def _norm_height(c: _Cand) -> float:
    """Label height in x-heights: a lower-case letter with an ascender, a descender or a dot
    stands about a third taller than "a" or "c"."""
    text = c.text.strip()
    return c.height / (1.35 if len(text) == 1 and text in _TALL else 1.0)


def _offset(c: _Cand, panel: Box) -> tuple[float, float]:
    """The label's top-left relative to its panel's, in label heights."""
    hh = max(c.height, 1)
    return (c.box[0] - panel[0]) / hh, (c.box[1] - panel[1]) / hh


def _pick(good: list[_Cand], wanted: Sequence[str]) -> list[_Cand]:
    chosen: list[_Cand] = []
    for letter in dict.fromkeys(wanted):
        opts = sorted((c for c in good if c.letter == letter), key=lambda c: -c.score)
        if opts:
            chosen.append(opts[0])
    return chosen


def _choose(
    cands: list[_Cand], expected: Sequence[str] | None, panels: Sequence[Box]
) -> list[_Cand]:
    """One candidate per letter: the expected letters, or a run from "a" that was read.

    The labels of one figure share a size and sit alike on their panels (all in the gutter
    above-left, or all inside at the same offset): candidates that disagree with the
    strongest readings on either count lose weight.
    """
    n_panels = len(panels)
    good = [c for c in cands if c.letter is not None and c.score >= 0.12]
    if not good:
        return []
    top = sorted(good, key=lambda c: -c.score)[: max(3, n_panels)]
    href = float(np.median([_norm_height(c) for c in top]))
    for c in good:
        r = _norm_height(c) / max(href, 1.0)
        c.score *= 1.0 if 0.75 <= r <= 1.33 else 0.5
    if expected is not None:
        wanted = [e.lower() for e in expected if e and e.isalpha()]
    else:
        # letters from "a" to the last one read, as long as a third of them were read
        present = {c.letter for c in good if c.score >= 0.3}
        last = -1
        # a figure has about as many letters as panels, more when touching panels were not
        # cut apart (their letters are then read along the panel's edges)
        span = max(n_panels + 1, len(present))
        for k, letter in enumerate(string.ascii_lowercase[:span]):
            seen = sum(x in present for x in string.ascii_lowercase[: k + 1])
            if letter in present and seen >= (k + 1) / 3:
                last = k
        wanted = [x for x in string.ascii_lowercase[: last + 1] if x in present]
    chosen = _pick(good, wanted)
    if len(chosen) >= 3 and panels:
        idx = _assignment(panels, [c.box for c in chosen], [c.score for c in chosen])
        offs = [_offset(c, panels[j]) for c, j in zip(chosen, idx, strict=True) if j is not None]
        if len(offs) >= 3:
            mx, my = np.median(offs, axis=0)
            for c in good:
                if c.panel is None:
                    continue
                dx, dy = _offset(c, panels[c.panel])
                d = float(np.hypot(dx - mx, dy - my))
                c.score *= 1.0 if d <= 1.5 else 0.5
            chosen = _pick(good, wanted)
    return chosen


def _read(cands: list[_Cand], reader: Reader) -> None:
    res = reader([c.crop for c in cands])
    for c, (text, score) in zip(cands, res, strict=True):
        if c.dotted and text.strip() in ("1", "l", "I", "|", "!"):
            text = "i"  # a lone dotted stroke: sans-serif "i" reads as "1" without context
        c.text = text
        c.letter = parse_label(text)
        c.ocr = float(score) if c.letter is not None else 0.0
        # "I", "l" and "1" look alike in sans-serif: "l" is a poor label, "I" more likely "i"
        if c.letter == "l" and text.strip() in ("l", "I", "|"):
            c.ocr *= 0.6


@dataclass(slots=True)
class _Page:
    """What candidate search needs of a figure, computed once."""

    grey: F32
    ink: npt.NDArray[np.bool_]
    hmin: int
    hmax: int


def _page(rgb: U8) -> _Page:
    h, w = rgb.shape[:2]
    bg = background_colour(rgb)
    grey = rgb.astype(np.float32).mean(axis=2)
    if float(np.mean(bg)) < 128:
        grey = 255.0 - grey  # dark page: make labels dark on light
    return _Page(grey, ink_mask(rgb, bg), *_glyph_range(h, w))


def _place(cands: list[_Cand], panels: Sequence[Box], height: int) -> None:
    for c in cands:
        if panels:
            places = [_placement(c.box, p) for p in panels]
            j = int(np.argmax(places))
            c.place, c.panel = places[j], j
        else:
            c.place, c.panel = 1.0 if c.box[1] < 0.1 * height else 0.3, None


def _candidates(page: _Page, panels: Sequence[Box], max_cands: int) -> list[_Cand]:
    """Page marks and marks in image corners, the best placed first."""
    cands = _page_candidates(page.grey, page.ink, page.hmin, page.hmax)
    for p in panels:
        cands += _image_candidates(page.grey, p, page.hmin, page.hmax)
    _place(cands, panels, page.grey.shape[0])
    cands = [c for c in cands if c.place > 0.15]
    cands.sort(key=lambda c: -c.place)
    return cands[:max_cands]


def _edge_candidates(
    page: _Page, panels: Sequence[Box], chosen: list[_Cand], seen: list[_Cand]
) -> list[_Cand]:
    """Marks along the edges of large image panels, where the labels read so far say a
    further label would sit (two touching panels left as one)."""
    inside = [c for c in chosen if c.inside and c.panel is not None]
    if not inside or not panels:
        return []
    offs = np.array(
        [
            (c.box[0] - panels[c.panel][0], c.box[1] - panels[c.panel][1], c.height)
            for c in inside
            if c.panel is not None
        ]
    )
    gx, gy, gh = (float(v) for v in np.median(offs, axis=0))
    typical = float(np.median([box_area(p) for p in panels]))
    out: list[_Cand] = []
    for p in panels:
        if len(panels) > 1 and box_area(p) < 1.4 * typical:
            continue
        for c in _image_candidates(page.grey, p, page.hmin, page.hmax, guide=(gx, gy, gh)):
            if not any(_near_same(c.box, o.box) for o in seen + out):
                out.append(c)
    _place(out, panels, page.grey.shape[0])
    for c in out:
        # away from its panel's corner, but where and as large as the other labels are
        c.place = max(c.place, 0.8)
    return out


def find_labels(
    image: npt.ArrayLike,
    panels: Sequence[Box],
    *,
    expected: Sequence[str] | None = None,
    ocr: Any | None = None,
) -> list[PanelLabel]:
    """Find the panel labels of a figure and match them to panels.

    Parameters
    ----------
    image
        The figure, RGB ``uint8`` (H, W, 3) or grey (H, W).
    panels
        Panel boxes ``(x0, y0, x1, y1)``, e.g. from :func:`emdig.figures.panels.split_panels`.
    expected
        The letters the caption names ("a", "b" ...), when known; only these are taken.
    ocr
        A :class:`LabelReader`, a ``rapidocr.RapidOCR`` engine, or any callable that takes a
        list of RGB crops and returns ``(text, score)`` for each. None: the shared reader.

    Returns
    -------
    list of PanelLabel
        Sorted by letter; ``panel_index`` indexes ``panels`` (None when no panel fits).
    """
    rgb = as_rgb(image)
    reader = _as_reader(ocr)
    page = _page(rgb)
    cands = _candidates(page, panels, max_cands=MAX_CANDS_PER_PANEL * len(panels) + 8)
    if not cands:
        return []
    _read(cands, reader)
    for c in cands:
        c.score = c.ocr * c.place
    chosen = _choose(cands, expected, panels)
    if expected is None or len(chosen) < len(set(expected)):
        # letters may be missing: look where the labels read so far say they would be
        extra = _edge_candidates(page, panels, chosen, cands)
        if extra:
            _read(extra, reader)
            for c in cands + extra:
                c.score = c.ocr * c.place
            chosen = _choose(cands + extra, expected, panels)
    idx = _assignment(panels, [c.box for c in chosen], [c.score for c in chosen])
    out = [
        PanelLabel(str(c.letter), c.box, round(float(c.score), 4), j)
        for c, j in zip(chosen, idx, strict=True)
    ]
    return sorted(out, key=lambda lab: lab.letter)


# ----------------------------------------------------------------------------- the whole step


def _split_at_labels(
    rgb: U8, panels: list[Box], labels: list[PanelLabel]
) -> tuple[list[Box], list[PanelLabel]]:
    """Cut panels that hold a second label (touching panels the split left as one).

    A label on a panel's left edge, below its corner, proposes a horizontal cut just above it
    (at the offset the panel's own label has from its corner); one on the top edge a vertical
    cut. Of the proposals the one with the strongest straight edge across the whole panel is
    made first (a guillotine layout is cut from the outside in), then the labels are matched
    again and the rest proposed anew.
    """
    panels = list(panels)
    for _ in range(2 * len(labels)):
        owner = {lab.panel_index: lab for lab in labels if lab.panel_index is not None}
        proposals: list[tuple[float, int, int, int]] = []  # strength, panel, axis, position
        for lab in labels:
            if lab.panel_index is not None or lab.box is None:
                continue
            lb = lab.box
            cx, cy = (lb[0] + lb[2]) / 2, (lb[1] + lb[3]) / 2
            for j, p in enumerate(panels):
                if not (p[0] <= cx < p[2] and p[1] <= cy < p[3]) or j not in owner:
                    continue
                ob = owner[j].box
                if ob is None:
                    break
                lh = lb[3] - lb[1]
                offx, offy = max(0, ob[0] - p[0]), max(0, ob[1] - p[1])
                if lb[0] - p[0] <= offx + 2 * lh and lb[1] - p[1] > 3 * lh:
                    axis, pos = 0, lb[1] - offy
                    ok = p[1] + 2 * lh < pos < p[3] - 2 * lh
                elif lb[1] - p[1] <= offy + 2 * lh and lb[0] - p[0] > 3 * lh:
                    axis, pos = 1, lb[0] - offx
                    ok = p[0] + 2 * lh < pos < p[2] - 2 * lh
                else:
                    ok = False
                if ok:
                    strength, pos = cut_strength(rgb, p, axis=axis, pos=pos)
                    proposals.append((strength, j, axis, pos))
                break
        if not proposals:
            break
        _, j, axis, pos = max(proposals)
        p = panels[j]
        if axis == 0:
            panels[j], new = (p[0], p[1], p[2], pos), (p[0], pos, p[2], p[3])
        else:
            panels[j], new = (p[0], p[1], pos, p[3]), (pos, p[1], p[2], p[3])
        panels.append(new)
        idx = _assignment(panels, [f.box for f in labels], [f.confidence for f in labels])
        labels = [
            PanelLabel(f.letter, f.box, f.confidence, k) for f, k in zip(labels, idx, strict=True)
        ]
    return panels, labels


def _drop_label_parts(
    panels: list[Box], parts: list[list[Box]], label_boxes: list[Box]
) -> list[Box]:
    """Panel boxes without the pieces that are labels (a letter merged into a neighbour)."""
    out = []
    for box, ps in zip(panels, parts, strict=True):
        keep = [
            q
            for q in ps
            if not any(
                q[0] >= lb[0] - 1 and q[1] >= lb[1] - 1 and q[2] <= lb[2] + 1 and q[3] <= lb[3] + 1
                for lb in label_boxes
            )
        ]
        if keep and len(keep) < len(ps):
            u = keep[0]
            for q in keep[1:]:
                u = box_union(u, q)
            # only shrink: a panel's own box never grows here
            box = (max(box[0], u[0]), max(box[1], u[1]), min(box[2], u[2]), min(box[3], u[3]))
        out.append(box)
    return out


def _overlaps(a: Box, b: Box, tol: int = 2) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > tol and min(a[3], b[3]) - max(a[1], b[1]) > tol


def _merge_unlabelled(
    panels: list[Box], letters: list[str | None], label_boxes: list[Box | None]
) -> tuple[list[Box], list[str | None], list[Box | None]]:
    """Merge each unlettered panel into the nearest lettered one it can join.

    It can join a panel when their union overlaps no other panel or label, and it is not
    wholly above that panel's label (content runs right and down from its letter).
    """
    boxes = list(panels)
    lets = list(letters)
    lbs = list(label_boxes)
    changed = True
    while changed:
        changed = False
        free = [i for i, let in enumerate(lets) if let is None]
        owned = [i for i, let in enumerate(lets) if let is not None]
        if not free or not owned:
            break
        pairs = sorted(
            ((box_gap(boxes[u], boxes[o]), u, o) for u in free for o in owned),
            key=lambda t: t[0],
        )
        for _, u, o in pairs:
            anchor = lbs[o] or boxes[o]
            if boxes[u][3] <= anchor[1]:
                continue
            # the union, grown over any other unlettered panel it overlaps
            group = {u, o}
            union = box_union(boxes[u], boxes[o])
            grew = True
            while grew:
                grew = False
                for k in free:
                    if k not in group and _overlaps(union, boxes[k]):
                        group.add(k)
                        union = box_union(union, boxes[k])
                        grew = True
            others = [k for k in range(len(boxes)) if k not in group]
            if any(_overlaps(union, boxes[k]) for k in others):
                continue
            if any(
                lbs[k] is not None and _overlaps(union, lbs[k], 0)  # type: ignore[arg-type]
                for k in others
            ):
                continue
            boxes[o] = union
            for k in sorted(group - {o}, reverse=True):
                del boxes[k], lets[k], lbs[k]
            changed = True
            break
    return boxes, lets, lbs


def _infer_missing(
    panels: list[Box], letters: list[str | None], wanted: Sequence[str]
) -> list[str | None]:
    """Give letters that were not read to unlettered panels, by their place in reading order."""
    order = reading_order(panels)
    lets = list(letters)
    have = {let for let in lets if let is not None}
    missing = [w for w in wanted if w not in have]
    if not missing:
        return lets
    for m in missing:
        # the unlettered panel that comes after the previous letter and before the next one
        before = max(
            (k for k, i in enumerate(order) if (lets[i] or "") < m and lets[i]), default=-1
        )
        after = min(
            (k for k, i in enumerate(order) if lets[i] is not None and lets[i] > m),  # type: ignore[operator]
            default=len(order),
        )
        slots = [order[k] for k in range(before + 1, after) if lets[order[k]] is None]
        if len(slots) >= 1:
            lets[slots[0]] = m
    return lets


def _continue_letters(panels: list[Box], letters: list[str | None]) -> list[str | None]:
    """Letter the full-sized panels that follow the last lettered one in reading order (their
    labels were not read; without a caption nothing says the figure ends there)."""
    lets = list(letters)
    order = reading_order(panels)
    done = [k for k, i in enumerate(order) if lets[i] is not None]
    if not done:
        return lets
    areas = [box_area(panels[i]) for i in order if lets[i] is not None]
    typical = float(np.median(areas))
    last = max(let for let in lets if let is not None)
    for i in order[done[-1] + 1 :]:
        if box_area(panels[i]) >= 0.5 * typical and last < "z":
            last = chr(ord(last) + 1)
            lets[i] = last
    return lets


def label_panels(
    image: npt.ArrayLike,
    *,
    expected: Sequence[str] | None = None,
    ocr: Any | None = None,
    min_panel_frac: float = 0.015,
) -> LabelledLayout:
    """Split a figure into panels and label them, using the letters to fix the split.

    Parameters
    ----------
    image
        The figure, RGB ``uint8`` (H, W, 3) or grey (H, W).
    expected
        The caption's letters, when known.
    ocr
        As for :func:`find_labels`.
    min_panel_frac
        As for :func:`emdig.figures.panels.split_panels`.

    Returns
    -------
    LabelledLayout
        Panels in reading order with their letters. When no label is found the panels are
        those of :func:`~emdig.figures.panels.split_panels`, unlettered.
    """
    rgb = as_rgb(image)
    layout = split_panels_detailed(rgb, min_panel_frac=min_panel_frac)
    panels = list(layout.panels)
    found = find_labels(rgb, panels, expected=expected, ocr=ocr)
    if found:
        panels = _drop_label_parts(panels, layout.parts, [f.box for f in found if f.box])
        panels, found = _split_at_labels(rgb, panels, found)
    letters: list[str | None] = [None] * len(panels)
    lboxes: list[Box | None] = [None] * len(panels)
    conf: dict[str, float] = {}
    for f in found:
        if f.panel_index is not None:
            letters[f.panel_index] = f.letter
            lboxes[f.panel_index] = f.box
            conf[f.letter] = f.confidence
    if any(let is not None for let in letters):
        wanted: list[str] = (
            [e.lower() for e in expected]
            if expected is not None
            else [chr(c) for c in range(ord("a"), ord(max(conf)) + 1)]
        )
        letters = _infer_missing(panels, letters, wanted)
        if expected is None:
            letters = _continue_letters(panels, letters)
        # pieces without a letter join a lettered panel only when the letters are known (the
        # caption's) or at least two were read: one letter alone would swallow the figure
        if expected is not None or len(conf) >= 2:
            panels, letters, lboxes = _merge_unlabelled(panels, letters, lboxes)
    order = reading_order(panels)
    panels = [panels[i] for i in order]
    letters = [letters[i] for i in order]
    lboxes = [lboxes[i] for i in order]
    final = [
        PanelLabel(let, lboxes[i], conf.get(let, 0.0) if lboxes[i] is not None else 0.0, i)
        for i, let in enumerate(letters)
        if let is not None
    ]
    # insets follow the panel that holds them
    parent = []
    for b in layout.insets:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        hit = [i for i, p in enumerate(panels) if p[0] <= cx < p[2] and p[1] <= cy < p[3]]
        parent.append(hit[0] if hit else -1)
    keep = [k for k, p in enumerate(parent) if p >= 0]
    log.debug("labelled %d panels: %s", len(panels), letters)
    return LabelledLayout(
        panels,
        letters,
        sorted(final, key=lambda f: f.letter),
        [layout.insets[k] for k in keep],
        [parent[k] for k in keep],
    )
