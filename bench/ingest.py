"""Benchmark ``emdig ingest`` on the shared instrument files, replicated to thousands of files.

What it measures
----------------
The real instrument files in ``/work/shared/data/instrument-files`` (DM3, Velox EMD, TIA
EMI/SER, TIFF, MRC, BCF, JEOL IMG, PRZ) are copied into numbered subfolders of a scratch
directory until there are at least ``--files`` files to ingest (default 5,000). The catalog
stores each content (SHA-256) once, so identical copies would only be hashed, not read. Each copy
is therefore made unique by appending 16 random bytes, after checking per file that
``emdig.read`` gives the same images (count, shapes, dtypes, pixels, calibration, acquisition
and raw metadata) for the modified copy; a file for which that check fails is copied unchanged
and counted as an identical copy. TIA ``.emi`` files get their ``<stem>_N.ser`` companions copied
beside them.

The ingest then runs through the real command line, exactly as a user would start it::

    emdig ingest TREE --catalog CATALOG --json [-j WORKERS]

in a subprocess, while this script samples every 0.2 s (psutil): the resident set size (RSS) of
the main process, of each worker process (children of the multiprocessing fork server), and the
CPU time of each. Sampling from outside leaves the measured process untouched, so no in-process
API run is needed. Reported:

* wall time, files/s (files processed / wall) and images/s of a first run on a fresh catalog;
* peak RSS of the main process, and its growth: RSS at the end minus RSS right after start-up
  (the first sample once the catalog file exists, i.e. after imports, before walking);
* peak RSS of one worker and of all workers together;
* CPU seconds of the main process and of the workers, per file;
* files/s of a second run on the same catalog (everything already present: the resume path).

Targets (from the issue): >= 200 files/s on 2 cores and main-process RSS growth < 100 MB.

Afterwards a short in-process profile times the worker job (``emdig.ingest.ingest_file``) per
format, split into hashing, sniffing, reading and the rest (building the records: thumbnail,
pixel statistics, metadata JSON), and the parent's per-item cost (unpickling a record and
storing it in a catalog in transactions of 64), to show where the time goes.

Results are printed as a plain-text table and written to ``bench/results/ingest.json``.
Files are read from the page cache (they were just written), so disk speed is not measured.

Run
---
::

    .venv/bin/python bench/ingest.py                 # >= 5,000 files, one worker per core
    .venv/bin/python bench/ingest.py --files 1000 --workers 2 --keep /tmp/ingest-bench

``--keep DIR`` builds the tree and catalogs in DIR (which must be empty or absent) and leaves
them there; otherwise a temporary directory is used and removed. Progress goes to stderr. The
exit status is 0 once measurements are done (PASS or FAIL), 1 if an ingest run did not complete.
If the shared data folder is absent the benchmark is skipped with exit status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

DATA_DIR = Path("/work/shared/data/instrument-files")
RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
TARGET_FILES_PER_S = 200.0
TARGET_RSS_GROWTH_MB = 100.0
SAMPLE_EVERY = 0.2
MB = 1024 * 1024


def say(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[bench/ingest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- source files
@dataclass(slots=True)
class SourceFile:
    """One file the walker yields, with the companions that must travel with it."""

    path: Path
    rel: Path
    fmt: str
    data: bytes
    companions: list[tuple[Path, bytes]] = field(default_factory=list)
    unique: bool = False
    check: str = ""
    warnings: list[str] = field(default_factory=list)


def discover(src: Path, scratch: Path) -> tuple[list[SourceFile], int]:
    """Files ``emdig ingest`` would read under ``src`` and the number of companion files."""
    from emdig.ingest import walk
    from emdig.io import sniff

    files: list[SourceFile] = []
    n_companions = 0
    for entry in walk([src], extract_root=scratch / "extract"):
        p = Path(entry.real)
        sf = SourceFile(p, p.relative_to(src), sniff(p), p.read_bytes())
        if p.suffix.lower() == ".emi":
            for q in sorted(p.parent.iterdir()):
                name = q.name
                if (
                    name.lower().endswith(".ser")
                    and "_" in name
                    and name[:-4].rsplit("_", 1)[0] == p.stem
                ):
                    sf.companions.append((q.relative_to(src), q.read_bytes()))
                    n_companions += 1
        files.append(sf)
    return files, n_companions


def _signature(path: Path) -> tuple[list[Any], list[np.ndarray]]:
    import emdig

    sig: list[Any] = []
    pixels: list[np.ndarray] = []
    for m in emdig.read(path):
        sig.append(
            (
                m.source.index,
                m.source.signal,
                tuple(m.shape),
                str(m.pixels.dtype),
                m.pixel_size_nm,
                json.dumps(m.acquisition.to_dict(), sort_keys=True, default=str),
                json.dumps(m.raw_metadata, sort_keys=True, default=str),
            )
        )
        pixels.append(m.pixels)
    return sig, pixels


def check_append(sf: SourceFile, scratch: Path) -> None:
    """Decide whether appending 16 random bytes keeps ``emdig.read`` giving the same images."""
    d = Path(tempfile.mkdtemp(prefix="probe-", dir=scratch))
    for rel, data in sf.companions:
        (d / rel.name).write_bytes(data)
    modified = d / sf.path.name
    modified.write_bytes(sf.data + os.urandom(16))
    try:
        before, px_before = _signature(sf.path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            after, px_after = _signature(modified)
    except Exception as e:  # any reader error means: fall back to identical copies
        sf.unique, sf.check = False, f"append breaks reading: {type(e).__name__}: {e}"[:200]
        return
    finally:
        shutil.rmtree(d, ignore_errors=True)
    sf.warnings = sorted({str(w.message) for w in caught})
    same = before == after and all(
        a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        for a, b in zip(px_before, px_after, strict=True)
    )
    sf.unique = same
    sf.check = "append 16 random bytes: same result" if same else "append changes the result"


def replicate(files: list[SourceFile], tree: Path, copies: int) -> tuple[int, int, float]:
    """Write ``copies`` numbered copies of the source set; returns (unique, identical, seconds)."""
    t0 = time.perf_counter()
    unique = identical = 0
    step = max(1, copies // 10)
    for c in range(copies):
        base = tree / f"c{c:04d}"
        for sf in files:
            target = base / sf.rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if sf.unique:
                target.write_bytes(sf.data + os.urandom(16))
                unique += 1
            else:
                target.write_bytes(sf.data)
                identical += 1
            for rel, data in sf.companions:
                (base / rel).write_bytes(data)
        if (c + 1) % step == 0 or c + 1 == copies:
            say(f"replicated {c + 1}/{copies} copies ({unique + identical} files)")
    return unique, identical, time.perf_counter() - t0


# ------------------------------------------------------------------------------ the runs
@dataclass(slots=True)
class RunResult:
    """One ``emdig ingest`` subprocess, as measured from outside."""

    label: str
    command: list[str]
    exit_code: int | None = None
    wall_s: float = 0.0
    startup_s: float | None = None
    first_worker_s: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    files_processed: int = 0
    files_per_s: float = 0.0
    images_per_s: float = 0.0
    main_rss_start_mb: float | None = None
    main_rss_end_mb: float | None = None
    main_rss_peak_mb: float = 0.0
    main_rss_growth_mb: float | None = None
    main_rss_peak_growth_mb: float | None = None
    worker_rss_peak_mb: float = 0.0
    workers_rss_sum_peak_mb: float = 0.0
    helpers_rss_peak_mb: float = 0.0
    worker_processes_seen: int = 0
    main_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    helpers_cpu_s: float = 0.0
    job_seconds_sum: float | None = None
    worker_busy_fraction: float | None = None
    machine_busy_core_s: float = 0.0
    other_processes_core_s: float = 0.0
    other_processes_share: float = 0.0
    steal_core_s: float = 0.0
    samples: int = 0
    stderr_tail: str = ""
    timed_out: bool = False


class Sampler:
    """Samples RSS and CPU of a process tree: the main process, fork servers, their workers."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.kind: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.helper_cpu: dict[int, float] = {}
        self.main_cpu = 0.0
        self.last_main_rss = 0
        self.saw_worker = False

    def _classify(self, child: psutil.Process) -> str:
        kind = self.kind.get(child.pid)
        if kind is None:
            ppid = child.ppid()
            if ppid == self.root.pid:
                cmd = " ".join(child.cmdline())
                kind = "forkserver" if "forkserver" in cmd else "helper"
            elif self.kind.get(ppid) == "forkserver":
                kind = "worker"
            else:
                kind = "helper"
            self.kind[child.pid] = kind
        return kind

    def sample(self, r: RunResult) -> int | None:
        """Update ``r``'s peaks; returns the main RSS in bytes (None once the process is gone)."""
        try:
            with self.root.oneshot():
                rss = self.root.memory_info().rss
                t = self.root.cpu_times()
                self.main_cpu = t.user + t.system
                children = self.root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        if rss == 0:  # exited, not yet reaped: a zombie has no memory to report
            return None
        self.last_main_rss = rss
        r.samples += 1
        r.main_rss_peak_mb = max(r.main_rss_peak_mb, rss / MB)
        # fork servers first, so their children classify as workers
        children.sort(key=lambda c: 0 if c.ppid() == self.root.pid else 1)
        workers_sum = 0
        for child in children:
            try:
                kind = self._classify(child)
                with child.oneshot():
                    crss = child.memory_info().rss
                    ct = child.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            if kind == "worker":
                workers_sum += crss
                r.worker_rss_peak_mb = max(r.worker_rss_peak_mb, crss / MB)
                self.cpu[child.pid] = ct.user + ct.system
                self.saw_worker = True
            else:
                r.helpers_rss_peak_mb = max(r.helpers_rss_peak_mb, crss / MB)
                self.helper_cpu[child.pid] = ct.user + ct.system
        r.workers_rss_sum_peak_mb = max(r.workers_rss_sum_peak_mb, workers_sum / MB)
        return rss


def _progress_count(db: Path) -> int | None:
    """Items finished so far in the newest run, read from the catalog (WAL: readers are fine)."""
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
        try:
            row = con.execute(
                "SELECT count(*) FROM run_items WHERE run_id = (SELECT max(id) FROM runs)"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def _busy(t: Any) -> float:
    """Machine-wide busy CPU seconds (guest time is already inside user and nice)."""
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _job_seconds(db: Path) -> float | None:
    """Sum of the per-item job times (measured inside the workers) of the newest run."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute(
                "SELECT sum(seconds) FROM run_items WHERE run_id = (SELECT max(id) FROM runs)"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return None if row is None or row[0] is None else float(row[0])


def run_ingest(
    label: str,
    command: list[str],
    db: Path,
    logs: Path,
    expected: int,
    timeout: float,
    workers: int,
) -> RunResult:
    """Run one ``emdig ingest`` subprocess to completion, sampling it every 0.2 s."""
    r = RunResult(label, command)
    out_path, err_path = logs / f"{label}.stdout", logs / f"{label}.stderr"
    say(f"{label}: {' '.join(command)}")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        cpu0 = psutil.cpu_times()
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
        sampler = Sampler(proc.pid)
        next_note = t0 + 5.0
        start_rss: int | None = None
        try:
            while True:
                rss = sampler.sample(r)
                now = time.perf_counter()
                if r.first_worker_s is None and sampler.saw_worker:
                    r.first_worker_s = now - t0
                if start_rss is None and rss is not None and db.exists():
                    start_rss, r.startup_s = rss, now - t0
                if proc.poll() is not None:
                    break
                if now - t0 > timeout:
                    r.timed_out = True
                    say(f"{label}: no result after {timeout:g} s; stopping it")
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    break
                if now >= next_note:
                    done = _progress_count(db)
                    rate = f", {done / (now - t0):.0f} files/s" if done else ""
                    say(
                        f"{label}: {now - t0:5.1f} s, {done if done is not None else '?'}/"
                        f"{expected} files{rate}, main RSS {sampler.last_main_rss / MB:.0f} MB"
                    )
                    next_note = now + 5.0
                # sample fast until the start-up baseline is taken, then every 0.2 s
                time.sleep(0.02 if start_rss is None else SAMPLE_EVERY)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        r.wall_s = time.perf_counter() - t0
        cpu1 = psutil.cpu_times()
        r.exit_code = proc.returncode
    r.main_cpu_s = sampler.main_cpu
    r.workers_cpu_s = sum(sampler.cpu.values())
    r.helpers_cpu_s = sum(sampler.helper_cpu.values())
    # CPU contention: machine-wide busy time minus what the measured process tree used
    busy = _busy(cpu1) - _busy(cpu0)
    r.machine_busy_core_s = busy
    r.steal_core_s = getattr(cpu1, "steal", 0.0) - getattr(cpu0, "steal", 0.0)
    ours = r.main_cpu_s + r.workers_cpu_s + r.helpers_cpu_s
    r.other_processes_core_s = max(0.0, busy - ours)
    if r.wall_s > 0:
        r.other_processes_share = r.other_processes_core_s / (_nproc() * r.wall_s)
    r.job_seconds_sum = _job_seconds(db)
    if r.job_seconds_sum is not None and r.wall_s > 0:
        active = r.wall_s - (r.first_worker_s or 0.0)
        if active > 0:
            r.worker_busy_fraction = r.job_seconds_sum / (workers * active)
    r.worker_processes_seen = sum(1 for k in sampler.kind.values() if k == "worker")
    r.main_rss_end_mb = sampler.last_main_rss / MB if sampler.last_main_rss else None
    if start_rss is not None:
        r.main_rss_start_mb = start_rss / MB
        if r.main_rss_end_mb is not None:
            r.main_rss_growth_mb = r.main_rss_end_mb - r.main_rss_start_mb
        r.main_rss_peak_growth_mb = r.main_rss_peak_mb - r.main_rss_start_mb
    r.stderr_tail = err_path.read_text(errors="replace")[-2000:]
    text = out_path.read_text(errors="replace")
    try:
        r.summary = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        r.summary = {"unparsed_stdout": text[-2000:]}
    s = r.summary
    failed = sum((s.get("failed") or {}).values())
    r.files_processed = (
        int(s.get("read", 0)) + int(s.get("skipped_already_present", 0)) + int(failed)
    )
    if r.wall_s > 0:
        r.files_per_s = r.files_processed / r.wall_s
        r.images_per_s = int(s.get("images", 0)) / r.wall_s
    say(
        f"{label}: exit {r.exit_code} after {r.wall_s:.1f} s, {r.files_processed} files, "
        f"{r.files_per_s:.1f} files/s"
    )
    return r


# ------------------------------------------------------------------------------ profiling
def _median_time(fn: Any, reps: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(reps):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def profile(files: list[SourceFile], scratch: Path, reps: int = 3) -> dict[str, Any]:
    """Per-format cost of the worker job and the parent's per-item cost, in this process."""
    from emdig.catalog.store import Catalog, FileRecord
    from emdig.ingest import ingest_file
    from emdig.io import file_sha256, read, sniff
    from emdig.io.limits import Limits

    lim = Limits.from_env()
    per_file: list[dict[str, Any]] = []
    records: list[FileRecord] = []
    for sf in files:
        p = sf.path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ingest_file((str(p), str(p), lim))  # warm-up: imports, page cache
            total, rec = _median_time(lambda p=p: ingest_file((str(p), str(p), lim)), reps)
            t_sha, sha = _median_time(lambda p=p: file_sha256(p), reps)
            t_sniff, _ = _median_time(lambda p=p: sniff(p, limits=lim), reps)
            t_read, _ = _median_time(lambda p=p, sha=sha: read(p, limits=lim, sha256=sha), reps)
        # the rest of the job: thumbnails, pixel statistics, metadata JSON, the record itself
        t_rec = max(0.0, total - t_sha - t_sniff - t_read)
        blob = pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)
        records.append(rec)
        per_file.append(
            {
                "file": str(sf.rel),
                "format": sf.fmt,
                "images": len(rec.images),
                "total_ms": total * 1e3,
                "sha256_ms": t_sha * 1e3,
                "sniff_ms": t_sniff * 1e3,
                "read_ms": t_read * 1e3,
                "records_ms": t_rec * 1e3,
                "pickle_kb": len(blob) / 1024,
            }
        )
    by_fmt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in per_file:
        by_fmt[row["format"]].append(row)
    keys = ("total_ms", "sha256_ms", "sniff_ms", "read_ms", "records_ms", "pickle_kb")
    formats = {
        fmt: {"files": len(rows), **{k: statistics.fmean(r[k] for r in rows) for k in keys}}
        for fmt, rows in sorted(by_fmt.items(), key=lambda kv: -sum(r["total_ms"] for r in kv[1]))
    }
    mean_worker_ms = statistics.fmean(r["total_ms"] for r in per_file)

    # parent: unpickle each record and store it, 64 per transaction, as ingest() does
    n_items = max(1000, len(records))
    blobs = []
    for i in range(n_items):
        rec = records[i % len(records)]
        rec.sha256 = f"{i:064x}"
        rec.path = f"/bench/c{i // len(records):04d}/{i % len(records)}"
        blobs.append(pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL))
    t_unpickle = t_store = 0.0
    db = scratch / "profile-catalog.db"
    with Catalog(db) as cat:
        run_id = cat.start_run("ingest", {"paths": ["bench"]})
        for start in range(0, n_items, 64):
            t = time.perf_counter()
            batch = [pickle.loads(b) for b in blobs[start : start + 64]]  # allowed: ours
            t_unpickle += time.perf_counter() - t
            t = time.perf_counter()
            with cat.transaction():
                for rec in batch:
                    cat.add_file(rec, run_id)
                cat.record_items(run_id, [(r.path, r.status, None, None, 0.0) for r in batch])
            t_store += time.perf_counter() - t
    parent_ms = (t_unpickle + t_store) / n_items * 1e3
    return {
        "reps": reps,
        "worker_mean_ms_per_file": mean_worker_ms,
        "worker_ceiling_files_per_s_per_core": 1e3 / mean_worker_ms,
        "formats": formats,
        "files": per_file,
        "parent_items": n_items,
        "parent_unpickle_ms_per_item": t_unpickle / n_items * 1e3,
        "parent_store_ms_per_item": t_store / n_items * 1e3,
        "parent_ms_per_item": parent_ms,
        "mean_pickle_kb": statistics.fmean(r["pickle_kb"] for r in per_file),
    }


# ------------------------------------------------------------------------------- report
def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}{unit}"


def table(res: dict[str, Any], first: RunResult, second: RunResult | None) -> str:
    """The plain-text result table."""
    m = res["machine"]
    head = (
        f"emdig ingest benchmark: {res['files']['total']} files "
        f"({res['files']['unique']} unique, {res['files']['identical']} identical copies) "
        f"in {res['files']['copies']} folders, {res['workers']} workers, "
        f"nproc {m['nproc']}, Python {m['python']}"
    )
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: str, target: str = "", verdict: str = "") -> None:
        rows.append((name, value, target, verdict))

    ok_speed = first.files_per_s >= TARGET_FILES_PER_S
    growth = first.main_rss_growth_mb
    ok_mem = growth is not None and growth < TARGET_RSS_GROWTH_MB
    s = first.summary
    row(
        "first run: exit status",
        str(first.exit_code),
        "0",
        "PASS" if first.exit_code == 0 else "FAIL",
    )
    row(
        "first run: read / duplicate / failed",
        f"{s.get('read', 0)} / {s.get('skipped_already_present', 0)} / "
        f"{sum((s.get('failed') or {}).values())}",
    )
    row("first run: images", str(s.get("images", 0)))
    row("first run: wall time", _fmt(first.wall_s, " s"))
    row("first run: start-up (imports, catalog)", _fmt(first.startup_s, " s", 2))
    row("first run: first worker after", _fmt(first.first_worker_s, " s", 2))
    row(
        "first run: files/s",
        _fmt(first.files_per_s),
        f">= {TARGET_FILES_PER_S:g}",
        "PASS" if ok_speed else "FAIL",
    )
    row("first run: images/s", _fmt(first.images_per_s))
    row("main RSS at start-up", _fmt(first.main_rss_start_mb, " MB"))
    row("main RSS at end", _fmt(first.main_rss_end_mb, " MB"))
    row("main RSS peak", _fmt(first.main_rss_peak_mb, " MB"))
    row(
        "main RSS growth (end - start-up)",
        _fmt(growth, " MB"),
        f"< {TARGET_RSS_GROWTH_MB:g} MB",
        "PASS" if ok_mem else "FAIL",
    )
    row("main RSS growth (peak - start-up)", _fmt(first.main_rss_peak_growth_mb, " MB"))
    row("worker RSS peak (one worker)", _fmt(first.worker_rss_peak_mb, " MB"))
    row("workers RSS peak (all, summed)", _fmt(first.workers_rss_sum_peak_mb, " MB"))
    row("worker processes started", str(first.worker_processes_seen))
    n = max(1, first.files_processed)
    row("main CPU per file", _fmt(first.main_cpu_s / n * 1e3, " ms", 2))
    row("workers CPU per file", _fmt(first.workers_cpu_s / n * 1e3, " ms", 2))
    if first.job_seconds_sum is not None:
        row("workers job wall time per file", _fmt(first.job_seconds_sum / n * 1e3, " ms", 2))
    if first.worker_busy_fraction is not None:
        row("workers busy (job time / worker time)", _fmt(100 * first.worker_busy_fraction, " %"))
    row(
        "other processes' CPU during first run",
        _fmt(100 * first.other_processes_share, " % of machine"),
    )
    if second is not None:
        row(
            "second run (all present): exit status",
            str(second.exit_code),
            "0",
            "PASS" if second.exit_code == 0 else "FAIL",
        )
        row("second run: files skipped", str(second.summary.get("skipped_already_present", 0)))
        row("second run: wall time", _fmt(second.wall_s, " s"))
        row("second run: files/s", _fmt(second.files_per_s))
        row("second run: main RSS peak", _fmt(second.main_rss_peak_mb, " MB"))
    prof = res.get("profile")
    if prof and "error" in prof:
        row("profile", f"failed: {prof['error']}"[:60])
        prof = None
    if prof:
        row("profile: worker job mean per file", _fmt(prof["worker_mean_ms_per_file"], " ms", 2))
        row(
            "profile: worker ceiling per core",
            _fmt(prof["worker_ceiling_files_per_s_per_core"], " files/s"),
        )
        row("profile: parent cost per item", _fmt(prof["parent_ms_per_item"], " ms", 2))
    widths = [
        max(len(r[i]) for r in [*rows, ("metric", "value", "target", "result")])
        for i in (0, 1, 2, 3)
    ]

    def line(r: tuple[str, str, str, str]) -> str:
        return f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()

    out = [head, "", line(("metric", "value", "target", "result"))]
    out.append("-" * len(out[-1]))
    out += [line(r) for r in rows]
    if prof:
        out += ["", "worker job per format (in-process, warm, median of reps; mean per file):"]
        hdr = f"{'format':<10} {'files':>5} {'total ms':>9} {'sha256':>7} {'sniff':>7} "
        hdr += f"{'read':>7} {'records':>8} {'pickle KB':>10}"
        out += [hdr, "-" * len(hdr)]
        for fmt, d in prof["formats"].items():
            out.append(
                f"{fmt:<10} {d['files']:>5} {d['total_ms']:>9.2f} {d['sha256_ms']:>7.2f} "
                f"{d['sniff_ms']:>7.2f} {d['read_ms']:>7.2f} {d['records_ms']:>8.2f} "
                f"{d['pickle_kb']:>10.1f}"
            )
        out.append(
            "records = total - sha256 - sniff - read: thumbnails, pixel statistics, metadata JSON"
        )
        out.append(
            f"parent per item: unpickle {prof['parent_unpickle_ms_per_item']:.2f} ms + "
            f"catalog store {prof['parent_store_ms_per_item']:.2f} ms "
            f"({prof['parent_items']} items, 64 per transaction)"
        )
    verdict = "PASS" if ok_speed and ok_mem else "FAIL"
    if first.other_processes_share > 0.10:
        out += [
            "",
            f"NOTE: other processes used {100 * first.other_processes_share:.0f} % of the "
            "machine's CPU during the first run; throughput is understated.",
        ]
    out += [
        "",
        f"overall: {verdict} (files/s: {'PASS' if ok_speed else 'FAIL'}, "
        f"main RSS growth: {'PASS' if ok_mem else 'FAIL'})",
    ]
    return "\n".join(out)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it private; results are for everyone
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _emdig_command() -> list[str]:
    exe = Path(sys.executable).parent / "emdig"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("emdig")
    if found:
        return [found]
    raise SystemExit("cannot find the `emdig` command next to this Python or on PATH")


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark `emdig ingest` on replicated shared instrument files."
    )
    ap.add_argument("--files", type=int, default=5000, help="least files to ingest [5000]")
    ap.add_argument(
        "--workers", type=int, default=None, help="worker processes [emdig default: one per core]"
    )
    ap.add_argument("--keep", type=Path, default=None, help="build and keep everything in DIR")
    ap.add_argument("--data", type=Path, default=DATA_DIR, help=f"source files [{DATA_DIR}]")
    ap.add_argument("--no-profile", action="store_true", help="skip the in-process profile")
    ap.add_argument(
        "--timeout", type=float, default=400.0, help="seconds allowed per ingest run [400]"
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help=f"JSON output [{RESULTS}]")
    args = ap.parse_args(argv)
    if args.files < 1:
        ap.error("--files must be at least 1")
    if args.workers is not None and args.workers < 1:
        ap.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    src: Path = args.data
    if not src.is_dir():
        print(
            f"bench/ingest.py: SKIPPED: the shared instrument files are not at {src}",
            file=sys.stderr,
        )
        return 0
    if args.keep is not None:
        work = args.keep.resolve()
        if work.exists() and any(work.iterdir()):
            raise SystemExit(f"--keep {work}: folder exists and is not empty")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="emdig-bench-ingest-"))
    t_start = time.perf_counter()
    try:
        return _bench(args, src, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
        say(f"total benchmark time {time.perf_counter() - t_start:.1f} s")


def _bench(args: argparse.Namespace, src: Path, work: Path) -> int:
    scratch, tree, logs = work / "scratch", work / "tree", work / "logs"
    for d in (scratch, tree, logs):
        d.mkdir(parents=True, exist_ok=True)

    say(f"discovering files in {src}")
    files, n_companions = discover(src, scratch)
    if not files:
        print(f"bench/ingest.py: SKIPPED: no readable files in {src}", file=sys.stderr)
        return 0
    say(f"{len(files)} files to ingest (+{n_companions} TIA .ser companions); checking formats")
    for sf in files:
        check_append(sf, scratch)
    fallback = [str(sf.rel) for sf in files if not sf.unique]
    if fallback:
        say(f"identical copies for: {', '.join(fallback)}")

    copies = math.ceil(args.files / len(files))
    unique, identical, t_copy = replicate(files, tree, copies)
    total = unique + identical
    say(f"replicated {total} files in {copies} folders in {t_copy:.1f} s")

    db = work / "catalog.db"
    cmd = [*_emdig_command(), "ingest", str(tree), "--catalog", str(db), "--json"]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    workers = args.workers or _nproc()
    first = run_ingest("first_run", cmd, db, logs, total, args.timeout, workers)
    second: RunResult | None = None
    if first.exit_code in (0, 3) and not first.timed_out:
        second = run_ingest("second_run", cmd, db, logs, total, args.timeout, workers)

    prof: dict[str, Any] | None = None
    if not args.no_profile:
        say("profiling the worker job per format and the parent's per-item cost")
        try:
            prof = profile(files, scratch)
        except Exception as e:  # internals may change; the ingest measurements still count
            say(f"profile failed: {type(e).__name__}: {e}")
            prof = {"error": f"{type(e).__name__}: {e}"}

    fmt_checks: dict[str, dict[str, Any]] = {}
    for sf in files:
        d = fmt_checks.setdefault(
            sf.fmt, {"files": 0, "unique": 0, "identical": 0, "checks": [], "warnings": []}
        )
        d["files"] += 1
        d["unique" if sf.unique else "identical"] += 1
        if sf.check not in d["checks"]:
            d["checks"].append(sf.check)
        for w in sf.warnings:
            if w not in d["warnings"]:
                d["warnings"].append(w)

    res: dict[str, Any] = {
        "benchmark": "emdig ingest",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": _nproc(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        },
        "command": " ".join(first.command),
        "benchmark_command": " ".join([sys.executable, *sys.argv]),
        "workers": workers,
        "source": str(src),
        "files": {
            "source_files": len(files),
            "source_companions": n_companions,
            "copies": copies,
            "total": total,
            "unique": unique,
            "identical": identical,
            "companions": n_companions * copies,
            "replicate_seconds": round(t_copy, 2),
            "by_format": fmt_checks,
        },
        "targets": {
            "files_per_s_min": TARGET_FILES_PER_S,
            "main_rss_growth_mb_max": TARGET_RSS_GROWTH_MB,
        },
        "first_run": asdict(first),
        "second_run": asdict(second) if second is not None else None,
        "profile": prof,
    }
    ok_speed = first.files_per_s >= TARGET_FILES_PER_S
    ok_mem = (
        first.main_rss_growth_mb is not None and first.main_rss_growth_mb < TARGET_RSS_GROWTH_MB
    )
    res["pass"] = {"files_per_s": ok_speed, "main_rss_growth": ok_mem, "all": ok_speed and ok_mem}
    report = table(res, first, second)
    res["table"] = report.splitlines()
    write_json(args.results, res)
    print(report)
    print(f"\nresults: {args.results}")
    if first.exit_code not in (0, 3) or first.timed_out:
        print("first run did not complete; stderr tail:\n" + first.stderr_tail, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
