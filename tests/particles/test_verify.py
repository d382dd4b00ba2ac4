"""The full-resolution candidate verifier: patches, labels, training, and its place in detect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emdig.errors import ModelError
from emdig.particles.annotations import Points, synthetic_truth
from emdig.particles.detect import detect
from emdig.particles.model import ModelConfig, ParticleNet, add_verifier, load_model, save_model
from emdig.particles.verify import (
    VerifierConfig,
    VerifierItem,
    VerifierNet,
    extract_patches,
    extras,
    label_candidates,
    train_verifier,
    verify,
)

PX = 0.5587


def _scene(
    seed: int, n: int = 10, shape: tuple[int, int] = (320, 320)
) -> tuple[np.ndarray, Points, np.ndarray]:
    """Gold (sharp black 6 nm discs) and look-alikes (soft, lighter Gaussian spots of the same
    size) on a noisy light background: ``(image, gold truth, look-alike xy)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.full(shape, 170.0)
    pts = rng.uniform(20, shape[0] - 20, size=(2 * n, 2))
    keep = [0]
    for i in range(1, len(pts)):
        if np.hypot(*(pts[keep] - pts[i]).T).min() > 25:
            keep.append(i)
    pts = pts[keep]
    gold, fake = pts[0::2], pts[1::2]
    r = 0.5 * 6.0 / PX
    for x, y in gold:
        img -= 120 * np.clip(r + 0.5 - np.hypot(xx - x, yy - y), 0, 1)
    for x, y in fake:
        img -= 70 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (0.7 * r) ** 2))
    img = np.clip(img + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)
    truth = Points.create(image="x", x_px=gold[:, 0], y_px=gold[:, 1], diameter_nm=6.0)
    return img, truth, fake


def test_patches_are_centred_and_at_the_verifier_scale() -> None:
    cfg = VerifierConfig(patch=32)
    yy, xx = np.mgrid[0:200, 0:240].astype(np.float64)
    for px in (PX, 2 * PX):  # the second image is half as finely sampled: resampled up
        x0, y0, r_nm = 101.3, 77.6, 4.0
        img = (np.hypot(xx - x0, yy - y0) > r_nm / px).astype(np.float32)
        p = extract_patches(img, np.array([x0]), np.array([y0]), pixel_size_nm=px, config=cfg)
        assert p.shape == (1, 32, 32)
        dark = p[0] < 0.5
        cy, cx = np.argwhere(dark).mean(axis=0)
        assert abs(cx - 15.5) < 0.6 and abs(cy - 15.5) < 0.6
        # area of the disc in verifier pixels, whatever the image's own pixel size
        assert dark.sum() == pytest.approx(np.pi * (r_nm / cfg.pixel_size_nm) ** 2, rel=0.15)
    edge = extract_patches(
        np.ones((50, 50), np.float32), np.array([0.0]), np.array([0.0]), pixel_size_nm=PX,
        config=cfg, margin=2,
    )  # fmt: skip
    assert edge.shape == (1, 36, 36) and np.allclose(edge, 1.0)  # outside: the edge value


def test_labels_match_one_candidate_per_particle_within_half_a_diameter() -> None:
    truth = Points.create(image="x", x_px=[50.0, 100.0], y_px=[50.0, 50.0], diameter_nm=6.0)
    r = 0.5 * 6.0 / PX  # 5.37 px
    cx = np.array([51.0, 52.0, 100.0 + r + 0.5, 10.0])
    cy = np.array([50.0, 50.0, 50.0, 10.0])
    lab = label_candidates(cx, cy, truth, pixel_size_nm=PX)
    # the nearest candidate takes the particle, the second is a duplicate; beyond r: no match
    assert lab.tolist() == [True, False, False, False]


def test_config_round_trip_and_missing_verifier_weights(tmp_path: Path) -> None:
    base = ParticleNet(ModelConfig(widths=(4, 8)))
    m = add_verifier(base, VerifierConfig(widths=(4, 8, 8), candidate_threshold=0.2))
    assert m.verifier is not None and base.verifier is None
    w = save_model(m, tmp_path, name="v")
    back = load_model(w)
    assert back.verifier is not None
    assert back.verifier.config == VerifierConfig(widths=(4, 8, 8), candidate_threshold=0.2)
    cfg = json.loads(w.with_suffix(".json").read_text())
    cfg["verifier"] = None  # a config without the verifier no longer describes these weights
    (tmp_path / "nov.json").write_text(json.dumps(cfg))
    (tmp_path / "nov.safetensors").write_bytes(w.read_bytes())
    with pytest.raises(ModelError, match="weights do not fit the config"):
        load_model(tmp_path / "nov.safetensors")


def test_configs_written_before_heat_input_and_tta_keep_their_behaviour() -> None:
    old = VerifierConfig.from_dict({"pixel_size_nm": PX, "patch": 48, "widths": [8, 16, 32]})
    assert old.heat_input and not old.tta
    new = VerifierConfig()
    assert not new.heat_input and not new.tta
    assert VerifierConfig.from_dict(new.to_dict()) == new
    ex = extras(np.array([0.2, 0.9]), np.array([6.0, 12.0]), heat_input=False)
    assert (ex[:, 0] == 0).all() and ex[1, 1] > ex[0, 1]
    assert extras(np.array([0.2, 0.9]), np.array([6.0, 6.0]))[1, 0] > 0


def test_tta_makes_the_score_independent_of_image_orientation() -> None:
    import torch

    rng = np.random.default_rng(3)
    img = rng.random((96, 96)).astype(np.float32)
    x, y = np.array([30.0, 61.0]), np.array([40.0, 52.0])
    sc, g = np.array([0.5, 0.5]), np.array([6.0, 6.0])
    got = {}
    for tta in (False, True):
        torch.manual_seed(0)
        net = VerifierNet(VerifierConfig(patch=32, widths=(4, 8, 8), tta=tta))
        with torch.no_grad():  # livelier than a fresh init: outputs that depend on the input
            for prm in net.parameters():
                prm.mul_(2.0)
        a = verify(net, img, x, y, sc, g, pixel_size_nm=PX)
        # the same image turned a quarter (counter-clockwise): (x, y) -> (y, 95 - x)
        b = verify(net, np.rot90(img).copy(), y, 95.0 - x, sc, g, pixel_size_nm=PX)
        got[tta] = np.abs(a - b).max()
    assert got[True] < 1e-4 * got[False] and got[False] > 1e-3


@pytest.fixture(scope="module")
def trained() -> ParticleNet:
    """The shipped heat map with a fresh verifier trained on disc/blob scenes."""
    from emdig.models.registry import resolve_model

    path, sha = resolve_model("particles-default", task="particles")
    shipped = load_model(path, sha256=sha)
    # a low candidate threshold: the heat map was not trained on these artificial discs
    model = add_verifier(shipped, VerifierConfig(widths=(8, 16, 16), candidate_threshold=0.02))
    items = []
    for k in range(6):
        img, truth, _ = _scene(k)
        items.append(VerifierItem(img, PX, truth, name=f"s{k}"))
    losses = []
    info = train_verifier(
        model, items, steps=150, seed=0, progress=lambda s, n, f: losses.append(f["loss"])
    )
    assert info["candidates"] > info["gold"] > 0
    assert losses[-1] < 0.5 * losses[0]
    return model


def test_trained_verifier_tells_gold_from_look_alikes(trained: ParticleNet) -> None:
    img, truth, fake = _scene(99)
    # every candidate the heat map proposes, scored by the verifier (threshold 0: keep all)
    pred = detect(img, pixel_size_nm=PX, model=trained, threshold=0.0).points
    lab = label_candidates(pred.x_px, pred.y_px, truth, pixel_size_nm=PX)
    near_fake = np.hypot(pred.x_px[:, None] - fake[:, 0], pred.y_px[:, None] - fake[:, 1])
    is_fake = near_fake.min(axis=1) < 5
    assert lab.sum() >= 0.9 * len(truth) and is_fake.sum() >= 0.5 * len(fake)
    assert pred.score[lab].min() > pred.score[is_fake].max()
    assert ((pred.score >= 0.0) & (pred.score <= 1.0)).all()
    # the default threshold on the verifier's probability keeps the gold only
    kept = detect(img, pixel_size_nm=PX, model=trained, threshold=0.5).points
    assert label_candidates(kept.x_px, kept.y_px, truth, pixel_size_nm=PX).all()
    assert len(kept) == lab.sum()


def test_hard_mining_reweights_only_the_items_it_may_mine() -> None:
    """Mining on no item trains exactly as without mining; on the scenes it changes the draws."""
    items = []
    for k in range(2):
        img, truth, _ = _scene(k)
        items.append(VerifierItem(img, PX, truth, name=f"s{k}"))

    def run(**kw: object) -> tuple[dict[str, object], torch.Tensor]:
        torch.manual_seed(0)  # the same random heat map, so the same candidates
        m = add_verifier(
            ParticleNet(ModelConfig(widths=(4, 8))),
            VerifierConfig(widths=(4, 8, 8), candidate_threshold=0.0),
            seed=0,
        )
        info = train_verifier(m, items, steps=30, batch_size=16, seed=0, **kw)  # type: ignore[arg-type]
        return info, torch.cat([p.detach().flatten() for p in m.verifier.parameters()])

    _, plain = run()
    info, none = run(hard_mining=4.0, mine=[False, False])
    _, mined = run(hard_mining=4.0)
    assert info["hard_mining"] == 4.0
    assert torch.equal(plain, none)
    assert not torch.equal(plain, mined)


def test_train_verifier_needs_a_verifier_and_both_kinds() -> None:
    plain = ParticleNet(ModelConfig(widths=(4, 8)))
    with pytest.raises(ValueError, match="has no verifier"):
        train_verifier(plain, [])
    m = add_verifier(plain)
    blank = np.full((128, 128), 150, np.uint8)
    with pytest.raises(ValueError, match="both kinds"):
        train_verifier(m, [VerifierItem(blank, PX, Points.empty())], steps=2)


def test_shipped_model_verifies_synthetic_look_alikes() -> None:
    """The shipped model has a verifier, and on fresh synthetic images it scores the gold
    above the generator's labelled look-alikes at least as often as the heat map does."""
    from emdig.models.registry import resolve_model
    from emdig.particles.synth import SynthConfig, synthesize

    path, sha = resolve_model("particles-default", task="particles")
    model = load_model(path, sha256=sha)
    assert model.verifier is not None

    def auc(pos: np.ndarray, neg: np.ndarray) -> float:
        return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg).mean())

    got = {}
    for use in (True, False):
        pos, neg = [], []
        for seed in (501, 502, 503):
            s = synthesize(SynthConfig(shape=(512, 512)), seed=seed)
            if use:
                p = detect(s.image, pixel_size_nm=PX, model=model, threshold=0.0).points
            else:
                from emdig.particles.detect import _candidates, _levels

                a = s.image
                lo, hi = _levels(a, np.ones(a.shape, bool))
                x, y, sc, _ = _candidates(a, PX, model, lo, hi, 0.1, verify_=False)
                p = Points.create(image="x", x_px=x, y_px=y, score=sc)
            t = synthetic_truth(s.particles, image="x")
            lab = label_candidates(p.x_px, p.y_px, t, pixel_size_nm=PX)
            neg_xy = np.c_[s.negatives["x_px"], s.negatives["y_px"]]
            d = np.hypot(p.x_px[:, None] - neg_xy[:, 0], p.y_px[:, None] - neg_xy[:, 1])
            fake = (~lab) & (d.min(axis=1, initial=np.inf) < 6)
            pos.append(p.score[lab])
            neg.append(p.score[fake])
        got[use] = auc(np.concatenate(pos), np.concatenate(neg))
    assert got[True] >= got[False]
    assert got[True] >= 0.95
