"""Batch detection: isolated, resumable workers; outputs on disk; results in the catalog."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch import Outcome, Task, run_tasks
from ..catalog.store import Catalog
from ..errors import EmdigError, MissingCalibration
from ..io import file_sha256, read
from ..io.limits import Limits
from .detect import DEFAULT_CLASSES_NM, detect
from .masks import load_mask
from .model import ParticleNet, load_model
from .report import (
    summarize,
    write_detections_csv,
    write_golddigger,
    write_histogram,
    write_overlay,
)

__all__ = ["DetectOptions", "DetectSummary", "detect_files"]

DEFAULT_MODEL = "particles-default"


@dataclass(frozen=True)
class DetectOptions:
    """What to run and what to write; part of the resume key (with the file's hash)."""

    model: str = DEFAULT_MODEL
    classes_nm: tuple[float, ...] = DEFAULT_CLASSES_NM
    pixel_size_nm: float | None = None
    mask: str | None = None
    threshold: float | None = None
    adaptive_classes: bool = True
    golddigger: bool = False
    threads: int = 0

    def key_params(self) -> dict[str, Any]:
        d = {
            "model": self.model,
            "classes_nm": list(self.classes_nm),
            "threshold": self.threshold,
            "adaptive_classes": self.adaptive_classes,
            "pixel_size_nm": self.pixel_size_nm,
            "mask": self.mask,
        }
        if self.mask:
            d["mask_sha256"] = file_sha256(self.mask)
        return d


@dataclass
class DetectSummary:
    """Counts of a batch and the per-image summary rows."""

    analysed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


_MODEL_CACHE: dict[str, ParticleNet] = {}


def _model(name: str) -> ParticleNet:
    if name not in _MODEL_CACHE:
        from ..models.registry import resolve_model

        path, sha = resolve_model(name, task="particles")
        _MODEL_CACHE[name] = load_model(path, sha256=sha)
    return _MODEL_CACHE[name]


def _stem(path: str, index: int, n: int) -> str:
    base = Path(path.split("!")[-1]).stem
    return f"{base}_{index}" if n > 1 else base


def detect_job(payload: tuple[str, str, DetectOptions, str, str]) -> list[dict[str, Any]]:
    """Worker job: detect in every image of one file; write its outputs; return per image a
    record for the catalog."""
    import torch

    real, display, opts, out_dir, params_hash = payload
    if opts.threads:
        torch.set_num_threads(opts.threads)
    model = _model(opts.model)
    sha = file_sha256(real)
    micrographs = read(real, sha256=sha, limits=Limits.from_env())
    if not micrographs:
        raise EmdigError("contains no 2-D image", path=display)
    records = []
    for m in micrographs:
        px = m.pixel_size_nm if m.pixel_size_nm is not None else opts.pixel_size_nm
        if px is None:
            raise MissingCalibration(
                "has no pixel size in its metadata; pass --pixel-size-nm (nm per pixel)",
                path=display,
            )
        name = _stem(display, m.source.index, len(micrographs))
        mask = load_mask(opts.mask, m.shape) if opts.mask else None
        res = detect(
            m.pixels,
            pixel_size_nm=px,
            model=model,
            classes_nm=opts.classes_nm,
            mask=mask,
            threshold=opts.threshold,
            adaptive_classes=opts.adaptive_classes,
            name=name,
        )
        d = Path(out_dir)
        outputs = {
            "csv": str(write_detections_csv(res.points, d / f"{name}.csv", pixel_size_nm=px)),
            "overlay": str(
                write_overlay(
                    m.pixels,
                    res.points,
                    d / f"{name}_overlay.png",
                    pixel_size_nm=px,
                    classes_nm=opts.classes_nm,
                    region=res.region,
                )
            ),
            "histogram": str(
                write_histogram(
                    res.points, d / f"{name}_sizes.png", classes_nm=opts.classes_nm, title=name
                )
            ),
        }
        if opts.golddigger:
            files = write_golddigger(
                res.points,
                d / "golddigger",
                image=name,
                pixel_size_nm=px,
                classes_nm=opts.classes_nm,
            )
            outputs["golddigger"] = str(files[0].parent)
        summary = {
            "image": name,
            "path": display,
            **summarize(
                res.points, region=res.region, pixel_size_nm=px, classes_nm=opts.classes_nm
            ),
        }
        p = res.points
        rows = [
            (
                float(p.x_px[i]),
                float(p.y_px[i]),
                float(p.x_px[i] * px),
                float(p.y_px[i] * px),
                float(p.diameter_nm[i]),
                float(p.class_nm[i]),
                float(p.score[i]),
            )
            for i in range(len(p))
        ]
        records.append(
            {
                "key": f"{sha}:{m.source.index}:{params_hash}",
                "path": display,
                "sha256": sha,
                "index": m.source.index,
                "pixel_size_nm": px,
                "summary": summary,
                "outputs": outputs,
                "rows": rows,
            }
        )
    return records


def _write_summary(rows: Sequence[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


def detect_files(
    paths: Sequence[str | Path],
    *,
    out: str | Path,
    options: DetectOptions,
    catalog: Catalog,
    workers: int = 1,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[Outcome], None] | None = None,
) -> DetectSummary:
    """Detect particles in every image of ``paths``; resumable.

    Each file is analysed in an isolated worker; its per-image CSV, overlay and histogram go
    to ``out`` and its detections to the catalog, keyed by the file's hash, the image index and
    the options. A re-run skips what is stored. ``out/summary.csv`` lists every image of this
    call: counts per class, density per µm² of the analysed region and mean nearest-neighbour
    distance per class.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = options.key_params()
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    summary = DetectSummary()
    catalog.acquire_writer()
    run_id = catalog.start_run("particles.detect", {"paths": [str(p) for p in paths], **params})
    tasks: list[Task] = []
    done_rows: dict[str, list[dict[str, Any]]] = {}
    for p in paths:
        display = str(p)
        try:
            sha = file_sha256(p)
        except OSError as e:
            summary.failures.append((display, "io_error", f"{display}: {e.strerror or e}"))
            continue
        stored = catalog.conn.execute(
            "SELECT summary FROM particle_images WHERE sha256 = ? AND key LIKE ?"
            " ORDER BY image_index",
            (sha, f"%:{params_hash}"),
        ).fetchall()
        if stored:
            summary.skipped += 1
            done_rows[display] = [json.loads(r[0]) for r in stored]
            continue
        threads = options.threads or max(1, (os.cpu_count() or 1) // max(1, workers))
        opts = DetectOptions(**{**options.__dict__, "threads": threads})
        tasks.append(Task(display, (str(p), display, opts, str(out_dir), params_hash)))
    if on_total:
        on_total(len(tasks))
    new_rows: dict[str, list[dict[str, Any]]] = {}

    def on_outcome(o: Outcome) -> None:
        if o.status == "ok":
            with catalog.transaction():
                for rec in o.value:
                    catalog.add_particle_image(
                        rec["key"],
                        path=rec["path"],
                        sha256=rec["sha256"],
                        image_index=rec["index"],
                        model=options.model,
                        params=params,
                        pixel_size_nm=rec["pixel_size_nm"],
                        summary=rec["summary"],
                        outputs=rec["outputs"],
                        rows=rec["rows"],
                        run_id=run_id,
                    )
                catalog.record_items(run_id, [(o.key, "ok", None, None, o.seconds)])
            summary.analysed += len(o.value)
            new_rows[o.key] = [rec["summary"] for rec in o.value]
        else:
            code = o.error_code or o.status
            summary.failures.append((o.key, code, o.message or o.status))
            with catalog.transaction():
                catalog.record_items(run_id, [(o.key, o.status, code, o.message, o.seconds)])
        if on_progress:
            on_progress(o)

    status = "done"
    try:
        run_tasks(
            tasks, detect_job, on_outcome=on_outcome, workers=workers, limits=Limits.from_env()
        )
    except BaseException:
        status = "interrupted"
        raise
    finally:
        for p in paths:  # in the order given, stored or new
            summary.rows += done_rows.get(str(p), []) + new_rows.get(str(p), [])
        _write_summary(summary.rows, out_dir / "summary.csv")
        catalog.finish_run(
            run_id,
            status,
            {
                "analysed": summary.analysed,
                "skipped": summary.skipped,
                "failed": len(summary.failures),
            },
        )
        catalog.release_writer()
    return summary
