# SPDX-License-Identifier: GPL-3.0-or-later
"""Point matching and the evaluation report, checked against hand counts and exact search."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from emdig.particles.annotations import Points, read_annotations
from emdig.particles.evaluate import evaluate, hull_region_mask, match_points

IMMUNOGOLD = Path(__file__).resolve().parents[3] / "shared" / "data" / "immunogold"


def pts(
    xy: list[tuple[float, float]] | list[list[float]],
    image: str = "a",
    *,
    diameter_nm: float | None = None,
    class_nm: float | None = None,
) -> Points:
    arr = np.asarray(xy, dtype=float).reshape(-1, 2)
    return Points.create(
        image=image, x_px=arr[:, 0], y_px=arr[:, 1], diameter_nm=diameter_nm, class_nm=class_nm
    )


def greedy_nearest_count(pred: Points, truth: Points, radius: float) -> int:
    """Closest-pair-first greedy matching, the common shortcut that is not optimal."""
    d = np.hypot(pred.x_px[:, None] - truth.x_px[None], pred.y_px[:, None] - truth.y_px[None])
    used_p: set[int] = set()
    used_t: set[int] = set()
    for flat in np.argsort(d, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, d.shape)
        if d[i, j] <= radius and i not in used_p and j not in used_t:
            used_p.add(int(i))
            used_t.add(int(j))
    return len(used_p)


def exact_best(dist: np.ndarray, radius: np.ndarray) -> tuple[int, float]:
    """Exhaustive search over all partial one-to-one assignments (truth rows x pred columns).

    Returns the largest number of pairs within radius and, for that number, the least total
    distance. Memoised on (truth row, set of used predictions), so it is exact and fast for
    up to 7 x 7 points.
    """
    n_t, n_p = dist.shape

    @functools.cache
    def best(i: int, used: int) -> tuple[int, float]:
        if i == n_t:
            return 0, 0.0
        count, total = best(i + 1, used)  # truth i unmatched
        for j in range(n_p):
            if not used & (1 << j) and dist[i, j] <= radius[i]:
                c, t = best(i + 1, used | (1 << j))
                c, t = c + 1, t + float(dist[i, j])
                if c > count or (c == count and t < total - 1e-12):
                    count, total = c, t
        return count, total

    return best(0, 0)


# ---------------------------------------------------------------------------------------------
# match_points


def test_matching_is_optimal_where_greedy_is_not() -> None:
    truth = pts([(0, 0), (3, 0)])
    pred = pts([(2, 0), (5, 0)])  # the first prediction is nearer the second particle
    assert greedy_nearest_count(pred, truth, 2.0) == 1
    m = match_points(pred, truth, radius_px=2.0, pixel_size_nm=1.0)
    assert len(m) == 2
    assert sorted(zip(m.pred_index.tolist(), m.truth_index.tolist(), strict=True)) == [
        (0, 0),
        (1, 1),
    ]
    np.testing.assert_allclose(m.distance_px, [2.0, 2.0])
    assert m.unmatched_pred.tolist() == [] and m.unmatched_truth.tolist() == []


def test_matching_minimises_distance_among_maximal_pairings() -> None:
    truth = pts([(0, 0), (10, 0)])
    pred = pts([(9, 0), (1, 0)])
    m = match_points(pred, truth, radius_px=20.0, pixel_size_nm=1.0)
    assert dict(zip(m.truth_index.tolist(), m.pred_index.tolist(), strict=True)) == {0: 1, 1: 0}
    assert m.distance_px.sum() == pytest.approx(2.0)


def test_radius_is_respected() -> None:
    truth = pts([(0, 0), (100, 0)])
    pred = pts([(3, 4), (105.0001, 0)])  # distances 5 and just over 5
    m = match_points(pred, truth, radius_px=5.0, pixel_size_nm=1.0)
    assert m.pred_index.tolist() == [0] and m.truth_index.tolist() == [0]
    assert m.unmatched_pred.tolist() == [1] and m.unmatched_truth.tolist() == [1]
    # one radius per true particle
    m = match_points(pred, truth, radius_px=np.array([4.9, 6.0]), pixel_size_nm=1.0)
    assert m.pred_index.tolist() == [1] and m.truth_index.tolist() == [1]
    with pytest.raises(ValueError, match="shape"):
        match_points(pred, truth, radius_px=np.array([1.0, 2.0, 3.0]), pixel_size_nm=1.0)
    with pytest.raises(ValueError, match="negative"):
        match_points(pred, truth, radius_px=-1.0, pixel_size_nm=1.0)


def test_default_radius_is_half_the_true_diameter() -> None:
    # 0.5 nm/px: a 6 nm particle has a 6 px radius, a 12 nm class a 12 px radius
    truth = Points.create(
        image="a", x_px=[0.0, 100.0], y_px=[0.0, 0.0], diameter_nm=[6.0, 7.0], class_nm=[6, 12]
    )
    near = pts([(5.9, 0), (111.9, 0)])
    far = pts([(6.1, 0), (112.1, 0)])
    m = match_points(near, truth, pixel_size_nm=0.5)
    assert len(m) == 2
    np.testing.assert_allclose(m.radius_px, [6.0, 12.0])
    assert len(match_points(far, truth, pixel_size_nm=0.5)) == 0
    # without a class the diameter decides
    by_size = Points.create(image="a", x_px=[0.0], y_px=[0.0], diameter_nm=[10.0])
    assert match_points(by_size, by_size, pixel_size_nm=0.5).radius_px.tolist() == [10.0]
    with pytest.raises(ValueError, match="pass radius_px"):
        match_points(near, pts([(0, 0)]), pixel_size_nm=0.5)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        match_points(near, truth, pixel_size_nm=0.0)


def test_matching_is_per_image() -> None:
    truth = Points.concat([pts([(0, 0)], image="a"), pts([(50, 50)], image="b")])
    pred = Points.concat([pts([(50, 50)], image="a"), pts([(0, 0)], image="b")])
    assert len(match_points(pred, truth, radius_px=5.0, pixel_size_nm=1.0)) == 0
    pred = Points.concat([pts([(0, 0)], image="c"), pts([(49, 50)], image="b")])
    m = match_points(pred, truth, radius_px=5.0, pixel_size_nm=1.0)
    assert m.pred_index.tolist() == [1] and m.truth_index.tolist() == [1]


def test_matching_count_equals_exhaustive_search_on_random_cases() -> None:
    rng = np.random.default_rng(20240607)
    for _ in range(300):
        n_t, n_p = int(rng.integers(0, 8)), int(rng.integers(0, 8))
        truth = pts(rng.uniform(0, 20, (n_t, 2)).tolist())
        pred = pts(rng.uniform(0, 20, (n_p, 2)).tolist())
        radius = rng.uniform(1.0, 8.0, n_t)
        m = match_points(pred, truth, radius_px=radius, pixel_size_nm=1.0)
        dist = np.hypot(
            truth.x_px[:, None] - pred.x_px[None], truth.y_px[:, None] - pred.y_px[None]
        )
        count, total = exact_best(dist, radius)
        assert len(m) == count
        assert m.distance_px.sum() == pytest.approx(total, abs=1e-9)
        # a valid pairing: one-to-one, within radius, distances as stated
        assert len(set(m.pred_index.tolist())) == len(m) == len(set(m.truth_index.tolist()))
        np.testing.assert_allclose(m.distance_px, dist[m.truth_index, m.pred_index])
        assert (m.distance_px <= radius[m.truth_index] + 1e-9).all()


# ---------------------------------------------------------------------------------------------
# evaluate


def test_confusion_and_per_class_scores_on_a_hand_made_example() -> None:
    # pixel size 1 nm/px, radius 5 px for everyone
    truth = Points.create(
        image="a",
        x_px=[0.0, 100.0, 200.0, 300.0, 400.0],
        y_px=[0.0] * 5,
        diameter_nm=[6.0, 6.0, 12.0, 12.0, 18.0],
    )
    pred = Points.create(
        image="a",
        x_px=[1.0, 101.0, 202.0, 500.0, 600.0, 401.0],
        y_px=[0.0] * 6,
        class_nm=[6.0, 12.0, 12.0, 12.0, math.nan, 18.0],
        diameter_nm=[7.0, 11.0, 9.0, 12.0, 6.2, 20.0],
    )
    # pairs: t0-p0 (6/6), t1-p1 (6/12), t2-p2 (12/12), t4-p5 (18/18); t3 missed;
    # p3 (12) false, p4 (no class, 6.2 nm -> 6) false
    r = evaluate(pred, truth, pixel_size_nm=1.0, radius_px=5.0)
    assert r["confusion"] == {
        "6": {"6": 1, "12": 1, "18": 0, "missed": 0},
        "12": {"6": 0, "12": 1, "18": 0, "missed": 1},
        "18": {"6": 0, "12": 0, "18": 1, "missed": 0},
        "false": {"6": 1, "12": 1, "18": 0, "missed": 0},
    }
    assert r["detection"] == {
        "tp": 4,
        "fp": 2,
        "fn": 1,
        "precision": 4 / 6,
        "recall": 4 / 5,
        "f1": 8 / 11,
    }
    assert r["classified"]["tp"] == 3 and r["classified"]["fp"] == 3
    assert r["classified"]["fn"] == 2
    six, twelve = r["per_class"]["6"], r["per_class"]["12"]
    assert (six["n_truth"], six["n_pred"], six["tp"], six["fp"], six["fn"]) == (2, 2, 1, 1, 1)
    assert six["precision"] == 0.5 and six["recall"] == 0.5
    assert six["detection_precision"] == 0.5 and six["detection_recall"] == 1.0
    assert (twelve["n_truth"], twelve["n_pred"], twelve["tp"]) == (2, 3, 1)
    assert twelve["precision"] == pytest.approx(1 / 3) and twelve["recall"] == 0.5
    assert twelve["f1"] == pytest.approx(2 / 5)
    assert twelve["detection_precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["18"]["f1"] == 1.0
    # size errors of the matched pairs: +1, +5, -3, +2 nm
    err = np.array([1.0, 5.0, -3.0, 2.0])
    d = r["diameter_error_nm"]
    assert d["n"] == 4
    assert d["median_abs"] == pytest.approx(np.median(np.abs(err)))
    assert d["mean_signed"] == pytest.approx(err.mean())
    assert d["rmse"] == pytest.approx(math.sqrt((err**2).mean()))
    assert r["per_image"]["a"]["tp"] == 4
    json.dumps(r, allow_nan=False)


def test_classes_outside_the_scored_set_are_left_out() -> None:
    truth = Points.create(image="a", x_px=[0.0, 50.0], y_px=[0.0, 0.0], diameter_nm=[6.0, 12.0])
    pred = Points.create(
        image="a", x_px=[0.0, 50.0, 90.0], y_px=[0.0, 0.0, 0.0], class_nm=[6.0, 12.0, 18.0]
    )
    r = evaluate(pred, truth, pixel_size_nm=1.0, classes_nm=(6, 12))
    assert r["counts"]["n_pred_other_class"] == 1 and r["counts"]["n_pred"] == 2
    assert r["detection"]["precision"] == 1.0 and r["classified"]["f1"] == 1.0
    assert set(r["per_class"]) == {"6", "12"}
    r = evaluate(pred, truth, pixel_size_nm=1.0)
    assert r["detection"]["fp"] == 1 and r["confusion"]["false"]["18"] == 1


def test_unknown_classes_never_agree() -> None:
    truth = pts([(0, 0)])
    pred = pts([(1, 0)])
    r = evaluate(pred, truth, pixel_size_nm=1.0, radius_px=3.0)
    assert r["detection"]["f1"] == 1.0
    assert r["classified"]["tp"] == 0
    assert r["confusion"]["unknown"] == {"6": 0, "12": 0, "18": 0, "unknown": 1, "missed": 0}


def test_hull_region_excludes_far_predictions() -> None:
    corners = [(0, 0), (100, 0), (100, 100), (0, 100), (50, 50)]
    truth = pts(corners, diameter_nm=6.0)
    pred = Points.concat(
        [
            pts(corners, class_nm=6.0),
            pts([(120, 50), (-30, -30), (200, 50), (50, 170)], class_nm=6.0),
            pts([(10, 10)], image="elsewhere", class_nm=6.0),
        ]
    )
    inside = hull_region_mask(pred, truth, margin_px=50.0)
    # (-30, -30) is 42.4 px from the corner; (200, 50) is 100 px away; (50, 170) 70 px
    assert inside.tolist() == [True] * 5 + [True, True, False, False] + [False]
    r = evaluate(pred, truth, pixel_size_nm=1.0, region="hull", margin_px=50)
    assert r["counts"]["n_pred_outside_region"] == 3
    assert r["detection"] == {
        "tp": 5,
        "fp": 2,
        "fn": 0,
        "precision": 5 / 7,
        "recall": 1.0,
        "f1": 10 / 12,
    }
    assert r["settings"]["region"] == "hull"
    plain = evaluate(pred, truth, pixel_size_nm=1.0)
    assert plain["detection"]["fp"] == 5 and "elsewhere" in plain["per_image"]
    with pytest.raises(ValueError, match="region"):
        evaluate(pred, truth, pixel_size_nm=1.0, region="mask")


def test_hull_region_with_fewer_than_three_points() -> None:
    probe = pts([(0, 0), (10, 0), (10, 9), (10, 11), (40, 0), (60, 0)])
    one = hull_region_mask(probe, pts([(0, 0)]), margin_px=10.0)
    assert one.tolist() == [True, True, False, False, False, False]
    two = hull_region_mask(probe, pts([(0, 0), (50, 0)]), margin_px=10.0)
    assert two.tolist() == [True, True, True, False, True, True]
    line = hull_region_mask(probe, pts([(0, 0), (25, 0), (50, 0), (50, 0)]), margin_px=10.0)
    assert line.tolist() == two.tolist()
    assert not hull_region_mask(probe, Points.empty(), margin_px=1e9).any()


def test_perfect_and_empty_predictions() -> None:
    truth = Points.create(
        image=["a", "a", "b"], x_px=[0.0, 40.0, 5.0], y_px=[0.0, 0.0, 5.0], diameter_nm=[6, 12, 18]
    )
    perfect = Points.create(
        image=truth.image, x_px=truth.x_px, y_px=truth.y_px, class_nm=truth.diameter_nm
    )
    r = evaluate(perfect, truth, pixel_size_nm=0.5587, region="hull")
    assert r["detection"]["f1"] == 1.0 and r["classified"]["f1"] == 1.0
    assert all(c["f1"] == 1.0 for c in r["per_class"].values())

    r = evaluate(Points.empty(), truth, pixel_size_nm=0.5587, region="hull")
    assert r["detection"] == {
        "tp": 0,
        "fp": 0,
        "fn": 3,
        "precision": None,
        "recall": 0.0,
        "f1": 0.0,
    }
    assert r["per_class"]["6"]["recall"] == 0.0 and r["per_class"]["6"]["precision"] is None
    assert r["diameter_error_nm"] == {"n": 0, "median_abs": None, "mean_signed": None, "rmse": None}
    json.dumps(r, allow_nan=False)

    r = evaluate(Points.empty(), Points.empty(), pixel_size_nm=1.0)
    assert r["detection"]["f1"] is None and r["counts"]["n_images"] == 0
    json.dumps(r, allow_nan=False)


@pytest.mark.shared_data
def test_shared_annotations_score_perfectly_against_themselves() -> None:
    csv_path = IMMUNOGOLD / "annotations.csv"
    if not csv_path.is_file():
        pytest.skip(f"shared immunogold annotations not found at {csv_path}")
    truth = read_annotations(csv_path)
    pred = Points.create(
        image=truth.image,
        x_px=truth.x_px + 2.0,  # 2 px is inside half of a 6 nm particle (5.4 px)
        y_px=truth.y_px,
        class_nm=truth.diameter_nm,
    )
    r = evaluate(pred, truth, pixel_size_nm=0.5587, classes_nm=(6, 12), region="hull")
    assert r["classified"]["f1"] == 1.0
    assert {k: v["n_truth"] for k, v in r["per_image"].items()} == {
        "S7.jpg": 25,
        "S8.jpg": 70,
        "S25.jpg": 41,
    }
