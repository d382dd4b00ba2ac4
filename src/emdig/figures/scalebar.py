"""Scale bars in figures: find the bars, read their labels, calibrate panels.

A scale bar is a thin horizontal line or filled rectangle, white, black or strongly coloured,
with or without end ticks, on the image or in a strip or margin next to it. Its label ("200
nm") sits above, below or beside it. The steps:

1. :func:`find_scale_bars` thresholds the figure at a few levels (bright, dark, saturated
   colours), keeps the long horizontal runs (a morphological opening), and accepts a run as a
   bar when it is filled, contrasts with the pixels above and below, and has ticks at both ends
   or none. Lines that repeat at short gaps (dashed boxes) and lines with words beside them
   (plot legends) are dropped.
2. Near each bar it looks for one line of text of the bar's colour and reads it with
   :func:`read_scale_label` (RapidOCR's recogniser, no detector), which cleans the usual OCR
   confusions and parses the length with :func:`emdig.figures.units.parse_length`.
3. :func:`panel_calibration` turns the bars of one panel into nm per pixel: a read label
   first, else the length the caption states over a bar measured in the panel.

Lengths are in pixels along the bar: edge to edge for a plain bar (with sub-pixel ends from
the grey profile), tick centre to tick centre for a bar with end ticks.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import MissingDependency, UnreadableFile
from .records import Box, ScaleBar, ScaleLabel
from .units import Length, parse_length

__all__ = [
    "clean_ocr_text",
    "evaluate_label_crops",
    "find_scale_bars",
    "ocr_engine",
    "panel_calibration",
    "read_scale_label",
]

log = logging.getLogger(__name__)

# Labels are tiny: one thread per inference is faster than two fighting over a busy machine
# (measured 28 vs 62 ms per crop under load), and a 160 px minimum line width instead of 320
# halves the work for short labels (247 vs 245 of 252 crops read correctly).
_OCR_PARAMS: dict[str, Any] = {
    "Global.log_level": "error",
    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    "Rec.rec_img_shape": [3, 48, 160],
}
_OCR_LOCK = threading.Lock()
_OCR: Any = None


def ocr_engine() -> Any:
    """The shared RapidOCR engine, built on first use and quiet below warnings.

    Raises :class:`~emdig.errors.MissingDependency` when rapidocr is not installed.
    """
    global _OCR
    with _OCR_LOCK:
        if _OCR is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as e:  # pragma: no cover - rapidocr is a declared dependency
                raise MissingDependency(
                    "reading scale-bar labels needs rapidocr: pip install rapidocr onnxruntime"
                ) from e
            _OCR = RapidOCR(params=_OCR_PARAMS)
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        return _OCR


# --------------------------------------------------------------------------------------------
# Reading labels
# --------------------------------------------------------------------------------------------

_UNIT_HEAD = r"(?:nm|[uµ]\s?m|mm|pm|Å|A\b|µ|1\s?/\s?nm)"
# A number as OCR writes it: digits mixed with O/o (zero) and l/I/| (one), or a lone l/I/|
# directly before a unit ("lum" is "1um").
_OCR_NUMBER = re.compile(
    r"(?<![A-Za-z0-9])(?P<num>[0-9OolI|]*[0-9][0-9OolI|]*(?:[.,][0-9OolI|]+)?"
    r"|[.,][0-9][0-9OolI|]*|[lI|])"
    r"(?P<sep>[\s.,:;'`_\-]*)(?=" + _UNIT_HEAD + ")"
)
_DIGIT_LOOKALIKES = str.maketrans("OolI|", "00111")
_BARE_M = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s?m\s*$")


def clean_ocr_text(text: str) -> str:
    """Undo the usual OCR confusions in a scale-bar label so that it parses as a length.

    Greek mu becomes the micro sign, ``_`` a space; ``rn`` and ``nn`` after a number become
    ``nm``; inside a number ``O``/``o`` become 0 and ``l``/``I``/``|`` become 1 (``"lum"`` is 1
    µm); punctuation between number and unit (``"100.nm"``) and around the label (``"-200
    nm-"``) is dropped.

    >>> clean_ocr_text("-l0O_nrn-")
    '100 nm'
    """
    t = unicodedata.normalize("NFC", text).replace("\u03bc", "\u00b5").replace("_", " ")
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"^[^\w.µÅ]+|[^\w.µÅ]+$", "", t)  # stray dashes, quotes, asterisks
    t = re.sub(r"(?<=[\d\s])(?:rn|nn|rm|nrn|rnn)$", "nm", t)
    t = re.sub(r"(?<=[\d\s])(?:nrn|rnm|nnm)(?![a-z])", "nm", t)

    def number(m: re.Match[str]) -> str:
        num = m.group("num")
        num = num.translate(_DIGIT_LOOKALIKES)
        num = num.replace(",", ".")
        return num + " "

    t = _OCR_NUMBER.sub(number, t)
    t = re.sub(r"\s+", " ", t).strip()
    return t


def _as_rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        f = a.astype(np.float32)
        lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
        a = (
            np.zeros(f.shape, np.uint8)
            if hi <= lo
            else ((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        )
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB or grey image, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _recognise(crop: np.ndarray, ocr: Any) -> tuple[str, float]:
    res = ocr(np.ascontiguousarray(crop), use_det=False, use_cls=False, use_rec=True)
    txts = getattr(res, "txts", None) or ()
    scores = getattr(res, "scores", None) or ()
    if not txts:
        return "", 0.0
    return " ".join(str(t) for t in txts), float(min(scores)) if scores else 0.0


def _variants(crop: np.ndarray) -> list[np.ndarray]:
    # Tried in order only when the plain crop does not parse. Padding and re-thresholding
    # were measured to hurt on the label set (the recogniser was trained on tight crops), so
    # the fallbacks change little: an upscaled copy, an inverted copy, sideways padding.
    h = crop.shape[0]
    up = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    pad = cv2.copyMakeBorder(crop, 0, 0, max(2, h // 4), max(2, h // 4), cv2.BORDER_REPLICATE)
    return [up, 255 - crop, pad]


def _parse_reading(text: str) -> tuple[Length | None, bool]:
    """The length in one OCR reading and whether it is a guess (a bare "m" read as nm)."""
    cleaned = clean_ocr_text(text)
    length = parse_length(cleaned)
    if length is not None:
        return length, False
    bare = _BARE_M.match(cleaned)
    if bare is not None:
        # OCR drops the thin "n" of "nm" far more often than anything else: no micrograph
        # label is in metres. The guess is kept at half confidence.
        return parse_length(bare.group("num") + " nm"), True
    return None, False


def read_scale_label(crop: np.ndarray, *, ocr: Any = None) -> ScaleLabel | None:
    """Read one scale-bar label crop: ``"200 nm"`` -> value 200, unit ``"nm"``, 200 nm.

    Parameters
    ----------
    crop
        The label, tightly cropped: RGB uint8 ``(h, w, 3)`` or grey ``(h, w)``.
    ocr
        A RapidOCR engine to reuse; the shared :func:`ocr_engine` by default.

    Returns
    -------
    ScaleLabel or None
        ``box`` is the whole crop; ``text`` the OCR text verbatim; ``confidence`` the
        recogniser's score (halved when the unit was guessed). None when no length is read.
    """
    rgb = _as_rgb(crop)
    h, w = rgb.shape[:2]
    if h < 4 or w < 4:
        return None
    eng = ocr if ocr is not None else ocr_engine()
    text, score = _recognise(rgb, eng)
    length, guessed = _parse_reading(text)
    if length is None or guessed:
        # (score to beat, reported confidence, text, length): a guessed unit is kept unless a
        # variant reads a length outright with a better score
        best: tuple[float, float, str, Length] | None = None
        if length is not None:
            best = (score, score * 0.5, text, length)
        for v in _variants(rgb):
            vt, vs = _recognise(v, eng)
            vl, vg = _parse_reading(vt)
            if vl is None or (vg and best is not None):
                continue
            if best is None or vs > best[0]:
                best = (vs, vs * (0.5 if vg else 1.0), vt, vl)
                if not vg:
                    break
        if best is None:
            return None
        score, text, length = best[1], best[2], best[3]
    return ScaleLabel(
        box=(0, 0, w, h),
        text=text,
        value=length.value,
        unit=length.unit,
        nm=length.nm,
        confidence=float(score),
    )


# --------------------------------------------------------------------------------------------
# Finding bars
# --------------------------------------------------------------------------------------------

_MIN_LEN = 10  # px: shorter runs are dashes, hyphens and strokes of symbols
_MIN_LEN_BARE = 15  # px: an unlabelled bar must be at least this long ...
_MIN_THICK_BARE = 1.6  # px: ... and this thick (hairlines are plot and drawing strokes)
_MIN_DIFF_BARE = 100  # grey levels: an unlabelled bar is drawn to stand out from its surround
_SIM = 50  # max channel difference (0-255) for "the bar's colour", at high contrast


@dataclass(slots=True)
class _Cand:
    x0: int  # box with the ticks, x1/y1 exclusive
    y0: int
    x1: int
    y1: int
    by0: int  # the body rows
    by1: int
    length: float
    colour: np.ndarray  # (3,) mean RGB of the body
    achromatic: bool
    ticks: bool
    contrast: float  # share of contrasting pixels just above/below the body (the lower side)
    clutter: float  # area of small marks of its colour around it / its own area
    thick: float  # sub-pixel thickness of the body, px
    tol: float  # colour tolerance for "the bar's colour" (0-255)
    diff: float  # contrast: largest channel difference between bar and background
    spread: float  # mean absolute deviation of the body's pixels (0-255): its uniformity


def _masks(rgb: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """Binary uint8 masks in which a bar may be one component, each with "achromatic"."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    r, g, b = cv2.split(rgb)
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    neutral = chroma <= 60
    masks = [
        ((grey >= 200) & neutral, True),
        ((grey >= 240) & neutral, True),
        ((grey <= 60) & neutral, True),
        ((grey <= 20) & neutral, True),
    ]
    # One mask for all strong colours: a coloured bar is told from its neighbours by the
    # uniformity check in _verify, which is cheaper than one mask per hue.
    sat = chroma >= 110
    if cv2.countNonZero(sat.view(np.uint8)) >= 2 * _MIN_LEN:
        masks.append((sat, False))
    return [(m.view(np.uint8), a) for m, a in masks]


def _similar(rgb: np.ndarray, colour: np.ndarray, tol: float = _SIM) -> np.ndarray:
    return np.abs(rgb.astype(np.int16) - colour.astype(np.int16)).max(axis=-1) <= tol


def _no(x: int, y: int, reason: str) -> _Cand | None:
    log.debug("run at (%d, %d) is no bar: %s", x, y, reason)
    return None


def _verify(rgb: np.ndarray, x: int, w: int, by0: int, by1: int, achromatic: bool) -> _Cand | None:
    """Check one horizontal run as a bar: solid, contrasting, with two ticks or none."""
    H, W = rgb.shape[:2]
    t = by1 - by0
    body = rgb[by0:by1, x : x + w]
    colour = body.reshape(-1, 3).mean(axis=0)
    e = max(2, min(t, 4))  # end zone for ticks, px
    inner = slice(x + e, x + w - e)
    gap = 1 if t <= 3 else 2
    rows = [r for r in (by0 - 1 - gap, by1 + gap) if 0 <= r < H]
    if rows:
        around = np.concatenate([rgb[r, inner] for r in rows])
        diff = float(np.abs(np.median(around, axis=0) - colour).max())
    else:
        diff = 255.0
    if diff < 40:
        return _no(x, by0, "no contrast with the background")
    # The colour tolerance follows the bar's own noise (JPEG ringing), and its contrast: a
    # clean white bar next to light grey texture must not merge with it.
    flat = body.reshape(-1, 3).astype(np.float32)
    noise = 1.4826 * float(np.median(np.abs(flat - np.median(flat, axis=0)), axis=0).mean())
    tol = float(np.clip(max(3 * noise + 12, min(0.25 * diff, 30)), 15, _SIM))
    if _similar(body, colour, tol).mean() < 0.85:
        return _no(x, by0, "not solid")
    sides = [
        1.0 - float(_similar(rgb[r, inner], colour, tol).mean()) if 0 <= r < H else 1.0
        for r in (by0 - 1 - gap, by1 + gap)
    ]
    contrast = min(sides)
    if contrast < 0.5:
        return _no(x, by0, "no contrast above or below")
    # Per column, how far the bar's colour continues straight up and down from the body
    # (past one row of blur): ticks, an arrow head, or a larger thing the run belongs to.
    # Columns just past the ends count when the body rows there still have the bar's colour.
    reach, d = max(4 * t, 10), max(4, 2 * t)
    lo, hi = max(0, by0 - reach), min(H, by1 + reach)
    wx0, wx1 = max(0, x - d), min(W, x + w + d)
    sim = _similar(rgb[lo:hi, wx0:wx1], colour, tol)
    j0, j1 = x - wx0, x + w - wx0  # the run in window columns
    # only what touches the bar counts: texture next to it is not part of it
    _, lab = cv2.connectedComponents(sim.view(np.uint8), connectivity=8)
    counts = np.bincount(lab[by0 - lo : by1 - lo, j0:j1].ravel())
    counts[0] = 0
    sim = lab == int(counts.argmax())
    on_band = sim[by0 - lo : by1 - lo].mean(axis=0) >= 0.5
    on_band[j0:j1] = True
    # A bar ends in background. A line that runs on into a region of its colour (an axis
    # break, a gutter), bends on (a plot curve) or ends in a head (an arrow) does not.
    band = slice(by0 - lo, by1 - lo)
    beyond_l = sim[band, max(0, j0 - 3) : max(0, j0 - 1)]
    beyond_r = sim[band, j1 + 1 : j1 + 3]
    runs_on = on_band[max(0, j0 - 3) : max(0, j0 - 1)].all() and j0 >= 3
    runs_on |= on_band[j1 + 1 : j1 + 3].all() and j1 + 3 <= on_band.size
    if runs_on or any(b.size and b.mean() > 0.25 for b in (beyond_l, beyond_r)):
        return _no(x, by0, "runs on past its end, bends on or ends in a head")
    up = np.cumprod(sim[: by0 - lo][::-1], axis=0).sum(axis=0)
    dn = np.cumprod(sim[by1 - lo :], axis=0).sum(axis=0)
    if (by0 - lo == reach and (up[on_band] >= reach).any()) or (
        hi - by1 == reach and (dn[on_band] >= reach).any()
    ):
        return _no(x, by0, "joined to something large: an axis, a frame, an edge")
    raw = np.where(on_band, up + dn, 0)
    # An arrow head widens one end over several columns; ticks and blur are symmetric.
    zone = max(e + 1, min(w // 4, 3 * t + 3))
    lmax, rmax = int(raw[: j0 + zone].max()), int(raw[j1 - zone :].max())
    if max(lmax, rmax) >= max(4, t + 2) and min(lmax, rmax) <= max(lmax, rmax) / 3:
        return _no(x, by0, "an arrow head or an axis corner")
    up = np.where(on_band, np.maximum(up - 1, 0), 0)
    dn = np.where(on_band, np.maximum(dn - 1, 0), 0)
    ext = up + dn
    tick_min = max(2, round(0.6 * t))
    left, right = ext[: j0 + e + 1], ext[j1 - e - 1 :]
    middle = ext[j0 + e + 1 : j1 - e - 1]
    if middle.size:
        if float((middle >= 2).mean()) > 0.25:
            return _no(x, by0, "something lies along the bar")
        tall = (middle >= max(3, t)).astype(np.int8)
        if int(np.count_nonzero(np.diff(np.concatenate([[0], tall, [0]])) == 1)) >= 3:
            return _no(x, by0, "a ruler or a plot axis")
    has_l, has_r = bool((left >= tick_min).any()), bool((right >= tick_min).any())
    if has_l != has_r:
        return _no(x, by0, "an arrow head or an axis corner")
    ticks = has_l and has_r
    if ticks:
        lcols = np.nonzero(left >= tick_min)[0]
        rcols = np.nonzero(right >= tick_min)[0] + (j1 - e - 1)
        if lcols.size > max(3, t + 1) or rcols.size > max(3, t + 1):
            return _no(x, by0, "heads, not ticks")
        length = float(rcols.mean() - lcols.mean())
        tick_cols = np.concatenate([lcols, rcols])
        # (+1: the row of blur not counted in up/dn)
        ty0 = by0 - int(up[tick_cols].max()) - int(up[tick_cols].max() > 0)
        ty1 = by1 + int(dn[tick_cols].max()) + int(dn[tick_cols].max() > 0)
    else:
        length = _subpixel_length(rgb, x, w, by0, by1)
        ty0, ty1 = by0, by1
    thick = _thickness(rgb, x + e, x + w - e, by0, by1, colour)
    return _Cand(
        x,
        ty0,
        x + w,
        ty1,
        by0,
        by1,
        length,
        colour,
        achromatic,
        ticks,
        contrast,
        0.0,
        thick,
        tol,
        diff,
        float(np.abs(flat - np.median(flat, axis=0)).mean()),
    )


def _thickness(rgb: np.ndarray, x0: int, x1: int, by0: int, by1: int, colour: np.ndarray) -> float:
    """Thickness of the body with the partial coverage of its blurred top and bottom rows."""
    H = rgb.shape[0]
    lo, hi = max(0, by0 - 3), min(H, by1 + 3)
    prof = rgb[lo:hi, x0:x1].astype(np.float32).mean(axis=(1, 2))
    level = float(colour.mean())
    bg = float(np.median([prof[0], prof[-1]]))
    if abs(level - bg) < 30:
        return float(by1 - by0)
    return float(np.clip((prof - bg) / (level - bg), 0.0, 1.0).sum())


def _subpixel_length(rgb: np.ndarray, x: int, w: int, by0: int, by1: int) -> float:
    """Edge-to-edge length with the partial coverage of the blurred end pixels."""
    W = rgb.shape[1]
    grey = rgb[by0:by1].astype(np.float32).mean(axis=2).mean(axis=0)
    level = float(np.median(grey[x : x + w]))
    length = float(w)
    for inner, outer, beyond in ((x, x - 1, x - 3), (x + w - 1, x + w, x + w + 2)):
        if not (0 <= beyond < W):
            continue
        bg = float(grey[beyond])
        span = level - bg
        if abs(span) < 30:
            continue
        for c in (inner, outer):
            frac = float(np.clip((grey[c] - bg) / span, 0.0, 1.0))
            length += frac - (1.0 if c == inner else 0.0)
    return length


def _candidates(rgb: np.ndarray) -> list[_Cand]:
    W = rgb.shape[1]
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (_MIN_LEN - 1, 1))  # odd: an exact opening
    out: list[_Cand] = []
    for mask, achromatic in _masks(rgb):
        runs = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=4)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if w < _MIN_LEN or w > 0.8 * W or h * 3.5 > w or area < 0.7 * w * h:
                continue
            rows = (labels[y : y + h, x : x + w] == i).sum(axis=1)
            full = np.nonzero(rows >= 0.8 * w)[0]
            if full.size == 0:
                continue
            t = int(full[-1] - full[0] + 1)
            if full.size < t or h > max(t + 2, round(1.4 * t)) or w < 3.5 * t:
                continue
            c = _verify(rgb, x, w, y + int(full[0]), y + int(full[-1]) + 1, achromatic)
            if c is not None:
                out.append(c)
    return _dedupe(out)


def _overlap(a: _Cand, b: _Cand) -> float:
    ix = min(a.x1, b.x1) - max(a.x0, b.x0)
    iy = min(a.by1, b.by1) - max(a.by0, b.by0)
    if ix <= 0 or iy <= 0:
        return 0.0
    small = min((a.x1 - a.x0) * (a.by1 - a.by0), (b.x1 - b.x0) * (b.by1 - b.by0))
    return ix * iy / max(1, small)


def _dedupe(cands: list[_Cand]) -> list[_Cand]:
    # The same bar passes at two thresholds. Keep the more uniform reading (the looser
    # threshold may take in texture touching the bar), else the longer one (it keeps the
    # blurred ends). Then drop dashed lines: three or more collinear runs.
    kept: list[_Cand] = []
    for c in sorted(cands, key=lambda c: (-(c.x1 - c.x0), -c.contrast)):
        rivals = [k for k in kept if _overlap(c, k) >= 0.3]
        if not rivals:
            kept.append(c)
        elif all(c.spread < 0.5 * k.spread - 1 for k in rivals):
            kept = [k for k in kept if k not in rivals] + [c]
    dashed: set[int] = set()
    for i, c in enumerate(kept):
        chain = [
            d
            for d in kept
            if d is not c
            and min(c.by1, d.by1) - max(c.by0, d.by0) > 0
            and max(d.x0 - c.x1, c.x0 - d.x1) <= 1.5 * max(c.x1 - c.x0, d.x1 - d.x0)
        ]
        if len(chain) >= 2 or any(
            sum(
                1
                for f in kept
                if f is not d
                and min(d.by1, f.by1) - max(d.by0, f.by0) > 0
                and max(f.x0 - d.x1, d.x0 - f.x1) <= 1.5 * max(d.x1 - d.x0, f.x1 - f.x0)
            )
            >= 2
            for d in chain
        ):
            dashed.add(i)
    return [c for i, c in enumerate(kept) if i not in dashed]


# --------------------------------------------------------------------------------------------
# Pairing labels with bars
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Line:
    box: Box
    side: str
    cost: float
    glyphs: int  # components at least 40 % of the line's height


def _text_lines(rgb: np.ndarray, c: _Cand, bounds: Box) -> list[_Line]:
    """Lines of text in the bar's colour next to it, the most plausible label first."""
    bx0, by0, bx1, by1 = bounds
    L = c.x1 - c.x0
    t = c.by1 - c.by0
    reach = int(np.clip(max(6 * t, 0.45 * L), 18, 120))
    mid = (c.by0 + c.by1) // 2
    windows = {
        "below": (c.x0 - L // 2 - reach, c.y1, c.x1 + L // 2 + reach, c.y1 + reach),
        "above": (c.x0 - L // 2 - reach, c.y0 - reach, c.x1 + L // 2 + reach, c.y0),
        "right": (c.x1, mid - reach, c.x1 + 2 * L + 3 * reach, mid + reach),
        "left": (c.x0 - 2 * L - 3 * reach, mid - reach, c.x0, mid + reach),
    }
    lines: list[_Line] = []
    for side, (wx0, wy0, wx1, wy1) in windows.items():
        wx0, wy0 = max(wx0, bx0), max(wy0, by0)
        wx1, wy1 = min(wx1, bx1), min(wy1, by1)
        if wx1 - wx0 < 6 or wy1 - wy0 < 5:
            continue
        # Two tolerances for the ink: tight keeps bold glyphs apart from the background,
        # loose keeps thin anti-aliased glyphs in one piece.
        for tol in (np.clip(0.35 * c.diff, 20, _SIM), np.clip(0.55 * c.diff, 20, 130)):
            ink = _similar(rgb[wy0:wy1, wx0:wx1], c.colour, float(tol)).astype(np.uint8)
            # the bar and its ticks are not text
            ink[
                max(0, c.y0 - 1 - wy0) : max(0, c.y1 + 1 - wy0),
                max(0, c.x0 - 1 - wx0) : max(0, c.x1 + 1 - wx0),
            ] = 0
            line = _one_line(ink, side, c, (wx0, wy0), reach)
            if line is not None and all(
                max(abs(a - b) for a, b in zip(line.box, o.box, strict=True)) > 2 for o in lines
            ):
                lines.append(line)
    return sorted(lines, key=lambda ln: ln.cost)


def _one_line(
    ink: np.ndarray, side: str, c: _Cand, origin: tuple[int, int], reach: int
) -> _Line | None:
    """The text line nearest the bar in one window, grown glyph by glyph from the nearest."""
    ox, oy = origin
    n, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    comps: list[tuple[int, int, int, int]] = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if h <= reach and w <= 4 * reach and area >= 3:
            comps.append((x + ox, y + oy, x + ox + w, y + oy + h))
    glyphs = [b for b in comps if b[3] - b[1] >= 4]
    if not glyphs:
        return None
    cx, cy, L = (c.x0 + c.x1) / 2, (c.by0 + c.by1) / 2, c.x1 - c.x0

    def dist(b: tuple[int, int, int, int]) -> float:
        if side == "below":
            return b[1] - c.y1 + 0.3 * abs((b[0] + b[2]) / 2 - cx)
        if side == "above":
            return c.y0 - b[3] + 0.3 * abs((b[0] + b[2]) / 2 - cx)
        if side == "right":
            return b[0] - c.x1 + 2 * abs((b[1] + b[3]) / 2 - cy)
        return c.x0 - b[2] + 2 * abs((b[1] + b[3]) / 2 - cy)

    seed = min(glyphs, key=dist)
    lx0, ly0, lx1, ly1 = seed
    used = {seed}
    changed = True
    while changed:
        changed = False
        lh = ly1 - ly0
        for b in comps:
            if b in used:
                continue
            bh = b[3] - b[1]
            mid = (b[1] + b[3]) / 2
            in_band = ly0 - 0.35 * lh <= mid <= ly1 + 0.35 * lh and bh <= 1.8 * lh
            # labels are often set with a wide space between number and unit ("2   nm")
            if in_band and max(b[0] - lx1, lx0 - b[2]) <= 1.5 * max(lh, bh):
                used.add(b)
                lx0, ly0, lx1, ly1 = min(lx0, b[0]), min(ly0, b[1]), max(lx1, b[2]), max(ly1, b[3])
                changed = True
    lh = ly1 - ly0
    if lh < 5 or lx1 - lx0 < 0.5 * lh or lx1 - lx0 > 20 * lh:
        return None
    n_glyphs = sum(1 for b in used if b[3] - b[1] >= 0.4 * lh)
    if side in ("below", "above"):
        gap = (ly0 - c.y1) if side == "below" else (c.y0 - ly1)
        off = abs((lx0 + lx1) / 2 - cx) / max(L, lx1 - lx0)
        # centred over the bar, or flush with one of its ends
        aligned = off <= 0.35 or abs(lx0 - c.x0) <= 0.3 * L or abs(lx1 - c.x1) <= 0.3 * L
        if gap > 2.0 * lh + 2 * (c.by1 - c.by0) or not aligned:
            return None
        cost = gap / lh + off
    else:
        gap = (lx0 - c.x1) if side == "right" else (c.x0 - lx1)
        off = abs((ly0 + ly1) / 2 - cy) / lh
        if gap > 2.5 * lh or off > 0.8:
            return None
        cost = gap / lh + off + 0.5
    return _Line((lx0, ly0, lx1, ly1), side, float(cost), n_glyphs)


def _gap(a: Box, b: Box) -> int:
    """Chessboard distance between two boxes (0 when they touch or overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2], 0)
    dy = max(a[1] - b[3], b[1] - a[3], 0)
    return max(dx, dy)


def _crop_line(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = box
    h = y1 - y0
    py, px = max(2, round(0.2 * h)), max(2, round(0.3 * h))
    b = (max(0, x0 - px), max(0, y0 - py), min(W, x1 + px), min(H, y1 + py))
    return rgb[b[1] : b[3], b[0] : b[2]], b


def _flat(pixels: np.ndarray) -> bool:
    """Whether ``pixels`` (n, 3) are a flat background: median absolute deviation <= 6."""
    p = pixels.reshape(-1, 3).astype(np.float32)
    return p.size == 0 or float(np.median(np.abs(p - np.median(p, axis=0)))) <= 6


def _continues(rgb: np.ndarray, c: _Cand, side: int) -> bool:
    """Whether the bar's rows go on past one end (``side`` -1 left, 1 right) in a shade that
    differs from a flat background just above and below there."""
    H = rgb.shape[0]
    cols = slice(max(0, c.x0 - 5), max(0, c.x0 - 1)) if side < 0 else slice(c.x1 + 1, c.x1 + 5)
    past = rgb[c.by0 : c.by1, cols].reshape(-1, 3)
    ref = np.concatenate(
        [
            rgb[max(0, c.by0 - 4) : max(0, c.by0 - 2), cols].reshape(-1, 3),
            rgb[min(H, c.by1 + 2) : min(H, c.by1 + 4), cols].reshape(-1, 3),
        ]
    )
    if past.size == 0 or ref.size == 0 or not _flat(ref):
        return False
    return float(np.abs(np.median(past, axis=0) - np.median(ref, axis=0)).max()) > 40


def _flat_around(rgb: np.ndarray, box: Box, c: _Cand) -> bool:
    """Whether the background around ``box`` (pixels not of the bar's colour) is flat."""
    x0, y0, x1, y1 = box
    win = rgb[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2]
    return _flat(win[~_similar(win, c.colour, c.tol)])


def _clutter(rgb: np.ndarray, c: _Cand, skip: list[Box]) -> float:
    """Area of small bar-coloured marks next to the bar, relative to the bar's own area.

    A mark is a component that comes within ``3t + 4`` px of the bar (``t`` its thickness),
    outside the bar and the text lines in ``skip``, and is small: it does not reach the
    border of a larger window (as margins, panel edges and plot frames do), unless that
    border is the image's edge. Glyphs of rotated text and strokes of symbols have such
    neighbours; a scale bar does not. Zero on a textured background.
    """
    H, W = rgb.shape[:2]
    t, L = c.by1 - c.by0, c.x1 - c.x0
    m = 3 * t + 4
    big = m + max(12, 2 * t)
    wx0, wy0 = max(0, c.x0 - L // 3 - big), max(0, c.y0 - big)
    wx1, wy1 = min(W, c.x1 + L // 3 + big), min(H, c.y1 + big)
    win = rgb[wy0:wy1, wx0:wx1]
    sim = _similar(win, c.colour, c.tol).astype(np.uint8)
    # On texture (a micrograph) bright or dark specks near a bar are normal; marks count
    # only on a flat background (a plot, a drawing, a margin), where they are strokes.
    if not _flat(win[sim == 0]):
        return 0.0
    for x0, y0, x1, y1 in [(c.x0 - 1, c.y0 - 1, c.x1 + 1, c.y1 + 1), *skip]:
        sim[max(0, y0 - wy0) : max(0, y1 - wy0), max(0, x0 - wx0) : max(0, x1 - wx0)] = 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(sim, connectivity=8)
    h, w = sim.shape
    near = (c.x0 - L // 3 - wx0, c.y0 - m - wy0, c.x1 + L // 3 - wx0, c.y1 + m - wy0)
    area = 0
    for i in range(1, n):
        x, y, bw, bh, a = (int(v) for v in stats[i])
        if a < 3 or x >= near[2] or x + bw <= near[0] or y >= near[3] or y + bh <= near[1]:
            continue
        large = (
            (x == 0 and wx0 > 0)
            or (y == 0 and wy0 > 0)
            or (x + bw == w and wx1 < W)
            or (y + bh == h and wy1 < H)
        )
        if not large:
            area += a
    return area / max(1, (c.x1 - c.x0) * (c.by1 - c.by0))


def _soft_ink(crop: np.ndarray, colour: np.ndarray, tol: float) -> np.ndarray:
    """The crop redrawn as dark ink on white by distance from the ink colour."""
    d = np.abs(crop.astype(np.float32) - colour.astype(np.float32)).max(axis=2)
    grey = np.clip(d * (255.0 / (2 * tol)), 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, grey])


# a reading worth a second try has a unit in it, perhaps misread ("Fum" for "1 µm")
_LABELISH = re.compile(r"[nuµμp]m|[µμ]|\d\s?[AÅ]\b", re.IGNORECASE)


def _label_for(
    rgb: np.ndarray, c: _Cand, bounds: Box, ocr: Any, cache: dict[Box, tuple[str, float]]
) -> tuple[ScaleLabel | None, bool, list[Box]]:
    """The bar's label; whether words sit right next to it (a legend line); the text boxes.

    Only lines shaped like a label are read: two glyphs or more, 1.3 to 12 times as wide as
    high, the two most plausible. The plain crop is read first; if it does not parse but
    has a unit in it, the crop redrawn as ink on white is read too. Readings are cached.
    """
    words = False
    boxes: list[Box] = []
    for line in _text_lines(rgb, c, bounds)[:2]:
        x0, y0, x1, y1 = line.box
        aspect = (x1 - x0) / max(1, y1 - y0)
        boxes.append(line.box)
        if line.glyphs < 2 or not 1.3 <= aspect <= 12:
            continue
        crop, box = _crop_line(rgb, line.box)
        if box not in cache:
            cache[box] = _recognise(crop, ocr)
        text, score = cache[box]
        length, guessed = _parse_reading(text)
        if (length is None or guessed) and _LABELISH.search(text):
            key = (box[0], box[1], box[2], -box[3])  # the redrawn crop's cache slot
            if key not in cache:
                tol = float(np.clip(0.35 * c.diff, 20, _SIM))
                cache[key] = _recognise(_soft_ink(crop, c.colour, tol), ocr)
            st, ss = cache[key]
            sl, sg = _parse_reading(st)
            if sl is not None and (length is None or (not sg and ss > score)):
                text, score, length, guessed = st, ss, sl, sg
        if length is not None:
            conf = score * (0.5 if guessed else 1.0)
            if conf >= 0.4:
                return (
                    ScaleLabel(box, text, length.value, length.unit, length.nm, conf),
                    False,
                    boxes,
                )
            continue
        letters = re.sub(r"[^A-Za-z]", "", text)
        unit_only = re.search(r"(?i)nm|[uµμ]m|mm|pm|Å", text) is not None
        if line.cost < 1.7 and score >= 0.7 and len(letters) >= 2 and not unit_only:
            words = True
    return None, words, boxes


def find_scale_bars(
    image: np.ndarray, *, region: Box | None = None, ocr: Any = None
) -> list[ScaleBar]:
    """Find the scale bars in a figure and read their labels.

    Parameters
    ----------
    image
        The figure: RGB uint8 ``(H, W, 3)`` or grey ``(H, W)``.
    region
        Search only this box ``(x0, y0, x1, y1)`` (a panel); boxes are still in figure pixels.
    ocr
        A RapidOCR engine to reuse; the shared :func:`ocr_engine` by default.

    Returns
    -------
    list of ScaleBar
        Each with its box (ticks included), ``length_px`` along the bar and its label or None.
        Labelled bars come first, then by confidence. A bar without a readable label is kept
        only when it is white or black, at least 15 px long and 2 px thick, contrasts on both
        sides and stands alone (no words beside it, no other strokes of its colour around).
    """
    rgb = _as_rgb(image)
    H, W = rgb.shape[:2]
    if region is None:
        bounds: Box = (0, 0, W, H)
    else:
        bounds = (max(0, region[0]), max(0, region[1]), min(W, region[2]), min(H, region[3]))
    bx0, by0, bx1, by1 = bounds
    if bx1 - bx0 < _MIN_LEN or by1 - by0 < 3:
        return []
    eng = ocr if ocr is not None else ocr_engine()
    bars: list[ScaleBar] = []
    cache: dict[Box, tuple[str, float]] = {}
    for c in _candidates(np.ascontiguousarray(rgb[by0:by1, bx0:bx1])):
        c.x0, c.x1, c.by0, c.by1 = c.x0 + bx0, c.x1 + bx0, c.by0 + by0, c.by1 + by0
        c.y0, c.y1 = c.y0 + by0, c.y1 + by0
        label, words, boxes = _label_for(rgb, c, bounds, eng, cache)
        shape = 0.5 + 0.5 * c.contrast
        if label is not None:
            bars.append(
                ScaleBar((c.x0, c.y0, c.x1, c.y1), c.length, shape * label.confidence, label)
            )
            continue
        grey = float(c.colour.mean())
        # unread text right by the bar counts as clutter: glyph strokes look like bars
        c.clutter = _clutter(rgb, c, [])
        # its colour again a few pixels out on both sides: a gap between two plot curves
        sandwich = min(
            float(_similar(rgb[a:b, c.x0 : c.x1], c.colour, c.tol).mean()) if b > a else 0.0
            for a, b in (
                (max(0, c.by0 - 12), max(0, c.by0 - 3)),
                (min(H, c.by1 + 3), min(H, c.by1 + 12)),
            )
        )
        # on a flat background, a run whose row goes on in another shade past both ends is an
        # edge lying on a longer line (a bar-chart column on its axis)
        on_line = all(_continues(rgb, c, side) for side in (-1, 1))
        # ink of its colour touching it: a curve that goes on, a glyph, a drawing
        touching = any(
            _gap(b, (c.x0, c.y0, c.x1, c.y1)) <= max(2, c.by1 - c.by0) and _flat_around(rgb, b, c)
            for b in boxes
        )
        if (
            words
            or touching
            or sandwich >= 0.2
            or on_line
            or not c.achromatic
            or c.x1 - c.x0 < _MIN_LEN_BARE
            or c.thick < _MIN_THICK_BARE
            or c.contrast < 0.6
            or c.diff < _MIN_DIFF_BARE
            or 70 < grey < 190
            or c.clutter > 0.5
        ):
            continue
        bars.append(ScaleBar((c.x0, c.y0, c.x1, c.y1), c.length, 0.5 * shape / (1 + c.clutter)))
    bars = _drop_plates(bars)
    bars.sort(key=lambda b: (b.label is None, -b.confidence))
    return bars


def _drop_plates(bars: list[ScaleBar]) -> list[ScaleBar]:
    """Drop unlabelled "bars" that are the plate behind another bar: a dark (or light) box
    that holds a thinner bar of the other colour, as in a white bar on a black patch. Of the
    duplicates the same stroke can give, keep the most confident."""
    keep: list[ScaleBar] = []
    for b in bars:
        plate = b.label is None and any(
            o is not b
            and o.box[0] >= b.box[0] - 1
            and o.box[2] <= b.box[2] + 1
            and o.box[1] >= b.box[1] - 1
            and o.box[3] <= b.box[3] + 1
            and (o.box[3] - o.box[1]) < (b.box[3] - b.box[1])
            for o in bars
        )
        if not plate:
            keep.append(b)
    out: list[ScaleBar] = []
    for b in sorted(keep, key=lambda b: (b.label is None, -b.confidence)):
        if not any(o.box == b.box for o in out):
            out.append(b)
    return out


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _inside(inner: Box, outer: Box, slack: int = 2) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )


def panel_calibration(
    panel_box: Box, bars: list[ScaleBar], *, caption_length: Length | None = None
) -> tuple[float | None, str | None, ScaleBar | None]:
    """nm per pixel for one panel, where it came from and the bar used.

    Parameters
    ----------
    panel_box
        The panel ``(x0, y0, x1, y1)`` in figure pixels; only bars inside it count.
    bars
        Scale bars found in the figure (:func:`find_scale_bars`).
    caption_length
        The bar length the caption states for this panel ("Scale bars, 2 nm"), if any.

    Returns
    -------
    (nm_per_px, source, bar)
        ``source`` is ``"scale_bar"`` (a bar with a read label), ``"caption"`` (a bar measured
        here, its length from the caption) or None, with ``(None, None, None)``.
        Reciprocal labels (1/nm) do not calibrate a real-space length.
    """
    own = [b for b in bars if _inside(b.box, panel_box) and b.length_px > 0]
    labelled = [b for b in own if b.label is not None and b.label.nm is not None]
    if labelled:
        # Bars that agree on nm/px support each other; a misread label stands alone.
        def rate(b: ScaleBar) -> float:
            assert b.label is not None and b.label.nm is not None
            return b.label.nm / b.length_px

        best: ScaleBar | None = None
        best_key = (-1, -1.0)
        for b in labelled:
            r = rate(b)
            agree = sum(1 for o in labelled if abs(rate(o) - r) <= 0.05 * r)
            key = (agree, b.confidence * (b.label.confidence if b.label else 0.0))
            if key > best_key:
                best, best_key = b, key
        assert best is not None
        return rate(best), "scale_bar", best
    if caption_length is not None and caption_length.nm is not None and own:
        bar = max(own, key=lambda b: b.confidence)
        return caption_length.nm / bar.length_px, "caption", bar
    return None, None, None


# --------------------------------------------------------------------------------------------
# Benchmark on transcribed label crops
# --------------------------------------------------------------------------------------------


def evaluate_label_crops(folder: str | Path, *, ocr: Any = None) -> dict[str, Any]:
    """Read every ``N.tif`` label crop in ``folder`` and compare with its ``N.gt.txt``.

    A crop counts as correct when the value agrees within 1e-6 (relative) and the unit is the
    same after normalisation; a transcription without a length ("b1") expects no reading.

    Returns
    -------
    dict
        ``n``, ``correct``, ``accuracy``, ``seconds`` (reading only) and ``failures``: a list of
        ``{"file", "truth", "read", "value", "unit"}``.
    """
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise UnreadableFile("not a folder of label crops", path=root)
    eng = ocr if ocr is not None else ocr_engine()
    n = correct = 0
    seconds = 0.0
    failures: list[dict[str, Any]] = []
    for img_path in sorted(root.glob("*.tif")):
        gt_path = img_path.with_suffix(".gt.txt")
        if not gt_path.is_file():
            continue
        truth = gt_path.read_text(encoding="utf-8").strip()
        want = parse_length(truth)
        with Image.open(img_path) as im:
            crop = np.asarray(im.convert("RGB"))
        t0 = time.perf_counter()
        got = read_scale_label(crop, ocr=eng)
        seconds += time.perf_counter() - t0
        n += 1
        if want is None:
            ok = got is None
        else:
            ok = (
                got is not None
                and got.unit == want.unit
                and abs(got.value - want.value) <= 1e-6 * max(abs(want.value), 1e-12)
            )
        if ok:
            correct += 1
        else:
            failures.append(
                {
                    "file": img_path.name,
                    "truth": truth,
                    "read": None if got is None else got.text,
                    "value": None if got is None else got.value,
                    "unit": None if got is None else got.unit,
                }
            )
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "seconds": seconds,
        "failures": failures,
    }
