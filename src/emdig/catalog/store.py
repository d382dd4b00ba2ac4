"""The catalog: one SQLite file in WAL mode, a versioned schema, one writer, many readers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import CatalogError, CatalogLocked
from ..micrograph import ACQUISITION_FIELDS
from .query import Column, compile_order, compile_where, fts_query

__all__ = [
    "COLUMNS",
    "Catalog",
    "FileRecord",
    "ImageRecord",
    "default_catalog_path",
]

_NUMERIC_FIELDS = {
    "voltage_kv",
    "magnification",
    "camera_length_mm",
    "convergence_mrad",
    "collection_inner_mrad",
    "collection_outer_mrad",
    "dwell_us",
    "beam_current_pa",
    "tilt_alpha_deg",
    "tilt_beta_deg",
    "scan_rotation_deg",
}

# Every migration is a script; the schema version is its 1-based position (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        args TEXT,
        pid INTEGER,
        host TEXT,
        counts TEXT
    );
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        sha256 TEXT UNIQUE,  -- NULL when the bytes could not be read
        size_bytes INTEGER NOT NULL,
        path TEXT NOT NULL,
        format TEXT,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        error_code TEXT,
        error_message TEXT,
        n_images INTEGER NOT NULL DEFAULT 0,
        added_at TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id)
    );
    CREATE TABLE file_paths (
        path TEXT PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        size_bytes INTEGER,
        mtime REAL,
        seen_at TEXT NOT NULL
    );
    CREATE TABLE micrographs (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        signal TEXT,
        height INTEGER NOT NULL,
        width INTEGER NOT NULL,
        dtype TEXT NOT NULL,
        pixel_size_nm REAL,
        {
        ", ".join(f"{f} {'REAL' if f in _NUMERIC_FIELDS else 'TEXT'}" for f in ACQUISITION_FIELDS)
    },
        px_min REAL, px_max REAL, px_mean REAL, px_std REAL,
        raw_metadata TEXT NOT NULL,
        source TEXT NOT NULL,
        UNIQUE (file_id, idx)
    );
    CREATE INDEX micrographs_file ON micrographs(file_id);
    CREATE TABLE thumbnails (
        micrograph_id INTEGER PRIMARY KEY REFERENCES micrographs(id) ON DELETE CASCADE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        png BLOB NOT NULL
    );
    CREATE TABLE run_items (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        key TEXT NOT NULL,
        status TEXT NOT NULL,
        error_code TEXT,
        message TEXT,
        seconds REAL,
        finished_at TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE VIRTUAL TABLE micrographs_fts USING fts5(
        path, format, signal, mode, detector, instrument, tokenize = 'unicode61'
    );
    """,
    # v2: immunogold particle detections, one row per analysed image and per particle
    """
    CREATE TABLE particle_images (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        sha256 TEXT,
        image_index INTEGER NOT NULL,
        model TEXT NOT NULL,
        params TEXT NOT NULL,
        pixel_size_nm REAL,
        summary TEXT NOT NULL,
        outputs TEXT,
        run_id INTEGER REFERENCES runs(id),
        added_at TEXT NOT NULL
    );
    CREATE TABLE particles (
        image_id INTEGER NOT NULL REFERENCES particle_images(id) ON DELETE CASCADE,
        x_px REAL NOT NULL, y_px REAL NOT NULL, x_nm REAL, y_nm REAL,
        diameter_nm REAL, class_nm REAL, score REAL
    );
    CREATE INDEX particles_image ON particles(image_id);
    """,
)

#: Columns users may filter and sort on, with their SQL and type.
COLUMNS: dict[str, Column] = {
    "id": Column("id", "m.id", "num"),
    "path": Column("path", "f.path", "text"),
    "format": Column("format", "f.format", "text"),
    "sha256": Column("sha256", "f.sha256", "text"),
    "size_bytes": Column("size_bytes", "f.size_bytes", "num"),
    "index": Column("index", "m.idx", "num"),
    "signal": Column("signal", "m.signal", "text"),
    "height": Column("height", "m.height", "num"),
    "width": Column("width", "m.width", "num"),
    "dtype": Column("dtype", "m.dtype", "text"),
    "pixel_size_nm": Column("pixel_size_nm", "m.pixel_size_nm", "num"),
    **{
        f: Column(f, f"m.{f}", "num" if f in _NUMERIC_FIELDS else "text")
        for f in ACQUISITION_FIELDS
    },
    "mean": Column("mean", "m.px_mean", "num"),
    "std": Column("std", "m.px_std", "num"),
}

_LIST_FIELDS = (
    "m.id, f.path, f.format, m.idx, m.signal, m.height, m.width, m.dtype, m.pixel_size_nm, "
    + ", ".join(f"m.{f}" for f in ACQUISITION_FIELDS)
    + ", m.px_min, m.px_max, m.px_mean, m.px_std, f.sha256"
)


def default_catalog_path() -> Path:
    """``$EMDIG_CATALOG`` if set, else ``./emdig.db``."""
    return Path(os.environ.get("EMDIG_CATALOG") or "emdig.db")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class ImageRecord:
    """One micrograph as stored: everything but the full pixels."""

    index: int
    signal: str | None
    height: int
    width: int
    dtype: str
    pixel_size_nm: float | None
    acquisition: dict[str, Any]
    stats: dict[str, float]
    raw_metadata_json: str
    source: dict[str, Any]
    thumbnail_png: bytes | None = None
    thumbnail_size: tuple[int, int] = (0, 0)


@dataclass(slots=True)
class FileRecord:
    """The outcome of reading one file, ready to be stored."""

    path: str
    sha256: str | None
    size_bytes: int
    mtime: float | None
    format: str | None
    status: str  # "ok" | "failed"
    error_code: str | None = None
    error_message: str | None = None
    images: list[ImageRecord] = field(default_factory=list)


class Catalog:
    """The SQLite catalog.

    Parameters
    ----------
    path
        Database file; default ``$EMDIG_CATALOG`` or ``./emdig.db``.
    create
        Create the file (and apply migrations) if missing. Without it a missing catalog is an
        error, so read-only commands never leave an empty database behind.

    Examples
    --------
    >>> cat = Catalog("emdig.db")  # doctest: +SKIP
    >>> cat.select(where="voltage_kv >= 200 and detector = 'HAADF'")  # doctest: +SKIP
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else default_catalog_path()
        if not create and not self.path.exists():
            raise CatalogError(
                "no catalog here; run `emdig ingest PATH` first or pass --catalog", path=self.path
            )
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as e:
            raise CatalogError(f"cannot open catalog: {e}", path=self.path) from None
        self._lock_fd: int | None = None
        try:
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.release_writer()
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise CatalogError(
                f"catalog schema v{version} is newer than this emdig (v{len(MIGRATIONS)}); "
                "upgrade emdig",
                path=self.path,
            )
        if version == len(MIGRATIONS):
            return
        with self.transaction():
            # re-read under the write lock: another process may have migrated meanwhile
            for i in range(self.schema_version, len(MIGRATIONS)):
                for stmt in _split_sql(MIGRATIONS[i]):
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {i + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---------------------------------------------------------------------- writer
    def acquire_writer(self) -> None:
        """Take the single-writer lock, or raise :class:`CatalogLocked` naming the holder."""
        if self._lock_fd is not None:
            return
        lock_path = Path(f"{self.path}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CatalogLocked(
                f"catalog locked by {holder}; wait for it to finish or use another --catalog",
                path=self.path,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._lock_fd = fd

    def release_writer(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------------ runs
    def start_run(self, kind: str, args: dict[str, Any]) -> int:
        with self.transaction():
            # a run left 'running' by a killed process is marked so, never resumed in place
            self.conn.execute(
                "UPDATE runs SET status = 'killed' WHERE status = 'running' AND kind = ?", (kind,)
            )
            cur = self.conn.execute(
                "INSERT INTO runs(kind, started_at, args, pid, host) VALUES (?, ?, ?, ?, ?)",
                (kind, _now(), json.dumps(args), os.getpid(), socket.gethostname()),
            )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, counts: dict[str, Any]) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, counts = ? WHERE id = ?",
                (status, _now(), json.dumps(counts), run_id),
            )

    def record_items(
        self, run_id: int, rows: Sequence[tuple[str, str, str | None, str | None, float]]
    ) -> None:
        """Per-item outcomes: ``(key, status, error_code, message, seconds)``."""
        now = _now()
        self.conn.executemany(
            "INSERT OR REPLACE INTO run_items(run_id, key, status, error_code, message, seconds,"
            " finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(run_id, *r, now) for r in rows],
        )

    # ----------------------------------------------------------------------- files
    def known_path(self, path: str, size: int, mtime: float) -> str | None:
        """Status of a path already catalogued with this size and mtime, else None."""
        row = self.conn.execute(
            "SELECT f.status FROM file_paths p JOIN files f ON f.id = p.file_id "
            "WHERE p.path = ? AND p.size_bytes = ? AND p.mtime = ?",
            (path, size, mtime),
        ).fetchone()
        return None if row is None else str(row[0])

    def add_file(self, rec: FileRecord, run_id: int | None = None) -> str:
        """Store one file's outcome. Must run inside :meth:`transaction`.

        Returns ``"added"``, ``"duplicate"`` (same content already catalogued: only the path is
        remembered) or ``"retried"`` (a failed file now read fine).
        """
        row = None
        if rec.sha256 is not None:
            row = self.conn.execute(
                "SELECT id, status FROM files WHERE sha256 = ?", (rec.sha256,)
            ).fetchone()
        else:  # no content hash: identify by path
            row = self.conn.execute(
                "SELECT f.id, f.status FROM file_paths p JOIN files f ON f.id = p.file_id "
                "WHERE p.path = ?",
                (rec.path,),
            ).fetchone()
        outcome = "added"
        if row is None and rec.status == "ok":
            # a failure recorded without a hash (unreadable at the time) at this same path
            row = self.conn.execute(
                "SELECT f.id, f.status FROM file_paths p JOIN files f ON f.id = p.file_id "
                "WHERE p.path = ? AND f.sha256 IS NULL",
                (rec.path,),
            ).fetchone()
        if row is not None:
            if row["status"] == "failed" and rec.status == "ok":
                self.conn.execute("DELETE FROM files WHERE id = ?", (row["id"],))
                outcome = "retried"
            else:
                self._remember_path(int(row["id"]), rec)
                return "duplicate"
        cur = self.conn.execute(
            "INSERT INTO files(sha256, size_bytes, path, format, status, error_code, error_message,"
            " n_images, added_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.sha256,
                rec.size_bytes,
                rec.path,
                rec.format,
                rec.status,
                rec.error_code,
                rec.error_message,
                len(rec.images),
                _now(),
                run_id,
            ),
        )
        file_id = int(cur.lastrowid or 0)
        self._remember_path(file_id, rec)
        cols = ", ".join(ACQUISITION_FIELDS)
        marks = ", ".join("?" for _ in ACQUISITION_FIELDS)
        for im in rec.images:
            acq = [im.acquisition.get(f) for f in ACQUISITION_FIELDS]
            cur = self.conn.execute(
                "INSERT INTO micrographs(file_id, idx, signal, height, width, dtype,"
                f" pixel_size_nm, {cols}, px_min, px_max, px_mean, px_std, raw_metadata, source)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, {marks}, ?, ?, ?, ?, ?, ?)",
                (
                    file_id,
                    im.index,
                    im.signal,
                    im.height,
                    im.width,
                    im.dtype,
                    im.pixel_size_nm,
                    *acq,
                    im.stats.get("min"),
                    im.stats.get("max"),
                    im.stats.get("mean"),
                    im.stats.get("std"),
                    im.raw_metadata_json,
                    json.dumps(im.source),
                ),
            )
            mid = int(cur.lastrowid or 0)
            self.conn.execute(
                "INSERT INTO micrographs_fts(rowid, path, format, signal, mode, detector,"
                " instrument) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    mid,
                    rec.path,
                    rec.format,
                    im.signal,
                    im.acquisition.get("mode"),
                    im.acquisition.get("detector"),
                    im.acquisition.get("instrument"),
                ),
            )
            if im.thumbnail_png:
                self.conn.execute(
                    "INSERT INTO thumbnails(micrograph_id, width, height, png) VALUES (?, ?, ?, ?)",
                    (mid, im.thumbnail_size[0], im.thumbnail_size[1], im.thumbnail_png),
                )
        return outcome

    def _remember_path(self, file_id: int, rec: FileRecord) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO file_paths(path, file_id, size_bytes, mtime, seen_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (rec.path, file_id, rec.size_bytes, rec.mtime, _now()),
        )

    # --------------------------------------------------------------------- queries
    def _filter(self, where: str | None, search: str | None) -> tuple[str, list[object]]:
        sql, params = compile_where(where or "", COLUMNS)
        if search:
            sql = (
                f"({sql}) AND m.id IN "
                "(SELECT rowid FROM micrographs_fts WHERE micrographs_fts MATCH ?)"
            )
            params = [*params, fts_query(search)]
        return sql, params

    def select(
        self,
        *,
        where: str | None = None,
        search: str | None = None,
        order: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Micrographs matching a filter, as dicts of the listed columns.

        Parameters
        ----------
        where
            Filter such as ``"voltage_kv >= 200 and detector = 'HAADF'"`` over :data:`COLUMNS`.
        search
            Free text matched (prefix, all words) against path, format, signal, mode,
            detector and instrument.
        order
            ``"column [asc|desc], ..."``; default by id.
        """
        sql, params = self._filter(where, search)
        order_sql = compile_order(order, COLUMNS) if order else "m.id"
        q = (
            f"SELECT {_LIST_FIELDS} FROM micrographs m JOIN files f ON f.id = m.file_id "
            f"WHERE {sql} ORDER BY {order_sql}"
        )
        if limit is not None or offset:
            q += " LIMIT ? OFFSET ?"
            params = [*params, -1 if limit is None else int(limit), int(offset)]
        rows = self.conn.execute(q, params).fetchall()
        return [_row_dict(r) for r in rows]

    def count(self, *, where: str | None = None, search: str | None = None) -> int:
        sql, params = self._filter(where, search)
        q = f"SELECT count(*) FROM micrographs m JOIN files f ON f.id = m.file_id WHERE {sql}"
        return int(self.conn.execute(q, params).fetchone()[0])

    def get(self, micrograph_id: int) -> dict[str, Any] | None:
        """One micrograph with its raw metadata, source and file, or None."""
        row = self.conn.execute(
            f"SELECT {_LIST_FIELDS}, m.raw_metadata, m.source, f.size_bytes, f.added_at "
            "FROM micrographs m JOIN files f ON f.id = m.file_id WHERE m.id = ?",
            (int(micrograph_id),),
        ).fetchone()
        if row is None:
            return None
        d = _row_dict(row)
        d["raw_metadata"] = json.loads(d["raw_metadata"])
        d["source"] = json.loads(d["source"])
        return d

    def thumbnail(self, micrograph_id: int) -> bytes | None:
        row = self.conn.execute(
            "SELECT png FROM thumbnails WHERE micrograph_id = ?", (int(micrograph_id),)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def failures(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT path, format, error_code, error_message FROM files WHERE status = 'failed' "
            "ORDER BY path"
        ).fetchall()
        return [dict(r) for r in rows]

    def stats(self, *, where: str | None = None, search: str | None = None) -> dict[str, Any]:
        """Counts: files by status, micrographs by format, mode, detector and voltage."""
        sql, params = self._filter(where, search)
        base = f"FROM micrographs m JOIN files f ON f.id = m.file_id WHERE {sql}"

        def group(expr: str) -> dict[str, int]:
            q = f"SELECT {expr} AS k, count(*) AS n {base} GROUP BY k ORDER BY n DESC, k"
            return {str(r["k"]): int(r["n"]) for r in self.conn.execute(q, params)}

        files = {
            str(r[0]): int(r[1])
            for r in self.conn.execute("SELECT status, count(*) FROM files GROUP BY status")
        }
        errors = {
            str(r[0]): int(r[1])
            for r in self.conn.execute(
                "SELECT error_code, count(*) FROM files WHERE status = 'failed' GROUP BY 1"
            )
        }
        calibrated = self.conn.execute(
            f"SELECT count(*) {base} AND m.pixel_size_nm IS NOT NULL", params
        ).fetchone()[0]
        return {
            "micrographs": self.count(where=where, search=search),
            "calibrated": int(calibrated),
            "files": files,
            "errors": errors,
            "by_format": group("f.format"),
            "by_mode": group("coalesce(m.mode, 'unknown')"),
            "by_detector": group("coalesce(m.detector, 'unknown')"),
            "by_voltage_kv": group("coalesce(CAST(round(m.voltage_kv) AS INTEGER), 'unknown')"),
        }

    # ------------------------------------------------------------------- particles
    def particle_image(self, key: str) -> dict[str, Any] | None:
        """A stored particle analysis by its key, or None."""
        row = self.conn.execute("SELECT * FROM particle_images WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["summary"] = json.loads(d["summary"])
        d["outputs"] = json.loads(d["outputs"] or "{}")
        return d

    def add_particle_image(
        self,
        key: str,
        *,
        path: str,
        sha256: str | None,
        image_index: int,
        model: str,
        params: dict[str, Any],
        pixel_size_nm: float | None,
        summary: dict[str, Any],
        outputs: dict[str, str],
        rows: Sequence[tuple[float, ...]],
        run_id: int | None = None,
    ) -> None:
        """Store one image's detections (``rows``: x_px, y_px, x_nm, y_nm, diameter_nm,
        class_nm, score); replaces an earlier analysis with the same key. Run inside
        :meth:`transaction`."""
        self.conn.execute("DELETE FROM particle_images WHERE key = ?", (key,))
        cur = self.conn.execute(
            "INSERT INTO particle_images(key, path, sha256, image_index, model, params,"
            " pixel_size_nm, summary, outputs, run_id, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, path, sha256, image_index, model, json.dumps(params, sort_keys=True),
             pixel_size_nm, json.dumps(summary), json.dumps(outputs), run_id, _now()),
        )  # fmt: skip
        image_id = int(cur.lastrowid or 0)
        self.conn.executemany(
            "INSERT INTO particles(image_id, x_px, y_px, x_nm, y_nm, diameter_nm, class_nm, score)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(image_id, *r) for r in rows],
        )

    def file_count(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM files GROUP BY status")
        return {str(r[0]): int(r[1]) for r in rows}


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["index"] = d.pop("idx")
    for k in ("px_min", "px_max", "px_mean", "px_std"):
        if k in d:
            d[k.replace("px_", "")] = d.pop(k)
    return d


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
