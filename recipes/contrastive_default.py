"""Recipe: the default contrastive image-metadata model on a simulated STEM archive.

1. Simulate the archive (``emdig.contrastive.simulate.simulate_archive``, 7,330 HSPY files,
   seed 0) unless it is already there.
2. Read every file once into a :class:`~emdig.contrastive.data.ContrastiveDataset` (the
   preprocessed regions are cached under ``--cache``, keyed by the files' sha256).
3. Train with :func:`emdig.contrastive.train.train` (defaults: CLIP loss, 10 % of the files
   held out by hash, seed 0) and fit the linear probes.
4. Report the held-out figures and the embedding speed (images per second, preprocessing
   included, on micrographs already in memory) as JSON.

Usage::

    python recipes/contrastive_default.py --archive build/sim-stem --out build/contrastive

Everything is deterministic under ``--seed`` on one machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from emdig.contrastive.data import ContrastiveDataset
from emdig.contrastive.train import train
from emdig.io import read

KEYS = (
    "unique_metadata",
    "image_to_metadata_top1",
    "image_to_metadata_top1_strict",
    "metadata_to_image_top1_strict",
    "image_to_metadata_top5",
    "metadata_to_image_top1",
    "metadata_to_image_top5",
    "probe/detector/accuracy",
    "probe/mode/accuracy",
    "probe/instrument/accuracy",
    "probe/pixel_size_nm/r2",
    "probe/dose_e_per_px/r2",
    "probe/magnification/r2",
    "probe/dwell_us/r2",
    "probe/beam_current_pa/r2",
    "probe/voltage_kv/r2",
    "probe/convergence_mrad/r2",
    "probe/camera_length_mm/r2",
    "probe/tilt_alpha_deg/r2",
    "probe/tilt_beta_deg/r2",
    "probe/scan_rotation_deg/r2",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, default=Path("build/sim-stem"))
    ap.add_argument("--n", type=int, default=7330)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40, help="per ensemble member")
    ap.add_argument("--members", type=int, default=1, help="ensemble of this many models")
    ap.add_argument("--loss", choices=("clip", "siglip"), default="clip")
    ap.add_argument("--out", type=Path, default=Path("build/contrastive"))
    ap.add_argument("--cache", type=Path, default=None, help="default: <out>/cache")
    ap.add_argument("--workers", type=int, default=2, help="processes for the simulation")
    args = ap.parse_args(argv)

    files = sorted(args.archive.glob("stem_*.hspy"))
    if len(files) < args.n:
        from emdig.contrastive.simulate import simulate_archive

        t = time.perf_counter()
        files = simulate_archive(args.archive, n=args.n, seed=args.seed, workers=args.workers)
        print(f"simulated {len(files)} images in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    files = files[: args.n]

    t = time.perf_counter()
    ds = ContrastiveDataset.from_files(files, cache_dir=args.cache or args.out / "cache")
    t_data = time.perf_counter() - t

    def progress(epoch: int, epochs: int, fig: dict[str, float]) -> None:
        print(
            f"epoch {epoch}/{epochs} loss {fig['loss']:.3f} "
            f"held-out top-1 {fig.get('heldout_top1', float('nan')):.3f} "
            f"{fig['seconds']:.0f} s",
            file=sys.stderr,
        )

    res = train(ds, epochs=args.epochs, members=args.members, loss=args.loss, seed=args.seed,
                out=args.out, progress=progress)  # fmt: skip
    t_train = res.history[-1]["seconds"] if res.history else 0.0

    sample = [m for p in files[:512] for m in read(p)]
    res.model.embed_images(sample[:32])  # warm-up
    t = time.perf_counter()
    res.model.embed_images(sample)
    per_s = len(sample) / (time.perf_counter() - t)

    report = {
        "images": len(ds),
        "train_items": len(res.train),
        "heldout_items": len(res.held_out),
        "epochs": args.epochs,
        "loss": args.loss,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "dataset_seconds": round(t_data, 1),
        "train_seconds": round(t_train, 1),
        "embed_images_per_s": round(per_s, 1),
        "weights": str(res.weights),
        **{k: round(res.metrics[k], 4) for k in KEYS if k in res.metrics},
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
