"""Training: losses against hand computations, the split by file, determinism, checkpoints,
the dataset cache, on tiny generated lattice images."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emdig import Acquisition, Micrograph, Source
from emdig.contrastive.config import ContrastiveConfig, ImageEncoderConfig, MetadataEncoderConfig
from emdig.contrastive.data import ContrastiveDataset, heldout_mask
from emdig.contrastive.encoders import ContrastiveModel, load_model
from emdig.contrastive.encoding import fit_fields
from emdig.contrastive.train import TrainResult, clip_loss, siglip_loss, train
from emdig.errors import ModelError

TINY = ContrastiveConfig(
    embed_dim=16,
    image=ImageEncoderConfig(
        input_size=32, cache_size=48, widths=(8, 16), radial_bins=6, angular_bins=8,
        spectral_hidden=16, hidden=32,
    ),
    metadata=MetadataEncoderConfig(token_dim=8, hidden=32, frequencies=3, harmonics=2),
)  # fmt: skip


def lattice_micrographs(n: int, *, seed: int = 0, size: int = 56) -> list[Micrograph]:
    """Stand-in archive: square lattices of sharp atoms whose period is 0.4 nm / pixel size,
    rotated by the scan rotation, bright (HAADF) or dark (BF) atoms, Poisson noise from the
    dose; two images per file."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for i in range(n):
        px = float(rng.choice([0.02, 0.04, 0.08]))
        det = str(rng.choice(["HAADF", "BF"]))
        rot = float(rng.choice([0.0, 30.0]))
        current, dwell = float(rng.choice([1.0, 50.0])), 2.0
        dose = current * 1e-12 * dwell * 1e-6 / 1.602176634e-19
        period = 0.4 / px
        t = math.radians(rot)
        u, v = xx * math.cos(t) + yy * math.sin(t), -xx * math.sin(t) + yy * math.cos(t)
        # sharp atoms (a plain sum of cosines would look the same inverted, shifted)
        img = ((1 + np.cos(2 * np.pi * u / period)) * (1 + np.cos(2 * np.pi * v / period)) / 4) ** 3
        if det == "BF":
            img = 1 - img
        counts = rng.poisson(img * dose + 1).astype(np.uint16)
        acq = Acquisition(mode="STEM", detector=det, voltage_kv=300.0, beam_current_pa=current,
                          dwell_us=dwell, scan_rotation_deg=rot)  # fmt: skip
        name = f"file{i // 2}"
        src = Source(path=f"/data/{name}.h5", sha256=hashlib.sha256(name.encode()).hexdigest(),
                     index=i % 2)  # fmt: skip
        out.append(Micrograph(counts, pixel_size_nm=px, acquisition=acq, source=src))
    return out


# ----------------------------------------------------------------------------- losses
def test_clip_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [0.2, -0.4, 0.9]])
    L = logits.tolist()

    def ce(row: list[float], targets: list[float]) -> float:
        lse = math.log(sum(math.exp(v) for v in row))
        return -sum(t * (v - lse) for v, t in zip(row, targets, strict=True))

    eye = [[1.0 if i == j else 0.0 for j in range(3)] for i in range(3)]
    rows = sum(ce(L[i], eye[i]) for i in range(3)) / 3
    cols = sum(ce([L[i][j] for i in range(3)], eye[j]) for j in range(3)) / 3
    assert float(clip_loss(logits)) == pytest.approx((rows + cols) / 2, rel=1e-6)
    # items 0 and 2 have identical metadata: each is a positive of the other, targets shared
    pos = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    t = [[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]]
    rows = sum(ce(L[i], t[i]) for i in range(3)) / 3
    cols = sum(ce([L[i][j] for i in range(3)], t[j]) for j in range(3)) / 3
    assert float(clip_loss(logits, pos)) == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_siglip_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, -3.0], [-1.0, 0.5]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    ref = -(math.log(sig(2.0)) + math.log(sig(3.0)) + math.log(sig(1.0)) + math.log(sig(0.5))) / 2
    assert float(siglip_loss(logits)) == pytest.approx(ref, rel=1e-6)
    pos = torch.ones(2, 2, dtype=torch.bool)
    ref_all = (
        -(math.log(sig(2.0)) + math.log(sig(-3.0)) + math.log(sig(-1.0)) + math.log(sig(0.5))) / 2
    )
    assert float(siglip_loss(logits, pos)) == pytest.approx(ref_all, rel=1e-6)


# ----------------------------------------------------------------------------- split
def test_heldout_split_by_file_hash() -> None:
    groups = [f"sha{i // 3}" for i in range(3000)]  # 1000 files of 3 images
    m = heldout_mask(groups, fraction=0.1, salt="s")
    for g in range(1000):  # every image of a file on the same side
        assert len(set(m[3 * g : 3 * g + 3])) == 1
    ref = [int(hashlib.sha256(f"ssha{g}".encode()).hexdigest()[:15], 16) / 16**15 < 0.1
           for g in range(1000)]  # fmt: skip
    assert m[::3].tolist() == ref
    assert 0.07 < m.mean() < 0.13
    # deterministic, independent of order and of the other files present
    rev = heldout_mask(groups[::-1], fraction=0.1, salt="s")[::-1]
    np.testing.assert_array_equal(rev, m)
    sub = heldout_mask(groups[:300], fraction=0.1, salt="s")
    np.testing.assert_array_equal(sub, m[:300])
    # two files: one on each side even when the hash would put both in one
    two = heldout_mask(["a", "a", "b"], fraction=0.1)
    assert two[0] == two[1] and two[0] != two[2]


def test_dataset_split_keeps_files_together() -> None:
    ds = ContrastiveDataset.from_micrographs(lattice_micrographs(40), config=TINY.image)
    assert ds.regions.shape == (40, 48, 48) and ds.regions.dtype == np.float16
    tr, ho = ds.split(holdout=0.3)
    assert len(tr) + len(ho) == 40 and len(ho) > 0
    assert not set(tr.groups) & set(ho.groups)
    assert sorted(tr.keys + ho.keys) == sorted(ds.keys)


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("run")
    ms = lattice_micrographs(48)
    return train(ms, config=TINY, epochs=4, batch_size=16, lr=3e-3, holdout=0.25, seed=0,
                 out=out, device="cpu")  # fmt: skip


def test_training_uses_train_statistics_and_learns(trained: TrainResult) -> None:
    r = trained
    assert not set(r.train.groups) & set(r.held_out.groups)
    ref = fit_fields(TINY.metadata.fields, r.train.records)
    assert r.model.fields == ref
    px = [np.log10(rec["pixel_size_nm"]) for rec in r.train.records]
    spec = {s.name: s for s in r.model.fields}["pixel_size_nm"]
    assert spec.mean == pytest.approx(np.mean(px)) and spec.std == pytest.approx(np.std(px))
    all_px = [np.log10(rec["pixel_size_nm"]) for rec in r.train.records + r.held_out.records]
    assert spec.mean != pytest.approx(np.mean(all_px))
    assert len(r.history) == 4 and r.history[-1]["loss"] < r.history[0]["loss"]
    assert set(r.history[0]) >= {"epoch", "loss", "heldout_top1", "temperature", "seconds"}
    assert r.metrics["n"] == len(r.held_out)
    # strict retrieval counts only the own pair: identical metadata embed identically and
    # ties go to the first item, so at most one image per distinct record can be a strict hit
    m = r.metrics
    assert m["image_to_metadata_top1_strict"] <= m["image_to_metadata_top1"]
    assert m["image_to_metadata_top1_strict"] <= m["unique_metadata"] / m["n"] + 1e-9
    # contrast polarity is the easiest cue; the probe must read it on held-out files
    assert r.metrics["probe/detector/accuracy"] >= 0.9
    assert r.model.probes.fields  # probes were fitted and kept


def test_training_is_deterministic_and_leaves_global_rng_alone() -> None:
    ms = lattice_micrographs(24, seed=5)
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    a = train(ms, config=TINY, epochs=2, batch_size=8, seed=7, device="cpu")
    after = torch.rand(3)
    torch.testing.assert_close(after, expect)  # the caller's RNG stream is untouched
    b = train(ms, config=TINY, epochs=2, batch_size=8, seed=7, device="cpu")
    c = train(ms, config=TINY, epochs=2, batch_size=8, seed=8, device="cpu")
    sa, sb, sc = (r.model.net.state_dict() for r in (a, b, c))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_siglip_training_learns_its_bias() -> None:
    ms = lattice_micrographs(24, seed=2)
    r = train(ms, config=TINY, loss="siglip", epochs=2, batch_size=8, seed=0, device="cpu")
    assert r.model.config.loss == "siglip"
    assert float(r.model.net.logit_bias.detach()) != -10.0  # moved by training
    assert np.isfinite(r.history[-1]["loss"])
    m = r.model
    e_img, e_meta = m.embed_images(ms[:4]), m.embed_metadata(ms[:4])
    scale = float(m.net.logit_scale.detach().exp())
    expected = scale * e_img @ e_meta.T + float(m.net.logit_bias.detach())
    np.testing.assert_allclose(m.logits(e_img, e_meta), expected, rtol=1e-5)


def test_checkpoint_round_trip(trained: TrainResult, tmp_path: Path) -> None:
    model = trained.model
    w = model.save(tmp_path, name="ck")
    assert w.name == "ck.safetensors" and (tmp_path / "ck.json").is_file()
    again = ContrastiveModel.load(w, device="cpu")
    assert again.config == model.config
    assert again.fields == model.fields
    ms = lattice_micrographs(6, seed=9)
    np.testing.assert_allclose(again.embed_images(ms), model.embed_images(ms), atol=1e-6)
    np.testing.assert_allclose(again.embed_metadata(ms), model.embed_metadata(ms), atol=1e-6)
    emb = model.embed_images(ms)
    p1, p2 = model.predict(emb), again.predict(emb)
    assert p1.keys() == p2.keys() and "detector" in p1
    np.testing.assert_array_equal(p1["detector"], p2["detector"])
    np.testing.assert_allclose(p1["pixel_size_nm"], p2["pixel_size_nm"], rtol=1e-5)
    # probe scores on held-out data are recorded in the config
    det = next(p for p in again.config.probes if p["field"] == "detector")
    assert det["heldout"]["accuracy"] == trained.metrics["probe/detector/accuracy"]
    # hash check, corrupt weights, missing config
    import hashlib as h

    digest = h.sha256(w.read_bytes()).hexdigest()
    load_model(w, sha256=digest)
    with pytest.raises(ModelError, match="sha256"):
        load_model(w, sha256="0" * 64)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors at all")
    (tmp_path / "bad.json").write_text((tmp_path / "ck.json").read_text())
    with pytest.raises(ModelError, match="safetensors"):
        load_model(bad)
    (tmp_path / "lone.safetensors").write_bytes(w.read_bytes())
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "lone.safetensors")
    # a config that does not describe the weights
    other = replace(model.config, embed_dim=8)
    (tmp_path / "mismatch.safetensors").write_bytes(w.read_bytes())
    (tmp_path / "mismatch.json").write_text(other.to_json())
    with pytest.raises(ModelError, match="do not fit"):
        load_model(tmp_path / "mismatch.safetensors")


def test_embeddings_are_unit_batched_and_accept_arrays(trained: TrainResult) -> None:
    model = trained.model
    ms = lattice_micrographs(10, seed=3)
    e = model.embed_images(ms, batch_size=3)
    assert e.shape == (10, 16) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(e, model.embed_images([m.pixels for m in ms]), atol=1e-6)
    np.testing.assert_allclose(e, model.embed_images(np.stack([m.pixels for m in ms])), atol=1e-6)
    meta = model.embed_metadata([m.acquisition for m in ms])  # no pixel size: missing field
    full = model.embed_metadata(ms)
    assert meta.shape == (10, 16)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(meta, full)
    rows = [{**m.acquisition.to_dict(), "pixel_size_nm": m.pixel_size_nm} for m in ms]
    np.testing.assert_allclose(model.embed_metadata(rows), full, atol=1e-6)
    px = [m.pixel_size_nm for m in ms]
    acq = [m.acquisition for m in ms]
    np.testing.assert_allclose(model.embed_metadata(acq, pixel_size_nm=px), full, atol=1e-6)


# ----------------------------------------------------------------------------- catalog cache
def test_catalog_dataset_is_cached_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from emdig.catalog import Catalog
    from emdig.ingest import ingest

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (60 + i, 64), dtype=np.uint8)).save(
            folder / f"im{i}.png"
        )
    db = tmp_path / "cat.db"
    with Catalog(db) as cat:
        ingest([folder], catalog=cat, workers=1)
    cache = tmp_path / "cache"
    cfg = TINY.image
    ds = ContrastiveDataset.from_catalog(db, config=cfg, cache_dir=cache)
    assert len(ds) == 6 and ds.regions.shape == (6, 48, 48)
    assert all(i is not None for i in ds.ids)
    # the regions are the preprocessed pixels of each file
    from emdig.contrastive.encoders import preprocess

    for k, p in enumerate(ds.paths):
        ref = preprocess(np.asarray(Image.open(str(p))), config=cfg).astype(np.float16)
        np.testing.assert_array_equal(np.asarray(ds.regions[k]), ref)
    # second run and a sub-selection read no file
    import emdig.io

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("read called although cached")

    monkeypatch.setattr(emdig.io, "read", fail)
    again = ContrastiveDataset.from_catalog(db, config=cfg, cache_dir=cache)
    np.testing.assert_array_equal(np.asarray(again.regions), np.asarray(ds.regions))
    sub = ContrastiveDataset.from_catalog(db, where="height > 62", config=cfg, cache_dir=cache)
    assert len(sub) == 3
    by_key = {k: i for i, k in enumerate(ds.keys)}
    for j, k in enumerate(sub.keys):
        np.testing.assert_array_equal(np.asarray(sub.regions[j]), np.asarray(ds.regions[by_key[k]]))


def test_dataset_from_files_skips_unreadable_files(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (50, 52), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "bad.png"
    bad.write_bytes(paths[0].read_bytes()[:40])  # truncated
    seen: list[tuple[int, int]] = []
    ds = ContrastiveDataset.from_files(
        [*paths, bad], config=TINY.image, cache_dir=tmp_path / "c",
        progress=lambda i, n: seen.append((i, n)),
    )  # fmt: skip
    assert len(ds) == 3 and ds.paths == [str(p) for p in paths]
    assert seen[-1] == (4, 4)
    assert all(r["pixel_size_nm"] is None for r in ds.records)  # uncalibrated PNG
    assert len(set(ds.groups)) == 3


def test_readout_loss_matches_hand_computation() -> None:
    from emdig.contrastive.encoding import EncodedMetadata
    from emdig.contrastive.train import _READOUT_HARMONICS, _Readout

    enc = EncodedMetadata(
        numeric=np.array([[0.5], [-1.0]], np.float32),
        numeric_mask=np.array([[True], [False]]),
        angle=np.array([[0.3], [1.2]], np.float32),
        angle_mask=np.array([[True], [True]]),
        categorical=np.array([[1], [2]], np.int64),
        categorical_mask=np.array([[True], [True]]),
    )
    ro = _Readout(enc, 4)
    n_out = 1 + 2 * len(_READOUT_HARMONICS) + 3
    assert ro.linear.out_features == n_out
    with torch.no_grad():
        ro.linear.weight.zero_()
        ro.linear.bias.copy_(torch.arange(n_out, dtype=torch.float32) / 10)
    emb = torch.zeros(2, 4)
    got = float(ro.loss(emb, enc.tensors()).detach())
    b = np.arange(n_out) / 10
    want = (b[0] - 0.5) ** 2  # the second record's numeric value is missing
    for a in (0.3, 1.2):
        for j, h in enumerate(_READOUT_HARMONICS):
            c, s = b[1 + 2 * j], b[2 + 2 * j]
            want += ((c - math.cos(h * a)) ** 2 + (s - math.sin(h * a)) ** 2) / 2 / 4
    logits = b[-3:]
    logp = logits - math.log(np.exp(logits).sum())
    want += -(logp[1] + logp[2]) / 2
    assert got == pytest.approx(want, rel=1e-5)


def test_metadata_neighbours_are_the_nearest_distinct_records() -> None:
    from emdig.contrastive.config import FieldSpec
    from emdig.contrastive.encoding import encode_metadata
    from emdig.contrastive.train import _batches, metadata_neighbours

    specs = fit_fields(
        (FieldSpec("magnification", log=True), FieldSpec("detector", "categorical")),
        recs := [
            {"magnification": m, "detector": d}
            for d in ("HAADF", "BF")
            for m in (1e5, 2e5, 4e5, 8e5, 8e5)
        ],
    )
    enc = encode_metadata(recs, specs)
    nb = metadata_neighbours(enc, 2)
    # record 2 (HAADF, 4e5): its nearest distinct records are 2e5 and 8e5 of the same detector
    assert sorted(nb[2].tolist()) in ([1, 3], [1, 4])
    # identical records (3 and 4) are never each other's negatives; categories come last
    assert 4 not in nb[3] and 3 not in nb[4]
    assert all(recs[j]["detector"] == recs[i]["detector"] for i in range(10) for j in nb[i])
    rng = np.random.default_rng(0)
    batches = _batches(10, 2, rng, nb, 0.5)
    assert len(batches) == 2 and all(len(np.unique(b)) == len(b) <= 5 for b in batches)
    plain = _batches(10, 2, np.random.default_rng(0), None, 0.5)
    assert sorted(np.concatenate(plain).tolist()) == list(range(10))


def test_hard_negatives_and_feature_noise_are_used_and_recorded() -> None:
    ms = lattice_micrographs(24, seed=3)
    kw = {"config": TINY, "epochs": 2, "batch_size": 8, "seed": 0, "device": "cpu"}
    plain = train(ms, **kw)
    res = train(ms, hard_negatives=0.5, feature_noise=0.2, **kw)
    assert res.model.config.trained_on["hard_negatives"] == 0.5
    assert res.model.config.trained_on["feature_noise"] == 0.2
    assert math.isfinite(res.history[-1]["loss"])
    # other batches and jittered features: another model from the same seed
    assert res.history[-1]["loss"] != plain.history[-1]["loss"]


def test_turn180_turns_crops_and_adds_pi_to_present_angles() -> None:
    from emdig.contrastive.encoding import EncodedMetadata
    from emdig.contrastive.train import _turn180

    crops = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3)
    enc = EncodedMetadata(
        numeric=np.zeros((4, 1), np.float32),
        numeric_mask=np.ones((4, 1), bool),
        angle=np.full((4, 1), 0.5, np.float32),
        angle_mask=np.array([[True], [True], [False], [True]]),
        categorical=np.zeros((4, 1), np.int64),
        categorical_mask=np.ones((4, 1), bool),
    )
    out, e2, turned = _turn180(crops, enc, np.random.default_rng(1), 0.5)
    assert 0 < turned.sum() < 4  # this seed turns some, not all
    for i in range(4):
        want = crops[i, ::-1, ::-1] if turned[i] else crops[i]
        np.testing.assert_array_equal(out[i], want)
        shift = np.pi if turned[i] and enc.angle_mask[i, 0] else 0.0
        assert math.isclose(float(e2.angle[i, 0]), 0.5 + shift, rel_tol=1e-6)
    np.testing.assert_array_equal(enc.angle, 0.5)  # the input is left alone
    same, e3, none = _turn180(crops, enc, np.random.default_rng(1), 0.0)
    assert not none.any() and same is crops and e3 is enc


def test_rotate180_is_used_and_recorded() -> None:
    ms = lattice_micrographs(24, seed=3)
    kw = {"config": TINY, "epochs": 2, "batch_size": 8, "seed": 0, "device": "cpu"}
    plain = train(ms, **kw)
    res = train(ms, rotate180=0.5, **kw)
    assert res.model.config.trained_on["rotate180"] == 0.5
    assert math.isfinite(res.history[-1]["loss"])
    assert res.history[-1]["loss"] != plain.history[-1]["loss"]


def test_ensemble_averages_its_members_similarities(tmp_path: Path) -> None:
    ms = lattice_micrographs(24, seed=3)
    kw = dict(config=TINY, epochs=2, batch_size=8, device="cpu")
    one = [train(ms, seed=s, **kw).model for s in (4, 5)]  # type: ignore[arg-type]
    ens = train(ms, members=2, seed=4, out=tmp_path, **kw)  # type: ignore[arg-type]
    m = ens.model
    assert m.config.members == 2 and m.embed_dim == 2 * TINY.embed_dim
    assert len(ens.history) == 4 and [h["member"] for h in ens.history] == [1, 1, 2, 2]
    assert ens.history[-1]["epoch"] == 4 and "member_top1" in ens.history[-1]
    probe = lattice_micrographs(6, seed=11)
    e_img, e_meta = m.embed_images(probe), m.embed_metadata(probe)
    np.testing.assert_allclose(np.linalg.norm(e_img, axis=1), 1.0, rtol=1e-5)
    # member k is the single model of seed + k: the ensemble's similarity is their mean
    mean = sum(o.embed_images(probe) @ o.embed_metadata(probe).T for o in one) / 2
    np.testing.assert_allclose(e_img @ e_meta.T, mean, atol=1e-5)
    # the last checkpoint is the whole ensemble, with its probes
    again = load_model(tmp_path / "model.safetensors", device="cpu")
    assert again.config.members == 2 and len(again.probes) == len(m.probes)
    np.testing.assert_allclose(again.embed_images(probe), e_img, atol=1e-6)
    assert again.predict(e_img).keys() == m.predict(e_img).keys()


def test_ensemble_needs_members_of_one_config() -> None:
    from emdig.contrastive.encoders import ContrastiveNet

    a = ContrastiveNet(TINY)
    b = ContrastiveNet(replace(TINY, embed_dim=8))
    with pytest.raises(ValueError, match="one config"):
        ContrastiveNet.from_members([a, b])
    with pytest.raises(ValueError, match="at least 1"):
        ContrastiveNet(replace(TINY, members=0))
    assert ContrastiveNet.from_members([a]) is a
