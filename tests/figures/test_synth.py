"""Synthetic compound figures: the truth they report matches the pixels they draw."""

from __future__ import annotations

import numpy as np
import pytest

from emdig.figures.synth import (
    LABEL_STYLES,
    format_label,
    make_compound_figure,
    micrograph_texture,
    plot_panel,
)

WHITE = 255


def _ink(fig: np.ndarray) -> np.ndarray:
    return (WHITE - fig.astype(np.int16)).max(axis=2) > 40


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


@pytest.mark.parametrize("seed", range(6))
def test_truth_is_consistent_with_pixels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fig, t = make_compound_figure(rng, insets=True, jpeg_quality=None)
    h, w = fig.shape[:2]
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3
    n = len(t.panels)
    assert len(t.labels) == len(t.label_boxes) == len(t.kinds) == len(t.parts) == n
    # letters a, b, c ... in the order the panels are listed
    assert t.labels == [chr(ord("a") + i) for i in range(n)]
    ink = _ink(fig)
    for i, b in enumerate(t.panels):
        assert 0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h
        # tight: ink on every edge of the box, none just outside it (except labels)
        inner = ink[b[1] : b[3], b[0] : b[2]]
        assert inner[0].any() and inner[-1].any() and inner[:, 0].any() and inner[:, -1].any()
        for j, c in enumerate(t.panels):
            if j != i:
                assert _overlap(b, c) == 0
    for lb, b in zip(t.label_boxes, t.panels, strict=True):
        assert lb is not None
        # the label's box holds the glyph's ink, and is small next to its panel
        assert ink[lb[1] : lb[3], lb[0] : lb[2]].mean() > 0.1 or t.label_inside
        assert (lb[2] - lb[0]) * (lb[3] - lb[1]) < 0.2 * (b[2] - b[0]) * (b[3] - b[1])
    for ib, p in zip(t.insets, t.inset_parent, strict=True):
        pb = t.panels[p]
        assert pb[0] <= ib[0] < ib[2] <= pb[2] and pb[1] <= ib[1] < ib[3] <= pb[3]


def test_touching_panels_tile_the_figure() -> None:
    fig, t = make_compound_figure(np.random.default_rng(3), n_panels=6, touching=True)
    h, w = fig.shape[:2]
    area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in t.panels)
    assert area == h * w  # no gutters, no overlaps (pairwise overlap is checked above)
    assert t.label_inside and t.touching


def test_same_seed_same_figure() -> None:
    a, ta = make_compound_figure(np.random.default_rng(11))
    b, tb = make_compound_figure(np.random.default_rng(11))
    assert np.array_equal(a, b) and ta.panels == tb.panels


def test_grouped_panel_has_two_parts() -> None:
    for seed in range(20):
        _fig, t = make_compound_figure(
            np.random.default_rng(seed), n_panels=4, grouped=True, plots=0.0
        )
        two = [p for p in t.parts if len(p) == 2]
        if two:
            (a, b) = two[0]
            assert a[2] < b[0]  # side by side, with a gap
            return
    pytest.fail("no grouped panel drawn in 20 figures")


def test_panel_fill_draws_every_panel() -> None:
    calls: list[tuple[int, int]] = []

    def fill(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        calls.append((h, w))
        return np.full((h, w, 3), (10, 200, 30), np.uint8)

    fig, t = make_compound_figure(
        np.random.default_rng(0), n_panels=4, panel_fill=fill, jpeg_quality=None
    )
    assert len(calls) == 4 and t.kinds == ["fill"] * 4
    for b in t.panels:
        patch = fig[b[1] : b[3], b[0] : b[2]].reshape(-1, 3)
        share = np.mean(np.all(patch == (10, 200, 30), axis=1))
        assert share > 0.95  # all fill, but for a label drawn over it
        assert (b[3] - b[1], b[2] - b[0]) in calls


def test_label_styles() -> None:
    assert [format_label("c", s) for s in LABEL_STYLES] == ["c", "C", "(c)", "c)"]
    with pytest.raises(ValueError, match="label_style"):
        format_label("a", "[a]")
    with pytest.raises(ValueError, match="layout"):
        make_compound_figure(np.random.default_rng(0), layout="spiral")


def test_content_generators() -> None:
    rng = np.random.default_rng(0)
    for kind in ("noise", "blobs", "lattice"):
        tex = micrograph_texture(rng, 64, 80, kind=kind)
        assert tex.shape == (64, 80, 3) and tex.dtype == np.uint8 and tex.std() > 5
    plot = plot_panel(rng, 120, 160)
    assert plot.shape == (120, 160, 3)
    white = np.all(plot == 255, axis=2).mean()
    assert 0.6 < white < 0.99  # mostly page, with axes, numbers and curves
