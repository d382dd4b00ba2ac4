"""Retrieval metrics and linear probes against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from emdig.contrastive.config import FieldSpec
from emdig.contrastive.encoders import LinearProbes
from emdig.contrastive.evaluate import (
    evaluate_probes,
    fit_probes,
    logistic_fit,
    r2_score,
    retrieval_metrics,
    ridge_fit,
)


def test_retrieval_metrics_on_a_hand_built_matrix() -> None:
    # rows: queries; columns: items. keys: items 1 and 3 have identical metadata ("b").
    sim = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],  # q0 "a": best is item 0 -> top-1 hit
            [0.1, 0.2, 0.3, 0.9],  # q1 "b": best is item 3, also "b" -> hit (identical)
            [0.8, 0.7, 0.1, 0.6],  # q2 "c": item 2 ranked 4th -> miss at 1 and 3
            [0.5, 0.1, 0.6, 0.2],  # q3 "b": ranking 2, 0, 3, 1 -> item 3 at rank 3
        ]
    )
    keys = ["a", "b", "c", "b"]
    r = retrieval_metrics(sim, keys, ks=(1, 2, 3, 4))
    assert r[1] == pytest.approx(2 / 4)
    assert r[2] == pytest.approx(2 / 4)
    assert r[3] == pytest.approx(3 / 4)
    assert r[4] == pytest.approx(1.0)
    # transposed (metadata -> image) with separate item keys
    r_t = retrieval_metrics(sim.T, keys, keys, ks=(1,))
    # column 0 "a": best row 0 "a" hit; col 1 "b": best row 2 "c" miss; col 2 "c": best row 3
    # "b" miss; col 3 "b": best row 1 "b" hit
    assert r_t[1] == pytest.approx(0.5)
    # k larger than the number of items is clipped: items "a", "b" answer all but the "c" query
    assert retrieval_metrics(sim[:, :2], keys, keys[:2], ks=(5,))[5] == pytest.approx(0.75)


def test_ridge_without_penalty_matches_lstsq_and_r2() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    y = x @ rng.normal(size=6) + 3.0 + rng.normal(0, 0.5, 200)
    w, b, _ = ridge_fit(x, y, alpha=0.0)
    a = np.column_stack([x, np.ones(len(x))])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    np.testing.assert_allclose(w[:, 0], coef[:6], rtol=1e-8, atol=1e-10)
    assert b[0] == pytest.approx(coef[6], rel=1e-8)
    pred = a @ coef
    r2_ref = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2_score(y, x @ w[:, 0] + b[0]) == pytest.approx(r2_ref, rel=1e-10)
    # a penalty shrinks the weights; the closed form agrees with the normal equations
    w2, _, _ = ridge_fit(x, y, alpha=50.0)
    xc = x - x.mean(0)
    ref = np.linalg.solve(xc.T @ xc + 50.0 * np.eye(6), xc.T @ (y - y.mean()))
    np.testing.assert_allclose(w2[:, 0], ref, rtol=1e-8)
    assert np.linalg.norm(w2) < np.linalg.norm(w)


def test_ridge_gcv_picks_small_penalty_for_clean_data_and_large_for_noise() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 20))
    clean = x @ rng.normal(size=20)
    noise = rng.normal(size=100)
    _, _, alphas = ridge_fit(x, np.column_stack([clean, noise]))
    assert alphas[0] < 1e-2 * alphas[1]


def test_logistic_fit_reaches_the_optimum() -> None:
    rng = np.random.default_rng(3)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, 300)
    x = centres[labels] + rng.normal(0, 0.8, (300, 2))
    l2 = 1e-3
    w, b = logistic_fit(x, labels, 3, l2=l2, steps=200)
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[labels]
    # gradient of mean cross-entropy + l2 |w|^2 vanishes at the optimum (independent check)
    grad_w = x.T @ (p - onehot) / len(x) + 2 * l2 * w
    grad_b = (p - onehot).mean(0)
    assert np.abs(grad_w).max() < 1e-5 and np.abs(grad_b).max() < 1e-5
    assert (z.argmax(1) == labels).mean() > 0.9


def test_probes_recover_linear_structure_and_skip_missing() -> None:
    rng = np.random.default_rng(4)
    n, d = 300, 8
    emb = rng.normal(size=(n, d))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    px = 10 ** (emb @ rng.normal(size=d))  # log10 is linear in the embedding
    rot = np.degrees(np.arctan2(emb[:, 1], emb[:, 0]))  # first harmonic linear
    det = np.where(emb[:, 2] > 0, "HAADF", "BF")
    recs = [
        {"pixel_size_nm": float(px[i]), "scan_rotation_deg": float(rot[i]),
         "detector": str(det[i]), "voltage_kv": 300.0 if i % 2 else None}
        for i in range(n)
    ]  # fmt: skip
    specs = (
        FieldSpec("pixel_size_nm", "numeric", log=True),
        FieldSpec("scan_rotation_deg", "angle"),
        FieldSpec("detector", "categorical"),
        FieldSpec("voltage_kv", "numeric"),  # constant where present: no probe
        FieldSpec("magnification", "numeric", log=True),  # never present: no probe
    )
    tr, te = np.arange(200), np.arange(200, n)
    probes = fit_probes(emb[tr], [recs[i] for i in tr], specs)
    assert probes.fields == ["pixel_size_nm", "scan_rotation_deg", "detector"]
    scores = evaluate_probes(probes, emb[te], [recs[i] for i in te], specs)
    assert scores["probe/pixel_size_nm/r2"] > 0.999
    assert scores["probe/detector/accuracy"] > 0.95
    assert scores["probe/detector/n"] == 100
    # cos/sin of the angle are not exactly linear in a unit vector's components, but close
    assert scores["probe/scan_rotation_deg/r2@1"] > 0.8
    assert "probe/voltage_kv/r2" not in scores
    pred = probes.predict(emb[te])
    np.testing.assert_allclose(pred["pixel_size_nm"], px[te], rtol=1e-3)
    assert (pred["detector"] == det[te]).mean() > 0.95
    assert np.all((pred["detector_probability"] > 0.3) & (pred["detector_probability"] <= 1))
    err = np.abs((pred["scan_rotation_deg"] - np.mod(rot[te], 360) + 180) % 360 - 180)
    assert np.median(err) < 10
    # round trip through the tensors stored in a checkpoint
    again = LinearProbes.from_state(probes.info, probes.state())
    np.testing.assert_allclose(again.raw(emb[te], "pixel_size_nm"),
                               probes.raw(emb[te], "pixel_size_nm"), rtol=1e-5)  # fmt: skip


def test_r2_score_columns_and_constant_target() -> None:
    y = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    pred = np.array([[1.0, 2.0], [2.0, 2.0], [2.0, 2.0]])
    # column 0: 1 - 1/2; column 1 constant -> 0 by convention
    assert r2_score(y, pred) == pytest.approx((0.5 + 0.0) / 2)
