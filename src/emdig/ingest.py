"""Ingest: walk folders and archives, read each file in an isolated worker, store in the catalog.

This module sits above both the catalog and the batch runner (it orchestrates them), beside the
capabilities in the layer list of DESIGN.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch import Outcome, Task, run_tasks
from .catalog.records import image_record, image_stats, thumbnail
from .catalog.store import Catalog, FileRecord
from .errors import EmdigError, UnreadableFile
from .io import file_sha256, read
from .io.archive import ArchiveLimits, extract_zip
from .io.instrument import metadata_json
from .io.limits import Limits
from .io.sniff import sniff

__all__ = [
    "IngestSummary",
    "WalkEntry",
    "describe_file",
    "image_stats",
    "ingest",
    "ingest_file",
    "thumbnail",
    "walk",
]

log = logging.getLogger(__name__)

#: Files the walker passes over by name: sidecars and our own catalog, never images.
IGNORED_SUFFIXES = frozenset(
    {
        ".txt",
        ".md",
        ".json",
        ".csv",
        ".tsv",
        ".xml",
        ".log",
        ".ini",
        ".yaml",
        ".yml",
        ".py",
        ".db",
        ".db-wal",
        ".db-shm",
        ".lock",
        ".html",
        ".htm",
    }
)


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """A file to ingest: where it is on disk, and the path the catalog records for it."""

    real: str
    display: str
    size: int
    mtime: float


@dataclass(slots=True)
class IngestSummary:
    """Counts of one ingest run; ``failed`` maps error codes to counts."""

    run_id: int = 0
    read: int = 0
    images: int = 0
    skipped: int = 0
    previously_failed: int = 0
    duplicates: int = 0
    ignored: int = 0
    companions: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "read": self.read,
            "images": self.images,
            "skipped_already_present": self.skipped + self.duplicates,
            "skipped_previously_failed": self.previously_failed,
            "ignored": self.ignored,
            "companions": self.companions,
            "failed": dict(self.failed),
            "failures": [{"path": p, "error_code": c, "message": m} for p, c, m in self.failures],
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


# ----------------------------------------------------------------------- per-file work
def ingest_file(payload: tuple[str, str, Limits | None]) -> FileRecord:
    """Worker job: hash and read one file into a :class:`FileRecord` (never raises EmdigError)."""
    real, display, limits = payload
    p = Path(real)
    sha: str | None = None
    size, mtime = 0, None
    fmt: str | None = None
    try:
        try:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime
            sha = file_sha256(p)
        except OSError as e:
            raise UnreadableFile(f"cannot read: {e.strerror or e}", path=display) from None
        fmt = sniff(p, limits=limits)
        micrographs = read(p, limits=limits, sha256=sha, format=fmt)
        images = []
        raw_json: dict[int, str] = {}  # frames of one signal share one metadata dict
        for m in micrographs:
            key = id(m.raw_metadata)
            if key not in raw_json:
                raw_json[key] = metadata_json(m.raw_metadata)
            rec = image_record(m, raw_json[key])
            rec.source["path"] = display
            images.append(rec)
        return FileRecord(display, sha, size, mtime, fmt, "ok", images=images)
    except EmdigError as e:
        msg = str(e).replace(real, display) if real != display else str(e)
        return FileRecord(display, sha, size, mtime, fmt, "failed", e.code, msg)


# ------------------------------------------------------------------------------ walking
@dataclass(slots=True)
class _WalkState:
    problems: list[tuple[str, EmdigError]] = field(default_factory=list)
    ignored: int = 0
    companions: int = 0


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" and sniff_is_archive(path)


def sniff_is_archive(path: Path) -> bool:
    try:
        return sniff(path) == "zip"
    except EmdigError:
        return False


def walk(
    paths: Iterable[str | Path],
    *,
    extract_root: Path,
    archive_limits: ArchiveLimits | None = None,
    state: _WalkState | None = None,
    _depth: int = 0,
    _prefix: str = "",
) -> Iterator[WalkEntry]:
    """Every file under ``paths``: folders recursively (links not followed), ZIPs unpacked.

    Sidecar files (:data:`IGNORED_SUFFIXES`, hidden files) and TIA ``.ser`` files that belong
    to an ``.emi`` in the same folder are passed over and counted in ``state``.
    """
    st = state if state is not None else _WalkState()
    alim = archive_limits or ArchiveLimits()
    for raw in paths:
        p = Path(raw)
        display_root = f"{_prefix}{p}" if _prefix else str(p)
        if p.is_dir() and not p.is_symlink():
            for dirpath, dirnames, filenames in os.walk(
                p,
                onerror=lambda e: st.problems.append(
                    (
                        str(e.filename),
                        UnreadableFile(f"cannot list folder: {e.strerror}", path=e.filename),
                    )
                ),
            ):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                emi_stems = {f[:-4] for f in filenames if f.lower().endswith(".emi")}
                for name in sorted(filenames):
                    fp = Path(dirpath) / name
                    rel = os.path.relpath(fp, p)
                    disp = f"{display_root}/{rel}" if _prefix else str(fp)
                    if name.startswith(".") or fp.suffix.lower() in IGNORED_SUFFIXES:
                        st.ignored += 1
                        continue
                    if (
                        name.lower().endswith(".ser")
                        and "_" in name
                        and name[:-4].rsplit("_", 1)[0] in emi_stems
                    ):
                        st.companions += 1
                        continue
                    yield from _file_entry(fp, disp, extract_root, alim, st, _depth)
        else:
            yield from _file_entry(p, display_root, extract_root, alim, st, _depth)


def _file_entry(
    p: Path, display: str, extract_root: Path, alim: ArchiveLimits, st: _WalkState, depth: int
) -> Iterator[WalkEntry]:
    try:
        s = p.stat()
    except OSError as e:  # vanished, symlink loop, permission: recorded, not fatal
        reason = "symbolic link loop" if e.errno == 40 else (e.strerror or str(e))
        st.problems.append((display, UnreadableFile(reason, path=display)))
        return
    if not p.is_file():
        return
    if s.st_size > 0 and _is_zip(p):
        if depth >= alim.max_depth:
            from .errors import ArchiveError

            st.problems.append(
                (
                    display,
                    ArchiveError(
                        f"archives nest deeper than {alim.max_depth} levels; not unpacked",
                        path=display,
                    ),
                )
            )
            return
        digest = file_sha256(p)
        dest = extract_root / digest[:24]
        try:
            files, problems = extract_zip(p, dest, limits=alim)
        except EmdigError as e:
            st.problems.append((display, e))
            return
        for prob in problems:
            member = (prob.path or "").split("!", 1)[-1]
            st.problems.append((f"{display}!{member}", prob))
        for real, member in files:
            yield from _file_entry(real, f"{display}!{member}", extract_root, alim, st, depth + 1)
        return
    yield WalkEntry(str(p), display, s.st_size, s.st_mtime)


# ------------------------------------------------------------------------------- ingest
def ingest(
    paths: Iterable[str | Path],
    *,
    catalog: Catalog,
    workers: int | None = None,
    dask_address: str | None = None,
    limits: Limits | None = None,
    archive_limits: ArchiveLimits | None = None,
    retry_failed: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[Outcome | None, IngestSummary], None] | None = None,
    commit_every: int = 64,
) -> IngestSummary:
    """Ingest files, folders and ZIP archives into the catalog; resumable.

    Files already catalogued at the same path with the same size and mtime are skipped without
    being read; files whose content (SHA-256) is already present are recorded as another path
    of the same file. Each file is read in an isolated worker (see :mod:`emdig.batch`).
    Outcomes are committed in small transactions, so a killed run loses at most the last few
    items, which the next run redoes: every file ends up in the catalog exactly once.

    Parameters
    ----------
    paths
        Files, folders or ZIP archives.
    catalog
        An open catalog; this call takes its writer lock.
    workers, dask_address, limits
        Passed to :func:`emdig.batch.run_tasks`.
    retry_failed
        Read again files that failed in an earlier run.
    on_total
        Called once with the number of files to read (after walking).
    on_progress
        Called after each finished file with its outcome and the running summary.
    commit_every
        Outcomes per transaction.
    """
    t0 = time.perf_counter()
    lim = limits or Limits.from_env()
    catalog.acquire_writer()
    summary = IngestSummary()
    str_paths = [str(p) for p in paths]
    summary.run_id = run_id = catalog.start_run("ingest", {"paths": str_paths})
    extract_root = Path(f"{catalog.path}.d") / "archives"
    state = _WalkState()
    entries: list[WalkEntry] = []
    for e in walk(str_paths, extract_root=extract_root, archive_limits=archive_limits, state=state):
        known = catalog.known_path(e.display, e.size, e.mtime)
        if known == "ok":
            summary.skipped += 1
            continue
        if known == "failed" and not retry_failed:
            summary.previously_failed += 1
            continue
        entries.append(e)
    summary.ignored, summary.companions = state.ignored, state.companions
    by_key = {e.display: e for e in entries}
    if on_total:
        on_total(len(entries) + len(state.problems))

    pending: list[tuple[FileRecord, Outcome]] = []

    def record_failure(display: str, err: EmdigError) -> FileRecord:
        e = by_key.get(display)
        sha = size = mtime = None
        if e is not None:
            with contextlib.suppress(OSError):
                sha, size, mtime = file_sha256(e.real), e.size, e.mtime
        return FileRecord(display, sha, size or 0, mtime, None, "failed", err.code, str(err))

    def flush() -> None:
        if not pending:
            return
        with catalog.transaction():
            for rec, _ in pending:
                outcome = catalog.add_file(rec, run_id)
                if rec.status == "ok":
                    if outcome == "duplicate":
                        summary.duplicates += 1
                    else:
                        summary.read += 1
                        summary.images += len(rec.images)
                elif outcome == "duplicate":
                    summary.duplicates += 1
                else:
                    summary.failed[rec.error_code or "error"] += 1
                    summary.failures.append(
                        (rec.path, rec.error_code or "error", rec.error_message or "")
                    )
            catalog.record_items(
                run_id,
                [
                    (o.key, rec.status, rec.error_code, rec.error_message, o.seconds)
                    for rec, o in pending
                ],
            )
        pending.clear()

    def on_outcome(o: Outcome) -> None:
        if o.status == "ok":
            rec: FileRecord = o.value
        else:
            from .errors import TimeLimit, WorkerCrashed

            err: EmdigError = (
                (TimeLimit if o.status == "timeout" else WorkerCrashed)(
                    o.message or o.status, path=o.key
                )
                if o.status in ("timeout", "crashed")
                else EmdigError(o.message or "failed", path=o.key)
            )
            if o.status == "failed":
                err.code = o.error_code or "internal_error"
            rec = record_failure(o.key, err)
        pending.append((rec, o))
        if len(pending) >= commit_every:
            flush()
        if on_progress:
            on_progress(o, summary)

    status = "done"
    try:
        for display, err in state.problems:
            pending.append(
                (
                    FileRecord(display, None, 0, None, None, "failed", err.code, str(err)),
                    Outcome(display, "failed", None, err.code, str(err)),
                )
            )
            if on_progress:
                on_progress(None, summary)
        tasks = (Task(e.display, (e.real, e.display, lim)) for e in entries)
        run_tasks(
            tasks,
            ingest_file,
            on_outcome=on_outcome,
            workers=workers,
            limits=lim,
            dask_address=dask_address,
        )
    except BaseException:
        status = "interrupted"
        summary.interrupted = True
        raise
    finally:
        flush()
        summary.seconds = time.perf_counter() - t0
        catalog.finish_run(run_id, status, summary.to_dict())
        catalog.release_writer()
    return summary


def describe_file(payload: tuple[str, Limits | None]) -> dict[str, Any]:
    """Worker job for ``emdig info``: format, hash, and per image the calibration, metadata and
    pixel statistics (JSON-safe; no pixels)."""
    path, limits = payload
    p = Path(path)
    fmt = sniff(p, limits=limits)
    sha = file_sha256(p)
    images = []
    for m in read(p, limits=limits, sha256=sha):
        fov = m.field_of_view_nm
        images.append(
            {
                "index": m.source.index,
                "signal": m.source.signal,
                "shape": list(m.shape),
                "dtype": str(m.pixels.dtype),
                "pixel_size_nm": m.pixel_size_nm,
                "field_of_view_nm": None if fov is None else list(fov),
                "acquisition": m.acquisition.to_dict(),
                "stats": image_stats(m.pixels),
            }
        )
    return {
        "path": str(p),
        "format": fmt,
        "sha256": sha,
        "size_bytes": p.stat().st_size,
        "images": images,
    }
