"""Scale bars: bars drawn with known lengths and labels, label crops with transcriptions, and
(marked ``shared_data``) EXSCLAIM's scale-bar images and a Nature Communications article whose
bars were measured by hand from pixel profiles."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import SHARED
from emdig.figures.records import ScaleBar, ScaleLabel
from emdig.figures.scalebar import (
    clean_ocr_text,
    evaluate_label_crops,
    find_scale_bars,
    panel_calibration,
    read_scale_label,
)
from emdig.figures.units import Length, parse_length

LIT = SHARED / "literature"


# --------------------------------------------------------------------------------------------
# generated figures
# --------------------------------------------------------------------------------------------


def _texture(h: int, w: int, seed: int, lo: int = 70, hi: int = 170) -> np.ndarray:
    """Blurred noise between grey levels lo and hi: a stand-in for a micrograph."""
    rng = np.random.default_rng(seed)
    n = cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), 3)
    n = (n - n.min()) / (n.max() - n.min())
    g = (lo + (hi - lo) * n).astype(np.uint8)
    return np.dstack([g, g, g])


def _draw_bar(
    img: np.ndarray,
    x0: int,
    y0: int,
    *,
    length: int,
    thick: int,
    colour: tuple[int, int, int],
    ticks: int = 0,
    label: str | None = None,
    where: str = "above",
    font_size: int = 16,
) -> np.ndarray:
    """Draw a bar covering columns x0 .. x0+length-1 (ticks one pixel wide at both ends)."""
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    d.rectangle((x0, y0, x0 + length - 1, y0 + thick - 1), fill=colour)
    for x in (x0, x0 + length - 1) if ticks else ():
        d.rectangle((x, y0 - ticks, x, y0 + thick - 1 + ticks), fill=colour)
    if label:
        font = ImageFont.load_default(size=font_size)
        left, top, right, bottom = d.textbbox((0, 0), label, font=font)
        tw, th = right - left, bottom - top
        if where == "above":
            pos = (x0 + length / 2 - tw / 2 - left, y0 - ticks - 5 - th - top)
        elif where == "below":
            pos = (x0 + length / 2 - tw / 2 - left, y0 + thick + ticks + 5 - top)
        else:  # right of the bar, centred on it
            pos = (x0 + length + 8 - left, y0 + thick / 2 - th / 2 - top)
        d.text(pos, label, font=font, fill=colour)
    return np.asarray(im).copy()


WHITE, BLACK = (255, 255, 255), (0, 0, 0)

# (background, colour, length px, thickness px, tick px, label, where); the default font has
# no µ glyph, so micrometres are written "um" as many figures do.
GENERATED = [
    ("texture", WHITE, 120, 5, 0, "200 nm", "above"),
    ("texture", BLACK, 87, 4, 0, "50 nm", "below"),
    ("texture", WHITE, 64, 2, 6, "1 um", "above"),
    ("texture", WHITE, 150, 8, 0, None, "above"),
    ("strip", BLACK, 100, 3, 0, "0.5 um", "right"),
    ("strip", BLACK, 73, 2, 5, "2 nm", "right"),
    ("texture", BLACK, 41, 3, 0, "10 nm", "above"),
]


@pytest.mark.parametrize(("bg", "colour", "length", "thick", "ticks", "label", "where"), GENERATED)
def test_generated_bar_length_and_label(
    bg: str,
    colour: tuple[int, int, int],
    length: int,
    thick: int,
    ticks: int,
    label: str | None,
    where: str,
) -> None:
    seed = length  # a different texture per case
    if bg == "texture":
        img = _texture(300, 400, seed)
        x0, y0 = 400 - 30 - length, 300 - 40
    else:  # a white label strip under the image
        img = np.full((340, 400, 3), 255, np.uint8)
        img[:300] = _texture(300, 400, seed)
        x0, y0 = 20, 318
    img = _draw_bar(
        img,
        x0,
        y0,
        length=length,
        thick=thick,
        colour=colour,
        ticks=ticks,
        label=label,
        where=where,
    )
    bars = find_scale_bars(img)
    assert len(bars) == 1, bars
    bar = bars[0]
    # a plain bar covers `length` pixels edge to edge; ticks are measured centre to centre
    want = length - 1 if ticks else length
    assert bar.length_px == pytest.approx(want, rel=0.02)
    assert bar.box[0] - 1 <= x0 <= bar.box[0] + 1
    if label is None:
        assert bar.label is None
    else:
        expected = parse_length(label)
        assert expected is not None and bar.label is not None
        assert (bar.label.value, bar.label.unit) == (expected.value, expected.unit)
        assert bar.label.nm == pytest.approx(expected.nm)


def test_region_limits_the_search_and_keeps_figure_coordinates() -> None:
    img = np.full((200, 600, 3), 255, np.uint8)
    img[:, :300] = _texture(200, 300, 1)
    img[:, 300:] = _texture(200, 300, 2)
    img = _draw_bar(img, 150, 170, length=100, thick=4, colour=WHITE, label="20 nm")
    img = _draw_bar(img, 450, 170, length=60, thick=4, colour=WHITE, label="5 nm")
    both = find_scale_bars(img)
    assert sorted(round(b.length_px) for b in both) == [60, 100]
    right = find_scale_bars(img, region=(300, 0, 600, 200))
    assert len(right) == 1
    assert right[0].box[0] == 450 and right[0].length_px == pytest.approx(60, rel=0.02)
    assert right[0].label is not None and right[0].label.value == 5
    assert right[0].label.box[0] > 300  # label box in figure pixels too


def test_grey_input_gives_the_same_bar() -> None:
    img = _draw_bar(_texture(200, 300, 3), 100, 160, length=90, thick=4, colour=WHITE)
    rgb = find_scale_bars(img)
    grey = find_scale_bars(img[:, :, 0])
    assert len(rgb) == len(grey) == 1
    assert rgb[0].length_px == pytest.approx(grey[0].length_px)


def _plot() -> np.ndarray:
    """A line plot: axes with ticks, tick labels, a curve and two legend entries."""
    im = Image.new("RGB", (400, 300), WHITE)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=14)
    d.line((50, 250, 380, 250), fill=BLACK, width=2)  # x axis
    d.line((50, 20, 50, 250), fill=BLACK, width=2)  # y axis
    for i in range(6):
        x = 50 + i * 60
        d.line((x, 250, x, 256), fill=BLACK, width=2)
        d.text((x - 4, 260), str(i), font=font, fill=BLACK)
    xs = np.linspace(55, 375, 200)
    ys = 150 - 80 * np.exp(-(((xs - 200) / 40) ** 2))
    d.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=BLACK, width=2)
    d.line((260, 40, 300, 40), fill=BLACK, width=3)  # legend: a black line and its name
    d.text((306, 32), "data", font=font, fill=BLACK)
    d.line((260, 62, 300, 62), fill=(220, 30, 30), width=3)
    d.text((306, 54), "fit", font=font, fill=BLACK)
    return np.asarray(im).copy()


def test_no_bars_in_a_plot_or_blank_images() -> None:
    assert find_scale_bars(_plot()) == []
    assert find_scale_bars(np.full((100, 100, 3), 255, np.uint8)) == []
    assert find_scale_bars(_texture(200, 200, 7)) == []
    assert find_scale_bars(np.zeros((5, 5), np.uint8)) == []


def test_arrows_and_dashed_lines_are_not_bars() -> None:
    img = _texture(300, 400, 11)
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    # a white arrow pointing left: a shaft with a head
    d.line((120, 60, 200, 60), fill=WHITE, width=3)
    d.polygon([(110, 60), (124, 52), (124, 68)], fill=WHITE)
    # a dashed white box edge
    for x in range(40, 360, 16):
        d.line((x, 200, x + 9, 200), fill=WHITE, width=2)
    assert find_scale_bars(np.asarray(im)) == []


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("-l0O_nrn-", "100 nm"),
        ("lum", "1 um"),
        ("100.nm", "100 nm"),
        ("50 nn", "50 nm"),
        ("2O0 μm", "200 µm"),
        ("5,0 nm", "5.0 nm"),
        ("I0 nm", "10 nm"),
        ("'200nm*", "200 nm"),
    ],
)
def test_clean_ocr_text(raw: str, clean: str) -> None:
    assert clean_ocr_text(raw) == clean


def _label_crop(text: str, *, fg: int, bg: int, size: int = 20) -> np.ndarray:
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    im = Image.new("L", (right - left + 8, bottom - top + 8), bg)
    ImageDraw.Draw(im).text((4 - left, 4 - top), text, font=font, fill=fg)
    return np.asarray(im).copy()


@pytest.mark.parametrize(
    ("text", "fg", "bg"),
    [("500 nm", 0, 255), ("2 um", 255, 0), ("0.2 nm", 0, 230), ("100 nm", 255, 40)],
)
def test_read_scale_label(text: str, fg: int, bg: int) -> None:
    crop = _label_crop(text, fg=fg, bg=bg)
    lab = read_scale_label(crop)
    want = parse_length(text)
    assert want is not None and lab is not None
    assert (lab.value, lab.unit, lab.nm) == (want.value, want.unit, want.nm)
    assert lab.box == (0, 0, crop.shape[1], crop.shape[0])
    assert 0 < lab.confidence <= 1


def test_read_scale_label_without_a_length() -> None:
    assert read_scale_label(_label_crop("Ag", fg=0, bg=255)) is None
    assert read_scale_label(np.full((3, 3), 128, np.uint8)) is None


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def _bar(x: int, length: float, label: str | None, conf: float = 0.9) -> ScaleBar:
    lab = None
    if label is not None:
        ln = parse_length(label)
        assert ln is not None
        lab = ScaleLabel((x, 80, x + 40, 95), label, ln.value, ln.unit, ln.nm, conf)
    return ScaleBar((x, 100, x + int(length), 104), length, conf, lab)


def test_panel_calibration_from_a_label() -> None:
    bar = _bar(20, 50.0, "200 nm")
    nm_px, source, used = panel_calibration((0, 0, 300, 300), [bar])
    assert (nm_px, source, used) == (pytest.approx(4.0), "scale_bar", bar)


def test_panel_calibration_ignores_bars_outside_the_panel() -> None:
    outside = _bar(400, 50.0, "200 nm")
    assert panel_calibration((0, 0, 300, 300), [outside]) == (None, None, None)


def test_panel_calibration_from_the_caption() -> None:
    bar = _bar(20, 40.0, None, conf=0.5)
    caption = Length(2.0, "nm", 2.0)
    nm_px, source, used = panel_calibration((0, 0, 300, 300), [bar], caption_length=caption)
    assert (nm_px, source, used) == (pytest.approx(0.05), "caption", bar)
    # no bar in the panel: the caption alone does not calibrate
    assert panel_calibration((0, 0, 10, 10), [bar], caption_length=caption) == (None, None, None)
    # a read label wins over the caption
    labelled = _bar(20, 40.0, "10 nm")
    assert panel_calibration((0, 0, 300, 300), [labelled], caption_length=caption)[1] == "scale_bar"


def test_panel_calibration_prefers_the_consistent_labels() -> None:
    # two bars agree on 2 nm/px; a misread label (more confident) disagrees
    good1, good2 = _bar(10, 50.0, "100 nm", 0.8), _bar(100, 100.0, "200 nm", 0.7)
    misread = _bar(200, 50.0, "10 nm", 0.95)
    nm_px, source, used = panel_calibration((0, 0, 300, 300), [misread, good1, good2])
    assert nm_px == pytest.approx(2.0) and source == "scale_bar" and used in (good1, good2)


def test_panel_calibration_skips_reciprocal_labels() -> None:
    fft = _bar(20, 50.0, "5 1/nm")
    assert panel_calibration((0, 0, 300, 300), [fft]) == (None, None, None)


# --------------------------------------------------------------------------------------------
# shared data
# --------------------------------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.mark.shared_data
@pytest.mark.slow
def test_label_crops_accuracy() -> None:
    folder = _need(LIT / "scalebar-labels")
    result = evaluate_label_crops(folder)
    assert result["n"] == 252
    assert result["accuracy"] >= 0.95, result["failures"]


def _rgb(path: Path) -> np.ndarray:
    with Image.open(_need(path)) as im:
        return np.asarray(im.convert("RGB")).copy()


def _match(bars: list[ScaleBar], x: int, y: int) -> ScaleBar:
    near = [b for b in bars if abs(b.box[0] - x) <= 3 and abs(b.box[1] - y) <= 3]
    assert near, f"no bar at ({x}, {y}); found {[b.box for b in bars]}"
    return near[0]


# Checked by eye on drawn boxes: (x0, y0 of the bar, label as printed)
EXSCLAIM_IMAGES = {
    "basic_figure.jpg": [
        (194, 158, "1 µm"),
        (416, 160, "200 nm"),
        (645, 157, "200 nm"),
        (188, 332, "200 nm"),
        (420, 330, "200 nm"),
        (645, 332, "200 nm"),
    ],
    "blue_scale_labels.jpg": [
        (486, 118, "200 µm"),
        (645, 118, "1 µm"),
        (484, 236, "200 nm"),
        (629, 236, "200 nm"),
        (631, 393, "1 µm"),  # blue bar and label
        (645, 539, "5 µm"),  # blue bar and label
        (641, 684, "5 µm"),
    ],
    "white_and_black_scale_objects.png": [(19, 149, "2 nm"), (205, 161, "2 nm")],
    "white_scale_bars_no_labels.jpg": [
        (323, 189, None),
        (509, 189, None),
        (323, 399, None),
        (510, 399, None),
    ],
    "no_scale_objects.jpg": [],
}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(EXSCLAIM_IMAGES))
def test_exsclaim_scale_bar_images(name: str) -> None:
    bars = find_scale_bars(_rgb(LIT / "scalebar-images" / name))
    expected = EXSCLAIM_IMAGES[name]
    assert len(bars) == len(expected), [b.box for b in bars]
    for x, y, text in expected:
        bar = _match(bars, x, y)
        if text is None:
            assert bar.label is None
        else:
            want = parse_length(text)
            assert want is not None and bar.label is not None
            assert (bar.label.value, bar.label.unit) == (want.value, want.unit)


# Bars in figures 1 and 2 of Nature Commun. 9, s41467-018-06211-3, with no label in the image.
# Lengths measured by hand: the half-maximum crossings of the bar's row profile against the
# background a few pixels past each end. (x0, y0, px, stated length in the caption)
NATURE_BARS = {
    1: [
        (184, 373, 23.8, "5 µm"),  # c
        (184, 462, 24.9, "500 nm"),  # d
        (407, 456, 40.1, "200 nm"),  # e
        (648, 459, 22.8, "100 nm"),  # f
        (173, 651, 36.1, "4 nm"),  # g
        (418, 652, 22.9, "1 nm"),  # h
        (649, 653, 23.2, "1 nm"),  # i
    ],
    2: [
        (208, 242, 58.3, "1 nm"),  # a
        (356, 117, 18.0, "1 nm"),  # a, Ag map
        (356, 242, 17.9, "1 nm"),  # a, Mn map
        (625, 180, 30.1, "0.2 nm"),  # c
        (628, 389, 27.9, "0.2 nm"),  # d
        (267, 726, 33.2, "50 nm"),  # f
    ],
}


@pytest.mark.shared_data
@pytest.mark.parametrize("fig", sorted(NATURE_BARS))
def test_nature_figure_bars_match_hand_measurements(fig: int) -> None:
    bars = find_scale_bars(_rgb(LIT / "figures" / f"s41467-018-06211-3_fig{fig}.jpg"))
    for x, y, px, stated in NATURE_BARS[fig]:
        bar = _match(bars, x, y)
        assert bar.length_px == pytest.approx(px, rel=0.05)
        # calibrated from the caption: the bar is unlabelled in the image
        caption = parse_length(stated)
        assert caption is not None and caption.nm is not None
        panel = (bar.box[0] - 5, bar.box[1] - 5, bar.box[2] + 5, bar.box[3] + 5)
        nm_px, source, _ = panel_calibration(panel, [bar], caption_length=caption)
        assert source == "caption" and nm_px == pytest.approx(caption.nm / px, rel=0.05)


@pytest.mark.shared_data
@pytest.mark.parametrize("fig", [3, 4, 5])
def test_nature_plot_figures_have_no_bars(fig: int) -> None:
    assert find_scale_bars(_rgb(LIT / "figures" / f"s41467-018-06211-3_fig{fig}.jpg")) == []
