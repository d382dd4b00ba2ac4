# SPDX-License-Identifier: GPL-3.0-or-later
"""Scoring detections against ground truth: optimal point matching, precision, recall, F1.

:func:`match_points` pairs each detection with at most one true particle of the same image,
within a radius (by default half the true particle's diameter). The pairing is optimal: it has
the most pairs possible, and among those the least total distance. :func:`evaluate` turns the
pairing into a JSON-ready report: detection scores that ignore the size class, scores per class
where the class must agree, the class confusion matrix, size errors and per-image counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from emdig.particles.annotations import Points

__all__ = ["Match", "dark_disc_reference", "evaluate", "hull_region_mask", "match_points"]

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

UNKNOWN = "unknown"
"""Class label of a point with neither ``class_nm`` nor ``diameter_nm``."""
FALSE = "false"
"""Confusion-matrix row of detections that match no true particle."""
MISSED = "missed"
"""Confusion-matrix column of true particles that no detection matches."""


@dataclass(frozen=True, eq=False)
class Match:
    """A one-to-one pairing of detections with true particles.

    Attributes
    ----------
    pred_index, truth_index
        Row indices into the detection and truth tables, one entry per pair, shape ``(k,)``.
    distance_px
        Centre distance of each pair in pixels, shape ``(k,)``.
    radius_px
        The match radius used for each true particle, shape ``(n_truth,)``.
    n_pred, n_truth
        Sizes of the two tables.
    """

    pred_index: IndexArray
    truth_index: IndexArray
    distance_px: FloatArray
    radius_px: FloatArray
    n_pred: int
    n_truth: int

    def __len__(self) -> int:
        return int(self.pred_index.shape[0])

    @property
    def unmatched_pred(self) -> IndexArray:
        """Indices of detections without a partner (false positives)."""
        keep = np.ones(self.n_pred, dtype=bool)
        keep[self.pred_index] = False
        return np.flatnonzero(keep)

    @property
    def unmatched_truth(self) -> IndexArray:
        """Indices of true particles without a partner (misses)."""
        keep = np.ones(self.n_truth, dtype=bool)
        keep[self.truth_index] = False
        return np.flatnonzero(keep)


def _check_pixel_size(pixel_size_nm: float) -> float:
    value = float(pixel_size_nm)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"pixel_size_nm must be a positive number, not {pixel_size_nm!r}")
    return value


def _radii(
    truth: Points, radius_px: float | npt.ArrayLike | None, pixel_size_nm: float
) -> FloatArray:
    n = len(truth)
    if radius_px is None:
        size_nm = np.where(np.isfinite(truth.class_nm), truth.class_nm, truth.diameter_nm)
        unknown = ~np.isfinite(size_nm)
        if unknown.any():
            raise ValueError(
                f"{int(unknown.sum())} true particle(s) have neither class_nm nor diameter_nm, "
                "so the default match radius (half the diameter) is unknown; pass radius_px"
            )
        return np.asarray(size_nm / 2.0 / pixel_size_nm, dtype=np.float64)
    radius = np.asarray(radius_px, dtype=np.float64)
    if radius.ndim == 0:
        radius = np.full(n, float(radius))
    if radius.shape != (n,):
        raise ValueError(f"radius_px has shape {radius.shape}; expected a scalar or ({n},)")
    if not (np.isfinite(radius).all() and (radius >= 0).all()):
        raise ValueError("radius_px must be finite and not negative")
    return radius


def _match_one_image(
    pred_xy: FloatArray, truth_xy: FloatArray, radius: FloatArray
) -> tuple[IndexArray, IndexArray, FloatArray]:
    """Optimal matching within one image; indices are local to the given arrays."""
    empty = (np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0))
    if not len(pred_xy) or not len(truth_xy) or radius.max() <= 0:
        return empty
    pairs = cKDTree(truth_xy).sparse_distance_matrix(
        cKDTree(pred_xy), float(radius.max()), output_type="ndarray"
    )
    ti = pairs["i"].astype(np.intp)
    pj = pairs["j"].astype(np.intp)
    dist = pairs["v"].astype(np.float64)
    ok = dist <= radius[ti] * (1 + 1e-12) + 1e-12  # a partner exactly at the radius counts
    ti, pj, dist = ti[ok], pj[ok], dist[ok]
    if not len(ti):
        return empty
    # Independent groups of candidates (usually a handful of points each) are solved alone,
    # so the cubic assignment never sees the whole image.
    n_t = len(truth_xy)
    graph = coo_matrix(
        (np.ones(len(ti)), (ti, n_t + pj)), shape=(n_t + len(pred_xy), n_t + len(pred_xy))
    )
    _, labels = connected_components(graph, directed=False)
    comp = labels[ti]
    order = np.argsort(comp, kind="stable")
    ti, pj, dist, comp = ti[order], pj[order], dist[order], comp[order]
    bounds = np.flatnonzero(np.diff(comp)) + 1
    out_t: list[IndexArray] = []
    out_p: list[IndexArray] = []
    out_d: list[FloatArray] = []
    for et, ep, ed in zip(
        np.split(ti, bounds), np.split(pj, bounds), np.split(dist, bounds), strict=True
    ):
        if len(et) == 1:
            out_t.append(et)
            out_p.append(ep)
            out_d.append(ed)
            continue
        rows, inv_r = np.unique(et, return_inverse=True)
        cols, inv_c = np.unique(ep, return_inverse=True)
        # Any forbidden pair costs more than all allowed distances together, so the optimum
        # has the most allowed pairs first and the least total distance second.
        forbidden = float(ed.sum()) + 1.0
        cost = np.full((len(rows), len(cols)), forbidden)
        cost[inv_r, inv_c] = ed
        r, c = linear_sum_assignment(cost)
        keep = cost[r, c] < forbidden
        out_t.append(rows[r[keep]])
        out_p.append(cols[c[keep]])
        out_d.append(cost[r[keep], c[keep]])
    return np.concatenate(out_p), np.concatenate(out_t), np.concatenate(out_d)


def match_points(
    pred: Points,
    truth: Points,
    *,
    radius_px: float | npt.ArrayLike | None = None,
    pixel_size_nm: float,
) -> Match:
    """Pair detections with true particles one-to-one, per image, within a radius.

    Parameters
    ----------
    pred
        Detections.
    truth
        Ground truth.
    radius_px
        Largest centre distance of a pair, in pixels: one value, or one per true particle.
        Default: half of each true particle's ``class_nm`` (or ``diameter_nm`` where the class
        is NaN), converted with ``pixel_size_nm``.
    pixel_size_nm
        nm per pixel.

    Returns
    -------
    Match
        The pairing with the most pairs, and among those the least total distance. A pair is
        allowed when the distance is at most the true particle's radius.

    Raises
    ------
    ValueError
        A bad radius or pixel size, or a true particle without any size when the default radius
        is asked for.

    Examples
    --------
    >>> truth = Points.create(image="a", x_px=[0.0, 3.0], y_px=[0.0, 0.0])
    >>> pred = Points.create(image="a", x_px=[2.0, 5.0], y_px=[0.0, 0.0])
    >>> len(match_points(pred, truth, radius_px=2.0, pixel_size_nm=1.0))
    2
    """
    pixel_size_nm = _check_pixel_size(pixel_size_nm)
    radius = _radii(truth, radius_px, pixel_size_nm)
    pred_ids: list[IndexArray] = []
    truth_ids: list[IndexArray] = []
    dists: list[FloatArray] = []
    for image in sorted(set(pred.images()) & set(truth.images())):
        pi = np.flatnonzero(pred.image == image)
        ti = np.flatnonzero(truth.image == image)
        lp, lt, d = _match_one_image(
            np.column_stack([pred.x_px[pi], pred.y_px[pi]]),
            np.column_stack([truth.x_px[ti], truth.y_px[ti]]),
            radius[ti],
        )
        pred_ids.append(pi[lp])
        truth_ids.append(ti[lt])
        dists.append(d)
    if pred_ids:
        p_idx, t_idx, dist = (
            np.concatenate(pred_ids),
            np.concatenate(truth_ids),
            np.concatenate(dists),
        )
        order = np.argsort(t_idx, kind="stable")
        p_idx, t_idx, dist = p_idx[order], t_idx[order], dist[order]
    else:
        p_idx, t_idx, dist = np.empty(0, np.intp), np.empty(0, np.intp), np.empty(0)
    return Match(
        pred_index=p_idx.astype(np.intp),
        truth_index=t_idx.astype(np.intp),
        distance_px=dist.astype(np.float64),
        radius_px=radius,
        n_pred=len(pred),
        n_truth=len(truth),
    )


# ---------------------------------------------------------------------------------------------
# region proxy


def _convex_hull(xy: FloatArray) -> FloatArray:
    """Vertices of the convex hull, counter-clockwise (y up); 1 or 2 rows when degenerate."""
    pts = np.unique(xy, axis=0)  # sorted by x, then y
    if len(pts) <= 2:
        return pts

    def half(points: FloatArray) -> list[FloatArray]:
        chain: list[FloatArray] = []
        for p in points:
            while len(chain) >= 2:
                a, b = chain[-2], chain[-1]
                if (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1])
    return hull if len(hull) >= 2 else pts[[0, -1]]


def _distance_to_segments(q: FloatArray, a: FloatArray, b: FloatArray) -> FloatArray:
    """Distance from each query point to the nearest of the segments ``a[k]``-``b[k]``."""
    ab = b - a  # (k, 2)
    aq = q[:, None, :] - a[None, :, :]  # (n, k, 2)
    length2 = np.maximum((ab**2).sum(axis=1), 1e-300)
    t = np.clip((aq * ab[None]).sum(axis=2) / length2, 0.0, 1.0)
    nearest = a[None] + t[..., None] * ab[None]
    d: FloatArray = np.sqrt(((q[:, None, :] - nearest) ** 2).sum(axis=2)).min(axis=1)
    return d


def _distance_to_hull(q: FloatArray, hull: FloatArray) -> FloatArray:
    if len(hull) == 0:
        return np.full(len(q), np.inf)
    if len(hull) == 1:
        return np.asarray(np.hypot(q[:, 0] - hull[0, 0], q[:, 1] - hull[0, 1]), dtype=np.float64)
    a, b = hull, np.roll(hull, -1, axis=0)
    if len(hull) == 2:
        a, b = hull[:1], hull[1:]
    d = _distance_to_segments(q, a, b)
    if len(hull) >= 3:
        edge = b - a
        rel = q[:, None, :] - a[None]
        cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
        d[(cross >= 0).all(axis=1)] = 0.0
    return d


def hull_region_mask(
    points: Points, reference: Points, *, margin_px: float = 50.0
) -> npt.NDArray[np.bool_]:
    """Which ``points`` lie in the convex hull of the same image's ``reference`` points, dilated.

    The region proxy for ground truth that covers only part of each image: a detection is kept
    when its distance to the hull of that image's annotations is at most ``margin_px``. With one
    or two annotations (or all on a line) the hull is that point or segment; an image without
    annotations has no region, so none of its points are inside.

    Parameters
    ----------
    points
        Points to test, e.g. detections.
    reference
        Points that span the region, e.g. the annotations.
    margin_px
        Dilation of the hull in pixels.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(len(points),)``.
    """
    if not (math.isfinite(margin_px) and margin_px >= 0):
        raise ValueError(f"margin_px must be finite and not negative, not {margin_px!r}")
    inside = np.zeros(len(points), dtype=bool)
    for image in points.images():
        idx = np.flatnonzero(points.image == image)
        ref = reference.select(image=image)
        hull = _convex_hull(np.column_stack([ref.x_px, ref.y_px]))
        q = np.column_stack([points.x_px[idx], points.y_px[idx]])
        inside[idx] = _distance_to_hull(q, hull) <= margin_px
    return inside


# ---------------------------------------------------------------------------------------------
# report


def _label_text(value: float) -> str:
    return f"{value:g}"


def _class_labels(points: Points, classes: FloatArray) -> npt.NDArray[np.str_]:
    """Each point's class label; ``""`` for a class outside ``classes`` (not scored).

    ``class_nm`` decides where it is set: a scored class gives its label, another value puts the
    point out of scope. Otherwise the nearest class to ``diameter_nm``; otherwise "unknown".
    """
    names = [_label_text(c) for c in classes]
    labels = np.full(len(points), UNKNOWN, dtype=object)
    has_class = np.isfinite(points.class_nm)
    if has_class.any():
        close = np.isclose(points.class_nm[has_class, None], classes[None], rtol=0, atol=1e-6)
        labels[has_class] = [names[int(np.argmax(r))] if r.any() else "" for r in close]
    by_size = ~has_class & np.isfinite(points.diameter_nm)
    if by_size.any():
        nearest = np.abs(points.diameter_nm[by_size, None] - classes[None]).argmin(axis=1)
        labels[by_size] = [names[int(k)] for k in nearest]
    return labels.astype(str)


def _ratio(num: int, den: int) -> float | None:
    return float(num) / den if den else None


def _scores(tp: int, n_pred: int, n_truth: int) -> dict[str, Any]:
    fp, fn = n_pred - tp, n_truth - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def evaluate(
    pred: Points,
    truth: Points,
    *,
    pixel_size_nm: float,
    classes_nm: Sequence[float] = (6, 12, 18),
    radius_px: float | npt.ArrayLike | None = None,
    region: str | None = None,
    margin_px: float = 50.0,
) -> dict[str, Any]:
    """Score detections against ground truth.

    Each point gets a class label: its ``class_nm`` if that is one of ``classes_nm``, else the
    class nearest to its ``diameter_nm``, else "unknown". Points whose ``class_nm`` is set but
    not in ``classes_nm`` are left out of the scoring (counted in ``counts``): for the MPFI
    immunogold set, whose 18 nm particles are not annotated, pass ``classes_nm=(6, 12)``.

    Parameters
    ----------
    pred
        Detections.
    truth
        Ground truth.
    pixel_size_nm
        nm per pixel.
    classes_nm
        The scored size classes in nm.
    radius_px
        Match radius; see :func:`match_points`. An array has one value per row of ``truth``.
    region
        None to score every detection, or ``"hull"`` to score only detections within
        ``margin_px`` of the convex hull of the same image's true particles (the region proxy
        when only part of each image was annotated).
    margin_px
        Dilation of the hull for ``region="hull"``.

    Returns
    -------
    dict
        JSON-ready (plain ints, floats, strings, lists, dicts; an undefined ratio such as the
        precision of no detections is None):

        - ``detection``: ``tp, fp, fn, precision, recall, f1`` ignoring the class;
        - ``classified``: the same where a pair counts only if its classes agree;
        - ``per_class``: for each class label, ``n_truth, n_pred`` (detections predicting it),
          the class-must-agree ``tp, fp, fn, precision, recall, f1``, and
          ``detection_precision`` (its detections that match any particle) and
          ``detection_recall`` (its particles matched by any detection);
        - ``confusion``: ``confusion[truth_label][pred_label]`` counts of pairs, with row
          ``"false"`` for unmatched detections and column ``"missed"`` for unmatched particles;
        - ``diameter_error_nm``: over pairs where both diameters are known, ``n``,
          ``median_abs``, ``mean_signed`` (detected minus true) and ``rmse``;
        - ``per_image``: detection scores and counts per image;
        - ``counts``, ``settings``: the numbers of points used and left out, and the inputs.
    """
    pixel_size_nm = _check_pixel_size(pixel_size_nm)
    if region not in (None, "hull"):
        raise ValueError(f"region must be None or 'hull', not {region!r}")
    classes = np.asarray(sorted({float(c) for c in classes_nm}), dtype=np.float64)
    if not len(classes) or not np.isfinite(classes).all() or (classes <= 0).any():
        raise ValueError(f"classes_nm must be positive numbers, not {tuple(classes_nm)!r}")
    radius = radius_px
    if radius is not None and np.ndim(radius) == 1:
        radius = np.asarray(radius, dtype=np.float64)
        if radius.shape != (len(truth),):
            raise ValueError(f"radius_px has shape {radius.shape}; expected ({len(truth)},)")

    truth_labels = _class_labels(truth, classes)
    pred_labels = _class_labels(pred, classes)
    keep_truth = truth_labels != ""
    keep_pred = pred_labels != ""
    n_pred_other = int((~keep_pred).sum())
    n_outside = 0
    if region == "hull":
        inside = hull_region_mask(pred, truth, margin_px=margin_px)
        n_outside = int((keep_pred & ~inside).sum())
        keep_pred &= inside
    t, p = truth[keep_truth], pred[keep_pred]
    tl, pl = truth_labels[keep_truth], pred_labels[keep_pred]
    if isinstance(radius, np.ndarray):
        radius = radius[keep_truth]
    match = match_points(p, t, radius_px=radius, pixel_size_nm=pixel_size_nm)
    mt, mp = match.truth_index, match.pred_index
    agree = (tl[mt] == pl[mp]) & (tl[mt] != UNKNOWN)

    names = [_label_text(c) for c in classes]
    row_labels = names + ([UNKNOWN] if (tl == UNKNOWN).any() else [])
    col_labels = names + ([UNKNOWN] if (pl == UNKNOWN).any() else [])
    confusion: dict[str, dict[str, int]] = {
        r: dict.fromkeys([*col_labels, MISSED], 0) for r in [*row_labels, FALSE]
    }
    for a, b in zip(tl[mt], pl[mp], strict=True):
        confusion[str(a)][str(b)] += 1
    for a in tl[match.unmatched_truth]:
        confusion[str(a)][MISSED] += 1
    for b in pl[match.unmatched_pred]:
        confusion[FALSE][str(b)] += 1

    per_class: dict[str, dict[str, Any]] = {}
    for name in names:
        n_truth_c = int((tl == name).sum())
        n_pred_c = int((pl == name).sum())
        tp_c = int((agree & (tl[mt] == name)).sum())
        entry = {"n_truth": n_truth_c, "n_pred": n_pred_c, **_scores(tp_c, n_pred_c, n_truth_c)}
        entry["detection_precision"] = _ratio(int((pl[mp] == name).sum()), n_pred_c)
        entry["detection_recall"] = _ratio(int((tl[mt] == name).sum()), n_truth_c)
        per_class[name] = entry

    dt, dp = t.diameter_nm[mt], p.diameter_nm[mp]
    both = np.isfinite(dt) & np.isfinite(dp)
    err = dp[both] - dt[both]
    diameter_error = {
        "n": int(both.sum()),
        "median_abs": _finite(float(np.median(np.abs(err)))) if len(err) else None,
        "mean_signed": _finite(float(np.mean(err))) if len(err) else None,
        "rmse": _finite(float(np.sqrt(np.mean(err**2)))) if len(err) else None,
    }

    per_image: dict[str, dict[str, Any]] = {}
    images = t.images() + [im for im in p.images() if im not in set(t.images())]
    for image in images:
        n_t = int((t.image == image).sum())
        n_p = int((p.image == image).sum())
        tp_i = int((t.image[mt] == image).sum())
        per_image[image] = {"n_truth": n_t, "n_pred": n_p, **_scores(tp_i, n_p, n_t)}

    radii = match.radius_px
    return {
        "detection": _scores(len(match), len(p), len(t)),
        "classified": _scores(int(agree.sum()), len(p), len(t)),
        "per_class": per_class,
        "confusion": confusion,
        "diameter_error_nm": diameter_error,
        "per_image": per_image,
        "counts": {
            "n_truth": len(t),
            "n_pred": len(p),
            "n_images": len(images),
            "n_truth_other_class": int((~keep_truth).sum()),
            "n_pred_other_class": n_pred_other,
            "n_pred_outside_region": n_outside,
        },
        "settings": {
            "pixel_size_nm": pixel_size_nm,
            "classes_nm": [float(c) for c in classes],
            "radius_px_min": float(radii.min()) if len(radii) else None,
            "radius_px_max": float(radii.max()) if len(radii) else None,
            "region": region,
            "margin_px": float(margin_px) if region == "hull" else None,
        },
    }


def dark_disc_reference(
    image: np.ndarray,
    *,
    pixel_size_nm: float,
    diameter_nm: tuple[float, float] = (14.5, 24.0),
    darkness: float = 0.45,
) -> FloatArray:
    """Model-free reference particles: isolated, round, near-black discs found by thresholding.

    A cross-check for a class nobody annotated (the 18 nm label of the MPFI images), not a
    detector: it misses touching and grey particles on purpose and keeps only the unambiguous.
    Pixels below ``darkness`` times a smooth local background (median over ~125 px) form
    regions; a region counts when its area-equivalent diameter lies in ``diameter_nm``, its
    second moments give an eccentricity under 0.75, and it fills at least 93 % of the ellipse
    with those moments.

    Parameters
    ----------
    image
        2-D array, gold dark on a lighter replica.

    Returns
    -------
    numpy.ndarray
        ``(n, 3)``: ``x_px, y_px, diameter_nm`` per reference disc.
    """
    from scipy import ndimage

    px = _check_pixel_size(pixel_size_nm)
    a = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64), 1.5)
    step = 4
    small = ndimage.median_filter(a[::step, ::step], size=31)
    bg = np.repeat(np.repeat(small, step, 0), step, 1)[: a.shape[0], : a.shape[1]]
    labels, _ = ndimage.label(a < darkness * bg)
    out = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = np.nonzero(labels[sl] == k)
        area = ys.size
        d_nm = 2.0 * math.sqrt(area / math.pi) * px
        if not diameter_nm[0] <= d_nm <= diameter_nm[1]:
            continue
        cov = np.cov(np.vstack([xs, ys]).astype(np.float64)) + np.eye(2) / 12.0  # pixel extent
        lo, hi = np.linalg.eigvalsh(cov)
        ecc = math.sqrt(max(0.0, 1.0 - lo / hi))
        fill = area / (4.0 * math.pi * math.sqrt(lo * hi))
        if ecc < 0.75 and fill >= 0.93:
            out.append((xs.mean() + sl[1].start, ys.mean() + sl[0].start, d_nm))
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)
