"""Contrastive tasks end to end on a small simulated archive: embed, search, predict,
anomalies, map, and the CLI with --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emdig.catalog.store import Catalog
from emdig.cli import app
from emdig.contrastive.index import EmbeddingIndex, top_k
from emdig.contrastive.tasks import (
    anomalies,
    anomaly_scores,
    embed_catalog,
    embeddings_path,
    load_model_for,
    mismatch_scores,
    parse_meta_query,
    predict,
    probe_evidence,
    projection,
    projection_map,
    search_like,
    search_meta,
)
from emdig.errors import ModelError, QueryError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 48-image simulated archive plus one blank frame, ingested and trained for 2 epochs."""
    from emdig.contrastive.simulate import simulate_archive
    from emdig.ingest import ingest
    from emdig.sample import _write_hspy

    root = tmp_path_factory.mktemp("archive")
    arch = root / "arch"
    simulate_archive(arch, n=48, seed=3, size=128, workers=1)
    blank = np.full((128, 128), 513, np.uint16)
    acq = {"beam_energy": 300.0, "magnification": 2e6, "microscope": "Spectra 300"}
    _write_hspy(arch / "blank.hspy", blank, 0.02, acq, "HAADF")
    cat_path = root / "c.db"
    with Catalog(cat_path) as cat:
        ingest([arch], catalog=cat)
    r = CliRunner().invoke(
        app, ["contrastive", "train", "--epochs", "2", "-c", str(cat_path), "--json"]
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["contrastive", "embed", "-c", str(cat_path)])
    assert r.exit_code == 0, r.output
    return {"catalog": cat_path, "archive": arch}


def test_parse_meta_query() -> None:
    q = parse_meta_query("detector=HAADF voltage_kv=300 magnification=10e6")
    assert q == {"detector": "HAADF", "voltage_kv": 300.0, "magnification": 1e7}
    with pytest.raises(QueryError, match="unknown field"):
        parse_meta_query("colour=red")
    with pytest.raises(QueryError, match="takes a number"):
        parse_meta_query("voltage_kv=300kV")
    with pytest.raises(QueryError, match="field=value"):
        parse_meta_query("HAADF")
    with pytest.raises(QueryError, match="empty"):
        parse_meta_query("  ")


def test_top_k_and_exact_vs_approximate_search() -> None:
    s = np.array([[0.1, 0.9, 0.5, 0.7]])
    idx, val = top_k(s, 3)
    assert idx.tolist() == [[1, 3, 2]] and np.allclose(val, [[0.9, 0.7, 0.5]])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ix = EmbeddingIndex(np.arange(2000), x, x, "m", [""] * 2000)
    q = x[:50] + 0.02 * rng.normal(size=(50, 32)).astype(np.float32)
    exact, _ = ix.search(q, k=5)
    approx, _ = ix.search(q, k=5, exact=False)  # the usearch path used above 100k items
    assert (exact[:, 0] == np.arange(50)).all()
    assert (approx[:, 0] == exact[:, 0]).mean() >= 0.98


def test_index_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(7, 4)).astype(np.float32)
    ix = EmbeddingIndex(np.arange(10, 17), v, -v, "abc", [f"p{i}" for i in range(7)])
    back = EmbeddingIndex.load(ix.save(tmp_path / "e.parquet"))
    assert back.ids.tolist() == list(range(10, 17)) and back.model == "abc"
    assert np.array_equal(back.image, v) and np.array_equal(back.meta, -v)
    assert back.paths[3] == "p3"


def test_projection_is_pca() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6)) * np.array([10, 3, 0.1, 0.1, 0.1, 0.1])
    y = projection(x)
    # the first two principal axes carry the two big variances, in order
    assert y[:, 0].var() == pytest.approx(x[:, 0].var(), rel=0.05)
    assert y[:, 1].var() == pytest.approx(x[:, 1].var(), rel=0.1)


def test_anomaly_evidence_by_hand() -> None:
    import math

    from emdig.contrastive.config import ContrastiveConfig
    from emdig.contrastive.encoders import ContrastiveModel, ContrastiveNet, LinearProbes

    cfg = ContrastiveConfig()
    model = ContrastiveModel(ContrastiveNet(cfg))
    mag = next(f for f in model.fields if f.name == "magnification")
    assert mag.std == 1.0  # unfitted: the uniform alternative spans 4 decades
    d = cfg.embed_dim
    w_det = np.zeros((d, 2))
    w_det[0] = [2.0, -2.0]  # logits (2 e0, -2 e0) for classes BF, HAADF
    w_mag = np.zeros((d, 1))
    w_mag[1, 0] = 1.0  # log10 magnification = 6 + e1
    info = [
        {"field": "detector", "kind": "categorical", "log": False, "classes": ["BF", "HAADF"]},
        {
            "field": "magnification",
            "kind": "numeric",
            "log": True,
            "heldout": {"rmse": 0.1, "n": 50},
        },
        {"field": "dwell_us", "kind": "numeric", "log": True},  # no held-out RMSE: no evidence
        # an RMSE from too few held-out items, and a probe of one class: no evidence either
        {
            "field": "beam_current_pa",
            "kind": "numeric",
            "log": True,
            "heldout": {"rmse": 1e-3, "n": 3},
        },
        {"field": "mode", "kind": "categorical", "log": False, "classes": ["STEM"]},
        {"field": "scan_rotation_deg", "kind": "angle", "log": False, "harmonics": [1]},
    ]
    model.probes = LinearProbes(
        info=info,
        weights={
            "detector": w_det,
            "magnification": w_mag,
            "dwell_us": w_mag,
            "beam_current_pa": w_mag,
            "mode": np.zeros((d, 1)),
            "scan_rotation_deg": np.zeros((d, 2)),
        },
        biases={
            "detector": np.zeros(2),
            "magnification": np.array([6.0]),
            "dwell_us": np.array([0.0]),
            "beam_current_pa": np.array([0.0]),
            "mode": np.zeros(1),
            "scan_rotation_deg": np.zeros(2),
        },
    )
    emb = np.zeros((5, d))
    emb[:, 0] = [1.0, 1.0, 1.0, 5.0, 0.0]
    emb[:, 1] = [0.0, 0.0, 0.3, 0.0, 0.0]
    recs = [
        {
            "detector": "BF",
            "magnification": 1e6,
            "dwell_us": 50.0,
            "beam_current_pa": 80.0,
            "mode": "STEM",
            "scan_rotation_deg": 90.0,
        },
        {"detector": "HAADF", "magnification": 1e6},
        {"detector": "ABF", "magnification": 1e6},  # a class the probe never saw; mag off 3 RMSE
        {"detector": "HAADF"},  # p = e^-20 / (1 + e^-20): clipped at 1e-3
        {},
    ]
    names, ev = probe_evidence(model, emb, recs)
    assert names == ["detector", "magnification"] and ev.shape == (5, 2)
    soft = math.log1p(math.exp(-4.0))
    t_const = math.log(2 * math.sqrt(2) * 0.1 / 4.0)
    np.testing.assert_allclose(
        ev[:, 0], [soft - math.log(2), 4.0 + soft - math.log(2), -np.inf, -math.log(2e-3), -np.inf]
    )
    np.testing.assert_allclose(
        ev[:, 1], [t_const, t_const, 1.5 * math.log1p(4.5) + t_const, -np.inf, -np.inf]
    )
    assert probe_evidence(model, emb[:0], [])[1].shape == (0, 0)

    # the embeddings' term: -log softmax of the own record among all, less log N
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, d))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    meta = img.copy()
    meta[3] = -img[3]  # the last image's own record points away from it
    score, rank = mismatch_scores(img, meta, scale=10.0, block=3)
    logits = 10.0 * img @ meta.T
    want = np.log(np.exp(logits).sum(axis=1)) - np.diag(logits) - math.log(4)
    np.testing.assert_allclose(score, want)
    assert rank.tolist() == [1, 1, 1, 4] and score.argmax() == 3
    # calibrated on records swapped between images: own pairs below 0, a swapped one above
    from emdig.contrastive.tasks import _calibrated_mismatch

    img = rng.normal(size=(60, d))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    meta = img + 0.7 * rng.normal(size=img.shape) / math.sqrt(d)
    meta /= np.linalg.norm(meta, axis=1, keepdims=True)
    meta[[0, 1]] = meta[[1, 0]]  # two images whose records were exchanged
    cal, _ = _calibrated_mismatch(img, meta, 10.0, 4096)
    raw, _ = mismatch_scores(img, meta, scale=10.0)
    assert np.corrcoef(cal, raw)[0, 1] > 0.999  # an increasing affine map of the raw score
    assert cal[0] > 0 and cal[1] > 0 and np.median(cal[2:]) < 0
    assert set(np.argsort(-cal)[:2]) == {0, 1}
    # too few items, or no two distinct records: the raw score
    few, _ = _calibrated_mismatch(img[:3], meta[:3], 10.0, 4096)
    np.testing.assert_allclose(few, mismatch_scores(img[:3], meta[:3], scale=10.0)[0])
    same = np.repeat(meta[:1], 10, axis=0)
    one, _ = _calibrated_mismatch(img[:10], same, 10.0, 4096)
    np.testing.assert_allclose(one, mismatch_scores(img[:10], same, scale=10.0)[0])
    # together: log(exp(embeddings) + sum of exp(field evidence)), per item
    recs4 = recs[:4] * 15
    emb60 = np.zeros((60, d))
    emb60[:, :2] = emb[np.arange(60) % 4, :2]
    model_img = np.concatenate([emb60[:, :2], img[:, 2:]], axis=1)
    total, _ = anomaly_scores(model, model_img, meta, recs4)
    s = float(model.net.logit_scale.detach().exp())
    alone, _ = _calibrated_mismatch(model_img, meta, s, 4096)
    _, ev = probe_evidence(model, model_img, recs4)
    np.testing.assert_allclose(total, np.log(np.exp(alone) + np.exp(ev).sum(axis=1)))
    np.testing.assert_allclose(anomaly_scores(model, model_img, meta)[0], alone)


def test_tasks(trained: dict[str, Path], tmp_path: Path) -> None:
    cat_path = trained["catalog"]
    with Catalog(cat_path, create=False) as cat:
        model = load_model_for(cat_path)
        index = EmbeddingIndex.load(embeddings_path(cat_path))
        assert len(index) == cat.count() == 49
        one = sorted(trained["archive"].glob("stem_*.hspy"))[0]
        hits = search_like(one, model=model, index=index, k=3)
        # an image is its own nearest neighbour
        assert hits[0]["path"].endswith(one.name) and hits[0]["score"] == pytest.approx(1, 1e-3)
        meta_hits = search_meta("detector=HAADF", model=model, index=index, k=5)
        assert len(meta_hits) == 5 and meta_hits[0]["score"] >= meta_hits[-1]["score"]
        pred = predict(one, model=model, index=index, catalog=cat, k=10)
        assert pred["detector"]["retrieval"] in {"HAADF", "ADF", "ABF", "BF"}
        assert 0 < pred["detector"]["retrieval_confidence"] <= 1
        assert pred["mode"]["probe"] == "STEM"
        ranked = anomalies(model=model, index=index, catalog=cat, top=5)
        assert ranked[0]["path"].endswith("blank.hspy")
        assert "blank frame" in ranked[0]["reasons"][0]
        png = projection_map(index, catalog=cat, color_by="detector", out=tmp_path / "m.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(QueryError, match="cannot colour"):
            projection_map(index, catalog=cat, color_by="nonsense", out=tmp_path / "x.png")
        again = embed_catalog(cat, model, out=tmp_path / "e.parquet")
        assert np.allclose(again.image, index.image, atol=1e-5)


def test_cli_json(trained: dict[str, Path], tmp_path: Path) -> None:
    c = ["-c", str(trained["catalog"])]
    one = str(sorted(trained["archive"].glob("stem_*.hspy"))[1])
    run = CliRunner().invoke
    r = run(app, ["search", "--like", one, "-k", "2", "--json", *c])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["path"].endswith(Path(one).name)
    r = run(app, ["search", "--meta", "detector=BF voltage_kv=300", "--json", *c])
    assert r.exit_code == 0 and len(json.loads(r.output)) == 10
    r = run(app, ["search", "--meta", "bogus=1", *c])
    assert r.exit_code == 2 and "unknown field" in r.output
    r = run(app, ["search", *c])
    assert r.exit_code == 2
    r = run(app, ["contrastive", "predict", one, "--json", *c])
    assert r.exit_code == 0 and "detector" in json.loads(r.output)
    r = run(app, ["contrastive", "anomalies", "-n", "3", "--json", *c])
    assert r.exit_code == 0 and json.loads(r.output)[0]["path"].endswith("blank.hspy")
    r = run(app, ["contrastive", "evaluate", "--json", *c])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert 0 <= m["image_to_metadata_top1"] <= m["image_to_metadata_top5"] <= 1
    r = run(
        app,
        ["contrastive", "map", "--color-by", "magnification", "-o", str(tmp_path / "m.png"), *c],
    )
    assert r.exit_code == 0 and (tmp_path / "m.png").is_file()


def test_missing_model_and_embeddings(tmp_path: Path) -> None:
    cat_path = tmp_path / "empty.db"
    Catalog(cat_path).close()
    with pytest.raises(ModelError, match="contrastive train"):
        load_model_for(cat_path)
    r = CliRunner().invoke(app, ["contrastive", "anomalies", "-c", str(cat_path)])
    assert r.exit_code == 2 and "contrastive train" in r.output


def test_ensemble_model_serves_every_task(trained: dict[str, Path], tmp_path: Path) -> None:
    """``contrastive train --members 2``: one model file whose embeddings are twice as long,
    used by embed, search, predict and anomalies like a single model."""
    cat_path = trained["catalog"]
    out = tmp_path / "ens"
    r = CliRunner().invoke(
        app,
        ["contrastive", "train", "--epochs", "1", "--members", "2", "--out", str(out),
         "-c", str(cat_path), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    model = load_model_for(cat_path, out)
    assert model.config.members == 2 and model.config.trained_on["members"] == 2
    with Catalog(cat_path) as cat:
        index = embed_catalog(cat, model, out=tmp_path / "e.parquet")
        assert index.image.shape[1] == 2 * model.config.embed_dim
        first = sorted(trained["archive"].glob("stem_*.hspy"))[0]
        hits = search_like(first, model=model, index=index, k=3)
        assert len(hits) == 3 and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        fields = predict(first, model=model, index=index, catalog=cat)
        assert "detector" in fields
        ranked = anomalies(model=model, index=index, catalog=cat, top=5)
        assert len(ranked) == 5
