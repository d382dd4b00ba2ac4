# SPDX-License-Identifier: GPL-3.0-or-later
"""Particles benchmark: accuracy, speed, and the two baselines, measured in one run.

Accuracy on the three real MPFI development images is leave-one-image-out: for each image the
model scored on it was fine-tuned on the other two only (``recipes/particles_default.py
finetune --exclude IMAGE``; built and cached under ``build/`` when missing). The synthetic-only
base model, which saw no real image, is scored on all three as well. Scoring is
:func:`emdig.particles.evaluate.evaluate` with the region proxy (convex hull of the annotations
dilated by 50 px) and classes 6 and 12 nm, as the data's README prescribes.

Also measured: F1 on held-out synthetic images (the shipped model; its heat map alone,
without the verifier, at the threshold best for those very images; and the synthetic-only
base); end-to-end time on one 2048x2115 image (read, detect, CSV, overlay, histogram) on 2
threads; scikit-image ``blob_log``
tuned by grid search (in-sample and leave-one-image-out); and Gold Digger's pix2pix U-Net-256
generator over 256-px tiles (random weights: timing only), with our speed ratio against it.

``python bench/particles.py --synthetic-only`` measures the shipped model on 60 held-out
synthetic images alone (F1 per block of 12 images, and what each error is); ``--loo-only``
the leave-one-image-out rows alone.

Run: ``python bench/particles.py`` (about 15 minutes on 2 cores the first time, when the
leave-one-out models are trained; results in ``bench/results/particles.json``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from emdig.particles.annotations import Points, synthetic_truth  # noqa: E402
from emdig.particles.detect import detect  # noqa: E402
from emdig.particles.evaluate import dark_disc_reference, evaluate  # noqa: E402
from emdig.particles.model import load_model  # noqa: E402
from emdig.particles.synth import SynthConfig, synth_batch  # noqa: E402
from particles_baselines import (  # noqa: E402
    load_immunogold,
    score_blob_log,
    time_golddigger,
    tune_blob_log,
)

PX = 0.5587
BUILD = ROOT / "build"
BASE = BUILD / "particles-base" / "model.safetensors"
SHIPPED = ROOT / "src" / "emdig" / "models" / "particles-default.safetensors"


def log(msg: str) -> None:
    print(f"[bench/particles {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _recipe(*args: str) -> None:
    cmd = [sys.executable, str(ROOT / "recipes" / "particles_default.py"), *args]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def loo_model(name: str) -> Path:
    out = BUILD / f"particles-loo-{Path(name).stem}"
    w = out / "model.safetensors"
    if not w.is_file():
        if not BASE.is_file():
            _recipe("base", "--out", str(BASE.parent))
        _recipe("finetune", "--init", str(BASE), "--out", str(out), "--exclude", name)
    return w


def score(
    model_path: Path, images: dict[str, np.ndarray], truth: Points, names: list[str]
) -> dict[str, Any]:
    model = load_model(model_path)
    preds = []
    for n in names:
        preds.append(detect(images[n], pixel_size_nm=PX, model=model, name=n).points)
    pred = Points.concat(preds)
    pred = pred[np.isin(pred.class_nm, (6.0, 12.0))]
    t = Points.concat([truth.select(image=n) for n in names])
    return evaluate(pred, t, pixel_size_nm=PX, classes_nm=(6, 12), region="hull")


def synthetic_f1(
    model_path: Path, n: int = 12, *, verifier: bool = True, threshold: float | None = None
) -> dict[str, Any]:
    """Scores on ``n`` held-out synthetic 768 x 768 images (a seed no recipe uses).
    ``verifier=False`` scores the model's heat map alone, at ``threshold``."""
    model = load_model(model_path)
    if not verifier:
        model.verifier = None
    preds, truths, _ = _synthetic_detections(model, n, threshold)
    return evaluate(Points.concat(preds), Points.concat(truths), pixel_size_nm=PX)


def _synthetic_detections(
    model: Any, n: int, threshold: float | None = None
) -> tuple[list[Points], list[Points], list[Any]]:
    """Detections, truths and scenes of the first ``n`` held-out synthetic 768 x 768 images."""
    preds, truths, scenes = [], [], []
    for k, s in enumerate(synth_batch(SynthConfig(shape=(768, 768)), n, seed=90_000)):
        r = detect(s.image, pixel_size_nm=s.pixel_size_nm, model=model, name=f"s{k}",
                   threshold=threshold)  # fmt: skip
        preds.append(r.points)
        truths.append(synthetic_truth(s.particles, image=f"s{k}"))
        scenes.append(s)
    return preds, truths, scenes


def _near(points: Points, x: float, y: float, radius_px: float) -> bool:
    """Whether any of ``points`` lies within ``radius_px`` of ``(x, y)``."""
    return bool(len(points)) and bool(np.hypot(points.x_px - x, points.y_px - y).min() < radius_px)


def synthetic_errors(model_path: Path, n: int = 60, block: int = 12) -> dict[str, Any]:
    """The shipped model on ``n`` held-out synthetic images (the same seed as
    :func:`synthetic_f1`, whose 12 images are the first block): the F1 of all of them and of
    each block of ``block`` images (how much a 12-image figure varies), and what every error
    is. A false positive is named after the labelled look-alike whose extent it lies in
    (within 0.6 of its diameter plus 4 px), else ``near gold`` (within 25 px of a particle),
    else ``unlabelled`` (the replica itself: folds, grain, membrane edges); a miss by its
    class and whether it sits in a cluster."""
    from emdig.particles.evaluate import match_points

    preds, truths, scenes = _synthetic_detections(load_model(model_path), n)
    fp: dict[str, int] = {}
    fn: dict[str, int] = {}
    for p, t, s in zip(preds, truths, scenes, strict=True):
        m = match_points(p, t, pixel_size_nm=s.pixel_size_nm)
        neg = s.negatives
        for i in m.unmatched_pred:
            kind = "unlabelled"
            if len(neg):
                dn = np.hypot(neg["x_px"] - p.x_px[i], neg["y_px"] - p.y_px[i])
                j = int(np.argmin(dn))
                if dn[j] < 0.6 * neg["diameter_nm"][j] / s.pixel_size_nm + 4:
                    kind = str(neg["kind"][j])
            if kind == "unlabelled" and _near(t, p.x_px[i], p.y_px[i], 25.0):
                kind = "near gold"
            fp[kind] = fp.get(kind, 0) + 1
        for j in m.unmatched_truth:
            row = s.particles[j]
            key = f"{row['class_nm']:g} nm" + (" in a cluster" if row["cluster"] >= 0 else "")
            fn[key] = fn.get(key, 0) + 1
    blocks = []
    for lo in range(0, n, block):
        e = evaluate(Points.concat(preds[lo : lo + block]), Points.concat(truths[lo : lo + block]),
                     pixel_size_nm=PX)  # fmt: skip
        blocks.append(e["detection"]["f1"])
    total = _row(evaluate(Points.concat(preds), Points.concat(truths), pixel_size_nm=PX))
    return {"images": n, **total, "f1_per_block": blocks, "false_positives": fp, "misses": fn}


def synthetic_f1_heat_only(model_path: Path) -> dict[str, Any]:
    """The ablation: the shipped heat map without its verifier, at the heat-map threshold that
    is best on the test images themselves (an upper bound for the heat map alone)."""
    rows = {
        t: synthetic_f1(model_path, verifier=False, threshold=t)
        for t in (0.15, 0.25, 0.35, 0.45, 0.55, 0.65)
    }
    best = max(rows, key=lambda t: rows[t]["detection"]["f1"] or 0.0)
    return {**rows[best], "threshold": best}


def large_gold_check(model_path: Path, images: dict[str, np.ndarray]) -> dict[str, Any]:
    """The unannotated 18 nm label: how the model classes every isolated, round, near-black
    disc of 14.5-24 nm that plain thresholding finds (:func:`dark_disc_reference`)."""
    model = load_model(model_path)
    out: dict[str, Any] = {}
    for n, img in images.items():
        pts = detect(img, pixel_size_nm=PX, model=model, name=n).points
        ref = dark_disc_reference(img[:2048], pixel_size_nm=PX)
        classed = {"6": 0, "12": 0, "18": 0, "missed": 0}
        for cx, cy, _ in ref:
            dist = np.hypot(pts.x_px - cx, pts.y_px - cy)
            k = int(np.argmin(dist)) if dist.size else -1
            if k < 0 or dist[k] > 8:
                classed["missed"] += 1
            else:
                classed[f"{pts.class_nm[k]:g}"] += 1
        out[n] = {
            "reference_discs": len(ref),
            "classed": classed,
            "reference_median_nm": float(np.median(ref[:, 2])) if len(ref) else None,
            "detections_classed_18": int((pts.class_nm == 18).sum()),
        }
    return out


def detect_seconds(model_path: Path, image: np.ndarray, repeats: int = 3) -> float:
    """Detection alone (like the Gold Digger figure, which is its generator alone)."""
    torch.set_num_threads(2)
    model = load_model(model_path)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        detect(image, pixel_size_nm=PX, model=model)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def end_to_end_seconds(model_path: Path, image_path: Path, repeats: int = 3) -> float:
    """Read + detect + write CSV, overlay and histogram for one image, median of repeats."""
    from emdig.io import read
    from emdig.particles.report import write_detections_csv, write_histogram, write_overlay

    torch.set_num_threads(2)
    model = load_model(model_path)
    out = BUILD / "bench-particles-out"
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        [m] = read(image_path)
        r = detect(m.pixels, pixel_size_nm=PX, model=model, name="S7")
        write_detections_csv(r.points, out / "S7.csv", pixel_size_nm=PX)
        write_overlay(
            m.pixels,
            r.points,
            out / "S7_overlay.png",
            pixel_size_nm=PX,
            classes_nm=(6, 12, 18),
            region=r.region,
        )
        write_histogram(r.points, out / "S7_sizes.png", classes_nm=(6, 12, 18))
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])  # the first pass pays imports and allocations


_LARGE = """
import resource, sys, time
import numpy as np
from emdig.particles.detect import detect
from emdig.particles.model import load_model
from emdig.particles.synth import SynthConfig, synthesize
side = int(sys.argv[2])
tile = synthesize(SynthConfig(shape=(2048, 2048)), seed=3).image
img = np.tile(tile, (side // 2048 + 1, side // 2048 + 1))[:side, :side].copy()
del tile
model = load_model(sys.argv[1])
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak: count detection only
    fh.write("5")
t0 = time.perf_counter()
r = detect(img, pixel_size_nm=0.5587, model=model)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(time.perf_counter() - t0, len(r.points), hwm)
"""


def large_image(model_path: Path, side: int = 20_000) -> dict[str, Any]:
    """A side x side uint8 image (tiled synthetic), detected in a fresh process: peak RSS."""
    r = subprocess.run(
        [sys.executable, "-c", _LARGE, str(model_path), str(side)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, n, rss_kb = r.stdout.split()
    return {
        "side_px": side,
        "seconds": float(seconds),
        "detections": int(n),
        "peak_rss_mb": int(rss_kb) / 1024,
        "image_mb": side * side / 2**20,
    }


def _row(e: dict[str, Any]) -> dict[str, Any]:
    pc = e["per_class"]
    return {
        "f1": e["detection"]["f1"],
        "precision": e["detection"]["precision"],
        "recall": e["detection"]["recall"],
        "f1_6nm": pc.get("6", {}).get("f1"),
        "f1_12nm": pc.get("12", {}).get("f1"),
        "f1_18nm": pc.get("18", {}).get("f1"),
        "diameter_median_abs_nm": e["diameter_error_nm"]["median_abs"],
    }


def _save(results: dict[str, Any], name: str) -> None:
    """Write ``bench/results/NAME`` atomically (a killed run leaves the old file)."""
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    os.replace(tmp, out)
    log(f"results: {out}")


def synthetic_only() -> int:
    """``--synthetic-only``: the shipped model on 60 held-out synthetic images, with the kinds
    of its errors (no real data and no training needed).

    Results: ``bench/results/particles_synthetic.json``."""
    torch.set_num_threads(2)
    r = {"command": "python bench/particles.py --synthetic-only", **synthetic_errors(SHIPPED)}
    print(
        f"{r['images']} held-out synthetic images: F1 {r['f1']:.3f} (P {r['precision']:.3f}, "
        f"R {r['recall']:.3f}); per 12 images {', '.join(f'{v:.3f}' for v in r['f1_per_block'])}"
    )
    print(f"false positives {r['false_positives']}; misses {r['misses']}")
    _save(r, "particles_synthetic.json")
    return 0


def loo_only() -> int:
    """``--loo-only``: the leave-one-image-out rows alone (models trained when missing), with
    the synthetic-only base (``bench/results/particles_loo.json``). The models are re-trained
    whenever ``build/`` lacks them; training is not bit-reproducible across runs (thread
    timing in the float reductions), so this shows how much the figures move from run to run."""
    images, truth = load_immunogold()
    names = sorted(images)
    r: dict[str, Any] = {
        "command": "python bench/particles.py --loo-only",
        "loo": {n: _row(score(loo_model(n), images, truth, [n])) for n in names},
        "base_synthetic_only": {n: _row(score(BASE, images, truth, [n])) for n in names},
    }
    for n in names:
        v = r["loo"][n]
        print(f"{n}: F1 {v['f1']:.3f}, 6 nm {v['f1_6nm']:.3f}, 12 nm {v['f1_12nm']:.3f}, "
              f"|dd| {v['diameter_median_abs_nm']:.2f} nm")  # fmt: skip
    _save(r, "particles_loo.json")
    return 0


def main() -> int:
    if "--synthetic-only" in sys.argv[1:]:
        return synthetic_only()
    if "--loo-only" in sys.argv[1:]:
        return loo_only()
    t_start = time.perf_counter()
    images, truth = load_immunogold()
    names = sorted(images)
    results: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "torch": torch.__version__},
        "command": "python bench/particles.py",
    }
    log("leave-one-image-out models")
    loo = {n: _row(score(loo_model(n), images, truth, [n])) for n in names}
    results["loo"] = loo
    results["base_synthetic_only"] = {n: _row(score(BASE, images, truth, [n])) for n in names}
    shipped = SHIPPED if SHIPPED.is_file() else BASE
    log(f"synthetic held-out with {shipped.name} and the synthetic-only base")
    results["synthetic_heldout"] = _row(synthetic_f1(shipped))
    results["synthetic_heldout_base"] = _row(synthetic_f1(BASE))
    heat = synthetic_f1_heat_only(shipped)
    results["synthetic_heldout_heat_only"] = {**_row(heat), "threshold": heat["threshold"]}
    log("18 nm label (not annotated) against a model-free reference")
    results["large_gold_18nm"] = large_gold_check(shipped, images)
    log("speed, end to end")
    ours = end_to_end_seconds(
        shipped,
        Path(os.environ.get("EMDIG_SHARED", ROOT.parent / "shared"))
        / "data"
        / "immunogold"
        / "images"
        / "S7.jpg",
    )
    gd = time_golddigger((2115, 2048), threads=2)
    gd1 = time_golddigger((2115, 2048), threads=2, batch_size=1)  # as Gold Digger's test.py
    det = detect_seconds(shipped, images["S7.jpg"])
    results["speed"] = {
        "detect_only_s": det,
        "ratio_detect_only": gd["seconds"] / det,
        "golddigger_batch1_s": gd1["seconds"],
        "ratio_batch1_detect_only": gd1["seconds"] / det,
        "ours_s": ours,
        "golddigger_s": gd["seconds"],
        "ratio": gd["seconds"] / ours,
        "golddigger": gd,
    }
    log("a 20,000 x 20,000 image")
    results["large_image"] = large_image(shipped)
    log("blob_log baseline")
    best, loo_blob = tune_blob_log(images, truth, pixel_size_nm=PX, n_jobs=2)
    params = {n: loo_blob["folds"][n]["params"] for n in names}
    blob_scores = score_blob_log(images, truth, params, pixel_size_nm=PX)
    results["blob_log"] = {
        "in_sample_mean_f1": best["mean_f1"],
        "loo_mean_f1": loo_blob["mean_f1"],
        "loo": {n: loo_blob["folds"][n]["f1"] for n in names},
        "whole_image": {
            n: {"f1": v["report"]["detection"]["f1"], "seconds": v["seconds"]}
            for n, v in blob_scores.items()
        },
    }

    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    print(
        f"{'image':8s} {'F1 det':>7s} {'F1 6nm':>7s} {'F1 12nm':>7s} {'|dd| nm':>7s}  "
        f"(leave-one-image-out; base = synthetic only)"
    )
    for n in names:
        r, b = loo[n], results["base_synthetic_only"][n]
        print(
            f"{n:8s} {f(r['f1']):>7s} {f(r['f1_6nm']):>7s} {f(r['f1_12nm']):>7s} "
            f"{f(r['diameter_median_abs_nm']):>7s}   base {f(b['f1'])} / {f(b['f1_6nm'])} / "
            f"{f(b['f1_12nm'])}"
        )
    print(
        f"mean LOO F1: ours {statistics.mean(loo[n]['f1'] or 0 for n in names):.3f}, "
        f"blob_log {loo_blob['mean_f1']:.3f} (in-sample {best['mean_f1']:.3f})"
    )
    for key in ("synthetic_heldout", "synthetic_heldout_heat_only", "synthetic_heldout_base"):
        s = results[key]
        print(
            f"{key}: F1 {f(s['f1'])} (P {f(s['precision'])}, R {f(s['recall'])}; 6/12/18 nm "
            f"{f(s['f1_6nm'])}/{f(s['f1_12nm'])}/{f(s['f1_18nm'])}), "
            f"|dd| {f(s['diameter_median_abs_nm'])} nm"
        )
    for n, v in results["large_gold_18nm"].items():
        print(f"{n}: {v['reference_discs']} reference 18 nm discs classed {v['classed']}")
    sp = results["speed"]
    print(
        f"2048x2115: ours {sp['detect_only_s']:.2f} s detection, {sp['ours_s']:.2f} s end to end "
        f"(read, detect, CSV, overlay, histogram); Gold Digger generator alone "
        f"{sp['golddigger_s']:.1f} s -> {sp['ratio_detect_only']:.1f}x (detection) / "
        f"{sp['ratio']:.1f}x (end to end) faster; at batch 1, as Gold Digger runs: "
        f"{sp['golddigger_batch1_s']:.1f} s -> {sp['ratio_batch1_detect_only']:.1f}x"
    )
    li = results["large_image"]
    print(
        f"{li['side_px']}x{li['side_px']} px (uint8, {li['image_mb']:.0f} MB): "
        f"{li['seconds']:.0f} s, {li['detections']} detections, peak RSS "
        f"{li['peak_rss_mb']:.0f} MB"
    )
    results["seconds"] = time.perf_counter() - t_start
    _save(results, "particles.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
