"""Synthetic figure panels of every class in :data:`~emdig.figures.records.PANEL_CLASSES`.

They train and test the panel classifier (:mod:`emdig.figures.classify`) without any external
data. Each generator draws what a reader of a materials-science article would see in a panel of
that class:

- ``"graph"``: line, scatter, bar and histogram plots, stacked spectra, XRD patterns with
  reference sticks, line profiles, heat-maps with a colour bar; axes, ticks, tick labels, axis
  titles, legends, annotations, one or two sub-plots.
- ``"illustration"``: schematics with shaded spheres, ball-and-stick molecules, crystal models,
  layered slabs, flow diagrams with boxes and arrows, skeletal formulas, beakers, text.
- ``"diffraction"``: SAED spot patterns of a random 2-D reciprocal lattice (central beam, diffuse
  halo, beam stop), ring and spotty-ring patterns, amorphous halos, FFTs of lattice images, CBED
  disks; a dark background and varied contrast, gamma, blur and noise.
- ``"microscopy"``: HRTEM lattices in grains, HAADF-STEM atomic columns, TEM particles on
  carbon, HAADF particles, SEM topography (with an information strip), bright-field grains,
  fibres, vesicles, EDS and fluorescence maps, false-colour and AFM-like height maps.
- ``"photo"``: a table top with shaded vials, discs and films under soft light and shadows,
  landscapes, macro textures and bokeh, with vignetting, lens blur and camera noise.
- ``"unclear"``: blank or near-uniform crops, tables and paragraphs of text, mixtures of two
  classes, crops that are mostly margin, and heavily degraded panels.

Every panel gets the dressing of a real figure: panel letters, scale bars and their labels,
arrows, dashed boxes, insets, white margins, resampling and JPEG compression.

Everything is drawn with numpy, OpenCV and Pillow (fonts: the DejaVu files that ship with
matplotlib). A panel of about 250 x 250 px takes a few milliseconds.

Examples
--------
>>> import numpy as np
>>> from emdig.figures.synth_panels import make_panel
>>> make_panel("diffraction", np.random.default_rng(0), size=(128, 160)).shape
(128, 160, 3)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .records import PANEL_CLASSES

__all__ = ["GENERATORS", "make_panel", "make_panels"]

Rng = np.random.Generator
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]

# ---------------------------------------------------------------------------------------------
# shared helpers

_FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "italic": "DejaVuSans-Oblique.ttf",
    "serif": "DejaVuSerif.ttf",
    "serifbold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
    "stix": "STIXGeneral.ttf",
}


@functools.lru_cache(maxsize=512)
def _font(size: int, style: str = "sans") -> Font:
    size = max(4, int(size))
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _FONT_FILES[style]
        return ImageFont.truetype(str(path), size)
    except (OSError, ImportError):  # matplotlib's fonts missing: Pillow's own scalable font
        return ImageFont.load_default(size=size)


def _rand_font(rng: Rng, size: float) -> Font:
    styles = ("sans", "sans", "sans", "bold", "italic", "serif", "stix")
    return _font(int(size), styles[int(rng.integers(len(styles)))])


_QUANTITIES = (
    "Intensity",
    "Energy",
    "Potential",
    "Time",
    "Current density",
    "Voltage",
    "Counts",
    "Size",
    "Distance",
    "Temperature",
    "Pressure",
    "Frequency",
    "Wavelength",
    "Absorbance",
    "Binding energy",
    "Raman shift",
    "Capacity",
    "Cycle number",
    "Strain",
    "Stress",
    "Conductivity",
    "Density",
    "Energy loss",
    "Mass",
    "Weight loss",
    "Magnetization",
    "Field",
    "Transmittance",
    "Efficiency",
    "Yield",
    "Concentration",
    "Diameter",
    "Thickness",
    "Power density",
    "Relative current",
    "Heat flow",
    "Adsorbed volume",
    "Specific capacity",
    "Coulombic efficiency",
    "Z'",
    "-Z''",
    "dV/dQ",
    "Normalized intensity",
    "Frequency (%)",
)
_UNITS = (
    "(a.u.)",
    "(nm)",
    "(eV)",
    "(V)",
    "(mA cm⁻²)",
    "(s)",
    "(h)",
    "(°C)",
    "(K)",
    "(%)",
    "(cm⁻¹)",
    "(MPa)",
    "(S cm⁻¹)",
    "(mAh g⁻¹)",
    "(Å)",
    "(degree)",
    "(V vs. RHE)",
    "(kOe)",
    "(Ω)",
    "(µm)",
    "(mW cm⁻²)",
    "(ppm)",
    "",
)
_SPECIES = (
    "Pt/C",
    "Ag",
    "Au",
    "TiO₂",
    "MoS₂",
    "SMNp",
    "BM",
    "PM",
    "ZnO",
    "Fe₃O₄",
    "Cu",
    "Ni",
    "Co",
    "Mn",
    "O K",
    "C K",
    "N-doped",
    "pristine",
    "sample A",
    "S1",
    "S2",
    "S3",
    "as-grown",
    "annealed",
    "500 °C",
    "700 °C",
    "1st",
    "2nd",
    "10th",
    "Exp.",
    "Fit",
    "Sim.",
    "ref.",
    "GO",
    "rGO",
    "CNT",
    "Pd",
    "LiFePO₄",
    "NMC811",
    "x = 0.1",
    "x = 0.3",
    "bulk",
    "film",
    "Air electrode",
    "Control",
)
_SYLLABLES = (
    "ca",
    "ta",
    "ni",
    "ox",
    "po",
    "ly",
    "me",
    "ra",
    "si",
    "de",
    "an",
    "tr",
    "io",
    "el",
    "ur",
    "ph",
    "on",
    "ic",
    "st",
    "al",
    "er",
    "ne",
    "mo",
    "gr",
    "ba",
    "ti",
    "co",
    "re",
    "pro",
    "nano",
    "par",
    "ti",
    "cle",
    "sur",
    "fa",
    "ce",
    "cry",
    "stal",
    "la",
    "yer",
)


def _word(rng: Rng) -> str:
    n = int(rng.integers(1, 4))
    w = "".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n))
    return w.capitalize() if rng.random() < 0.3 else w


def _phrase(rng: Rng, n_max: int = 3) -> str:
    r = rng.random()
    if r < 0.35:
        return str(_SPECIES[int(rng.integers(len(_SPECIES)))])
    if r < 0.55:
        return str(_QUANTITIES[int(rng.integers(len(_QUANTITIES)))])
    return " ".join(_word(rng) for _ in range(int(rng.integers(1, n_max + 1))))


def _pick(rng: Rng, seq: Sequence[RGB]) -> RGB:
    return seq[int(rng.integers(len(seq)))]


_PLOT_COLOURS: tuple[RGB, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (0, 0, 255),
    (255, 0, 0),
    (0, 128, 0),
    (255, 0, 255),
    (0, 150, 150),
    (230, 150, 0),
    (90, 90, 90),
)

_COLORMAPS: dict[str, tuple[RGB, ...]] = {
    "gray": ((0, 0, 0), (255, 255, 255)),
    "viridis": ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)),
    "inferno": ((0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)),
    "jet": ((0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (128, 0, 0)),
    "hot": ((10, 0, 0), (230, 0, 0), (255, 210, 0), (255, 255, 255)),
    "afmhot": ((0, 0, 0), (128, 0, 0), (255, 128, 0), (255, 255, 128), (255, 255, 255)),
    "coolwarm": ((59, 76, 192), (221, 221, 221), (180, 4, 38)),
    "green": ((0, 0, 0), (0, 255, 60)),
    "red": ((0, 0, 0), (255, 30, 30)),
    "blue": ((0, 0, 0), (40, 120, 255)),
    "magenta": ((0, 0, 0), (230, 40, 230)),
    "cyan": ((0, 0, 0), (0, 230, 230)),
    "yellow": ((0, 0, 0), (255, 230, 0)),
}


@functools.lru_cache(maxsize=32)
def _lut(name: str) -> np.ndarray:
    anchors = np.array(_COLORMAPS[name], np.float32)
    t = np.linspace(0, 1, 256)
    pos = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], -1).astype(np.uint8)


def _apply_cmap(g: np.ndarray, name: str) -> np.ndarray:
    """``g`` in [0, 1], shape (H, W) -> RGB uint8 (H, W, 3)."""
    idx = np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8)
    return _lut(name)[idx]


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _grey_rgb(g: np.ndarray) -> np.ndarray:
    u = _to_u8(g)
    return np.repeat(u[:, :, None], 3, axis=2)


def _stretch(a: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    p0, p1 = np.percentile(a, (lo, hi))
    return np.clip((a - p0) / max(float(p1 - p0), 1e-6), 0, 1).astype(np.float32)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.2:
        return a
    return cv2.GaussianBlur(a, (0, 0), float(sigma))


def _smooth_noise(rng: Rng, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation."""
    n = rng.standard_normal(shape).astype(np.float32)
    n = _blur(n, sigma)
    return (n - n.mean()) / (n.std() + 1e-6)


def _fractal(rng: Rng, shape: tuple[int, int], beta: float = 2.0) -> np.ndarray:
    """1/f^beta noise (power spectrum), zero mean, unit standard deviation."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))
    spec /= f ** (beta / 2)
    spec[0, 0] = 0
    out = np.fft.irfft2(spec, s=shape).astype(np.float32)
    return (out - out.mean()) / (out.std() + 1e-6)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _voronoi(rng: Rng, h: int, w: int, k: int) -> np.ndarray:
    """Label map (H, W) of ``k`` random Voronoi cells, computed at low resolution."""
    s = max(1, min(h, w) // 64)
    hh, ww = max(1, h // s), max(1, w // s)
    pts = rng.random((k, 2)) * (hh, ww)
    yy, xx = _grid(hh, ww)
    # a little warping makes the cell boundaries less straight, like real grain boundaries
    yy = yy + 2.0 * _smooth_noise(rng, (hh, ww), 4)
    xx = xx + 2.0 * _smooth_noise(rng, (hh, ww), 4)
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    lab = d.argmin(-1).astype(np.uint8)
    return cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)


def _splat(h: int, w: int, ys: np.ndarray, xs: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Bilinear deposit of point intensities on an (H, W) float image."""
    out = np.zeros((h + 1, w + 1), np.float32)
    ok = (ys >= 0) & (ys < h - 1) & (xs >= 0) & (xs < w - 1)
    ys, xs, vals = ys[ok], xs[ok], vals[ok]
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    np.add.at(out, (y0, x0), vals * (1 - fy) * (1 - fx))
    np.add.at(out, (y0 + 1, x0), vals * fy * (1 - fx))
    np.add.at(out, (y0, x0 + 1), vals * (1 - fy) * fx)
    np.add.at(out, (y0 + 1, x0 + 1), vals * fy * fx)
    return out[:h, :w]


def _lattice_points(
    h: int, w: int, a1: np.ndarray, a2: np.ndarray, origin: np.ndarray, margin: float
) -> np.ndarray:
    """All points ``origin + m a1 + n a2`` (as (N, 2) x, y) inside the image plus ``margin``."""
    m = np.array([a1, a2]).T
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) - origin
    frac = np.linalg.solve(m, corners.T).T
    lo = np.floor(frac.min(0)) - 1
    hi = np.ceil(frac.max(0)) + 1
    mm, nn = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
    pts = origin + mm.reshape(-1, 1) * a1 + nn.reshape(-1, 1) * a2
    ok = (
        (pts[:, 0] > -margin)
        & (pts[:, 0] < w + margin)
        & (pts[:, 1] > -margin)
        & (pts[:, 1] < h + margin)
    )
    return np.asarray(pts[ok])


def _random_basis(rng: Rng, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Two lattice vectors of length about ``a`` px: square, hexagonal, rectangular or oblique."""
    theta = rng.uniform(0, np.pi)
    kind = rng.integers(4)
    gamma = (np.pi / 2, np.pi / 3, np.pi / 2, rng.uniform(np.pi / 3, np.pi / 2))[kind]
    ratio = 1.0 if kind < 2 else rng.uniform(1.1, 1.8)
    a1 = a * np.array([np.cos(theta), np.sin(theta)])
    a2 = a * ratio * np.array([np.cos(theta + gamma), np.sin(theta + gamma)])
    return a1, a2


def _paste_rgba(img: Image.Image, patch: np.ndarray, x: float, y: float) -> None:
    """Alpha-composite an (h, w, 4) float patch in [0, 1] onto ``img`` at (x, y)."""
    p = Image.fromarray(_to_u8(patch), "RGBA")
    img.paste(p, (int(x), int(y)), p)


def _sphere(r: int, colour: RGB, rng: Rng, *, gloss: float = 0.6) -> np.ndarray:
    """A shaded sphere with a specular highlight: (2r, 2r, 4) float RGBA in [0, 1]."""
    r = max(2, int(r))
    yy, xx = _grid(2 * r, 2 * r)
    x = (xx + 0.5 - r) / r
    y = (yy + 0.5 - r) / r
    rr = x**2 + y**2
    z = np.sqrt(np.clip(1 - rr, 0, 1))
    lx, ly, lz = -0.45, -0.55, 0.7
    diff = np.clip(x * lx + y * ly + z * lz, 0, 1)
    spec = np.clip(2 * diff * z - lz, 0, 1) ** 18 * gloss
    base = np.array(colour, np.float32) / 255
    rgb = base * (0.25 + 0.8 * diff[..., None]) + spec[..., None]
    alpha = np.clip((1 - np.sqrt(rr)) * r, 0, 1)
    return np.concatenate([np.clip(rgb, 0, 1), alpha[..., None]], -1)


def _text_size(draw: ImageDraw.ImageDraw, s: str, font: Font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), s, font=font)
    return int(x1 - x0), int(y1 - y0)


def _rotated_text(img: Image.Image, s: str, font: Font, fill: RGB, cx: int, cy: int) -> None:
    """Draw ``s`` rotated by 90 degrees (reading upwards), centred at (cx, cy)."""
    probe = ImageDraw.Draw(img)
    tw, th = _text_size(probe, s, font)
    layer = Image.new("L", (tw + 4, th + 8), 0)
    ImageDraw.Draw(layer).text((2, 2), s, font=font, fill=255)
    layer = layer.rotate(90, expand=True)
    solid = Image.new("RGB", layer.size, fill)
    img.paste(solid, (int(cx - layer.width / 2), int(cy - layer.height / 2)), layer)


def _arrow(
    draw: ImageDraw.ImageDraw,
    p0: tuple[float, float],
    p1: tuple[float, float],
    colour: RGB,
    width: int,
    head: float,
) -> None:
    draw.line([p0, p1], fill=colour, width=max(1, width))
    ang = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
    pts = [
        p1,
        (p1[0] - head * math.cos(ang - 0.4), p1[1] - head * math.sin(ang - 0.4)),
        (p1[0] - head * math.cos(ang + 0.4), p1[1] - head * math.sin(ang + 0.4)),
    ]
    draw.polygon(pts, fill=colour)


def _dashed_rect(
    draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], colour: RGB, width: int
) -> None:
    x0, y0, x1, y1 = box
    dash = 4 + 2 * width
    for a, b, horizontal, c in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0)):
        _dash_line(draw, a, b, c, horizontal, dash, colour, width)
    _dash_line(draw, y0, y1, x1, False, dash, colour, width)


def _dash_line(
    draw: ImageDraw.ImageDraw,
    a: float,
    b: float,
    c: float,
    horizontal: bool,
    dash: int,
    colour: RGB,
    width: int,
) -> None:
    t = a
    while t < b:
        e = min(b, t + dash)
        if horizontal:
            draw.line([(t, c), (e, c)], fill=colour, width=width)
        else:
            draw.line([(c, t), (c, e)], fill=colour, width=width)
        t += 2 * dash


def _downsample(img: Image.Image, h: int, w: int) -> np.ndarray:
    a = np.asarray(img.convert("RGB"))
    if a.shape[:2] == (h, w):
        return a.copy()
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------
# graphs


def _nice_axis(rng: Rng, n_min: int = 3, n_max: int = 7) -> tuple[float, float, np.ndarray, int]:
    """Axis limits, tick values and the number of decimals of the tick labels."""
    mant = float(rng.choice([1.0, 2.0, 2.5, 5.0]))
    exp = int(rng.choice([-2, -1, -1, 0, 0, 0, 1, 1, 2, 3]))
    step = mant * 10.0**exp
    n = int(rng.integers(n_min, n_max + 1))
    start = 0.0 if rng.random() < 0.5 else step * int(rng.integers(-4, 12))
    ticks = start + step * np.arange(n)
    pad_lo = step * float(rng.choice([0.0, 0.0, rng.uniform(0.1, 0.6)]))
    pad_hi = step * float(rng.choice([0.0, 0.0, rng.uniform(0.1, 0.6)]))
    dec = max(0, -exp + (1 if mant == 2.5 else 0))
    return float(ticks[0] - pad_lo), float(ticks[-1] + pad_hi), ticks, dec


def _tick_label(v: float, dec: int, rng_sep: bool) -> str:
    if abs(v) < 1e-12:
        v = 0.0
    s = f"{v:,.{dec}f}" if rng_sep and abs(v) >= 10000 else f"{v:.{dec}f}"
    return s.replace("-", "−")


def _series(rng: Rng, x: np.ndarray, kind: str) -> np.ndarray:
    """A curve y(x) for x in [0, 1], scaled into [0, 1]."""
    n = x.size
    if kind == "peaks":
        y = 0.05 * rng.random() * x + rng.uniform(0, 0.2) * np.exp(-x * rng.uniform(1, 6))
        for _ in range(int(rng.integers(3, 14))):
            c, wd = rng.random(), rng.uniform(0.002, 0.03)
            y += rng.uniform(0.05, 1) ** 2 * wd**2 / ((x - c) ** 2 + wd**2)
        y += rng.uniform(0, 0.02) * rng.standard_normal(n)
    elif kind == "xrd":
        y = 0.03 * np.exp(-x * 3) + 0.005 * rng.standard_normal(n)
        for _ in range(int(rng.integers(4, 16))):
            c, wd = rng.random(), rng.uniform(0.001, 0.006)
            y += rng.uniform(0.05, 1) ** 3 * np.exp(-0.5 * ((x - c) / wd) ** 2)
    elif kind == "sigmoid":
        c, k = rng.uniform(0.2, 0.8), rng.uniform(5, 40)
        y = 1 / (1 + np.exp(-(x - c) * k)) + rng.uniform(-0.3, 0.3) * x
    elif kind == "decay":
        y = np.exp(-x * rng.uniform(1, 10)) + rng.uniform(0, 0.3) * (1 - x)
    elif kind == "gauss":
        y = np.zeros(n)
        for _ in range(int(rng.integers(1, 4))):
            y += rng.uniform(0.3, 1) * np.exp(
                -0.5 * ((x - rng.random()) / rng.uniform(0.05, 0.3)) ** 2
            )
    elif kind == "poly":
        y = np.polyval(rng.standard_normal(int(rng.integers(2, 5))), x * 2 - 1)
    elif kind == "periodic":
        y = np.sin(2 * np.pi * x * rng.uniform(1, 6) + rng.uniform(0, 6)) * (
            1 + rng.uniform(-0.5, 0.5) * x
        )
        y += 0.1 * rng.standard_normal(n)
    elif kind == "walk":
        y = np.cumsum(rng.standard_normal(n))
        y = _blur(y.astype(np.float32)[None, :], rng.uniform(0, 3))[0]
    else:  # linear with noise
        y = rng.uniform(-1, 1) * x + rng.uniform(0, 0.05) * rng.standard_normal(n)
    y = np.asarray(y, np.float64)
    lo, hi = float(y.min()), float(y.max())
    return (y - lo) / max(hi - lo, 1e-9)


def _marker(
    draw: ImageDraw.ImageDraw, x: float, y: float, r: float, shape: str, colour: RGB, filled: bool
) -> None:
    fill = colour if filled else None
    w = max(1, int(r / 3))
    if shape == "o":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=colour, width=w)
    elif shape == "s":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fill, outline=colour, width=w)
    elif shape == "^":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill, outline=colour)
    else:  # diamond
        draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill, outline=colour)


def _plot(img: Image.Image, rng: Rng, box: tuple[int, int, int, int], fs: int) -> None:
    """One set of axes with data, drawn into ``box`` (x0, y0, x1, y1) of ``img``."""
    draw = ImageDraw.Draw(img)
    bx0, by0, bx1, by1 = box
    fg: RGB = (0, 0, 0) if rng.random() < 0.9 else (60, 60, 60)
    font = _rand_font(rng, fs)
    lw = max(1, int(fs * rng.uniform(0.06, 0.2)))
    kind = str(
        rng.choice(
            ["line", "line", "scatter", "linemark", "bar", "hist", "spectra", "xrd", "profile"]
            + ["heatmap"] * (1 if rng.random() < 0.4 else 0)
        )
    )
    no_ylabels = kind in ("spectra", "xrd") and rng.random() < 0.6
    x0 = bx0 + int(fs * (0.6 if no_ylabels else rng.uniform(2.6, 4.2)))
    y1 = by1 - int(fs * rng.uniform(2.3, 3.2))
    y0 = by0 + int(fs * rng.uniform(0.3, 1.2))
    right_cb = kind == "heatmap"
    x1 = bx1 - int(fs * (rng.uniform(2.5, 3.5) if right_cb else rng.uniform(0.3, 1.5)))
    if x1 - x0 < 3 * fs or y1 - y0 < 3 * fs:
        x0, y0, x1, y1 = bx0 + fs, by0 + fs // 2, bx1 - fs // 2, by1 - fs
    if x1 - x0 < 8 or y1 - y0 < 8:
        return
    # no more ticks than their labels have room for
    xlo, xhi, xt, xdec = _nice_axis(rng, 3, int(np.clip((x1 - x0) / (fs * 3.2), 3, 8)))
    ylo, yhi, yt, ydec = _nice_axis(rng, 3, int(np.clip((y1 - y0) / (fs * 1.6), 3, 8)))
    sep = bool(rng.random() < 0.5)

    def px(v: np.ndarray | float) -> np.ndarray:
        return np.asarray(x0 + (np.asarray(v) - xlo) / (xhi - xlo) * (x1 - x0))

    def py(v: np.ndarray | float) -> np.ndarray:
        return np.asarray(y1 - (np.asarray(v) - ylo) / (yhi - ylo) * (y1 - y0))

    # data
    n_series = int(rng.integers(1, 6))
    colours = list(_PLOT_COLOURS)
    rng.shuffle(colours)
    if rng.random() < 0.25:
        colours = [(0, 0, 0)] * 2 + colours
    names: list[tuple[str, RGB, str]] = []
    if rng.random() < 0.15:  # grid lines
        for v in yt:
            draw.line([(x0, float(py(v))), (x1, float(py(v)))], fill=(220, 220, 220), width=1)
    if kind == "heatmap":
        hh, ww = y1 - y0, x1 - x0
        field = _stretch(_blur(_fractal(rng, (hh, ww), rng.uniform(2.5, 4)), 1))
        cmap = str(rng.choice(["viridis", "jet", "inferno", "coolwarm", "hot"]))
        img.paste(Image.fromarray(_apply_cmap(field, cmap)), (x0, y0))
        cbx = x1 + int(fs * 0.5)
        bar = np.linspace(1, 0, y1 - y0)[:, None] * np.ones((1, max(3, fs // 2)))
        img.paste(Image.fromarray(_apply_cmap(bar, cmap)), (cbx, y0))
        for i, t in enumerate(np.linspace(y0, y1, 4)):
            draw.text((cbx + fs * 0.7, t), f"{i * 0.5:.1f}", font=font, fill=fg, anchor="lm")
    elif kind in ("bar", "hist"):
        nb = int(rng.integers(2, 9)) if kind == "bar" else int(rng.integers(8, 30))
        edges = np.linspace(x0 + (x1 - x0) * 0.05, x1 - (x1 - x0) * 0.05, nb + 1)
        if kind == "hist":
            hv = np.exp(-0.5 * ((np.arange(nb) - rng.uniform(0.3, 0.7) * nb) / (nb * 0.18)) ** 2)
            hv = hv * rng.uniform(0.6, 1.0, nb)
        else:
            hv = rng.uniform(0.15, 0.95, nb)
        gap = 0.0 if kind == "hist" else rng.uniform(0.15, 0.5)
        single = rng.random() < 0.6
        grad = rng.random() < 0.3
        for i in range(nb):
            c = colours[0] if (single or kind == "hist") else colours[i % len(colours)]
            bw = edges[i + 1] - edges[i]
            xa, xb = edges[i] + gap * bw / 2, edges[i + 1] - gap * bw / 2
            top = y1 - hv[i] * (y1 - y0) * 0.9
            if grad:
                for xx in range(int(xa), int(xb) + 1):
                    t = (xx - xa) / max(xb - xa, 1)
                    cc = tuple(
                        int(v * (0.55 + 0.45 * (1 - t)) + 255 * 0.45 * (1 - t) * 0.5) for v in c
                    )
                    draw.line([(xx, top), (xx, y1)], fill=cc)
            else:
                edge = fg if rng.random() < 0.5 else c
                draw.rectangle([xa, top, xb, y1], fill=c, outline=edge)
            if kind == "bar" and rng.random() < 0.4:
                err = rng.uniform(0.02, 0.08) * (y1 - y0)
                xm = (xa + xb) / 2
                draw.line([(xm, top - err), (xm, top + err)], fill=fg, width=lw)
                draw.line([(xm - bw / 6, top - err), (xm + bw / 6, top - err)], fill=fg, width=lw)
        if kind == "hist" and rng.random() < 0.6:
            xs = np.linspace(edges[0], edges[-1], 100)
            mu = edges[0] + (edges[-1] - edges[0]) * (np.argmax(hv) + 0.5) / nb
            sd = (edges[-1] - edges[0]) * 0.18
            ys = y1 - hv.max() * (y1 - y0) * 0.9 * np.exp(-0.5 * ((xs - mu) / sd) ** 2)
            draw.line(list(zip(xs, ys, strict=True)), fill=colours[1], width=lw + 1)
    else:
        n_pts = int(rng.integers(40, 400)) if kind not in ("xrd", "spectra") else 600
        x = np.linspace(0, 1, n_pts)
        stacked = kind in ("spectra", "xrd") and rng.random() < 0.6
        curve_kind = {
            "spectra": "peaks",
            "xrd": "xrd",
            "profile": "periodic",
        }.get(kind)
        marker = str(rng.choice(["o", "s", "^", "d"]))
        filled = bool(rng.random() < 0.5)
        for k in range(n_series):
            ck = curve_kind or str(
                rng.choice(["sigmoid", "decay", "gauss", "poly", "walk", "linear", "periodic"])
            )
            yv = _series(rng, x, ck)
            if stacked:
                lo = k / n_series * 0.95
                yv = lo + yv * (0.95 / n_series) * rng.uniform(0.8, 1.6)
            else:
                a = rng.uniform(0.02, 0.4)
                yv = a + yv * rng.uniform(0.3, 0.95 - a)
            yv = np.clip(yv, 0, 1.0)
            xs = x0 + x * (x1 - x0)
            ys = y1 - yv * (y1 - y0)
            c = colours[k % len(colours)]
            if kind in ("line", "linemark", "spectra", "xrd", "profile"):
                draw.line(list(zip(xs, ys, strict=True)), fill=c, width=lw, joint="curve")
            if kind in ("scatter", "linemark"):
                step = max(1, n_pts // int(rng.integers(10, 40)))
                r = fs * rng.uniform(0.15, 0.35)
                for xi, yi in zip(xs[::step], ys[::step], strict=True):
                    _marker(draw, xi, yi, r, marker, c, filled)
            names.append((_phrase(rng, 2), c, marker))
            if stacked and rng.random() < 0.5:
                draw.text(
                    (x1 - fs * 0.3, ys[-1] - fs * 0.4), names[-1][0], font=font, fill=c, anchor="rb"
                )
        if kind == "xrd" and rng.random() < 0.5:  # reference sticks under the patterns
            for _ in range(int(rng.integers(5, 20))):
                xv = x0 + rng.random() * (x1 - x0)
                draw.line(
                    [(xv, y1), (xv, y1 - rng.uniform(0.02, 0.15) * (y1 - y0))], fill=fg, width=lw
                )
    # axes, ticks, labels
    full_box = rng.random() < 0.6
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=fg, width=lw)
    if full_box:
        draw.line([(x0, y0), (x1, y0), (x1, y1)], fill=fg, width=lw)
    tl = fs * rng.uniform(0.25, 0.5) * (1 if rng.random() < 0.5 else -1)
    for v in xt:
        xv = float(px(v))
        if x0 - 1 <= xv <= x1 + 1:
            draw.line([(xv, y1), (xv, y1 - tl)], fill=fg, width=lw)
            draw.text(
                (xv, y1 + max(tl, 0) * -1 + fs * 0.5),
                _tick_label(v, xdec, sep),
                font=font,
                fill=fg,
                anchor="mt",
            )
    for v in yt:
        yv_ = float(py(v))
        if y0 - 1 <= yv_ <= y1 + 1:
            draw.line([(x0, yv_), (x0 + tl, yv_)], fill=fg, width=lw)
            if not no_ylabels:
                draw.text(
                    (x0 - fs * 0.4, yv_), _tick_label(v, ydec, sep), font=font, fill=fg, anchor="rm"
                )
    nq, nu = len(_QUANTITIES), len(_UNITS)
    xlabel, ylabel = (
        f"{_QUANTITIES[int(rng.integers(nq))]} {_UNITS[int(rng.integers(nu))]}" for _ in range(2)
    )
    if kind == "xrd":
        xlabel = "2θ (degree)"
    draw.text(((x0 + x1) / 2, y1 + fs * 1.8), xlabel.strip(), font=font, fill=fg, anchor="mt")
    ylx = x0 - fs * (1.0 if no_ylabels else rng.uniform(2.4, 3.4))
    _rotated_text(img, ylabel.strip(), font, fg, int(max(bx0 + fs * 0.6, ylx)), int((y0 + y1) / 2))
    # legend or annotations
    if names and rng.random() < 0.6:
        lx = x0 + fs if rng.random() < 0.5 else x1 - fs * 6
        ly = y0 + fs * 0.6
        if rng.random() < 0.4:
            hgt = fs * 1.25 * len(names)
            draw.rectangle(
                [lx - fs * 0.3, ly - fs * 0.3, lx + fs * 5.8, ly + hgt], outline=(160, 160, 160)
            )
        for name, c, mk in names:
            draw.line([(lx, ly + fs * 0.5), (lx + fs * 1.3, ly + fs * 0.5)], fill=c, width=lw + 1)
            if kind in ("scatter", "linemark"):
                _marker(draw, lx + fs * 0.65, ly + fs * 0.5, fs * 0.25, mk, c, True)
            draw.text((lx + fs * 1.7, ly + fs * 0.5), name, font=font, fill=fg, anchor="lm")
            ly += fs * 1.25
    elif names:
        for name, c, _ in names[:3]:
            xa, ya = x0 + rng.random() * (x1 - x0) * 0.7, y0 + rng.random() * (y1 - y0) * 0.8
            draw.text((xa, ya), name, font=font, fill=c)
            if rng.random() < 0.5:
                _arrow(
                    draw, (xa - fs * 0.2, ya + fs), (xa - fs * 1.2, ya + fs * 2), c, lw, fs * 0.5
                )


def _graph(rng: Rng, h: int, w: int) -> np.ndarray:
    ss = 2 if rng.random() < 0.8 else 1
    H, W = h * ss, w * ss
    bg: RGB = (
        (255, 255, 255) if rng.random() < 0.9 else _pick(rng, ((250, 250, 245), (245, 247, 252)))
    )
    img = Image.new("RGB", (W, H), bg)
    fs = int(np.clip(rng.uniform(0.04, 0.075) * min(h, w), 6, 22) * ss)
    layout = rng.random()
    if layout < 0.75 or min(h, w) < 120:
        boxes = [(0, 0, W, H)]
    elif layout < 0.88:
        boxes = [(0, 0, W // 2, H), (W // 2, 0, W, H)]
    else:
        boxes = [(0, 0, W, H // 2), (0, H // 2, W, H)]
    for b in boxes:
        _plot(img, rng, b, fs)
    return _downsample(img, h, w)


# ---------------------------------------------------------------------------------------------
# illustrations

_SCHEME_COLOURS: tuple[RGB, ...] = (
    (66, 133, 244),
    (91, 180, 230),
    (160, 200, 235),
    (230, 90, 80),
    (245, 160, 60),
    (250, 210, 80),
    (120, 190, 100),
    (80, 160, 140),
    (150, 110, 190),
    (200, 200, 200),
    (120, 120, 130),
    (240, 240, 240),
    (170, 120, 80),
    (60, 70, 90),
    (255, 120, 170),
)


def _shade(c: RGB, f: float) -> RGB:
    return (
        int(np.clip(c[0] * f, 0, 255)),
        int(np.clip(c[1] * f, 0, 255)),
        int(np.clip(c[2] * f, 0, 255)),
    )


def _draw_molecule(img: Image.Image, rng: Rng, cx: float, cy: float, size: float) -> None:
    n = int(rng.integers(3, 14))
    pts = [np.zeros(3)]
    parents = [-1]
    for _ in range(n - 1):
        p = int(rng.integers(len(pts)))
        v = rng.standard_normal(3)
        pts.append(pts[p] + v / np.linalg.norm(v))
        parents.append(p)
    arr = np.array(pts)
    arr -= arr.mean(0)
    arr *= size / max(float(np.abs(arr[:, :2]).max()), 1e-6) / 2
    draw = ImageDraw.Draw(img)
    stick = max(1, int(size * rng.uniform(0.03, 0.08)))
    for i, p in enumerate(parents):
        if p >= 0:
            draw.line(
                [(cx + arr[i, 0], cy + arr[i, 1]), (cx + arr[p, 0], cy + arr[p, 1])],
                fill=(150, 150, 150),
                width=stick,
            )
    elements = [
        _pick(
            rng,
            (
                (200, 30, 30),
                (90, 90, 90),
                (240, 240, 240),
                (40, 80, 220),
                (220, 200, 40),
                (150, 150, 160),
            ),
        )
        for _ in range(3)
    ]
    for i in np.argsort(arr[:, 2]):
        r = size * rng.uniform(0.08, 0.16)
        c = elements[int(rng.integers(3))]
        _paste_rgba(img, _sphere(int(r), c, rng), cx + arr[i, 0] - r, cy + arr[i, 1] - r)


def _draw_crystal(img: Image.Image, rng: Rng, cx: float, cy: float, size: float) -> None:
    """Spheres on a 3-D lattice in oblique projection, back to front."""
    nx, ny, nz = (int(v) for v in rng.integers(2, 7, 3))
    a = size / max(nx, ny, nz) / 1.6
    r = a * rng.uniform(0.35, 0.55)
    ex = np.array([a, a * rng.uniform(-0.1, 0.2)])
    ey = np.array([a * rng.uniform(0.3, 0.6), -a * rng.uniform(0.2, 0.5)])
    ez = np.array([0.0, -a])
    c1 = _pick(rng, _SCHEME_COLOURS)
    c2 = _pick(rng, ((180, 180, 190), (230, 230, 235), (200, 60, 60), (90, 90, 100)))
    order = []
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                order.append((j, k, i))
    order.sort(key=lambda t: (-t[0], t[1], t[2]))
    org = np.array([cx, cy]) - (nx * ex + ny * ey + nz * ez) / 2
    for j, k, i in order:
        p = org + i * ex + j * ey + k * ez
        c = c2 if (i + j + k) % int(rng.integers(2, 4)) == 0 else c1
        _paste_rgba(img, _sphere(int(r), c, rng), p[0] - r, p[1] - r)


def _draw_slab(img: Image.Image, rng: Rng, cx: float, cy: float, size: float) -> None:
    """Stacked box-shaped layers drawn as three shaded faces (a device schematic)."""
    draw = ImageDraw.Draw(img)
    w, d = size * rng.uniform(0.7, 1.2), size * rng.uniform(0.2, 0.5)
    layers = int(rng.integers(1, 5))
    y = cy + size * 0.3
    for _ in range(layers):
        t = size * rng.uniform(0.06, 0.2)
        c = _pick(rng, _SCHEME_COLOURS)
        x0 = cx - w / 2
        top = [
            (x0, y - t),
            (x0 + w, y - t),
            (x0 + w + d, y - t - d * 0.6),
            (x0 + d, y - t - d * 0.6),
        ]
        front = [(x0, y - t), (x0 + w, y - t), (x0 + w, y), (x0, y)]
        side = [
            (x0 + w, y - t),
            (x0 + w + d, y - t - d * 0.6),
            (x0 + w + d, y - d * 0.6),
            (x0 + w, y),
        ]
        draw.polygon(front, fill=c, outline=_shade(c, 0.6))
        draw.polygon(top, fill=_shade(c, 1.2), outline=_shade(c, 0.6))
        draw.polygon(side, fill=_shade(c, 0.75), outline=_shade(c, 0.6))
        y -= t


def _draw_flow(img: Image.Image, rng: Rng, box: tuple[float, float, float, float], fs: int) -> None:
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    n = int(rng.integers(2, 5))
    horizontal = rng.random() < 0.6
    font = _rand_font(rng, fs)
    centres = []
    for i in range(n):
        t = (i + 0.5) / n
        cx = x0 + t * (x1 - x0) if horizontal else (x0 + x1) / 2
        cy = (y0 + y1) / 2 if horizontal else y0 + t * (y1 - y0)
        centres.append((cx, cy))
    bw = ((x1 - x0) / n if horizontal else (x1 - x0)) * 0.35
    bh = ((y1 - y0) / n if not horizontal else (y1 - y0)) * 0.3
    fill = _pick(rng, _SCHEME_COLOURS)
    for i, (cx, cy) in enumerate(centres):
        draw.rounded_rectangle(
            [cx - bw, cy - bh, cx + bw, cy + bh],
            radius=int(min(bw, bh) * rng.uniform(0, 0.5)),
            fill=fill if rng.random() < 0.7 else None,
            outline=_shade(fill, 0.5),
            width=max(1, fs // 8),
        )
        draw.text((cx, cy), _phrase(rng, 2), font=font, fill=(0, 0, 0), anchor="mm")
        if i:
            px_, py_ = centres[i - 1]
            if horizontal:
                _arrow(
                    draw,
                    (px_ + bw + 2, py_),
                    (cx - bw - 2, cy),
                    (40, 40, 40),
                    max(1, fs // 6),
                    fs * 0.6,
                )
            else:
                _arrow(
                    draw,
                    (px_, py_ + bh + 2),
                    (cx, cy - bh - 2),
                    (40, 40, 40),
                    max(1, fs // 6),
                    fs * 0.6,
                )


def _draw_ring_formula(
    img: Image.Image, rng: Rng, cx: float, cy: float, size: float, fs: int
) -> None:
    """A skeletal formula: fused hexagons with substituent bonds and atom letters."""
    draw = ImageDraw.Draw(img)
    r = size * rng.uniform(0.15, 0.25)
    lw = max(1, int(r * 0.08))
    font = _rand_font(rng, fs)
    nring = int(rng.integers(1, 4))
    for k in range(nring):
        ox = cx + k * r * math.sqrt(3)
        pts = [
            (
                ox + r * math.cos(math.pi / 6 + i * math.pi / 3),
                cy + r * math.sin(math.pi / 6 + i * math.pi / 3),
            )
            for i in range(7)
        ]
        draw.line(pts, fill=(0, 0, 0), width=lw)
        if rng.random() < 0.5:
            draw.ellipse(
                [ox - r * 0.55, cy - r * 0.55, ox + r * 0.55, cy + r * 0.55],
                outline=(0, 0, 0),
                width=lw,
            )
        for i in range(6):
            if rng.random() < 0.25:
                a = math.pi / 6 + i * math.pi / 3
                p0 = (ox + r * math.cos(a), cy + r * math.sin(a))
                p1 = (ox + 1.8 * r * math.cos(a), cy + 1.8 * r * math.sin(a))
                draw.line([p0, p1], fill=(0, 0, 0), width=lw)
                draw.text(
                    p1,
                    str(rng.choice(["O", "N", "OH", "NH₂", "S", "Cl", "COOH", "R"])),
                    font=font,
                    fill=(0, 0, 0),
                    anchor="mm",
                )


def _illustration(rng: Rng, h: int, w: int) -> np.ndarray:
    ss = 2 if rng.random() < 0.7 else 1
    H, W = h * ss, w * ss
    r = rng.random()
    if r < 0.7:
        img = Image.new("RGB", (W, H), (255, 255, 255))
    elif r < 0.85:  # soft background gradient, as in rendered schematics
        c0 = np.array(_pick(rng, _SCHEME_COLOURS), np.float32)
        ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        bg = (1 - ramp * 0.5) * 255 * 0.85 + ramp * 0.5 * c0
        img = Image.fromarray(np.clip(np.broadcast_to(bg, (H, W, 3)), 0, 255).astype(np.uint8))
    else:
        img = Image.new(
            "RGB",
            (W, H),
            _pick(rng, ((20, 30, 60), (40, 40, 45), (235, 242, 250), (250, 245, 235))),
        )
    draw = ImageDraw.Draw(img)
    fs = int(np.clip(rng.uniform(0.045, 0.08) * min(h, w), 7, 22) * ss)
    font = _rand_font(rng, fs)
    dark_bg = r >= 0.85 and np.asarray(img)[0, 0].mean() < 128
    txt: RGB = (255, 255, 255) if dark_bg else (0, 0, 0)
    n = int(rng.integers(3, 11))
    for _ in range(n):
        el = str(
            rng.choice(
                [
                    "sphere",
                    "spheres",
                    "molecule",
                    "crystal",
                    "slab",
                    "flow",
                    "arrow",
                    "blockarrow",
                    "text",
                    "shape",
                    "formula",
                    "beaker",
                    "wave",
                    "curve",
                    "cylinder",
                    "cluster",
                    "translucent",
                    "equation",
                    "pipe",
                ]
            )
        )
        cx, cy = rng.uniform(0.15, 0.85) * W, rng.uniform(0.15, 0.85) * H
        size = min(H, W) * rng.uniform(0.2, 0.55)
        if el == "sphere":
            rr = int(size * rng.uniform(0.2, 0.45))
            _paste_rgba(img, _sphere(rr, _pick(rng, _SCHEME_COLOURS), rng), cx - rr, cy - rr)
        elif el == "spheres":
            c = _pick(rng, _SCHEME_COLOURS)
            rr = int(size * rng.uniform(0.05, 0.12))
            for _ in range(int(rng.integers(3, 12))):
                ox, oy = rng.normal(0, size * 0.35, 2)
                _paste_rgba(img, _sphere(rr, c, rng), cx + ox - rr, cy + oy - rr)
        elif el == "molecule":
            _draw_molecule(img, rng, cx, cy, size)
        elif el == "crystal":
            _draw_crystal(img, rng, cx, cy, size)
        elif el == "slab":
            _draw_slab(img, rng, cx, cy, size)
        elif el == "flow":
            _draw_flow(img, rng, (W * 0.05, cy - size * 0.5, W * 0.95, cy + size * 0.5), fs)
        elif el == "arrow":
            p1 = (cx + rng.normal(0, size), cy + rng.normal(0, size * 0.5))
            _arrow(
                draw,
                (cx, cy),
                p1,
                _pick(rng, ((0, 0, 0), (40, 40, 40), (200, 30, 30), (30, 90, 200))),
                max(1, fs // 5),
                fs * 0.7,
            )
        elif el == "blockarrow":
            L, T = size * rng.uniform(0.6, 1.2), size * rng.uniform(0.12, 0.25)
            c = _pick(rng, _SCHEME_COLOURS)
            pts = [
                (-L / 2, -T / 2),
                (L / 4, -T / 2),
                (L / 4, -T),
                (L / 2, 0),
                (L / 4, T),
                (L / 4, T / 2),
                (-L / 2, T / 2),
            ]
            a = rng.choice([0, 0, math.pi / 2, math.pi, rng.uniform(0, 2 * math.pi)])
            ca, sa = math.cos(a), math.sin(a)
            draw.polygon(
                [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts],
                fill=c,
                outline=_shade(c, 0.6),
            )
        elif el == "text":
            draw.text(
                (cx, cy),
                _phrase(rng),
                font=font,
                fill=txt if rng.random() < 0.7 else _pick(rng, _SCHEME_COLOURS),
                anchor="mm",
            )
        elif el == "shape":
            c = _pick(rng, _SCHEME_COLOURS)
            bb = [cx - size / 2, cy - size * 0.3, cx + size / 2, cy + size * 0.3]
            k = rng.integers(3)
            if k == 0:
                draw.rounded_rectangle(
                    bb,
                    radius=int(size * 0.1),
                    fill=c,
                    outline=_shade(c, 0.6),
                    width=max(1, fs // 8),
                )
            elif k == 1:
                draw.ellipse(bb, fill=c, outline=_shade(c, 0.6), width=max(1, fs // 8))
            else:
                m = int(rng.integers(3, 9))
                draw.regular_polygon(
                    (cx, cy, size * 0.4),
                    m,
                    rotation=float(rng.uniform(0, 360)),
                    fill=c,
                    outline=_shade(c, 0.6),
                )
        elif el == "cylinder":  # a tank, tube or electrode with cylindrical shading
            cw_, ch_ = size * rng.uniform(0.3, 0.8), size * rng.uniform(0.5, 1.2)
            if rng.random() < 0.5:
                cw_, ch_ = ch_, cw_
            c = _pick(rng, _SCHEME_COLOURS)
            x0_, y0_ = cx - cw_ / 2, cy - ch_ / 2
            for col in range(int(cw_)):
                u = 2 * col / max(cw_, 1) - 1
                f = (
                    0.55
                    + 0.6 * math.sqrt(max(0.0, 1 - u * u))
                    + 0.35 * math.exp(-(((u + 0.4) / 0.15) ** 2))
                )
                draw.line([(x0_ + col, y0_), (x0_ + col, y0_ + ch_)], fill=_shade(c, f))
            draw.ellipse([x0_, y0_ - cw_ * 0.15, x0_ + cw_, y0_ + cw_ * 0.15], fill=_shade(c, 1.25))
        elif el == "cluster":  # a particle model: many shaded spheres, back to front
            c = _pick(rng, _SCHEME_COLOURS)
            rr = int(size * rng.uniform(0.04, 0.09))
            xyz = rng.normal(0, size * 0.25, (int(rng.integers(8, 40)), 3))
            for p3 in xyz[np.argsort(xyz[:, 2])]:
                _paste_rgba(img, _sphere(rr, c, rng), cx + p3[0] - rr, cy + p3[1] - rr)
        elif el == "translucent":  # a see-through sheet or region, as in rendered schematics
            layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
            c = _pick(rng, _SCHEME_COLOURS)
            quad = [
                (cx - size * 0.6, cy),
                (cx - size * 0.2, cy - size * 0.3),
                (cx + size * 0.6, cy - size * 0.3),
                (cx + size * 0.2, cy),
            ]
            ImageDraw.Draw(layer).polygon(quad, fill=(*c, int(rng.integers(60, 160))))
            img.paste(layer, (0, 0), layer)
        elif el == "equation":  # a reaction or a note written across the scheme
            sp = list(_SPECIES)
            for li in range(int(rng.integers(1, 4))):
                s1, s2, s3 = (sp[int(i)] for i in rng.integers(0, len(sp), 3))
                eq = str(rng.choice([f"{s1} + {s2} → {s3}", f"{s1} → {s2} + 3e⁻", f"- {s3}"]))
                draw.text((cx - size, cy + li * fs * 1.3), eq, font=font, fill=txt)
        elif el == "pipe":  # pipes, wires and electrodes: long straight shaded bars
            c = _pick(rng, _SCHEME_COLOURS)
            t_ = max(2, int(size * rng.uniform(0.05, 0.15)))
            L = size * rng.uniform(1, 2.5)
            horizontal = rng.random() < 0.6
            for row in range(t_):
                u = 2 * row / t_ - 1
                f = 0.6 + 0.5 * math.sqrt(max(0.0, 1 - u * u))
                if horizontal:
                    draw.line([(cx - L / 2, cy + row), (cx + L / 2, cy + row)], fill=_shade(c, f))
                else:
                    draw.line([(cx + row, cy - L / 2), (cx + row, cy + L / 2)], fill=_shade(c, f))
        elif el == "formula":
            _draw_ring_formula(img, rng, cx - size * 0.3, cy, size, fs)
        elif el == "beaker":
            bw_, bh_ = size * 0.5, size * 0.7
            liquid = _pick(rng, _SCHEME_COLOURS)
            lvl = cy + bh_ * rng.uniform(-0.3, 0.3)
            draw.rectangle(
                [cx - bw_ / 2, lvl, cx + bw_ / 2, cy + bh_ / 2], fill=_shade(liquid, 1.1)
            )
            draw.line(
                [
                    (cx - bw_ / 2, cy - bh_ / 2),
                    (cx - bw_ / 2, cy + bh_ / 2),
                    (cx + bw_ / 2, cy + bh_ / 2),
                    (cx + bw_ / 2, cy - bh_ / 2),
                ],
                fill=(60, 60, 60),
                width=max(1, fs // 6),
            )
        elif el == "wave":
            xs = np.linspace(cx - size, cx + size, 80)
            ys = cy + size * 0.1 * np.sin((xs - cx) / size * rng.uniform(8, 25))
            draw.line(
                list(zip(xs, ys, strict=True)),
                fill=_pick(rng, ((230, 60, 40), (250, 200, 0), (40, 120, 230))),
                width=max(1, fs // 5),
            )
        else:  # a curved arrow through a bezier
            ctrl = rng.normal(0, size * 0.6, (3, 2)) + np.array([cx, cy])
            tt = np.linspace(0, 1, 40)[:, None]
            curve = (1 - tt) ** 2 * ctrl[0] + 2 * (1 - tt) * tt * ctrl[1] + tt**2 * ctrl[2]
            c = _pick(rng, ((0, 0, 0), (200, 30, 30), (30, 90, 200)))
            draw.line([tuple(v) for v in curve], fill=c, width=max(1, fs // 5))
            _arrow(
                draw,
                (curve[-3, 0], curve[-3, 1]),
                (curve[-1, 0], curve[-1, 1]),
                c,
                max(1, fs // 5),
                fs * 0.7,
            )
        if rng.random() < 0.35:  # a caption-like label next to most elements
            draw.text((cx, cy + size * 0.6), _phrase(rng), font=font, fill=txt, anchor="mt")
    return _downsample(img, h, w)


# ---------------------------------------------------------------------------------------------
# diffraction


def _diffraction_finish(rng: Rng, g: np.ndarray) -> np.ndarray:
    """Dynamic-range compression, noise, blur and (rarely) a colour map."""
    g = np.maximum(g, 0)
    if rng.random() < 0.6:
        g = np.log1p(g * rng.uniform(5, 200))
    g = g / max(float(np.percentile(g, 99.9)), 1e-6)
    g = np.clip(g, 0, 1) ** rng.uniform(0.5, 1.6)
    g = g * rng.uniform(0.7, 1.2) + rng.uniform(0, 0.08)
    g = g + rng.uniform(0, 0.06) * rng.standard_normal(g.shape).astype(np.float32)
    g = _blur(np.clip(g, 0, 1).astype(np.float32), rng.uniform(0, 1.2))
    # never inverted: dark spots on white read as particles, and journals rarely print it so
    if rng.random() < 0.05:
        return _apply_cmap(g, str(rng.choice(["inferno", "hot", "viridis", "jet", "green"])))
    return _grey_rgb(g)


def _centre(rng: Rng, h: int, w: int) -> tuple[float, float]:
    return h / 2 + rng.normal(0, h * 0.06), w / 2 + rng.normal(0, w * 0.06)


def _halo(h: int, w: int, cy: float, cx: float, r0: float) -> np.ndarray:
    yy, xx = _grid(h, w)
    rr = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return (1 / (1 + (rr / r0) ** 2)).astype(np.float32)


def _saed(rng: Rng, h: int, w: int) -> np.ndarray:
    cy, cx = _centre(rng, h, w)
    a = min(h, w) * rng.uniform(0.04, 0.18)
    a1, a2 = _random_basis(rng, a)
    pts = _lattice_points(h, w, a1, a2, np.array([cx, cy]), 10)
    d = np.hypot(pts[:, 0] - cx, pts[:, 1] - cy)
    fall = np.exp(-d / (min(h, w) * rng.uniform(0.1, 0.5)))
    amp = fall * rng.uniform(0.1, 1, len(pts)) ** 2
    amp *= rng.random(len(pts)) > rng.uniform(0, 0.3)  # kinematically forbidden spots
    amp[d < 1e-6] = rng.uniform(3, 20)
    g = _splat(h, w, pts[:, 1], pts[:, 0], amp.astype(np.float32))
    g = _blur(g, rng.uniform(0.7, 2.5)) * 20
    if rng.random() < 0.6:  # dynamical streaks or spot doubling for some patterns
        g += 0.2 * _blur(g, rng.uniform(2, 5))
    g += rng.uniform(0.05, 0.6) * _halo(h, w, cy, cx, min(h, w) * rng.uniform(0.02, 0.1))
    if rng.random() < 0.2:  # faint Kikuchi bands
        yy, xx = _grid(h, w)
        for _ in range(int(rng.integers(1, 4))):
            t = rng.uniform(0, np.pi)
            dd = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t) - rng.normal(0, a)
            g += 0.05 * (np.abs(dd) < a * 0.3)
    if rng.random() < 0.4:  # beam stop: a dark bar from an edge to the centre
        yy, xx = _grid(h, w)
        t = rng.uniform(0, 2 * np.pi)
        ux, uy = np.cos(t), np.sin(t)
        along = (xx - cx) * ux + (yy - cy) * uy
        across = np.abs(-(xx - cx) * uy + (yy - cy) * ux)
        bw = min(h, w) * rng.uniform(0.015, 0.04)
        stop = ((along > -bw * 1.5) & (across < bw)) | (np.hypot(xx - cx, yy - cy) < bw * 1.6)
        g = np.where(stop, g * 0.05, g)
    return _diffraction_finish(rng, g)


def _rings(rng: Rng, h: int, w: int) -> np.ndarray:
    cy, cx = _centre(rng, h, w)
    yy, xx = _grid(h, w)
    rr = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    g = np.zeros((h, w), np.float32)
    q0 = min(h, w) * rng.uniform(0.06, 0.18)
    families = np.sqrt(
        np.array([3, 4, 8, 11, 12, 16, 19, 20, 24, 27])
        if rng.random() < 0.5
        else np.array([1, 2, 3, 4, 5, 6, 8, 9, 10])
    )
    spotty = rng.random() < 0.5
    amorphous = rng.random() < 0.2
    if amorphous:
        for k in range(int(rng.integers(1, 3))):
            r0 = q0 * (1 + 1.7 * k) * rng.uniform(0.9, 1.2)
            g += np.exp(-0.5 * ((rr - r0) / (q0 * rng.uniform(0.15, 0.35))) ** 2)
    else:
        for f in families:
            r0 = q0 * f / families[0]
            if r0 > 0.75 * max(h, w):
                break
            amp = rng.uniform(0.1, 1) * np.exp(-r0 / (min(h, w) * 0.4))
            if spotty:
                n = int(rng.integers(20, 200))
                ang = rng.uniform(0, 2 * np.pi, n)
                rad = r0 + rng.normal(0, 0.7, n)
                g += _blur(
                    _splat(
                        h,
                        w,
                        cy + rad * np.sin(ang),
                        cx + rad * np.cos(ang),
                        np.full(n, amp * 6, np.float32),
                    ),
                    rng.uniform(0.6, 1.5),
                )
            g += (
                amp
                * np.exp(-0.5 * ((rr - r0) / rng.uniform(0.6, 2.5)) ** 2)
                * (0.3 if spotty else 1)
            )
    g += rng.uniform(0.05, 0.5) * _halo(h, w, cy, cx, min(h, w) * rng.uniform(0.02, 0.08))
    g += rng.uniform(0.02, 0.15) * np.exp(-rr / (min(h, w) * 0.3))
    if rng.random() < 0.3:
        g = np.where(rr < q0 * 0.4, g * 0.1, g)
    return _diffraction_finish(rng, g)


def _lattice_image(rng: Rng, h: int, w: int, a: float) -> np.ndarray:
    """Atomic columns on a lattice (possibly with a two-atom basis): float (H, W)."""
    a1, a2 = _random_basis(rng, a)
    yy, xx = _grid(h, w)
    m = np.array([a1, a2]).T
    inv = np.linalg.inv(m)
    u = inv[0, 0] * xx + inv[0, 1] * yy + rng.random()
    v = inv[1, 0] * xx + inv[1, 1] * yy + rng.random()
    sigma = a * rng.uniform(0.12, 0.3)
    out = np.zeros((h, w), np.float32)
    basis = [(0.0, 0.0, 1.0)]
    if rng.random() < 0.5:
        basis.append((rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5), rng.uniform(0.3, 1.0)))
    for bu, bv, amp in basis:
        du = u - bu - np.round(u - bu)
        dv = v - bv - np.round(v - bv)
        dx = m[0, 0] * du + m[0, 1] * dv
        dy = m[1, 0] * du + m[1, 1] * dv
        out += amp * np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    return out


def _fft_pattern(rng: Rng, h: int, w: int) -> np.ndarray:
    a = rng.uniform(3, 12)
    img = _lattice_image(rng, h, w, a) + rng.uniform(0.2, 1.5) * rng.standard_normal((h, w)).astype(
        np.float32
    )
    if rng.random() < 0.5:
        img = img * np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    f = np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))).astype(np.float32)
    g = np.log1p(f)
    g = _stretch(g, rng.uniform(1, 30), 99.95)
    g = np.clip(g, 0, 1) ** rng.uniform(0.7, 2.5)
    g = _blur(g, rng.uniform(0, 0.8))
    return _grey_rgb(g) if rng.random() < 0.9 else _apply_cmap(g, "inferno")


def _cbed(rng: Rng, h: int, w: int) -> np.ndarray:
    cy, cx = _centre(rng, h, w)
    a = min(h, w) * rng.uniform(0.12, 0.3)
    a1, a2 = _random_basis(rng, a)
    pts = _lattice_points(h, w, a1, a2, np.array([cx, cy]), a)
    rdisk = a * rng.uniform(0.2, 0.48)
    yy, xx = _grid(h, w)
    g = np.zeros((h, w), np.float32)
    for x, y in pts:
        d = np.hypot(xx - x, yy - y)
        inside = np.clip(rdisk - d + 0.5, 0, 1)
        if not inside.any():
            continue
        fr = 0.6 + 0.4 * np.cos(
            ((xx - x) * rng.normal() + (yy - y) * rng.normal()) * rng.uniform(0.1, 0.6)
        )
        amp = (
            3.0
            if np.hypot(x - cx, y - cy) < 1
            else rng.uniform(0.2, 1.2) * np.exp(-np.hypot(x - cx, y - cy) / (2 * a))
        )
        g += inside * fr * amp
    g += 0.1 * _halo(h, w, cy, cx, a)
    return _diffraction_finish(rng, g)


def _diffraction(rng: Rng, h: int, w: int) -> np.ndarray:
    r = rng.random()
    if r < 0.45:
        return _saed(rng, h, w)
    if r < 0.7:
        return _rings(rng, h, w)
    if r < 0.9:
        return _fft_pattern(rng, h, w)
    return _cbed(rng, h, w)


# ---------------------------------------------------------------------------------------------
# microscopy


def _hrtem(rng: Rng, h: int, w: int) -> np.ndarray:
    k = int(rng.integers(1, 5))
    lab = _voronoi(rng, h, w, k)
    g = np.zeros((h, w), np.float32)
    for i in range(k):
        a = rng.uniform(3, 14)
        lat = _lattice_image(rng, h, w, a)
        if rng.random() < 0.3:  # amorphous grain (carbon support, glassy region)
            lat = _smooth_noise(rng, (h, w), rng.uniform(0.8, 1.6)) * 0.3
        g = np.where(lab == i, lat * rng.uniform(0.5, 1.5), g)
    g += rng.uniform(0.1, 0.6) * _smooth_noise(rng, (h, w), rng.uniform(0.7, 1.5))
    g += rng.uniform(0, 0.6) * _smooth_noise(rng, (h, w), min(h, w) * 0.15)  # thickness
    if rng.random() < 0.5:
        g = -g  # dark columns in bright-field HRTEM
    return g


def _haadf(rng: Rng, h: int, w: int) -> np.ndarray:
    a = rng.uniform(5, 18)
    lat = _lattice_image(rng, h, w, a)
    # scan distortion: each row shifted a little, as a scanned probe does
    shift = np.cumsum(rng.normal(0, rng.uniform(0, 0.25), h)).astype(np.float32)
    yy, xx = _grid(h, w)
    g: np.ndarray = cv2.remap(
        lat, xx + shift[:, None], yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    if rng.random() < 0.4:  # column rows of different Z, like a superlattice
        g *= 1 + 0.5 * np.sin(xx / (a * rng.uniform(2, 5)) + rng.uniform(0, 6)) ** 2
    g += rng.uniform(0, 0.3) * _smooth_noise(rng, (h, w), min(h, w) * 0.1)
    return g + rng.uniform(0.02, 0.3) * rng.standard_normal((h, w)).astype(np.float32)


def _blob_mask(rng: Rng, h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Projected thickness (0..1) of a rounded, slightly irregular particle."""
    yy, xx = _grid(h, w)
    ang = np.arctan2(yy - cy, xx - cx)
    asp = rng.uniform(0.6, 1.0)
    th = rng.uniform(0, np.pi)
    rr = r * (1 + rng.uniform(0, 0.15) * np.sin(ang * int(rng.integers(3, 7)) + rng.uniform(0, 6)))
    dx = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
    dy = (-(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)) / asp
    d = np.sqrt(dx**2 + dy**2) / rr
    return np.sqrt(np.clip(1 - d**2, 0, 1))


def _particles(rng: Rng, h: int, w: int, bright: bool) -> np.ndarray:
    bg = 0.1 * _smooth_noise(rng, (h, w), rng.uniform(0.7, 2))
    bg += rng.uniform(0, 0.3) * _smooth_noise(rng, (h, w), min(h, w) * 0.2)
    thick = np.zeros((h, w), np.float32)
    n = int(rng.integers(1, 40))
    rmean = min(h, w) * rng.uniform(0.02, 0.15) * (3 if n < 3 else 1)
    cluster = rng.random() < 0.5
    c0 = rng.random(2) * (w, h)
    for _ in range(n):
        if cluster:
            cx, cy = c0 + rng.normal(0, min(h, w) * 0.2, 2)
        else:
            cx, cy = rng.random() * w, rng.random() * h
        r = max(2.0, rmean * rng.lognormal(0, 0.3))
        m = _blob_mask(rng, h, w, cx, cy, r)
        if rng.random() < 0.2:  # lattice fringes inside a particle
            m = m * (1 + 0.2 * _lattice_image(rng, h, w, rng.uniform(3, 6)))
        thick = np.maximum(thick, m * rng.uniform(0.5, 1.5))
    if bright:  # HAADF: intensity grows with thickness, dark support
        return bg * 0.1 + thick * rng.uniform(0.8, 1.5)
    return bg * 0.15 + np.exp(-thick * rng.uniform(1, 4))


def _sem(rng: Rng, h: int, w: int) -> np.ndarray:
    hmap = rng.uniform(0, 1.5) * _fractal(rng, (h, w), rng.uniform(2.2, 3.5))
    yy, xx = _grid(h, w)
    style = rng.integers(4)
    if style == 0:  # spheres / particles
        for _ in range(int(rng.integers(3, 60))):
            cx, cy = rng.random() * w, rng.random() * h
            r = min(h, w) * rng.uniform(0.02, 0.2)
            hmap = np.maximum(
                hmap, np.sqrt(np.clip(r**2 - (xx - cx) ** 2 - (yy - cy) ** 2, 0, None)) / r * 3
            )
    elif style == 1:  # grains / flakes
        lab = _voronoi(rng, h, w, int(rng.integers(5, 40)))
        hmap += rng.uniform(0, 3, int(lab.max()) + 1)[lab]
    elif style == 2:  # porous
        hmap -= 3 * (_smooth_noise(rng, (h, w), rng.uniform(2, 6)) > rng.uniform(0.5, 1.5))
    else:  # rods and wires
        for _ in range(int(rng.integers(3, 30))):
            t = rng.uniform(0, np.pi)
            cx, cy = rng.random() * w, rng.random() * h
            d = np.abs((xx - cx) * np.sin(t) - (yy - cy) * np.cos(t))
            along = np.abs((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t))
            r = min(h, w) * rng.uniform(0.01, 0.04)
            hmap = np.maximum(
                hmap,
                np.sqrt(np.clip(r**2 - d**2, 0, None))
                / r
                * 2
                * (along < min(h, w) * rng.uniform(0.1, 0.6)),
            )
    hmap = _blur(hmap.astype(np.float32), rng.uniform(0.5, 1.5))
    gy, gx = np.gradient(hmap)
    slope = np.sqrt(gx**2 + gy**2)
    lx, ly = rng.normal(0, 1, 2)
    g = 0.5 + 0.3 * (gx * lx + gy * ly) / (1 + slope) + rng.uniform(0.5, 2) * slope  # edge effect
    return g.astype(np.float32)


def _grains(rng: Rng, h: int, w: int) -> np.ndarray:
    lab = _voronoi(rng, h, w, int(rng.integers(4, 30)))
    levels = rng.uniform(0.3, 1, int(lab.max()) + 1)
    g = levels[lab].astype(np.float32)
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    g = np.where(edges, g * 0.4, g)
    bend = np.sin(_smooth_noise(rng, (h, w), min(h, w) * 0.15) * rng.uniform(2, 6))
    g = g * (1 - rng.uniform(0, 0.4) * (bend > 0.8))  # bend contours
    if rng.random() < 0.4:  # dislocation lines
        for _ in range(int(rng.integers(2, 15))):
            p = rng.random(2) * (w, h)
            q = p + rng.normal(0, min(h, w) * 0.15, 2)
            cv2.line(g, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 0.2, 1)
    return g + 0.05 * _smooth_noise(rng, (h, w), 1)


def _fibres(rng: Rng, h: int, w: int) -> np.ndarray:
    g = np.full((h, w), 0.8, np.float32) + 0.05 * _smooth_noise(rng, (h, w), 1)
    for _ in range(int(rng.integers(3, 40))):
        p = rng.random(2) * (w, h)
        ang = rng.uniform(0, 2 * np.pi)
        pts = []
        for _s in range(int(rng.integers(5, 30))):
            ang += rng.normal(0, 0.3)
            p = p + 8 * np.array([np.cos(ang), np.sin(ang)])
            pts.append(p.copy())
        cv2.polylines(
            g,
            [np.array(pts, np.int32)],
            False,
            float(rng.uniform(0.1, 0.5)),
            int(rng.integers(1, 6)),
        )
    return _blur(g, rng.uniform(0.5, 1.5))


def _vesicles(rng: Rng, h: int, w: int) -> np.ndarray:
    g = np.full((h, w), 0.6, np.float32) + 0.15 * _smooth_noise(rng, (h, w), 1.2)
    for _ in range(int(rng.integers(2, 20))):
        c = (int(rng.random() * w), int(rng.random() * h))
        axes = (int(min(h, w) * rng.uniform(0.03, 0.2)), int(min(h, w) * rng.uniform(0.03, 0.2)))
        cv2.ellipse(
            g,
            c,
            axes,
            float(rng.uniform(0, 180)),
            0,
            360,
            float(rng.uniform(0.1, 0.35)),
            int(rng.integers(1, 4)),
        )
    return _blur(g, rng.uniform(0.5, 1.5))


_ELEMENTS = ("Co", "Fe", "Ni", "Mn", "O", "C", "N", "Ag", "Au", "Pt", "Ti", "Y", "Zn", "S", "Cu")
_STAINS = ("DAPI", "GFP", "Actin", "Merge", "Lyso", "Autofluo", "z = 20 µm", "0 h", "24 h")


def _channel_label(rng: Rng, img: np.ndarray, colour: RGB, words: Sequence[str]) -> np.ndarray:
    """The channel's name (an element, a stain) in its colour in a corner, as maps have."""
    h, w = img.shape[:2]
    im = Image.fromarray(img)
    fs = int(np.clip(rng.uniform(0.07, 0.13) * min(h, w), 6, 30))
    x = fs * 0.3 if rng.random() < 0.7 else w - fs * 3
    ImageDraw.Draw(im).text(
        (x, fs * 0.2), str(rng.choice(list(words))), font=_font(fs, "bold"), fill=colour
    )
    return np.asarray(im).copy()


_HUES: dict[str, RGB] = {
    "red": (255, 40, 40),
    "green": (40, 255, 60),
    "blue": (60, 120, 255),
    "magenta": (230, 40, 230),
    "cyan": (0, 230, 230),
    "yellow": (255, 230, 0),
}


def _eds_map(rng: Rng, h: int, w: int) -> np.ndarray:
    """An elemental map: coloured counts on black, over the shape of a particle or a film."""
    if rng.random() < 0.5:
        shape = _blur(
            (
                _smooth_noise(rng, (h, w), min(h, w) * rng.uniform(0.05, 0.2))
                > rng.uniform(-0.5, 0.8)
            ).astype(np.float32),
            3,
        )
    else:  # one particle: a disc, a cube or a blob
        shape = np.clip(
            _blob_mask(
                rng,
                h,
                w,
                w * rng.uniform(0.3, 0.7),
                h * rng.uniform(0.3, 0.7),
                min(h, w) * rng.uniform(0.2, 0.45),
            )
            * 3,
            0,
            1,
        )
    out = np.zeros((h, w, 3), np.float32)
    n_el = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    hues = [str(v) for v in rng.permutation(list(_HUES))[:n_el]]
    for k in range(n_el):
        density = shape if k == 0 or rng.random() < 0.5 else (1 - shape) * 0.3
        density = density * (1 + 0.5 * _smooth_noise(rng, (h, w), rng.uniform(2, 10)))
        if rng.random() < 0.5:  # background counts: the map is speckled all over
            density = density + rng.uniform(0.05, 0.5)
        counts = (rng.random((h, w)) < np.clip(density, 0, 1) * rng.uniform(0.1, 0.7)).astype(
            np.float32
        )
        counts = _blur(counts, rng.uniform(0, 1.2))
        out += (
            _apply_cmap(np.clip(counts / max(float(counts.max()), 1e-6), 0, 1), hues[k]).astype(
                np.float32
            )
            / 255
        )
    img = _to_u8(np.clip(out * rng.uniform(0.8, 1.5), 0, 1))
    if rng.random() < 0.6:
        img = _channel_label(rng, img, _HUES[hues[0]], _ELEMENTS)
    return img


def _fluorescence(rng: Rng, h: int, w: int) -> np.ndarray:
    """Cells, nuclei and puncta glowing in one to three channels on black (confocal-like)."""
    out = np.zeros((h, w, 3), np.float32)
    hues = [
        str(v)
        for v in rng.permutation(["red", "green", "blue", "magenta", "cyan"])[
            : int(rng.integers(1, 4))
        ]
    ]
    n = int(rng.integers(1, 15))
    centres = rng.random((n, 2)) * (w, h)
    r = min(h, w) * rng.uniform(0.04, 0.2)
    for k, hue in enumerate(hues):
        g = np.zeros((h, w), np.float32)
        for cx, cy in centres:
            if k == 1 and rng.random() < 0.7:  # nuclei, smaller
                g = np.maximum(g, _blob_mask(rng, h, w, cx, cy, r * 0.45))
            elif k == 2:  # puncta
                m = int(rng.integers(3, 30))
                pts = rng.normal(0, r * 0.7, (m, 2)) + np.array([cx, cy])
                g += _blur(_splat(h, w, pts[:, 1], pts[:, 0], np.ones(m, np.float32) * 4), 1.2)
            else:
                body = _blob_mask(rng, h, w, cx, cy, r)
                g = np.maximum(
                    g, body * (0.5 + 0.5 * np.clip(_smooth_noise(rng, (h, w), 2), -1, 1))
                )
        glow = _blur(g, rng.uniform(0.5, 3)) + rng.uniform(0, 0.1) * _blur(g, 8)
        out += (
            _apply_cmap(np.clip(glow * rng.uniform(0.6, 1.3), 0, 1), hue).astype(np.float32) / 255
        )
    out += rng.uniform(0, 0.03) * rng.standard_normal((h, w, 1)).astype(np.float32)
    img = _to_u8(np.clip(out, 0, 1))
    if rng.random() < 0.4:
        img = _channel_label(rng, img, _HUES[hues[0]], _STAINS)
    return img


def _optical(rng: Rng, h: int, w: int) -> np.ndarray:
    """Bright-field or polarised-light optical micrographs: coloured objects with dark rims."""
    yy, xx = _grid(h, w)
    if rng.random() < 0.3:  # polarised light: birefringent grains in saturated colours
        lab = _voronoi(rng, h, w, int(rng.integers(5, 40)))
        cols = rng.uniform(0, 1, (int(lab.max()) + 1, 3)).astype(np.float32)
        img = cols[lab] * (0.7 + 0.3 * _smooth_noise(rng, (h, w), 6)[..., None])
        return _to_u8(np.clip(_blur(img, 1), 0, 1))
    bg = np.array(rng.uniform(0.75, 1.0, 3), np.float32)
    img = (
        np.ones((h, w, 3), np.float32)
        * bg
        * (1 - 0.2 * ((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2))[..., None]
    )
    col = np.array(rng.uniform(0.2, 0.9, 3), np.float32)
    for _ in range(int(rng.integers(1, 30))):
        cx, cy = rng.random() * w, rng.random() * h
        m = _blob_mask(rng, h, w, cx, cy, min(h, w) * rng.uniform(0.02, 0.15))
        rim = np.clip(m * (1 - m) * 4, 0, 1)
        c = col * rng.uniform(0.7, 1.3, 3).astype(np.float32)
        img = img * (1 - (m > 0)[..., None] * 0.6) + (m > 0)[..., None] * 0.6 * c
        img *= (1 - 0.5 * rim)[..., None]
    img *= (1 + rng.uniform(0.02, 0.1) * _fractal(rng, (h, w), rng.uniform(1.5, 2.5)))[..., None]
    img = _blur(img.astype(np.float32), rng.uniform(0.5, 2))
    img += rng.uniform(0.005, 0.03) * rng.standard_normal((h, w, 3)).astype(np.float32)
    return _to_u8(np.clip(img, 0, 1))


def _micro_finish(rng: Rng, g: np.ndarray) -> np.ndarray:
    g = _stretch(g, rng.uniform(0, 3), rng.uniform(97, 100))
    g = np.clip((g - 0.5) * rng.uniform(0.6, 1.2) + 0.5 + rng.normal(0, 0.08), 0, 1) ** rng.uniform(
        0.6, 1.6
    )
    g = g + rng.uniform(0, 0.08) * rng.standard_normal(g.shape).astype(np.float32)
    g = _blur(np.clip(g, 0, 1).astype(np.float32), rng.uniform(0, 1.0))
    r = rng.random()
    if r < 0.08:
        cmap = str(rng.choice(["jet", "inferno", "viridis", "afmhot", "hot"]))
        out = _apply_cmap(g, cmap)
        return _colour_bar(rng, out, cmap) if rng.random() < 0.5 else out
    if r < 0.12:  # tinted, as some SEM/TEM images are
        tint = np.array(rng.uniform(0.7, 1.0, 3), np.float32)
        return _to_u8(g[..., None] * tint)
    return _grey_rgb(g)


def _colour_bar(rng: Rng, img: np.ndarray, cmap: str) -> np.ndarray:
    """A vertical colour bar with two tick labels in a corner (height, field, phase maps)."""
    h, w = img.shape[:2]
    bh, bw = int(h * rng.uniform(0.2, 0.45)), max(2, int(w * rng.uniform(0.025, 0.05)))
    x0 = int(w * 0.03) if rng.random() < 0.5 else w - bw - int(w * 0.12)
    y0 = int(h * 0.04)
    if bh < 4 or x0 < 0 or x0 + bw >= w:
        return img
    out = img.copy()
    out[y0 : y0 + bh, x0 : x0 + bw] = _apply_cmap(
        np.linspace(1, 0, bh)[:, None] * np.ones(bw), cmap
    )
    im = Image.fromarray(out)
    d = ImageDraw.Draw(im)
    fs = int(np.clip(bh * 0.18, 5, 16))
    font = _font(fs, "sans")
    unit = str(rng.choice(["T", "nm", "µm", "°", "mV", "a.u."]))
    d.text((x0 + bw + 2, y0), f"{rng.uniform(0, 5):.1f} {unit}", font=font, fill=(255, 255, 255))
    d.text((x0 + bw + 2, y0 + bh - fs), f"0 {unit}", font=font, fill=(255, 255, 255))
    return np.asarray(im).copy()


def _microscopy(rng: Rng, h: int, w: int) -> np.ndarray:
    r = rng.random()
    if r < 0.12:
        return _eds_map(rng, h, w)
    if r < 0.22:
        return _fluorescence(rng, h, w)
    if r < 0.27:
        return _optical(rng, h, w)
    gens: list[Callable[[], np.ndarray]] = [
        lambda: _hrtem(rng, h, w),
        lambda: _haadf(rng, h, w),
        lambda: _particles(rng, h, w, bright=False),
        lambda: _particles(rng, h, w, bright=True),
        lambda: _sem(rng, h, w),
        lambda: _sem(rng, h, w),
        lambda: _grains(rng, h, w),
        lambda: _fibres(rng, h, w),
        lambda: _vesicles(rng, h, w),
    ]
    g = gens[int(rng.integers(len(gens)))]()
    out = _micro_finish(rng, g)
    if rng.random() < 0.15:  # SEM information strip
        out = _info_strip(rng, out)
    return out


def _info_strip(rng: Rng, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    sh = max(6, int(h * rng.uniform(0.06, 0.12)))
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    dark = rng.random() < 0.8
    draw.rectangle([0, h - sh, w, h], fill=(0, 0, 0) if dark else (230, 230, 230))
    font = _font(max(5, int(sh * 0.55)), "sans")
    kv, mag, wd = rng.uniform(1, 30), int(rng.integers(1, 500)) * 100, rng.uniform(2, 15)
    txt = f"{kv:.1f}kV  x{mag:,}  WD {wd:.1f}mm  {int(rng.integers(1, 500))} nm"
    draw.text(
        (4, h - sh / 2), txt, font=font, fill=(255, 255, 255) if dark else (0, 0, 0), anchor="lm"
    )
    return np.asarray(img).copy()


# ---------------------------------------------------------------------------------------------
# photographs


def _wood(rng: Rng, h: int, w: int) -> np.ndarray:
    yy, _ = _grid(h, w)
    warp = 6 * _smooth_noise(rng, (h, w), 12)
    rings = np.sin((yy * rng.uniform(0.05, 0.3) + warp) + 0.3 * _smooth_noise(rng, (h, w), 1.5))
    base = (
        np.array(
            _pick(rng, ((150, 100, 60), (190, 150, 100), (120, 80, 50), (210, 180, 140))),
            np.float32,
        )
        / 255
    )
    return base * (0.85 + 0.12 * rings[..., None])


def _surface(rng: Rng, h: int, w: int) -> np.ndarray:
    """A table or bench top: wood, painted, metallic or a cloth texture (H, W, 3) in [0, 1]."""
    r = rng.random()
    if r < 0.35:
        return _wood(rng, h, w)
    base = np.array(rng.uniform(0.2, 0.95, 3), np.float32)
    if rng.random() < 0.5:
        base = np.full(3, base.mean(), np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    tex = rng.uniform(0.01, 0.08) * _fractal(rng, (h, w), rng.uniform(1.5, 3))
    return np.clip(base * (1 + tex[..., None]), 0, 1)


def _scene(rng: Rng, h: int, w: int) -> np.ndarray:
    """Objects on a table under a soft light: shading, shadows, highlights, defocus."""
    yy, xx = _grid(h, w)
    horizon = h * rng.uniform(-0.1, 0.6)
    wall = np.array(rng.uniform(0.3, 0.95, 3), np.float32)
    wall_img = (
        wall * (0.75 + 0.35 * (1 - yy / h))[..., None] + 0.03 * _fractal(rng, (h, w), 3)[..., None]
    )
    table = _surface(rng, h, w)
    depth = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)
    table = table * (0.65 + 0.45 * depth)[..., None]
    img = np.where((yy > horizon)[..., None], table, _blur(wall_img.astype(np.float32), 3)).astype(
        np.float32
    )
    light = (rng.uniform(0, w), rng.uniform(-h, 0))
    for _ in range(int(rng.integers(1, 6))):
        kind = rng.integers(4)
        cx = rng.uniform(0.1, 0.9) * w
        base_y = max(horizon, 0) + rng.uniform(0.3, 1.0) * (h - max(horizon, 0))
        scale = min(h, w) * rng.uniform(0.12, 0.4) * (0.5 + 0.5 * base_y / h)
        col = np.array(rng.uniform(0.05, 1, 3), np.float32)
        # soft shadow on the table, cast away from the light
        sdx = (cx - light[0]) / w * scale * 0.6
        shadow = np.exp(
            -(((xx - cx - sdx) / (scale * 0.55)) ** 2 + ((yy - base_y) / (scale * 0.15)) ** 2)
        )
        img *= (1 - 0.55 * shadow)[..., None]
        if kind == 0:  # vial or bottle: a vertical cylinder with a cap
            hw, ht = scale * rng.uniform(0.15, 0.3), scale * rng.uniform(0.6, 1.4)
            inside = (np.abs(xx - cx) < hw) & (yy < base_y) & (yy > base_y - ht)
            u = np.clip((xx - cx) / hw, -1, 1)
            shade = (
                0.45
                + 0.55 * np.sqrt(np.clip(1 - u**2, 0, 1))
                + 0.6 * np.exp(-(((u + 0.45) / 0.12) ** 2))
            )
            liquid = yy > base_y - ht * rng.uniform(0.2, 0.8)
            body = np.where(
                liquid[..., None], col * shade[..., None], img * 0.8 + 0.2 * shade[..., None]
            )
            img = np.where(inside[..., None], body, img)
            cap = (np.abs(xx - cx) < hw * 1.05) & (yy <= base_y - ht) & (yy > base_y - ht - hw)
            capc = np.array(rng.uniform(0, 1, 3), np.float32)
            img = np.where(cap[..., None], capc * shade[..., None], img)
        elif kind == 1:  # disc, coin or pellet seen at an angle
            rx, ry = scale * rng.uniform(0.3, 0.6), scale * rng.uniform(0.1, 0.3)
            d = ((xx - cx) / rx) ** 2 + ((yy - base_y + ry) / ry) ** 2
            metal = rng.random() < 0.5
            c = np.full(3, rng.uniform(0.5, 0.9), np.float32) if metal else col
            shade = (
                0.7
                + 0.4 * (xx - cx) / rx * (1 if light[0] > cx else -1) * 0.5
                + (0.4 * np.exp(-d * 3) if metal else 0)
            )
            img = np.where((d < 1)[..., None], c * np.clip(shade, 0, 1.4)[..., None], img)
        elif kind == 2:  # a round shaded object (fruit, ball, powder mound)
            r = scale * rng.uniform(0.25, 0.5)
            d = np.sqrt((xx - cx) ** 2 + (yy - base_y + r) ** 2) / r
            z = np.sqrt(np.clip(1 - d**2, 0, 1))
            nx_ = (xx - cx) / r
            lam = np.clip(0.3 + 0.7 * (z * 0.7 - nx_ * 0.3 * np.sign(cx - light[0])), 0.1, 1.2)
            tex = 1 + 0.1 * _fractal(rng, (h, w), 2.5)
            img = np.where(
                (d < 1)[..., None], col * (lam * tex)[..., None] + 0.4 * z[..., None] ** 30, img
            )
        else:  # a film or sheet lying on the table
            pts = np.array(
                [
                    [cx + rng.normal(0, scale * 0.6), base_y - abs(rng.normal(0, scale * 0.25))]
                    for _ in range(4)
                ],
                np.int32,
            )
            mask = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1)
            sheen = 0.85 + 0.25 * (xx / w)
            img = np.where(
                mask[..., None] > 0, col * sheen[..., None] * (0.7 + 0.3 * depth[..., None]), img
            )
    # depth of field: the far background is out of focus
    far = _blur(img, rng.uniform(1, 4))
    wgt = np.clip(1 - depth * 2, 0, 1)[..., None] * (rng.random() < 0.6)
    return (img * (1 - wgt) + far * wgt).astype(np.float32)


def _landscape(rng: Rng, h: int, w: int) -> np.ndarray:
    yy, _ = _grid(h, w)
    sky_top = np.array(rng.uniform([0.2, 0.4, 0.7], [0.6, 0.75, 1.0]), np.float32)
    sky_bot = np.array(rng.uniform([0.7, 0.75, 0.8], [1.0, 1.0, 1.0]), np.float32)
    t = (yy / h)[..., None]
    img = sky_top * (1 - t) + sky_bot * t
    clouds = np.clip(_fractal(rng, (h, w), 3.2) * 0.5 + rng.uniform(-0.5, 0.3), 0, 1)
    img = img * (1 - clouds[..., None] * 0.8) + clouds[..., None] * 0.95
    for layer in range(int(rng.integers(1, 4))):
        prof = np.cumsum(rng.normal(0, 1, w)).astype(np.float32)
        prof = _blur(prof[None, :], rng.uniform(2, 10))[0]
        prof = (prof - prof.min()) / max(float(np.ptp(prof)), 1e-6)
        base = h * rng.uniform(0.3, 0.8) + layer * h * 0.1
        top = base - prof * h * rng.uniform(0.05, 0.3)
        col = np.array(rng.uniform([0.05, 0.2, 0.05], [0.5, 0.6, 0.4]), np.float32) * (
            0.6 + 0.15 * layer
        )
        tex = 1 + rng.uniform(0.1, 0.35) * _fractal(rng, (h, w), rng.uniform(1.2, 2.2))
        img = np.where((yy > top[None, :])[..., None], col * tex[..., None], img)
    return _blur(img.astype(np.float32), rng.uniform(0, 1))


def _macro(rng: Rng, h: int, w: int) -> np.ndarray:
    """A close-up of a material or of bokeh-lit objects: colour texture under shading."""
    img: np.ndarray
    if rng.random() < 0.5:
        base = _fractal(rng, (h, w), rng.uniform(1.2, 2.8))
        hue = np.array(rng.uniform(0, 1, 3), np.float32)
        hue2 = np.array(rng.uniform(0, 1, 3), np.float32)
        t = np.clip(base * 0.3 + 0.5, 0, 1)[..., None]
        img = hue * t + hue2 * (1 - t)
        hgt = _blur(base, 2)
        gy, gx = np.gradient(hgt)
        img = img * (0.8 + 0.8 * (gx - gy))[..., None]
        glint = (_smooth_noise(rng, (h, w), 1) > 2.5).astype(np.float32)
        img += _blur(glint, 1)[..., None]
    else:
        img = np.ones((h, w, 3), np.float32) * np.array(rng.uniform(0, 0.4, 3), np.float32)
        yy, xx = _grid(h, w)
        for _ in range(int(rng.integers(5, 40))):
            cx, cy, r = rng.random() * w, rng.random() * h, min(h, w) * rng.uniform(0.03, 0.15)
            c = np.array(rng.uniform(0.2, 1, 3), np.float32) * rng.uniform(0.2, 0.6)
            disc = np.clip(r - np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2), 0, 1.5) / 1.5
            img += disc[..., None] * c
    vign = 1 - rng.uniform(0, 0.5) * (
        ((_grid(h, w)[0] / h - 0.5) ** 2 + (_grid(h, w)[1] / w - 0.5) ** 2) * 2
    )
    return np.clip(img * vign[..., None], 0, 1.5).astype(np.float32)


def _camera(rng: Rng, img: np.ndarray) -> np.ndarray:
    """White balance, vignetting, sensor noise (stronger in the shadows), tone curve."""
    h, w = img.shape[:2]
    img = img * np.array(rng.uniform(0.85, 1.15, 3), np.float32)
    yy, xx = _grid(h, w)
    vign = 1 - rng.uniform(0, 0.45) * (((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2)
    img = img * vign[..., None]
    sigma = rng.uniform(0.003, 0.04)
    noise = (
        rng.standard_normal(img.shape).astype(np.float32)
        * sigma
        * (0.5 + np.sqrt(np.clip(img, 0, 1)))
    )
    chroma_blur = rng.uniform(0.5, 1.5)
    noise = _blur(noise, chroma_blur)
    img = np.clip(img + noise, 0, 1)
    img = img ** rng.uniform(0.8, 1.1)
    return _to_u8(img)


def _photo(rng: Rng, h: int, w: int) -> np.ndarray:
    r = rng.random()
    if r < 0.55:
        img = _scene(rng, h, w)
    elif r < 0.75:
        img = _landscape(rng, h, w)
    else:
        img = _macro(rng, h, w)
    return _camera(rng, img)


# ---------------------------------------------------------------------------------------------
# unclear


def _text_block(rng: Rng, h: int, w: int, table: bool) -> np.ndarray:
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    fs = int(np.clip(rng.uniform(0.04, 0.09) * min(h, w), 6, 20))
    font = _rand_font(rng, fs)
    if table:
        rows, cols = int(rng.integers(3, 14)), int(rng.integers(2, 6))
        ys = np.linspace(fs * 0.5, h - fs * 0.5, rows + 1)
        xs = np.linspace(fs * 0.5, w - fs * 0.5, cols + 1)
        for y in ys if rng.random() < 0.6 else ys[[0, 1, -1]]:
            draw.line([(xs[0], y), (xs[-1], y)], fill=(0, 0, 0), width=1)
        if rng.random() < 0.4:
            for x in xs:
                draw.line([(x, ys[0]), (x, ys[-1])], fill=(0, 0, 0), width=1)
        for i in range(rows):
            for j in range(cols):
                s = (
                    _phrase(rng, 1)
                    if j == 0 or rng.random() < 0.3
                    else f"{rng.uniform(0, 1000):.{int(rng.integers(0, 3))}f}"
                )
                draw.text(
                    (xs[j] + 3, (ys[i] + ys[i + 1]) / 2), s, font=font, fill=(0, 0, 0), anchor="lm"
                )
    else:
        y = fs * 0.5
        while y < h - fs:
            line = " ".join(_word(rng) for _ in range(int(rng.integers(3, 12))))
            draw.text((fs * 0.5, y), line, font=font, fill=(0, 0, 0))
            y += fs * rng.uniform(1.2, 1.6)
    return np.asarray(img).copy()


def _blank(rng: Rng, h: int, w: int) -> np.ndarray:
    c = np.array(
        rng.uniform(0.85, 1.0, 3) if rng.random() < 0.7 else rng.uniform(0, 1, 3), np.float32
    )
    yy, xx = _grid(h, w)
    grad = rng.uniform(-0.05, 0.05) * (yy / h) + rng.uniform(-0.05, 0.05) * (xx / w)
    img = (
        c
        + grad[..., None]
        + rng.uniform(0, 0.02) * rng.standard_normal((h, w, 1)).astype(np.float32)
    )
    out = _to_u8(np.clip(img, 0, 1))
    if rng.random() < 0.5:  # a few specks or a stray line
        im = Image.fromarray(out)
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.random(2) * (w, h)
            d.line(
                [(x, y), (x + rng.normal(0, w * 0.2), y + rng.normal(0, 3))],
                fill=(0, 0, 0),
                width=1,
            )
        out = np.asarray(im).copy()
    return out


def _unclear(rng: Rng, h: int, w: int) -> np.ndarray:
    r = rng.random()
    others = ("microscopy", "diffraction", "graph", "illustration", "photo")
    if r < 0.18:
        return _blank(rng, h, w)
    if r < 0.3:
        return _text_block(rng, h, w, table=True)
    if r < 0.4:
        return _text_block(rng, h, w, table=False)
    if r < 0.65:  # two or four panels of different classes in one crop
        a, b = rng.choice(len(others), 2, replace=False)
        if rng.random() < 0.6:
            cut = int(w * rng.uniform(0.35, 0.65))
            left = GENERATORS[others[a]](rng, h, max(cut, 4))
            right = GENERATORS[others[b]](rng, h, max(w - cut, 4))
            return np.concatenate([left, right], axis=1)[:, :w]
        cut = int(h * rng.uniform(0.35, 0.65))
        top = GENERATORS[others[a]](rng, max(cut, 4), w)
        bot = GENERATORS[others[b]](rng, max(h - cut, 4), w)
        return np.concatenate([top, bot], axis=0)[:h]
    if r < 0.75:  # a crop that is mostly margin, with a sliver of a panel at one edge
        out = np.full((h, w, 3), 255, np.uint8)
        src = GENERATORS[others[int(rng.integers(len(others)))]](rng, h, w)
        k = int(w * rng.uniform(0.05, 0.25))
        if rng.random() < 0.5:
            out[:, :k] = src[:, :k]
        else:
            out[-k:] = src[-k:]
        return out
    # heavily degraded: far too small, crushed contrast, or drowned in noise
    src = GENERATORS[others[int(rng.integers(len(others)))]](rng, h, w)
    how = int(rng.integers(3))
    if how == 0:
        s = int(rng.integers(3, 10))
        small = cv2.resize(src, (s, s), interpolation=cv2.INTER_AREA)
        return cv2.resize(
            small,
            (w, h),
            interpolation=cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR,
        )
    if how == 1:
        f = src.astype(np.float32) / 255
        f = np.clip((f - f.mean()) * rng.uniform(0.02, 0.1) + rng.uniform(0.05, 0.95), 0, 1)
        return _to_u8(f)
    f = src.astype(np.float32) / 255 + rng.uniform(0.5, 1.2) * rng.standard_normal(
        src.shape
    ).astype(np.float32)
    return _to_u8(np.clip(f, 0, 1))


# ---------------------------------------------------------------------------------------------
# dressing: letters, scale bars, annotations, insets, margins, resampling, JPEG


def _is_dark(a: np.ndarray) -> bool:
    return float(a.mean()) < 110


def _letter(rng: Rng, img: Image.Image, arr: np.ndarray) -> None:
    h, w = arr.shape[:2]
    ch = "abcdefghij"[int(rng.integers(10))]
    s = str(rng.choice([ch, ch, ch.upper(), f"({ch})", f"{ch})"]))
    fs = int(np.clip(rng.uniform(0.07, 0.14) * min(h, w), 7, 40))
    font = _font(fs, "bold" if rng.random() < 0.8 else "sans")
    x, y = int(fs * rng.uniform(0.1, 0.5)), int(fs * rng.uniform(0.0, 0.4))
    corner = arr[: fs * 2, : fs * 2]
    dark = corner.size > 0 and _is_dark(corner)
    colour: RGB = (255, 255, 255) if dark else (0, 0, 0)
    if rng.random() < 0.15:
        colour = _pick(rng, ((255, 255, 0), (255, 0, 0), (0, 0, 0), (255, 255, 255)))
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.2:
        tw, th = _text_size(draw, s, font)
        box_c: RGB = (0, 0, 0) if colour == (255, 255, 255) else (255, 255, 255)
        draw.rectangle([0, 0, x + tw + fs * 0.4, y + th + fs * 0.5], fill=box_c)
    draw.text((x, y), s, font=font, fill=colour)


def _scale_bar(rng: Rng, img: Image.Image, arr: np.ndarray, cls: str) -> None:
    h, w = arr.shape[:2]
    draw = ImageDraw.Draw(img)
    length = int(w * rng.uniform(0.12, 0.35))
    thick = max(1, int(min(h, w) * rng.uniform(0.008, 0.03)))
    margin = int(min(h, w) * rng.uniform(0.03, 0.08))
    right = rng.random() < 0.6
    x1 = w - margin if right else margin + length
    x0 = x1 - length
    y = h - margin - thick
    region = arr[max(0, y - 20) : h, max(0, x0) : x1]
    dark = region.size == 0 or _is_dark(region)
    colour: RGB = (255, 255, 255) if dark else (0, 0, 0)
    units = ("nm", "nm", "nm", "µm", "Å", "mm") if cls != "diffraction" else ("1/nm", "nm⁻¹", "Å⁻¹")
    val = int(rng.choice([1, 2, 5, 10, 20, 50, 100, 200, 500]))
    label = f"{val} {units[int(rng.integers(len(units)))]}"
    fs = int(np.clip(thick * rng.uniform(2.5, 5), 6, 30))
    font = _font(fs, "bold" if rng.random() < 0.6 else "sans")
    with_text = rng.random() < 0.7
    if rng.random() < 0.25:  # bar on a contrasting box
        back: RGB = (0, 0, 0) if colour == (255, 255, 255) else (255, 255, 255)
        top = y - (fs * 1.4 if with_text else 0) - thick
        draw.rectangle([x0 - thick * 2, top, x1 + thick * 2, y + thick * 3], fill=back)
    draw.rectangle([x0, y, x1, y + thick], fill=colour)
    if with_text:
        draw.text(((x0 + x1) / 2, y - thick), label, font=font, fill=colour, anchor="mb")


def _annotate(rng: Rng, img: Image.Image, arr: np.ndarray) -> None:
    h, w = arr.shape[:2]
    draw = ImageDraw.Draw(img)
    colour = _pick(rng, ((255, 255, 255), (255, 255, 0), (255, 0, 0), (0, 200, 255), (0, 0, 0)))
    fs = int(np.clip(rng.uniform(0.05, 0.09) * min(h, w), 6, 24))
    font = _rand_font(rng, fs)
    lw = max(1, fs // 7)
    for _ in range(int(rng.integers(1, 4))):
        k = rng.integers(4)
        x, y = rng.uniform(0.1, 0.8) * w, rng.uniform(0.15, 0.8) * h
        if k == 0:
            draw.text((x, y), _phrase(rng, 2), font=font, fill=colour)
        elif k == 1:
            _arrow(
                draw,
                (x, y),
                (x + rng.normal(0, w * 0.12), y + rng.normal(0, h * 0.12)),
                colour,
                lw,
                fs * 0.5,
            )
        elif k == 2:
            bw_, bh_ = rng.uniform(0.1, 0.4) * w, rng.uniform(0.1, 0.4) * h
            _dashed_rect(draw, (x, y, min(w - 2, x + bw_), min(h - 2, y + bh_)), colour, lw)
        else:
            r = rng.uniform(0.03, 0.1) * min(h, w)
            draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=lw)


def _inset(rng: Rng, img: Image.Image, h: int, w: int, cls: str) -> None:
    """A small inset in a corner: an FFT/diffraction in a micrograph, a micrograph in a graph."""
    s = int(min(h, w) * rng.uniform(0.22, 0.4))
    if s < 16:
        return
    src = {"microscopy": "diffraction", "graph": "microscopy", "diffraction": "microscopy"}.get(
        cls, "microscopy"
    )
    patch = GENERATORS[src](rng, s, s)
    x = (
        int(w - s - rng.uniform(0, 0.05) * w)
        if rng.random() < 0.6
        else int(rng.uniform(0, 0.05) * w)
    )
    y = int(rng.uniform(0, 0.05) * h)
    img.paste(Image.fromarray(patch), (x, y))
    ImageDraw.Draw(img).rectangle([x, y, x + s - 1, y + s - 1], outline=(255, 255, 255))


_SCALEBAR_P = {"microscopy": 0.7, "diffraction": 0.3, "photo": 0.08, "illustration": 0.03}
_ANNOTATE_P = {"microscopy": 0.35, "diffraction": 0.3, "photo": 0.2}
_INSET_P = {"microscopy": 0.12, "graph": 0.04, "diffraction": 0.05}


def _dress(rng: Rng, arr: np.ndarray, cls: str) -> np.ndarray:
    h, w = arr.shape[:2]
    img = Image.fromarray(arr)
    if rng.random() < _INSET_P.get(cls, 0.0):
        _inset(rng, img, h, w, cls)
    if rng.random() < _ANNOTATE_P.get(cls, 0.0):
        _annotate(rng, img, arr)
    if rng.random() < _SCALEBAR_P.get(cls, 0.0):
        _scale_bar(rng, img, arr, cls)
    if rng.random() < 0.45:
        _letter(rng, img, arr)
    if rng.random() < 0.08:
        ImageDraw.Draw(img).rectangle(
            [0, 0, w - 1, h - 1], outline=(0, 0, 0), width=int(rng.integers(1, 3))
        )
    return np.asarray(img).copy()


def _degrade(rng: Rng, arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if rng.random() < 0.35:  # the journal's or the PDF's resampling
        f = rng.uniform(0.4, 0.9)
        small = cv2.resize(
            arr, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA
        )
        arr = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.75:
        q = int(rng.integers(30, 96))
        ok, enc = cv2.imencode(".jpg", arr[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        dec = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
        if dec is not None:
            arr = dec[:, :, ::-1]
    return np.ascontiguousarray(arr)


GENERATORS: dict[str, Callable[[Rng, int, int], np.ndarray]] = {
    "microscopy": _microscopy,
    "diffraction": _diffraction,
    "graph": _graph,
    "illustration": _illustration,
    "photo": _photo,
    "unclear": _unclear,
}
"""The raw generators ``(rng, height, width) -> RGB uint8``, without dressing."""


def make_panel(
    cls: str, rng: np.random.Generator, *, size: tuple[int, int] = (256, 256), dress: bool = True
) -> np.ndarray:
    """One synthetic panel of class ``cls``.

    Parameters
    ----------
    cls
        One of :data:`~emdig.figures.records.PANEL_CLASSES`.
    rng
        The random generator; the same generator state gives the same panel.
    size
        ``(height, width)`` in pixels, each at least 8.
    dress
        Add letters, scale bars, annotations, insets, white margins, resampling and JPEG.

    Returns
    -------
    numpy.ndarray
        RGB ``uint8``, shape ``(height, width, 3)``.
    """
    if cls not in GENERATORS:
        raise ValueError(f"unknown panel class {cls!r}: one of {', '.join(PANEL_CLASSES)}")
    h, w = (int(v) for v in size)
    if h < 8 or w < 8:
        raise ValueError(f"panel size {size} is too small: at least 8 x 8 px")
    # rough crops: white margins around the content, more often around drawn panels
    pad = (0, 0, 0, 0)
    p_margin = 0.35 if cls in ("graph", "illustration") else 0.15
    if dress and cls != "unclear" and rng.random() < p_margin:
        pad = tuple(int(v) for v in rng.uniform(0, 0.08, 4) * (h, h, w, w))  # type: ignore[assignment]
    ih, iw = max(8, h - pad[0] - pad[1]), max(8, w - pad[2] - pad[3])
    arr = GENERATORS[cls](rng, ih, iw)
    if dress:
        arr = _dress(rng, arr, cls)
    if (ih, iw) != (h, w):
        out = np.full((h, w, 3), 255, np.uint8)
        out[pad[0] : pad[0] + ih, pad[2] : pad[2] + iw] = arr[: h - pad[0], : w - pad[2]]
        arr = out
    if dress:
        arr = _degrade(rng, arr)
    return np.ascontiguousarray(arr[:h, :w])


def make_panels(
    n_per_class: int,
    *,
    seed: int,
    size_range: tuple[int, int] = (96, 400),
    classes: Sequence[str] = PANEL_CLASSES,
) -> tuple[list[np.ndarray], list[int]]:
    """``n_per_class`` panels of each class, of random sizes and aspect ratios.

    Panel ``i`` of class ``c`` depends only on ``(seed, c, i)``, so sets of different sizes
    share their first panels and can be generated in parallel pieces.

    Returns
    -------
    (panels, labels)
        RGB ``uint8`` arrays and their indices into ``classes``.
    """
    panels: list[np.ndarray] = []
    labels: list[int] = []
    for ci, cls in enumerate(classes):
        for i in range(n_per_class):
            rng, size = _panel_args(seed, PANEL_CLASSES.index(cls), i, size_range)
            panels.append(make_panel(cls, rng, size=size))
            labels.append(ci)
    return panels, labels


def _panel_args(
    seed: int, ci: int, i: int, size_range: tuple[int, int]
) -> tuple[np.random.Generator, tuple[int, int]]:
    rng = np.random.default_rng([seed, ci, i])
    side = math.exp(rng.uniform(math.log(size_range[0]), math.log(size_range[1])))
    aspect = math.exp(rng.uniform(-1.0, 1.0))  # up to 2.7 : 1, as whole-width schemes are
    h = int(np.clip(side / math.sqrt(aspect), 16, size_range[1] * 1.5))
    w = int(np.clip(side * math.sqrt(aspect), 16, size_range[1] * 1.5))
    return rng, (h, w)
