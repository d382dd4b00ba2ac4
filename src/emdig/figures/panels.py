"""Split a compound figure into its panels with classic image analysis.

The figure is cut recursively along its gutters, the empty rows and columns of background colour
(a recursive XY cut, widest gutter first). Where two panels touch, with no gutter between them,
a region is cut along a long straight intensity or texture discontinuity that runs along its
whole length. Small pieces (axis labels, tick labels, legends, panel letters in a gutter) are
merged into the nearest panel on their side of the cut. Insets, smaller images inside a
micrograph, are never cut out: they are reported separately by :func:`split_panels_detailed`.

Boxes are ``(x0, y0, x1, y1)`` in figure pixels, ``x1``/``y1`` exclusive (see
:mod:`emdig.figures.records`).

Examples
--------
>>> import numpy as np
>>> fig = np.full((200, 300, 3), 255, np.uint8)
>>> fig[10:190, 10:140] = 90    # a grey "micrograph"
>>> fig[10:190, 160:290] = 40   # and another one beside it
>>> split_panels(fig)
[(10, 10, 140, 190), (160, 10, 290, 190)]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from emdig.figures.records import Box

__all__ = [
    "LayoutNode",
    "PanelLayout",
    "as_rgb",
    "background_colour",
    "box_area",
    "box_gap",
    "box_union",
    "cut_strength",
    "ink_mask",
    "reading_order",
    "split_panels",
    "split_panels_detailed",
]

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

#: The most elongated a panel can be (longer side over shorter side).
MAX_ASPECT = 10.0
#: The ink fraction above which a region is an image (a micrograph, a photo).
DENSE = 0.85
#: A panel holds one connected piece of content that spans this fraction of its width or height.
STRUCTURE = 0.5
#: The smallest change (grey levels, or interquartile range) across a cut between touching panels.
MIN_STEP = 12.0
#: A cut between touching panels must show its step in all but this fraction of blocks.
COVER_Q = 0.1
#: Width (px) of the strips compared on either side of a cut between touching panels.
WIDE = 8
#: Touching images are looked for in blocks of at least this fraction of the figure's area.
EDGE_MIN_FRAC = 0.45
#: Straight runs tried per direction when looking for insets (the longest first).
MAX_RUNS = 80
#: A pixel is ink when one of its channels differs from the background by more than this.
INK_THRESHOLD = 40


@dataclass(slots=True)
class LayoutNode:
    """A node of the cut tree: a region, how it was cut, and the pieces it was cut into.

    ``cut`` is ``"rows"`` or ``"cols"`` for a gutter cut, ``"edge-rows"`` or ``"edge-cols"``
    for a cut along a straight discontinuity, and None for a leaf.
    """

    box: Box
    cut: str | None = None
    children: list[LayoutNode] = field(default_factory=list)

    def leaves(self) -> list[Box]:
        """The boxes of the leaves under this node, in cut order."""
        if not self.children:
            return [self.box]
        out: list[Box] = []
        for c in self.children:
            out.extend(c.leaves())
        return out


@dataclass(slots=True)
class PanelLayout:
    """The panels of a figure in reading order, with what :func:`split_panels` saw.

    ``parts[i]`` are the leaf regions that make up ``panels[i]`` (a plot, its axis labels, its
    letter). ``insets`` are boxes of insets found inside panels and ``inset_parent[j]`` is the
    index of the panel that holds ``insets[j]``. ``tree`` is the cut tree and ``background``
    the background colour (RGB).
    """

    panels: list[Box]
    insets: list[Box]
    inset_parent: list[int]
    parts: list[list[Box]]
    tree: LayoutNode | None
    background: tuple[int, int, int]


# ----------------------------------------------------------------------------- small box helpers


def box_area(b: Box) -> int:
    """Area of a box in px² (0 for an empty box)."""
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def box_union(a: Box, b: Box) -> Box:
    """The smallest box that holds both boxes."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def box_gap(a: Box, b: Box) -> float:
    """Euclidean distance between two boxes in px (0 when they touch or overlap)."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def reading_order(boxes: list[Box]) -> list[int]:
    """Indices that sort boxes in reading order: rows from the top, then left to right.

    A box joins the current row when it starts above the middle of the row's first box.
    """
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    rows: list[list[int]] = []
    for i in order:
        b = boxes[i]
        if rows:
            first = boxes[rows[-1][0]]
            if b[1] < (first[1] + first[3]) / 2:
                rows[-1].append(i)
                continue
        rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda j: boxes[j][0])]


# ----------------------------------------------------------------------------- image helpers


def as_rgb(image: npt.ArrayLike) -> U8:
    """The image as an RGB ``uint8`` array of shape (H, W, 3).

    Grey (H, W) images are repeated into three channels and an alpha channel is dropped.
    Other dtypes are scaled from their own range to 0-255.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[:, :, :3]
    elif a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    if a.dtype != np.uint8:
        f = a.astype(np.float64)
        lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        a = np.clip(np.nan_to_num((f - lo) * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def background_colour(rgb: U8) -> tuple[int, int, int]:
    """The figure's background colour: the commonest colour of its 2-px border.

    Colours are compared in steps of 16 levels (JPEG noise). A light colour must cover 30% of
    the border, a dark one 70%; otherwise (a figure of full-bleed images) white is returned.
    """
    h, w = rgb.shape[:2]
    e = min(2, h // 2, w // 2)
    border = np.concatenate(
        [
            rgb[:e].reshape(-1, 3),
            rgb[-e:].reshape(-1, 3),
            rgb[:, :e].reshape(-1, 3),
            rgb[:, -e:].reshape(-1, 3),
        ]
    )
    q = (border // 16).astype(np.int32)
    key = (q[:, 0] * 16 + q[:, 1]) * 16 + q[:, 2]
    counts = np.bincount(key, minlength=4096)
    best = int(np.argmax(counts))
    sel = border[key == best]
    med = np.median(sel, axis=0)
    # a light page colour needs a third of the border; a dark one (rare, and easily a dark
    # image running off the edge) needs most of it
    need = 0.3 if med.min() >= 200 else 0.7
    if counts[best] < need * len(key):
        return (255, 255, 255)
    return (int(med[0]), int(med[1]), int(med[2]))


def ink_mask(rgb: U8, background: tuple[int, int, int], *, threshold: int = INK_THRESHOLD) -> Mask:
    """Pixels that differ from the background colour by more than ``threshold`` in a channel."""
    bg = np.asarray(background, dtype=np.int16)
    d = np.abs(rgb.astype(np.int16) - bg).max(axis=2)
    return d > threshold


def _grey(rgb: U8) -> F32:
    return rgb.astype(np.float32).mean(axis=2)


# ----------------------------------------------------------------------------- the cut tree


def _runs(empty: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Runs of True as (start, end) half-open intervals."""
    if not empty.any():
        return []
    d = np.diff(np.concatenate([[0], empty.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


class _Cutter:
    """Holds the figure's ink mask and grey levels while the cut tree is built."""

    def __init__(self, rgb: U8, mask: Mask, *, min_side: int, min_area: int, edges: bool) -> None:
        self.mask = mask
        self.rgb = [np.ascontiguousarray(rgb[:, :, c], dtype=np.float32) for c in range(3)]
        self.grey = _grey(rgb)
        self.h, self.w = mask.shape
        m = mask.astype(np.int32)
        # cumulative sums make every row/column count of a region O(h + w)
        self.rc = np.zeros((self.h, self.w + 1), np.int32)
        np.cumsum(m, axis=1, out=self.rc[:, 1:])
        self.cc = np.zeros((self.h + 1, self.w), np.int32)
        np.cumsum(m, axis=0, out=self.cc[1:])
        lab, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
        objs = ndimage.find_objects(lab)
        self.comp_boxes = np.array(
            [(o[1].start, o[0].start, o[1].stop, o[0].stop) for o in objs if o is not None],
            dtype=np.int64,
        ).reshape(-1, 4)
        self.min_side = min_side
        self.min_area = min_area
        # the tallest a panel letter is printed
        self.glyph_max = max(10, int(0.045 * max(self.h, self.w)))
        self.edges = edges
        self._image_cc: npt.NDArray[np.int32] | None = None

    def rows(self, b: Box) -> npt.NDArray[np.int32]:
        x0, y0, x1, y1 = b
        return self.rc[y0:y1, x1] - self.rc[y0:y1, x0]

    def cols(self, b: Box) -> npt.NDArray[np.int32]:
        x0, y0, x1, y1 = b
        return self.cc[y1, x0:x1] - self.cc[y0, x0:x1]

    def trim(self, b: Box) -> Box | None:
        r = np.flatnonzero(self.rows(b))
        if r.size == 0:
            return None
        c = np.flatnonzero(self.cols(b))
        x0, y0 = b[0], b[1]
        return (x0 + int(c[0]), y0 + int(r[0]), x0 + int(c[-1]) + 1, y0 + int(r[-1]) + 1)

    def is_major(self, b: Box) -> bool:
        w, h = b[2] - b[0], b[3] - b[1]
        if w < self.min_side or h < self.min_side or w * h < self.min_area:
            return False
        # a long thin strip is a line of text (an axis title), not a panel
        if max(w, h) > MAX_ASPECT * min(w, h):
            return False
        # a panel has structure: an image, a plot frame, a drawing; a block of text is only
        # glyphs, none of which spans half the block
        if self.dense(b):
            return True
        cb = self.comp_boxes
        inside = (cb[:, 0] >= b[0]) & (cb[:, 1] >= b[1]) & (cb[:, 2] <= b[2]) & (cb[:, 3] <= b[3])
        if not inside.any():
            return False
        cw = cb[inside, 2] - cb[inside, 0]
        ch = cb[inside, 3] - cb[inside, 1]
        span = (cw >= STRUCTURE * w) | (ch >= STRUCTURE * h)
        return bool((span & (np.maximum(cw, ch) >= self.min_side)).any())

    def dense(self, b: Box) -> bool:
        """Whether a region is an image: content (ink or texture) nearly everywhere."""
        if self._image_cc is None:
            g = self.grey
            local_range = ndimage.maximum_filter(g, size=3) - ndimage.minimum_filter(g, size=3)
            # bright pixels of a micrograph are not background: they have texture
            image = self.mask | (local_range > 24)
            self._image_cc = np.zeros((self.h + 1, self.w), np.int32)
            np.cumsum(image, axis=0, out=self._image_cc[1:])
        x0, y0, x1, y1 = b
        cc = self._image_cc
        return bool((cc[y1, x0:x1] - cc[y0, x0:x1]).sum() >= DENSE * box_area(b))

    def can_split(self, b: Box) -> bool:
        # down to words and panel letters, which must come apart from a row of them
        return max(b[2] - b[0], b[3] - b[1]) >= 2 * self.glyph_max

    def build(self, b: Box, depth: int = 0, touching: bool = False) -> LayoutNode | None:
        """The cut tree of a region. ``touching``: the region came from a cut between
        touching images, so its parts may touch too."""
        t = self.trim(b)
        if t is None:
            return None
        node = LayoutNode(t)
        if depth > 60 or not self.can_split(t):
            return node
        x0, y0, x1, y1 = t
        row_gaps = _runs(self.rows(t) == 0)
        col_gaps = _runs(self.cols(t) == 0)
        wr = max((e - s for s, e in row_gaps), default=0)
        wc = max((e - s for s, e in col_gaps), default=0)
        if wr or wc:
            along_rows = wr >= wc
            gaps = row_gaps if along_rows else col_gaps
            widest = wr if along_rows else wc
            # only the gutters about as wide as the widest: the layout's hierarchy is kept
            keep = [(s, e) for s, e in gaps if e - s >= max(1, (widest + 1) // 2)]
            bounds = (
                [0] + [v for s, e in keep for v in (s, e)] + [y1 - y0 if along_rows else x1 - x0]
            )
            node.cut = "rows" if along_rows else "cols"
            for i in range(0, len(bounds), 2):
                a, z = bounds[i], bounds[i + 1]
                sub = (x0, y0 + a, x1, y0 + z) if along_rows else (x0 + a, y0, x0 + z, y1)
                child = self.build(sub, depth + 1)
                if child is not None:
                    node.children.append(child)
            return node
        # a straight edge inside a panel set apart by gutters is the panel's own (a horizon,
        # an inset, a lattice): only a large block of images, or a part of one, is cut
        big = box_area(t) >= EDGE_MIN_FRAC * self.h * self.w
        if self.edges and (big or touching):
            cut = self._edge_cut(t)
            if cut is not None:
                axis, pos = cut
                if axis == 0:
                    subs = [(x0, y0, x1, pos), (x0, pos, x1, y1)]
                else:
                    subs = [(x0, y0, pos, y1), (pos, y0, x1, y1)]
                node.cut = "edge-rows" if axis == 0 else "edge-cols"
                for sub in subs:
                    child = self.build(sub, depth + 1, touching=True)
                    if child is not None:
                        node.children.append(child)
        return node

    # -- touching panels -------------------------------------------------------------------------

    def _edge_cut(self, b: Box) -> tuple[int, int] | None:
        """The strongest straight discontinuity that crosses the whole region, or None.

        Returns (axis, position): axis 0 cuts between rows (a horizontal line), axis 1 between
        columns. The step is measured between the medians of two 8-px strips on either side, in
        blocks along the line; 80% of the blocks must show it, so an inset's edge or a feature
        in the image does not qualify, and medians ignore thin lines such as plot axes.
        """
        x0, y0, x1, y1 = b
        best: tuple[float, int, int] | None = None
        for axis in (1, 0):
            length = (y1 - y0) if axis == 1 else (x1 - x0)
            span = (x1 - x0) if axis == 1 else (y1 - y0)
            if span < 2 * self.min_side or length < self.min_side:
                continue
            chans = [c[y0:y1, x0:x1] for c in self.rgb]
            grey = self.grey[y0:y1, x0:x1]
            if axis == 0:
                chans = [np.ascontiguousarray(c.T) for c in chans]
                grey = np.ascontiguousarray(grey.T)
            found = _strongest_step(chans, grey, margin=self.min_side)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], axis, found[1])
        if best is None:
            return None
        _, axis, off = best
        pos = (x0 if axis == 1 else y0) + off
        halves = (
            [(x0, y0, pos, y1), (pos, y0, x1, y1)]
            if axis == 1
            else [(x0, y0, x1, pos), (x0, pos, x1, y1)]
        )
        # panels that touch with no gutter are images: one side at least must be one; a band
        # of data points across a plot is not a panel edge
        if not any(self.dense(s) for s in halves):
            return None
        return axis, pos


def _block_medians(f: F32, lo: int, hi: int, nb: int, block: int) -> F32:
    """Median of each column in [lo, hi) within each block of rows: (nb, hi - lo)."""
    return np.median(f[: nb * block, lo:hi].reshape(nb, block, hi - lo), axis=1)


def _strip_stats(
    f: F32, lo: int, hi: int, width: int, nb: int, block: int, *, spread: bool = False
) -> F32:
    """Per block of rows and boundary x in [lo, hi], the signed change from the ``width``
    columns left of x to those right of x: in their median, or with ``spread`` in their
    interquartile range (texture contrast). Shape (nb, hi - lo + 1)."""
    sub = f[: nb * block].reshape(nb, block, -1)[:, :, lo - width : hi + width]
    win = np.lib.stride_tricks.sliding_window_view(sub, width, axis=2)  # (nb, block, n, width)
    vals = win.transpose(0, 2, 1, 3).reshape(nb, win.shape[2], -1)
    if spread:
        q = np.percentile(vals, [25, 75], axis=2)
        stat = q[1] - q[0]
    else:
        stat = np.median(vals, axis=2)
    n = hi - lo + 1
    return np.asarray(stat[:, width : width + n] - stat[:, :n], dtype=np.float32)


def _block_step(
    chans: list[F32], grey: F32, lo: int, hi: int, narrow: bool, nb: int, block: int
) -> F32:
    """The largest change across boundaries lo..hi, over colour and texture: (nb, n)."""
    mw, tw = (2, 4) if narrow else (WIDE, WIDE)
    steps = [_strip_stats(c, lo, hi, mw, nb, block) for c in chans]
    steps.append(_strip_stats(grey, lo, hi, tw, nb, block, spread=True))
    return np.asarray(np.max(np.abs(steps), axis=0), dtype=np.float32)


def _strongest_step(
    chans: list[F32],
    grey: F32,
    *,
    margin: int,
    strip: int = 8,
    block: int = 12,
    min_step: float = MIN_STEP,
    stand_out: float = 1.5,
) -> tuple[float, int] | None:
    """Best vertical boundary in a region (rows x cols): (score, column) or None.

    ``chans`` are the colour channels and ``grey`` their mean. In each block of ``block``
    rows, the step at a column is the largest change between the ``strip`` columns on either
    side: in a channel's median, or in the grey interquartile range (texture contrast). The
    score is the 10th percentile of the block steps (``COVER_Q``), so the change must run
    along nearly all of the region; medians ignore thin lines such as a plot's axis. A
    boundary must stand out (``stand_out`` times the 90th percentile of the scores elsewhere,
    so a striped texture is not cut) and be sharp (most of the step within a few pixels of the
    line, unlike the soft edge of a lattice fringe).
    """
    h, w = grey.shape
    nb = h // block
    if nb < 3 or w < 2 * margin:
        return None
    xs = np.arange(strip, w - strip + 1)
    step_pre = np.zeros((nb, xs.size))
    # cheap pre-selection with block means and standard deviations (cumulative sums along x)
    for f, with_std in [(c, False) for c in chans] + [(grey, True)]:
        fb = f[: nb * block].reshape(nb, block, w)
        cs = np.zeros((nb, w + 1))
        np.cumsum(fb.sum(axis=1, dtype=np.float64), axis=1, out=cs[:, 1:])
        n = strip * block
        left = (cs[:, xs] - cs[:, xs - strip]) / n
        right = (cs[:, xs + strip] - cs[:, xs]) / n
        np.maximum(step_pre, np.abs(left - right), out=step_pre)
        if with_std:
            c2 = np.zeros((nb, w + 1))
            np.cumsum((fb.astype(np.float64) ** 2).sum(axis=1), axis=1, out=c2[:, 1:])
            lsd = np.sqrt(np.maximum((c2[:, xs] - c2[:, xs - strip]) / n - left**2, 0))
            rsd = np.sqrt(np.maximum((c2[:, xs + strip] - c2[:, xs]) / n - right**2, 0))
            # the interquartile range of a normal sample is 1.35 standard deviations
            np.maximum(step_pre, 1.35 * np.abs(lsd - rsd), out=step_pre)
    pre = np.quantile(step_pre, 0.2, axis=0)
    inside = (xs >= margin) & (xs <= w - margin)
    if not inside.any() or pre[inside].max() < 0.7 * min_step:
        return None
    order = np.argsort(-np.where(inside, pre, -1.0))
    cand: list[int] = []
    for i in order[:60].tolist():
        if not inside[i] or pre[i] < 0.7 * min_step:
            break
        if all(abs(i - j) > strip for j in cand):
            cand.append(i)
        if len(cand) == 5:
            break
    best: tuple[float, int] | None = None
    for i in cand:
        far = np.abs(xs - xs[i]) > 2 * strip
        if far.any() and pre[i] < stand_out * float(np.quantile(pre[far], 0.9)):
            continue
        # block means blur the edge over a strip: place it to the pixel with narrow strips
        lo = int(max(strip, xs[i] - strip))
        hi = int(min(w - strip, xs[i] + strip))
        narrow = _block_step(chans, grey, lo, hi, True, nb, block)
        x = lo + int(np.argmax(np.quantile(narrow, 0.2, axis=0)))
        if not (margin <= x <= w - margin):
            continue
        wide = _block_step(chans, grey, x, x, False, nb, block)[:, 0]
        score = float(np.quantile(wide, COVER_Q))
        if score < min_step:
            continue
        near = narrow[:, x - lo]
        if float(np.quantile(near / np.maximum(wide, 1e-3), 0.2)) < 0.6:
            continue
        if best is None or score > best[0]:
            best = (score, x)
    return best


# ----------------------------------------------------------------------------- pieces to panels


@dataclass(slots=True)
class _Piece:
    box: Box
    major: bool
    parts: list[Box]


def _merge_pieces(pieces: list[_Piece], cutter: _Cutter, *, final: bool = False) -> list[_Piece]:
    """Merge minor pieces into their nearest neighbour until only major pieces are left."""
    pieces = list(pieces)
    while len(pieces) > 1:
        minors = [i for i, p in enumerate(pieces) if not p.major]
        if not minors:
            break
        if len(minors) == len(pieces) and not final:
            # scraps only (a row of panel letters, a caption line): let the parent place them
            break
        i = min(minors, key=lambda k: box_area(pieces[k].box))
        m = pieces[i]

        def cost(j: int, m: _Piece = m) -> float:
            p = pieces[j]
            # a minor piece joins a panel rather than another scrap unless that is much nearer
            return box_gap(m.box, p.box) + (0.0 if p.major else 0.5 * cutter.min_side)

        j = min((k for k in range(len(pieces)) if k != i), key=cost)
        t = pieces[j]
        if t.major and _corner_glyph(m.box, t.box, cutter.glyph_max):
            # a panel letter in the gutter: part of the panel, but not of its box
            pieces[j] = _Piece(t.box, True, t.parts + m.parts)
        else:
            box = box_union(m.box, t.box)
            pieces[j] = _Piece(box, cutter.is_major(box), t.parts + m.parts)
        del pieces[i]
    return pieces


def _corner_glyph(m: Box, t: Box, glyph_max: int) -> bool:
    """Whether ``m`` looks like a panel label printed outside panel ``t``, by its top-left."""
    mw, mh = m[2] - m[0], m[3] - m[1]
    # one letter, perhaps in parentheses: not a word or a line of text
    if mh > 0.6 * glyph_max or mw > 2.2 * mh:
        return False
    tw, th = t[2] - t[0], t[3] - t[1]
    outside = m[3] <= t[1] + 2 or m[2] <= t[0] + 2
    near = m[0] <= t[0] + 0.25 * tw and m[1] <= t[1] + 0.25 * th
    close = box_gap(m, t) <= 2 * glyph_max
    return outside and near and close


def _resolve(node: LayoutNode, cutter: _Cutter) -> list[_Piece]:
    if not node.children:
        return [_Piece(node.box, cutter.is_major(node.box), [node.box])]
    pieces: list[_Piece] = []
    for c in node.children:
        pieces.extend(_resolve(c, cutter))
    if node.cut is not None and node.cut.startswith("edge"):
        # both sides of a touching cut were large enough to be panels: keep them apart
        return pieces
    return _merge_pieces(pieces, cutter)


# ----------------------------------------------------------------------------- insets


def _runs_2d(on: Mask, min_len: int) -> npt.NDArray[np.int64]:
    """Runs of True along each row of ``on`` at least ``min_len`` long: (n, 3) [row, start, end)."""
    h, w = on.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = on
    d = np.diff(padded, axis=1)
    rs, cs = np.nonzero(d == 1)
    _, ce = np.nonzero(d == -1)
    keep = (ce - cs) >= min_len
    return np.stack([rs[keep], cs[keep], ce[keep]], axis=1).astype(np.int64)


class _Edges:
    """Edge maps of a region with cumulative sums for fast coverage of straight segments.

    ``side[y, x]`` marks an edge between columns x-1 and x, ``cross[y, x]`` one between rows
    y-1 and y. Transposing swaps the two, so one search finds rectangles from either direction.
    """

    def __init__(self, side: Mask, cross: Mask) -> None:
        self.side, self.cross = side, cross
        self.h, self.w = side.shape[0], cross.shape[1]
        self.cs = np.concatenate([np.zeros((1, self.w + 1), np.int32), np.cumsum(side, axis=0)])
        self.cc = np.concatenate(
            [np.zeros((self.h + 1, 1), np.int32), np.cumsum(cross, axis=1)], axis=1
        )

    def vcov(self, x: int, ya: int, yb: int) -> float:
        """Fraction of column boundary x covered by edge pixels over rows [ya, yb)."""
        ya, yb = min(max(0, ya), self.h), max(0, min(self.h, yb))
        return float(self.cs[yb, x] - self.cs[ya, x]) / max(1, yb - ya)

    def hcov(self, y: int, xa: int, xb: int) -> float:
        """Fraction of row boundary y covered by edge pixels over columns [xa, xb)."""
        y = min(max(0, y), self.h)
        xa, xb = min(max(0, xa), self.w), max(0, min(self.w, xb))
        return float(self.cc[y, xb] - self.cc[y, xa]) / max(1, xb - xa)

    def stray(self, xa: int, ya: int, xb: int, yb: int, ext: int = 8) -> bool:
        """Whether a side runs on past a corner, as texture does and an inset's edge does not."""
        for yy in (ya, yb):
            if xa > 0 and self.hcov(yy, xa - ext, xa - 2) > 0.6:
                return True
            if xb < self.w and self.hcov(yy, xb + 2, xb + ext) > 0.6:
                return True
        for xx in (xa, xb):
            if ya > 0 and self.vcov(xx, ya - ext, ya - 2) > 0.6:
                return True
            if yb < self.h and self.vcov(xx, yb + 2, yb + ext) > 0.6:
                return True
        return False

    def rectangles(self, min_w: int, min_h: int, max_area: float) -> list[Box]:
        """Rectangles proposed by each long straight run down a column (one side)."""
        h, w = self.h, self.w
        closed = ndimage.binary_closing(self.side, structure=np.ones((3, 1), bool)) | self.side
        runs = sorted(
            {(int(r[0]), int(r[1]), int(r[2])) for r in _runs_2d(closed.T, min_h)},
            key=lambda r: r[1] - r[2],
        )
        cols = np.arange(w + 1)
        out: list[Box] = []
        # the longest runs first, and not too many: a texture of straight fringes has hundreds
        for x, ys, ye in runs[:MAX_RUNS]:
            if ye - ys > 0.8 * h:
                continue
            cov = (self.cs[ye] - self.cs[ys]) / (ye - ys)
            dist = np.abs(cols - x)
            ok = np.flatnonzero((cov >= 0.8) & (dist >= min_w) & (dist <= 0.8 * w))
            if ok.size > 12:
                continue  # parallel edges everywhere: fringes, not an inset
            near_s = np.clip(np.arange(ys - 2, ys + 3), 0, h)
            near_e = np.clip(np.arange(ye - 2, ye + 3), 0, h)
            for xo in ok.tolist():
                xa, xb = min(x, xo), max(x, xo)
                if (xb - xa) * (ye - ys) > max_area:
                    continue
                # the run may end a pixel or two off the corner
                cov_a = (self.cc[near_s, xb] - self.cc[near_s, xa]) / (xb - xa)
                cov_b = (self.cc[near_e, xb] - self.cc[near_e, xa]) / (xb - xa)
                ka, kb = int(np.argmax(cov_a)), int(np.argmax(cov_b))
                if cov_a[ka] < 0.8 or cov_b[kb] < 0.8:
                    continue
                ya, yb = int(near_s[ka]), int(near_e[kb])
                if self.vcov(xa, ya, yb) < 0.8 or self.vcov(xb, ya, yb) < 0.8:
                    continue
                if not self.stray(xa, ya, xb, yb):
                    out.append((xa, ya, xb, yb))
        return out


def _find_insets(
    grey: F32, box: Box, *, min_frac: float = 0.1, max_area_frac: float = 0.45, step: float = 40.0
) -> list[Box]:
    """Axis-aligned rectangles inside an image panel, bounded by straight edges on four sides.

    An edge pixel is a step of at least ``step`` grey levels between the 2-px strips on either
    side. Each long straight run of edge pixels proposes one side of a rectangle and its
    length; the opposite side and the other two must be 80% covered by edge pixels (text may
    cross a side), and the edges must stop at the corners, which texture such as lattice
    fringes does not do. The panel's own border can stand in for a side, so an inset flush
    with a corner is found too.
    """
    x0, y0, x1, y1 = box
    a = grey[y0:y1, x0:x1]
    h, w = a.shape
    min_w, min_h = max(12, int(min_frac * w)), max(12, int(min_frac * h))
    if h < 3 * min_h or w < 3 * min_w:
        return []
    eh = np.zeros((h + 1, w), bool)  # eh[y]: edge between rows y-1 and y
    eh[2 : h - 1] = np.abs(a[:-3] + a[1:-2] - a[2:-1] - a[3:]) >= 2 * step
    ev = np.zeros((h, w + 1), bool)  # ev[:, x]: edge between columns x-1 and x
    ev[:, 2 : w - 1] = np.abs(a[:, :-3] + a[:, 1:-2] - a[:, 2:-1] - a[:, 3:]) >= 2 * step
    # one pixel of play across an edge (JPEG, anti-aliasing); the panel border is an edge
    eh = eh | np.roll(eh, 1, axis=0) | np.roll(eh, -1, axis=0)
    ev = ev | np.roll(ev, 1, axis=1) | np.roll(ev, -1, axis=1)
    eh[[0, h]] = True
    ev[:, [0, w]] = True
    max_area = max_area_frac * w * h
    found = _Edges(ev, eh).rectangles(min_w, min_h, max_area)
    found += [
        (r[1], r[0], r[3], r[2]) for r in _Edges(eh.T, ev.T).rectangles(min_h, min_w, max_area)
    ]
    # the outermost of nested or overlapping rectangles (a bordered inset gives several)
    found.sort(key=lambda r: -box_area(r))
    kept: list[Box] = []
    for r in found:
        if all(_overlap_frac(r, k) < 0.3 for k in kept):
            kept.append(r)
    return [(x0 + r[0], y0 + r[1], x0 + r[2], y0 + r[3]) for r in kept]


def _overlap_frac(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, min(box_area(a), box_area(b)))


# ----------------------------------------------------------------------------- public API


def cut_strength(
    image: npt.ArrayLike, box: Box, *, axis: int, pos: int, search: int = 3
) -> tuple[float, int]:
    """How strongly a straight cut across a region separates two touching images.

    Parameters
    ----------
    image
        The figure, RGB ``uint8`` (H, W, 3) or grey (H, W).
    box
        The region ``(x0, y0, x1, y1)``.
    axis
        0 for a horizontal cut (between rows), 1 for a vertical one (between columns).
    pos
        Where to cut, in figure pixels (a row or a column); the best position within
        ``search`` px is used.

    Returns
    -------
    strength, position
        The change across the cut that 90% of its length shows (grey levels, or interquartile
        range), and the position it was found at.
    """
    rgb = as_rgb(image)
    x0, y0, x1, y1 = box
    chans = [np.ascontiguousarray(rgb[y0:y1, x0:x1, c], dtype=np.float32) for c in range(3)]
    grey = _grey(rgb[y0:y1, x0:x1])
    off = x0 if axis == 1 else y0
    if axis == 0:
        chans = [np.ascontiguousarray(c.T) for c in chans]
        grey = np.ascontiguousarray(grey.T)
    block = 12
    nb = grey.shape[0] // block
    span = grey.shape[1]
    lo, hi = max(WIDE, pos - off - search), min(span - WIDE, pos - off + search)
    lo, hi = max(lo, 2), min(hi, span - 2)
    if nb < 1 or lo > hi:
        return 0.0, pos
    # placed to the pixel with narrow strips, measured with wide ones (as for touching cuts)
    narrow = _block_step(chans, grey, lo, hi, True, nb, block)
    x = lo + int(np.argmax(np.quantile(narrow, 0.2, axis=0)))
    wide = _block_step(chans, grey, x, x, False, nb, block)[:, 0]
    return float(np.quantile(wide, COVER_Q)), x + off


def split_panels_detailed(
    image: npt.ArrayLike,
    *,
    min_panel_frac: float = 0.015,
    min_side_frac: float = 0.08,
    touching: bool = True,
    insets: bool = True,
    ink_threshold: int = INK_THRESHOLD,
) -> PanelLayout:
    """Split a compound figure into panels, and report the insets inside them.

    Parameters
    ----------
    image
        The figure, RGB ``uint8`` (H, W, 3) or grey (H, W).
    min_panel_frac
        The smallest panel, as a fraction of the figure's area. Smaller pieces (text, legends,
        tick labels) are merged into the nearest panel.
    min_side_frac
        The shortest panel side, as a fraction of the figure's shorter side (at least 12 px).
    touching
        Also cut panels that touch, along straight discontinuities that run across a region.
    insets
        Look for insets (rectangles in a corner of an image panel).
    ink_threshold
        Grey-level difference from the background colour that counts as content.

    Returns
    -------
    PanelLayout
        Panel boxes ``(x0, y0, x1, y1)`` tight to their content, in reading order.
    """
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    bg = background_colour(rgb)
    mask = ink_mask(rgb, bg, threshold=ink_threshold)
    min_side = max(12, round(min_side_frac * min(h, w)))
    min_area = max(min_side * min_side, int(min_panel_frac * h * w))
    cutter = _Cutter(rgb, mask, min_side=min_side, min_area=min_area, edges=touching)
    tree = cutter.build((0, 0, w, h))
    if tree is None:
        return PanelLayout([], [], [], [], None, bg)
    pieces = _merge_pieces(_resolve(tree, cutter), cutter, final=True)
    order = reading_order([p.box for p in pieces])
    pieces = [pieces[i] for i in order]
    panels = [p.box for p in pieces]
    found: list[Box] = []
    parent: list[int] = []
    if insets:
        for i, piece in enumerate(pieces):
            for part in piece.parts:
                # only images hold insets, and only images large enough to be panels
                if cutter.is_major(part) and cutter.dense(part):
                    for b in _find_insets(cutter.grey, part):
                        found.append(b)
                        parent.append(i)
    log.debug("split %dx%d figure into %d panels, %d insets", w, h, len(panels), len(found))
    return PanelLayout(panels, found, parent, [p.parts for p in pieces], tree, bg)


def split_panels(
    image: npt.ArrayLike,
    *,
    min_panel_frac: float = 0.015,
    min_side_frac: float = 0.08,
    touching: bool = True,
    ink_threshold: int = INK_THRESHOLD,
) -> list[Box]:
    """Split a compound figure into panel boxes in reading order.

    See :func:`split_panels_detailed` for the parameters. A figure that is one image gives one
    box; an empty (all background) figure gives none.
    """
    return split_panels_detailed(
        image,
        min_panel_frac=min_panel_frac,
        min_side_frac=min_side_frac,
        touching=touching,
        insets=False,
        ink_threshold=ink_threshold,
    ).panels
