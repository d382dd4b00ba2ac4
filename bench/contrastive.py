# SPDX-License-Identifier: GPL-3.0-or-later
"""Contrastive benchmark: the paper-sized simulated archive, then the real instrument files.

1. **Simulated archive**: 7,330 STEM images (``emdig contrastive simulate``, seed 0, 256 px,
   HSPY files with their metadata), read once into a cached dataset, trained with the default
   recipe (``recipes/contrastive_default.py`` settings: CLIP loss, 40 epochs, 10 % of the files
   held out by hash, seed 0). Reported on the held-out files: top-1/top-5 retrieval in both
   directions among all held-out pairs (a hit: identical metadata; ``_strict``: the own pair
   only, since images of one session share their settings), linear-probe accuracy per
   categorical field and R² per numeric field, training time, and embedding speed (images
   per second, preprocessing included, micrographs already in memory).
2. **Real files**: ``../shared/data/instrument-files`` ingested into a fresh catalog, a model
   trained on it (a tiny archive with missing fields), then every task: embed, search by image
   and by metadata, predict, anomalies, map. The constant ("dummy") frames must rank first in
   ``anomalies``.

3. ``--embed-speed MODEL``: embedding speed alone, for a machine that was busy during the full
   run: the first 600 files of the archive embedded three times with a trained model (median
   reported; results in ``bench/results/contrastive_embed.json``).

Run: ``python bench/contrastive.py [--archive build/sim-stem] [--epochs 40] [--members 1]
[--threads 2]``
(about 15 minutes on 2 cores, plus about 4 minutes to simulate the archive the first time;
``--threads 1`` when another job shares the cores). Results in
``bench/results/contrastive.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "instrument-files"
TARGETS = {
    "image_to_metadata_top1": 0.85,
    "probe/detector/accuracy": 0.95,
    "probe/pixel_size_nm/r2": 0.9,
    "probe/dose_e_per_px/r2": 0.9,
}


def log(msg: str) -> None:
    print(f"[bench/contrastive {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def simulated(
    archive: Path, epochs: int, out: Path, *, reuse: bool = False, members: int = 1
) -> dict[str, Any]:
    from emdig.contrastive.data import ContrastiveDataset
    from emdig.contrastive.simulate import simulate_archive
    from emdig.contrastive.train import train
    from emdig.io import read

    res: dict[str, Any] = {}
    files = sorted(archive.glob("stem_*.hspy"))
    if len(files) < 7330:
        t = time.perf_counter()
        files = simulate_archive(archive, n=7330, seed=0, size=256, workers=2)
        res["simulate_seconds"] = round(time.perf_counter() - t, 1)
        log(f"simulated 7,330 images in {res['simulate_seconds']} s")
    files = files[:7330]
    t = time.perf_counter()
    ds = ContrastiveDataset.from_files(files, cache_dir=out / "cache")
    res["dataset_seconds"] = round(time.perf_counter() - t, 1)
    log(f"dataset of {len(ds)} images in {res['dataset_seconds']} s")

    def progress(epoch: int, total: int, fig: dict[str, float]) -> None:
        log(
            f"epoch {epoch}/{total} loss {fig['loss']:.3f} "
            f"held-out top-1 {fig.get('heldout_top1', float('nan')):.3f} ({fig['seconds']:.0f} s)"
        )

    weights = out / "model" / "model.safetensors"
    if reuse and weights.is_file():
        from emdig.contrastive.encoders import ContrastiveModel
        from emdig.contrastive.evaluate import attach_heldout_scores, evaluate, fit_probes

        model = ContrastiveModel.load(weights)
        train_split, held = ds.split(holdout=float(model.config.trained_on.get("holdout", 0.1)))
        metrics = evaluate(model, held, train=train_split)
        # the probes as a fresh run would store them: refitted, with their held-out scores
        model.probes = fit_probes(
            model.embed_regions(train_split.regions), train_split.records, model.fields
        )
        attach_heldout_scores(model.probes, metrics)
        log(f"reused {weights} (training figures from its first run)")
    else:
        t = time.perf_counter()
        tr = train(ds, epochs=epochs, members=members, seed=0, out=out / "model", progress=progress)
        res["train_seconds"] = round(time.perf_counter() - t, 1)
        model, held, metrics = tr.model, tr.held_out, tr.metrics
        res["train_items"] = len(tr.train)
    res["epochs"] = epochs
    res["members"] = int(model.config.members)
    res["heldout_items"] = len(held)
    res["metrics"] = {k: round(float(v), 4) for k, v in metrics.items()}
    res["corrupted_metadata"] = corrupted(model, held)
    sample = [m for p in files[:600] for m in read(p)]
    res["embed_images_per_s"] = round(embed_rates(model, sample)[0], 1)
    log(f"embedding: {res['embed_images_per_s']} images/s")
    return res


def embed_rates(model: Any, sample: list[Any], repeats: int = 1) -> list[float]:
    """Images per second of ``repeats`` passes embedding ``sample`` (after a warm-up)."""
    model.embed_images(sample[:64])
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.embed_images(sample)
        rates.append(len(sample) / (time.perf_counter() - t))
    return rates


def embed_speed(weights: Path, archive: Path, *, repeats: int = 3) -> dict[str, Any]:
    """Images per second embedding the first 600 files of ``archive`` (in memory,
    preprocessing included): the median of ``repeats`` passes after a warm-up."""
    import statistics

    from emdig.contrastive.encoders import ContrastiveModel
    from emdig.io import read

    model = ContrastiveModel.load(weights)
    files = sorted(archive.glob("stem_*.hspy"))[:600]
    if not files:
        sys.exit(f"no stem_*.hspy files in {archive}")
    sample = [m for p in files for m in read(p)]
    rates = embed_rates(model, sample, repeats)
    log(f"embedding: {[round(r, 1) for r in rates]} images/s")
    return {
        "images": len(sample),
        "images_per_s_median": round(statistics.median(rates), 1),
        "images_per_s": [round(r, 1) for r in rates],
    }


def corrupted(model: Any, held: Any, *, n: int = 30, seed: int = 1) -> dict[str, Any]:
    """Anomaly ranking on the held-out set with wrong metadata planted in ``n`` items per kind.

    Kinds: the detector swapped between HAADF/ADF and BF/ABF (contrast inverted), and the
    magnification (with the pixel size) off by 10x. Two scores are ranked, as
    ``emdig contrastive anomalies`` does without and with a catalog: the embeddings' mismatch
    score alone (:func:`emdig.contrastive.tasks.mismatch_scores`), and the evidence of the
    embeddings and the linear probes together (:func:`emdig.contrastive.tasks.anomaly_scores`).
    Reported for each: the ROC AUC for planted vs untouched items, and how many planted items
    are in the top ``n``.
    """
    import numpy as np

    from emdig.contrastive.tasks import anomaly_scores

    def ranking(score: Any, planted: Any) -> dict[str, Any]:
        # AUC: probability that a planted item outscores an untouched one
        order = score.argsort()
        ranks = np.empty(len(score))
        ranks[order] = np.arange(1, len(score) + 1)
        n_pos, n_neg = planted.sum(), (~planted).sum()
        auc = (ranks[planted].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        top = np.argsort(-score)[:n]
        return {"roc_auc": round(float(auc), 4), "planted_in_top_n": int(planted[top].sum())}

    rng = np.random.default_rng(seed)
    image = model.embed_regions(held.regions)
    out: dict[str, Any] = {}
    swap = {"HAADF": "BF", "ADF": "ABF", "BF": "HAADF", "ABF": "ADF"}
    for kind in ("detector", "magnification"):
        recs = [dict(r) for r in held.records]
        idx = rng.choice(len(recs), size=n, replace=False)
        for i in idx:
            r = recs[i]
            if kind == "detector":
                r["detector"] = swap.get(str(r.get("detector")), "BF")
            else:
                r["magnification"] = float(r["magnification"]) * 10
                r["pixel_size_nm"] = float(r["pixel_size_nm"]) / 10
        planted = np.zeros(len(recs), bool)
        planted[idx] = True
        meta = model.embed_metadata(recs)
        alone = ranking(anomaly_scores(model, image, meta)[0], planted)
        both = ranking(anomaly_scores(model, image, meta, recs)[0], planted)
        out[kind] = {"planted": n, **both, "embedding_only": alone}
        log(
            f"planted wrong {kind}: AUC {both['roc_auc']:.3f}, {both['planted_in_top_n']}/{n} "
            f"in the top {n} (embeddings alone: AUC {alone['roc_auc']:.3f}, "
            f"{alone['planted_in_top_n']}/{n})"
        )
    return out


def real_files(epochs: int) -> dict[str, Any]:
    from emdig.catalog.store import Catalog
    from emdig.contrastive.data import ContrastiveDataset
    from emdig.contrastive.tasks import (
        anomalies,
        contrastive_dir,
        embed_catalog,
        predict,
        projection_map,
        search_like,
        search_meta,
    )
    from emdig.contrastive.train import train
    from emdig.ingest import ingest

    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "real.db") as cat:
        s = ingest([SHARED], catalog=cat)
        res["micrographs"] = cat.count()
        res["ingest_failed"] = s.n_failed
        cdir = contrastive_dir(cat.path)
        ds = ContrastiveDataset.from_catalog(cat, cache_dir=cdir / "cache")
        t = time.perf_counter()
        tr = train(ds, epochs=epochs, seed=0, out=cdir / "model")
        res["train_seconds"] = round(time.perf_counter() - t, 1)
        res["metrics"] = {k: round(float(v), 4) for k, v in tr.metrics.items() if "top" in k}
        index = embed_catalog(cat, tr.model)
        one = SHARED / "dm3_multi_signal_HAADF.dm3"
        res["search_like_top"] = search_like(one, model=tr.model, index=index, k=3)
        res["search_meta_top"] = search_meta(
            "detector=HAADF voltage_kv=300", model=tr.model, index=index, k=3
        )
        pred = predict(one, model=tr.model, index=index, catalog=cat, k=10)
        res["predict_detector"] = pred.get("detector")
        ranked = anomalies(model=tr.model, index=index, catalog=cat, top=10)
        res["anomalies_top"] = [
            {"rank": r["rank"], "file": Path(r["path"]).name, "reasons": r["reasons"]}
            for r in ranked
        ]
        constant = [r["id"] for r in cat.select(where="std = 0")]
        top = [r["id"] for r in ranked[: len(constant)]]
        res["constant_frames"] = len(constant)
        res["constant_frames_ranked_first"] = sorted(top) == sorted(constant)
        png = projection_map(index, catalog=cat, color_by="mode", out=Path(tmp) / "map.png")
        res["map_png_bytes"] = png.stat().st_size
    log(
        f"real files: {res['micrographs']} micrographs; constant frames first in anomalies: "
        f"{res['constant_frames_ranked_first']}"
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=ROOT / "build" / "sim-stem")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "contrastive-bench")
    ap.add_argument("--epochs", type=int, default=40, help="epochs (per ensemble member)")
    ap.add_argument("--members", type=int, default=1, help="train an ensemble of this many models")
    ap.add_argument("--skip-simulated", action="store_true")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate the model a previous run saved in --out instead of training again",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (1 is faster when another job shares the 2 cores)",
    )
    ap.add_argument(
        "--embed-speed",
        type=Path,
        metavar="MODEL",
        help="only measure embedding speed with this trained model (.safetensors)",
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.embed_speed is not None:
        res = {
            "torch_threads": args.threads,
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "model": str(args.embed_speed),
            **embed_speed(args.embed_speed, args.archive),
        }
        out = ROOT / "bench" / "results" / "contrastive_embed.json"
        out.write_text(json.dumps(res, indent=1))
        print(
            f"embedding: {res['images_per_s_median']} images/s "
            f"(median of 3, {res['images']} images)"
        )
        return
    results: dict[str, Any] = {
        "machine": "2 CPU cores",
        "torch_threads": args.threads,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    if not args.skip_simulated:
        results["simulated"] = simulated(
            args.archive, args.epochs, args.out, reuse=args.reuse, members=args.members
        )
        if args.reuse:
            old = ROOT / "bench" / "results" / "contrastive.json"
            if old.is_file():  # keep the training figures of the run that trained the model
                prev = json.loads(old.read_text()).get("simulated", {})
                for k in ("train_seconds", "train_items", "dataset_seconds"):
                    if k in prev:
                        results["simulated"].setdefault(k, prev[k])
    if SHARED.is_dir():
        results["real_files"] = real_files(epochs=10)
    else:
        log(f"shared instrument files not found at {SHARED}: real-file part skipped")
    out = ROOT / "bench" / "results" / "contrastive.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    if "simulated" in results:
        sim = results["simulated"]
        m = sim["metrics"]
        print("| measure (7,330 simulated images, held-out files) | result | target |")
        print("| --- | --- | --- |")
        for k in (
            "unique_metadata",
            "image_to_metadata_top1",
            "image_to_metadata_top1_strict",
            "image_to_metadata_top5",
            "metadata_to_image_top1",
            "metadata_to_image_top1_strict",
            "metadata_to_image_top5",
            "probe/detector/accuracy",
            "probe/pixel_size_nm/r2",
            "probe/dose_e_per_px/r2",
            "probe/magnification/r2",
            "probe/voltage_kv/r2",
            "probe/convergence_mrad/r2",
            "probe/camera_length_mm/r2",
            "probe/beam_current_pa/r2",
            "probe/dwell_us/r2",
            "probe/tilt_alpha_deg/r2",
            "probe/tilt_beta_deg/r2",
            "probe/scan_rotation_deg/r2",
            "probe/instrument/accuracy",
        ):
            target = TARGETS.get(k)
            print(f"| {k} | {m.get(k, float('nan')):.3f} | {'' if target is None else target} |")
        runs = f"{sim.get('members', 1)} x " if sim.get("members", 1) > 1 else ""
        print(
            f"| training seconds ({runs}{sim['epochs']} epochs) | {sim['train_seconds']} "
            "| <= 1200 |"
        )
        print(f"| embedding images/s | {sim['embed_images_per_s']} | >= 200 |")
        for kind, c in sim.get("corrupted_metadata", {}).items():
            print(
                f"| anomalies, planted wrong {kind}: ROC AUC; in top {c['planted']} | "
                f"{c['roc_auc']:.3f}; {c['planted_in_top_n']}/{c['planted']} | |"
            )
    if "real_files" in results:
        r = results["real_files"]
        print(
            f"real files: {r['micrographs']} micrographs, constant frames ranked first in "
            f"anomalies: {r['constant_frames_ranked_first']} ({r['constant_frames']})"
        )


if __name__ == "__main__":
    main()
