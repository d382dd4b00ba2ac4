"""Synthetic panels: shapes, determinism, and the look each class is defined by."""

from __future__ import annotations

import numpy as np
import pytest

from emdig.figures.records import PANEL_CLASSES
from emdig.figures.synth_panels import GENERATORS, make_panel, make_panels


def _rgb01(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / 255


def _white_fraction(a: np.ndarray) -> float:
    """Pixels that are white or off-white paper."""
    return float((a.min(axis=2) > 225).mean())


def _luminance(a: np.ndarray) -> np.ndarray:
    return _rgb01(a) @ np.array([0.299, 0.587, 0.114], np.float32)


def _chroma(a: np.ndarray) -> float:
    f = _rgb01(a)
    return float((f.max(axis=2) - f.min(axis=2)).mean())


def _panels(cls: str, n: int, *, dress: bool, seed: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, PANEL_CLASSES.index(cls)])
    return [make_panel(cls, rng, size=(160, 200), dress=dress) for _ in range(n)]


def test_every_class_has_a_generator() -> None:
    assert set(GENERATORS) == set(PANEL_CLASSES)


@pytest.mark.parametrize("cls", PANEL_CLASSES)
@pytest.mark.parametrize("size", [(8, 8), (20, 240), (240, 20), (97, 131)])
def test_shape_and_dtype(cls: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        a = make_panel(cls, rng, size=size)
        assert a.shape == (*size, 3)
        assert a.dtype == np.uint8
        assert a.flags.c_contiguous


@pytest.mark.parametrize("cls", PANEL_CLASSES)
def test_same_seed_same_panel(cls: str) -> None:
    a = make_panel(cls, np.random.default_rng(11), size=(120, 150))
    b = make_panel(cls, np.random.default_rng(11), size=(120, 150))
    c = make_panel(cls, np.random.default_rng(12), size=(120, 150))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown panel class"):
        make_panel("chart", rng)
    with pytest.raises(ValueError, match="too small"):
        make_panel("graph", rng, size=(4, 100))


def test_graphs_and_illustrations_are_drawn_on_white() -> None:
    # a plot or a schematic is ink on paper: most of its pixels are white
    # (schematics are drawn on colour or dark grounds too: 70 % white, 15 % off-white)
    for cls, floor in (("graph", 0.9), ("illustration", 0.6)):
        frac = [_white_fraction(a) for a in _panels(cls, 30, dress=False)]
        assert np.mean(np.array(frac) > 0.4) >= floor, (cls, np.round(frac, 2))


def test_graphs_have_axes() -> None:
    # an axis is a long straight dark line: some row or column is dark over most of the panel
    # (anti-aliased thin lines are grey, hence the 0.75)
    hits = 0
    for a in _panels("graph", 30, dress=False):
        dark = _luminance(a) < 0.75
        if max(dark.mean(axis=0).max(), dark.mean(axis=1).max()) > 0.6:
            hits += 1
    assert hits >= 27


def test_diffraction_is_bright_on_dark() -> None:
    # most of a diffraction pattern is dark background; the brightest pixels are rare
    lum = [_luminance(a) for a in _panels("diffraction", 30, dress=False)]
    dark = [float(np.median(v)) < 0.35 for v in lum]
    sparse = [float((v > 0.8).mean()) < 0.2 for v in lum]
    assert np.mean(dark) >= 0.8
    assert np.mean(sparse) >= 0.8


def test_microscopy_is_mostly_grey_and_not_paper() -> None:
    panels = _panels("microscopy", 40, dress=False)
    assert np.mean([_white_fraction(a) < 0.5 for a in panels]) >= 0.9
    # most micrographs are grey-scale; EDS, fluorescence, optical and false colour are a minority
    grey = np.mean([_chroma(a) < 0.02 for a in panels])
    assert 0.5 <= grey <= 0.95


def test_photos_are_colourful_and_textured() -> None:
    panels = _panels("photo", 30, dress=False)
    assert np.mean([_chroma(a) > 0.05 for a in panels]) >= 0.9
    # camera noise: neighbouring pixels differ, unlike flat drawn colour
    noisy = [float(np.abs(np.diff(_luminance(a), axis=1)).mean()) > 0.003 for a in panels]
    assert np.mean(noisy) >= 0.9


def test_unclear_includes_blank_and_text_crops() -> None:
    panels = _panels("unclear", 60, dress=False)
    flat = [float(_luminance(a).std()) < 0.05 for a in panels]
    assert 0.05 <= np.mean(flat) <= 0.6


def test_dressing_adds_scale_bars_and_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    # on a flat grey "micrograph" every black or white mark comes from the dressing
    def flat(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        return np.full((h, w, 3), 128, np.uint8)

    monkeypatch.setitem(GENERATORS, "microscopy", flat)
    rng = np.random.default_rng(5)
    bars = letters = 0
    n = 40
    for _ in range(n):
        a = make_panel("microscopy", rng, size=(150, 200))
        extreme = (a.min(axis=2) > 225) | (a.max(axis=2) < 30)
        bottom = extreme[100:]
        # a scale bar: at least 12 % of the width in one row, in one run
        run = max((np.convolve(r.astype(float), np.ones(24), "valid") >= 24).any() for r in bottom)
        bars += bool(run)
        letters += bool(extreme[:30, :40].any())
    assert 0.5 * n <= bars <= 0.95 * n  # drawn with probability 0.7
    assert 0.25 * n <= letters <= 0.8 * n  # probability 0.45, plus margins and frames


def test_make_panels_labels_and_prefix_property() -> None:
    panels, labels = make_panels(2, seed=4, size_range=(40, 80))
    assert labels == [c for c in range(len(PANEL_CLASSES)) for _ in range(2)]
    assert all(min(p.shape[:2]) >= 40 * 0.5 and max(p.shape[:2]) <= 80 * 1.5 for p in panels)
    more, _ = make_panels(3, seed=4, size_range=(40, 80))
    # panel i of class c depends only on (seed, c, i)
    for c in range(len(PANEL_CLASSES)):
        assert np.array_equal(panels[2 * c], more[3 * c])
        assert np.array_equal(panels[2 * c + 1], more[3 * c + 1])
    sub, sub_labels = make_panels(1, seed=4, size_range=(40, 80), classes=("graph", "photo"))
    assert sub_labels == [0, 1]
    assert np.array_equal(sub[0], panels[2 * PANEL_CLASSES.index("graph")])
