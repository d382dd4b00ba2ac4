"""Panel splitting: gutters, touching images, insets, reading order, and synthetic figures."""

from __future__ import annotations

import numpy as np
import pytest

from emdig.figures.panels import (
    as_rgb,
    background_colour,
    cut_strength,
    reading_order,
    split_panels,
    split_panels_detailed,
)
from emdig.figures.synth import make_compound_figure, micrograph_texture


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def matched(pred: list, truth: list, thr: float = 0.8) -> int:
    """Greedy one-to-one matches at IoU >= thr."""
    pairs = sorted(
        ((iou(p, t), i, j) for i, t in enumerate(truth) for j, p in enumerate(pred)), reverse=True
    )
    used_t: set[int] = set()
    used_p: set[int] = set()
    for v, i, j in pairs:
        if v >= thr and i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    return len(used_t)


def test_gutters_give_tight_boxes() -> None:
    fig = np.full((300, 400, 3), 255, np.uint8)
    rng = np.random.default_rng(0)
    boxes = [(12, 10, 190, 140), (210, 10, 390, 140), (12, 160, 390, 290)]
    for x0, y0, x1, y1 in boxes:
        fig[y0:y1, x0:x1] = micrograph_texture(rng, y1 - y0, x1 - x0)
    # a darker texture may still have pixels near white: content, not page
    assert split_panels(fig) == boxes


def test_single_image_and_empty_figure() -> None:
    rng = np.random.default_rng(1)
    tex = micrograph_texture(rng, 200, 260)
    assert split_panels(tex) == [(0, 0, 260, 200)]
    assert split_panels(np.full((50, 60, 3), 255, np.uint8)) == []
    # grey input works the same
    assert split_panels(tex[:, :, 0]) == [(0, 0, 260, 200)]


def test_touching_images_are_cut_at_their_edge() -> None:
    rng = np.random.default_rng(2)
    left = micrograph_texture(rng, 240, 170, kind="noise")
    right = micrograph_texture(rng, 240, 150, kind="blobs")
    right = np.clip(right.astype(np.int16) + (60 if left.mean() < right.mean() else -60), 0, 255)
    fig = np.concatenate([left, right.astype(np.uint8)], axis=1)
    boxes = split_panels(fig)
    assert len(boxes) == 2
    assert abs(boxes[0][2] - 170) <= 1 and abs(boxes[1][0] - 170) <= 1


def test_cut_strength_peaks_at_the_true_edge() -> None:
    rng = np.random.default_rng(4)
    top = micrograph_texture(rng, 120, 200, kind="noise")
    bottom = np.clip(micrograph_texture(rng, 100, 200, kind="blobs").astype(int) // 2, 0, 255)
    fig = np.concatenate([top, bottom.astype(np.uint8)], axis=0)
    box = (0, 0, 200, 220)
    strength, pos = cut_strength(fig, box, axis=0, pos=118, search=4)
    assert pos == 120 and strength > 20
    # inside one image there is no such edge
    inner, _ = cut_strength(fig, box, axis=0, pos=60, search=4)
    assert inner < strength / 3


def test_inset_is_not_a_panel_but_is_reported() -> None:
    rng = np.random.default_rng(3)
    fig = np.full((260, 520, 3), 255, np.uint8)
    fig[10:250, 10:250] = micrograph_texture(rng, 240, 240, kind="noise")
    fig[10:250, 270:510] = micrograph_texture(rng, 240, 240, kind="lattice")
    inset = (180, 14, 246, 80)  # a dark square with a white frame, top-right of panel one
    fig[inset[1] : inset[3], inset[0] : inset[2]] = 20
    fig[inset[1] : inset[3], inset[0] : inset[0] + 2] = 255
    fig[inset[1] : inset[3], inset[2] - 2 : inset[2]] = 255
    fig[inset[1] : inset[1] + 2, inset[0] : inset[2]] = 255
    fig[inset[3] - 2 : inset[3], inset[0] : inset[2]] = 255
    layout = split_panels_detailed(fig)
    assert layout.panels == [(10, 10, 250, 250), (270, 10, 510, 250)]
    assert len(layout.insets) == 1 and layout.inset_parent == [0]
    assert iou(layout.insets[0], inset) > 0.9


def test_plot_scraps_join_their_plot() -> None:
    fig, truth = make_compound_figure(
        np.random.default_rng(5), n_panels=2, layout="grid", plots=1.0, jpeg_quality=None
    )
    boxes = split_panels(fig)
    assert len(boxes) == 2
    assert all(iou(b, t) > 0.9 for b, t in zip(boxes, truth.panels, strict=True))


def test_reading_order_rows_then_columns() -> None:
    boxes = [(300, 5, 400, 100), (0, 150, 100, 250), (0, 0, 100, 110), (150, 10, 250, 90)]
    assert reading_order(boxes) == [2, 3, 0, 1]


def test_background_and_input_checks() -> None:
    fig = np.full((40, 50, 3), (240, 240, 250), np.uint8)
    assert background_colour(fig) == (240, 240, 250)
    with pytest.raises(ValueError, match="shape"):
        as_rgb(np.zeros((4, 4, 5), np.uint8))
    f16 = as_rgb(np.linspace(0, 1000, 100, dtype=np.float32).reshape(10, 10))
    assert f16.dtype == np.uint8 and f16.max() == 255 and f16.min() == 0


def test_synthetic_figures_recall_and_precision() -> None:
    """Gutters, insets and plots: panel boxes within IoU 0.8 of the truth."""
    rng = np.random.default_rng(2024)
    tp = n_pred = n_truth = 0
    for k in range(12):
        fig, t = make_compound_figure(rng, insets=k % 2 == 1)
        pred = split_panels(fig)
        tp += matched(pred, t.panels)
        n_pred += len(pred)
        n_truth += len(t.panels)
    assert tp / n_truth >= 0.9
    assert tp / n_pred >= 0.9
