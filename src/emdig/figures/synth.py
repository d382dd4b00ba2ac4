"""Synthetic compound figures with exact ground truth, for testing panel splitting and labels.

A figure is a page-like layout of panels (a grid, rows of unequal panels, or a guillotine
partition like most journal figures), each panel a micrograph-like texture (noise, particles,
a lattice), a line plot drawn with Pillow, or whatever a caller's ``panel_fill`` draws. Each
panel gets a letter in reading order, in one of the usual styles ("a", "A", "(a)", "a)"), bold
or regular, black in the gutter or white (or black) over the image. Options make panels touch
(no gutter), add insets inside micrographs, and group two images under one letter.

The truth is known by construction: each panel's box is the tight box of the pixels drawn for
it, each label's box the tight box of its glyphs.

Examples
--------
>>> import numpy as np
>>> fig, truth = make_compound_figure(np.random.default_rng(0), n_panels=4, layout="grid")
>>> fig.dtype, len(truth.panels), truth.labels
(dtype('uint8'), 4, ['a', 'b', 'c', 'd'])
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from emdig.figures.panels import reading_order
from emdig.figures.records import Box

__all__ = [
    "LABEL_STYLES",
    "LAYOUTS",
    "CompoundTruth",
    "PanelFill",
    "format_label",
    "make_compound_figure",
    "micrograph_texture",
    "plot_panel",
]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: A function that draws a panel's content: (rng, height, width) -> RGB uint8 (height, width, 3).
PanelFill = Callable[[np.random.Generator, int, int], np.ndarray]

#: Label styles: how the letter for panel "a" is printed.
LABEL_STYLES: tuple[str, ...] = ("a", "A", "(a)", "a)")
#: Layouts: equal grid, rows of unequal panels, nested (guillotine) cuts.
LAYOUTS: tuple[str, ...] = ("grid", "rows", "guillotine")

_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
)
_FONT_FILES = {
    False: ("DejaVuSans.ttf", "LiberationSans-Regular.ttf"),
    True: ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf"),
}


@dataclass(slots=True)
class CompoundTruth:
    """What was drawn. Boxes are ``(x0, y0, x1, y1)``, exclusive ends, in figure pixels.

    ``panels`` are in reading order, ``labels[i]`` is panel i's letter (lower case) or None,
    ``label_boxes[i]`` the tight box of its printed label (with any parentheses).
    ``insets[j]`` lies inside ``panels[inset_parent[j]]``. ``kinds[i]`` is ``"micrograph"``,
    ``"plot"`` or ``"fill"``; ``parts[i]`` are the separate images of a grouped panel.
    """

    panels: list[Box]
    labels: list[str | None]
    label_boxes: list[Box | None]
    kinds: list[str]
    insets: list[Box] = field(default_factory=list)
    inset_parent: list[int] = field(default_factory=list)
    parts: list[list[Box]] = field(default_factory=list)
    label_style: str = "a"
    label_inside: bool = False
    touching: bool = False


def format_label(letter: str, style: str) -> str:
    """Print a lower-case letter in a label style: ``format_label("b", "(a)") == "(b)"``."""
    if style == "a":
        return letter
    if style == "A":
        return letter.upper()
    if style == "(a)":
        return f"({letter})"
    if style == "a)":
        return f"{letter})"
    raise ValueError(f"label_style must be one of {LABEL_STYLES} or 'random', not {style!r}")


@lru_cache(maxsize=64)
def _font(size: int, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for d in _FONT_DIRS:
        for name in _FONT_FILES[bold]:
            p = d / name
            if p.is_file():
                return ImageFont.truetype(str(p), size)
    return ImageFont.load_default(size=size)


def _has_bold_font() -> bool:
    return any((d / n).is_file() for d in _FONT_DIRS for n in _FONT_FILES[True])


# ----------------------------------------------------------------------------- panel content


def micrograph_texture(rng: np.random.Generator, h: int, w: int, *, kind: str | None = None) -> U8:
    """A micrograph-like grey texture, RGB (h, w, 3) uint8.

    ``kind`` is ``"noise"`` (smooth random field with grain), ``"blobs"`` (particles on a
    background), ``"lattice"`` (crossed fringes, as in HRTEM) or None for a random one. A few
    textures are tinted (EDX maps, false colour).
    """
    kind = kind or str(rng.choice(["noise", "blobs", "lattice"]))
    if kind == "noise":
        sigma = float(rng.uniform(2, 12))
        f = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma)
        f /= float(f.std()) + 1e-6
        f += 0.4 * rng.standard_normal((h, w)).astype(np.float32)
    elif kind == "blobs":
        f = 0.3 * rng.standard_normal((h, w)).astype(np.float32)
        n = int(rng.integers(5, 40))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        for _ in range(n):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = float(rng.uniform(2, max(3.0, min(h, w) / 10)))
            f += sign * 3.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        f = ndimage.gaussian_filter(f, 0.8)
    elif kind == "lattice":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        f = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 3))):
            th = rng.uniform(0, np.pi)
            period = rng.uniform(5, 18)
            f += np.cos(
                2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period + rng.uniform(0, 6)
            )
        f += 0.5 * rng.standard_normal((h, w)).astype(np.float32)
        f = ndimage.gaussian_filter(f, 0.7)
    else:
        raise ValueError(f"kind must be 'noise', 'blobs' or 'lattice', not {kind!r}")
    lo, hi = np.percentile(f, [1, 99])
    mean = rng.uniform(50, 170)
    spread = rng.uniform(60, 150)
    g = np.clip(mean + spread * ((f - lo) / max(float(hi - lo), 1e-6) - 0.5), 0, 255)
    if rng.random() < 0.15:
        tint = rng.uniform(0.2, 1.0, size=3).astype(np.float32)
        tint[int(rng.integers(0, 3))] = 1.0
        rgb = g[:, :, None] * tint[None, None, :]
    else:
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    return rgb.astype(np.uint8)


def _fft_inset(rng: np.random.Generator, h: int, w: int) -> U8:
    """A dark diffraction-like pattern: spots on a black background."""
    f = np.full((h, w), 10.0, np.float32) + 6 * rng.standard_normal((h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2, w / 2
    a = rng.uniform(0.15, 0.3) * min(h, w)
    th = rng.uniform(0, np.pi)
    for i in range(-2, 3):
        for j in range(-2, 3):
            py = cy + a * (i * np.sin(th) + 0.6 * j * np.cos(th))
            px = cx + a * (i * np.cos(th) - 0.6 * j * np.sin(th))
            f += 220 * np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / 3.0)
    g = np.clip(f, 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


_PLOT_COLOURS = ((0, 0, 0), (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14))


def _bbox(
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str, stroke: int = 0
) -> tuple[int, int, int, int]:
    """The text's bounding box in whole pixels."""
    b = font.getbbox(text, stroke_width=stroke)
    return (int(b[0]), int(b[1]), int(b[2]), int(b[3]))


def _text_image(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> Image.Image:
    """A text rendered black on white into its own small image (for rotating)."""
    box = _bbox(font, text)
    im = Image.new("L", (box[2] - box[0] + 2, box[3] - box[1] + 2), 255)
    ImageDraw.Draw(im).text((1 - box[0], 1 - box[1]), text, fill=0, font=font)
    return im


def plot_panel(rng: np.random.Generator, h: int, w: int, *, top: int = 0) -> U8:
    """A line plot drawn with Pillow: axes (a box or two spines), ticks, numbers, curves and axis
    titles on white, RGB (h, w, 3) uint8. The drawing leaves no margin on its left, and ``top``
    blank rows at its top (room for a label)."""
    im = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    fs = int(np.clip(min(h, w) * rng.uniform(0.05, 0.08), 7, 16))
    font = _font(fs, False)
    ytitle = _text_image(str(rng.choice(["Intensity (a.u.)", "Counts", "Current (mA)"])), font)
    ytitle = ytitle.rotate(90, expand=True)
    nt = int(rng.integers(3, 6))
    xstep = int(rng.choice([1, 2, 5, 10]))
    ylabels = [f"{i * 0.5:.1f}" for i in range(nt)]
    tick_w = max(font.getbbox(t)[2] for t in ylabels)
    # the axis title sits close to the tick numbers, as plotting programs put it
    left = ytitle.width + 3 + tick_w + 3
    bottom = 2 * fs + 8
    x0, y0, x1, y1 = left, 2 + top, w - 3 - fs, h - bottom
    if x1 - x0 < 30 or y1 - y0 < 30:
        d.rectangle([0, 0, w - 1, h - 1], outline=(0, 0, 0))
        return np.asarray(im)
    im.paste(ytitle, (0, max(0, (y0 + y1 - ytitle.height) // 2)))
    boxed = rng.random() < 0.6
    if boxed:
        d.rectangle([x0, y0, x1, y1], outline=(0, 0, 0), width=1)
    else:
        d.line([(x0, y0), (x0, y1), (x1, y1)], fill=(0, 0, 0), width=1)
    for i in range(nt):
        tx = x0 + (x1 - x0) * i // (nt - 1)
        d.line([(tx, y1), (tx, y1 - 4)], fill=(0, 0, 0))
        lab = str(i * xstep)
        tw = font.getbbox(lab)[2]
        d.text((tx - tw // 2, y1 + 3), lab, fill=(0, 0, 0), font=font)
        ty = y1 - (y1 - y0) * i // (nt - 1)
        d.line([(x0, ty), (x0 + 4, ty)], fill=(0, 0, 0))
        tw = font.getbbox(ylabels[i])[2]
        d.text((x0 - tw - 3, ty - fs // 2), ylabels[i], fill=(0, 0, 0), font=font)
    xtitle = str(rng.choice(["Energy loss (eV)", "Distance (nm)", "Time (s)", "Potential (V)"]))
    tw = font.getbbox(xtitle)[2]
    d.text(((x0 + x1 - tw) // 2, y1 + fs + 5), xtitle, fill=(0, 0, 0), font=font)
    xs = np.linspace(x0 + 2, x1 - 2, 80)
    for k in range(int(rng.integers(1, 4))):
        fr = rng.uniform(1, 4)
        ph = rng.uniform(0, 6)
        amp = rng.uniform(0.15, 0.35)
        off = rng.uniform(0.3, 0.7)
        t = (xs - x0) / max(1, x1 - x0)
        ys = off + amp * np.sin(2 * np.pi * fr * t + ph) + 0.03 * rng.standard_normal(xs.size)
        ys = y1 - np.clip(ys, 0.02, 0.98) * (y1 - y0)
        colour = _PLOT_COLOURS[k % len(_PLOT_COLOURS)]
        d.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=1)
    return np.asarray(im)


def _tight_box(rgb: U8, threshold: int = 40) -> Box | None:
    """Tight box of the pixels that differ from white by more than ``threshold``."""
    ink = (255 - rgb.astype(np.int16)).max(axis=2) > threshold
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


# ----------------------------------------------------------------------------- layouts


def _grid(
    rng: np.random.Generator, n: int, w: int, h: int
) -> list[tuple[float, float, float, float]]:
    cols = int(rng.choice([c for c in (2, 3, 4) if c <= n] or [1]))
    rows = math.ceil(n / cols)
    cells = []
    for i in range(n):
        r, c = divmod(i, cols)
        cells.append((c / cols, r / rows, (c + 1) / cols, (r + 1) / rows))
    return [(a * w, b * h, c * w, d * h) for a, b, c, d in cells]


def _rows(
    rng: np.random.Generator, n: int, w: int, h: int
) -> list[tuple[float, float, float, float]]:
    counts: list[int] = []
    left = n
    while left > 0:
        k = int(rng.integers(1, min(4, left) + 1))
        counts.append(k)
        left -= k
    heights = rng.uniform(0.7, 1.3, size=len(counts))
    heights /= heights.sum()
    cells = []
    y = 0.0
    for k, rh in zip(counts, heights, strict=True):
        widths = rng.uniform(0.6, 1.4, size=k)
        widths /= widths.sum()
        x = 0.0
        for cw in widths:
            cells.append((x * w, y * h, (x + cw) * w, (y + rh) * h))
            x += cw
        y += rh
    return cells


def _guillotine(
    rng: np.random.Generator, n: int, w: int, h: int
) -> list[tuple[float, float, float, float]]:
    cells = [(0.0, 0.0, float(w), float(h))]
    while len(cells) < n:
        # cut the largest cell across its longer side
        i = max(
            range(len(cells)),
            key=lambda k: (cells[k][2] - cells[k][0]) * (cells[k][3] - cells[k][1]),
        )
        x0, y0, x1, y1 = cells.pop(i)
        t = rng.uniform(0.35, 0.65)
        if (x1 - x0) >= (y1 - y0):
            xm = x0 + t * (x1 - x0)
            cells[i:i] = [(x0, y0, xm, y1), (xm, y0, x1, y1)]
        else:
            ym = y0 + t * (y1 - y0)
            cells[i:i] = [(x0, y0, x1, ym), (x0, ym, x1, y1)]
    return cells


# ----------------------------------------------------------------------------- the figure


def _draw_label(
    canvas: Image.Image,
    text: str,
    xy: tuple[int, int],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    colour: tuple[int, int, int],
    stroke: int,
) -> Box:
    """Draw text with its ink's top-left at ``xy``; return the ink's tight box."""
    bb = _bbox(font, text, stroke)
    tw, th = bb[2] - bb[0], bb[3] - bb[1]
    patch = Image.new("L", (tw + 4, th + 4), 0)
    ImageDraw.Draw(patch).text(
        (2 - bb[0], 2 - bb[1]), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255
    )
    alpha = np.asarray(patch)
    ys, xs = np.nonzero(alpha > 100)
    if ys.size == 0:
        return (xy[0], xy[1], xy[0] + 1, xy[1] + 1)
    oy, ox = int(ys.min()), int(xs.min())
    px, py = xy[0] - ox, xy[1] - oy
    canvas.paste(Image.new("RGB", patch.size, colour), (px, py), patch)
    return (px + ox, py + oy, px + int(xs.max()) + 1, py + int(ys.max()) + 1)


def _label_size(
    text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, stroke: int
) -> tuple[int, int]:
    bb = _bbox(font, text, stroke)
    return bb[2] - bb[0], bb[3] - bb[1]


def make_compound_figure(
    rng: np.random.Generator,
    *,
    n_panels: int | None = None,
    layout: str = "random",
    touching: bool = False,
    insets: bool = False,
    label_style: str = "random",
    label_inside: bool | None = None,
    bold: bool | None = None,
    grouped: bool = False,
    plots: float = 0.35,
    width: int | None = None,
    jpeg_quality: int | None = 85,
    panel_fill: PanelFill | None = None,
) -> tuple[U8, CompoundTruth]:
    """Draw a compound figure and return it with its truth.

    Parameters
    ----------
    rng
        The random generator (the figure is a pure function of its state and the options).
    n_panels
        Number of panels (random 2-9 when None).
    layout
        ``"grid"``, ``"rows"``, ``"guillotine"`` or ``"random"``.
    touching
        No gutters: panels are images that touch. Labels are then drawn over the images.
    insets
        Put an inset (a diffraction pattern or a zoomed texture, some with a white frame) in a
        corner of some micrographs.
    label_style
        One of ``"a"``, ``"A"``, ``"(a)"``, ``"a)"`` or ``"random"``.
    label_inside
        Draw labels over the panel (white on dark images, black on light) rather than in the
        gutter; random when None (always inside when ``touching``).
    bold
        Bold labels; random when None.
    grouped
        One panel (when there are at least three) is two images side by side under one letter,
        like an image with its elemental maps.
    plots
        Fraction of panels that are line plots rather than micrographs.
    width
        Figure width in pixels (random 520-900 when None).
    jpeg_quality
        Pass the figure through JPEG at this quality, as journals publish them (None: no).
    panel_fill
        ``fill(rng, h, w) -> RGB uint8 (h, w, 3)`` draws every panel instead of the built-in
        textures and plots.

    Returns
    -------
    figure, truth
        The figure, RGB ``uint8`` (H, W, 3), and a :class:`CompoundTruth`.
    """
    n = int(n_panels) if n_panels is not None else int(rng.integers(2, 10))
    if n < 1:
        raise ValueError(f"n_panels must be at least 1, not {n}")
    if layout == "random":
        layout = str(rng.choice(LAYOUTS))
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or 'random', not {layout!r}")
    style = str(rng.choice(LABEL_STYLES)) if label_style == "random" else label_style
    format_label("a", style)  # validates
    fig_w = int(width) if width is not None else int(rng.integers(520, 900))
    cols_hint = max(1, round(math.sqrt(n)))
    fig_h = int(fig_w * rng.uniform(0.55, 1.1) * math.ceil(n / cols_hint) / cols_hint)
    fig_h = int(np.clip(fig_h, 160, 1.3 * fig_w))
    inside = (
        True if touching else (bool(rng.random() < 0.3) if label_inside is None else label_inside)
    )
    is_bold = bool(rng.random() < 0.7) if bold is None else bold
    real_bold = is_bold and _has_bold_font()
    stroke = 1 if is_bold and not real_bold else 0
    font_px = int(np.clip(fig_w * rng.uniform(0.017, 0.03), 10, 26))
    font = _font(font_px, real_bold)
    lw, lh = _label_size(format_label("m", style), font, stroke)

    gutter = 0 if touching else int(rng.integers(max(4, fig_w // 100), max(6, fig_w // 35)))
    margin = 0 if touching else int(rng.integers(0, 6))
    place = str(rng.choice(["left", "above"]))
    # room for labels printed in the gutter
    pad_x = lw + 4 if (not inside and place == "left") else 0
    pad_y = lh + 4 if (not inside and place == "above") else 0

    maker = {"grid": _grid, "rows": _rows, "guillotine": _guillotine}[layout]
    cells = maker(rng, n, fig_w - 2 * margin, fig_h - 2 * margin)
    canvas = np.full((fig_h, fig_w, 3), 255, np.uint8)

    content: list[Box] = []
    kinds: list[str] = []
    inset_boxes: list[Box] = []
    inset_of: list[int] = []
    parts: list[list[Box]] = []
    group_at = int(rng.integers(0, n)) if grouped and n >= 3 else -1
    for i, (cx0, cy0, cx1, cy1) in enumerate(cells):
        # each cell loses half a gutter on inner sides; the content then leaves room for a label
        x0 = round(cx0) + margin + (gutter // 2 if cx0 > 0.5 else 0) + pad_x
        y0 = round(cy0) + margin + (gutter // 2 if cy0 > 0.5 else 0) + pad_y
        x1 = round(cx1) + margin - ((gutter + 1) // 2 if cx1 < fig_w - 2 * margin - 0.5 else 0)
        y1 = round(cy1) + margin - ((gutter + 1) // 2 if cy1 < fig_h - 2 * margin - 0.5 else 0)
        ch, cw = y1 - y0, x1 - x0
        if ch < 24 or cw < 24:
            raise ValueError(f"a {fig_w} px wide figure is too small for {n} panels")
        kind = (
            "fill" if panel_fill is not None else ("plot" if rng.random() < plots else "micrograph")
        )
        if touching and kind == "plot":
            kind = "micrograph"  # plots have white margins: touching is about images
        if i == group_at and kind != "fill" and cw >= 120:
            kind = "micrograph"
            split = int(cw * rng.uniform(0.55, 0.7))
            sub_gap = max(3, gutter // 2)
            a = micrograph_texture(rng, ch, split)
            b_h = ch if rng.random() < 0.5 else ch // 2 - 2
            b = micrograph_texture(rng, b_h, cw - split - sub_gap)
            canvas[y0:y1, x0 : x0 + split] = a
            canvas[y0 : y0 + b_h, x0 + split + sub_gap : x1] = b
            content.append((x0, y0, x1, y1))
            parts.append([(x0, y0, x0 + split, y1), (x0 + split + sub_gap, y0, x1, y0 + b_h)])
            kinds.append(kind)
            continue
        if kind == "fill":
            assert panel_fill is not None
            arr = np.asarray(panel_fill(rng, ch, cw))
            if arr.shape != (ch, cw, 3):
                raise ValueError(f"panel_fill returned shape {arr.shape}, expected {(ch, cw, 3)}")
            arr = arr.astype(np.uint8)
        elif kind == "plot":
            arr = plot_panel(rng, ch, cw, top=lh + font_px // 2 + 8 if inside else 0)
        else:
            arr = micrograph_texture(rng, ch, cw)
        canvas[y0:y1, x0:x1] = arr
        tb = _tight_box(arr) if kind != "micrograph" else (0, 0, cw, ch)
        if tb is None:
            tb = (0, 0, 1, 1)
        box = (x0 + tb[0], y0 + tb[1], x0 + tb[2], y0 + tb[3])
        content.append(box)
        parts.append([box])
        kinds.append(kind)
        if insets and kind == "micrograph" and min(ch, cw) >= 90 and rng.random() < 0.6:
            iw = int(cw * rng.uniform(0.22, 0.35))
            ih = int(ch * rng.uniform(0.22, 0.35))
            right = bool(rng.random() < 0.6)
            off = int(rng.integers(0, 6))
            ix0 = x1 - iw - off if right else x0 + off
            iy0 = y0 + off if rng.random() < 0.7 else y1 - ih - off
            if not right and inside:
                iy0 = y1 - ih - off  # keep the top-left corner for the label
            patch = (
                _fft_inset(rng, ih, iw) if rng.random() < 0.5 else micrograph_texture(rng, ih, iw)
            )
            canvas[iy0 : iy0 + ih, ix0 : ix0 + iw] = patch
            if rng.random() < 0.5:
                canvas[iy0 : iy0 + ih, ix0 : ix0 + iw][[0, 1, -2, -1], :] = 255
                canvas[iy0 : iy0 + ih, ix0 : ix0 + iw][:, [0, 1, -2, -1]] = 255
            inset_boxes.append((ix0, iy0, ix0 + iw, iy0 + ih))
            inset_of.append(i)

    order = reading_order(content)
    letters = [chr(ord("a") + k) if k < 26 else None for k in range(n)]
    pil = Image.fromarray(canvas)
    label_boxes: list[Box | None] = [None] * n
    labels: list[str | None] = [None] * n
    for rank, i in enumerate(order):
        letter = letters[rank]
        if letter is None:
            continue
        text = format_label(letter, style)
        x0, y0, x1, y1 = content[i]
        if inside:
            off = max(3, font_px // 3)
            patch = canvas[y0 : y0 + lh + 2 * off, x0 : x0 + lw + 2 * off].astype(np.float32)
            dark = float(patch.mean()) < 128
            colour = (255, 255, 255) if dark else (0, 0, 0)
            lb = _draw_label(pil, text, (x0 + off, y0 + off), font, colour, stroke)
        elif place == "left":
            lb = _draw_label(pil, text, (x0 - pad_x, y0), font, (0, 0, 0), stroke)
        else:
            lb = _draw_label(pil, text, (x0, y0 - pad_y), font, (0, 0, 0), stroke)
        label_boxes[i] = lb
        labels[i] = letter
    if jpeg_quality is not None:
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        with Image.open(buf) as jp:
            pil = jp.convert("RGB")
    fig = np.asarray(pil).copy()
    # truth in reading order
    truth = CompoundTruth(
        panels=[content[i] for i in order],
        labels=[labels[i] for i in order],
        label_boxes=[label_boxes[i] for i in order],
        kinds=[kinds[i] for i in order],
        insets=inset_boxes,
        inset_parent=[order.index(p) for p in inset_of],
        parts=[parts[i] for i in order],
        label_style=style,
        label_inside=inside,
        touching=touching,
    )
    return fig, truth
