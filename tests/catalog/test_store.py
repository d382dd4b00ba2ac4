"""Tests of emdig.catalog.store: schema, records, queries, the writer lock and concurrency."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from emdig.catalog import store
from emdig.catalog.store import MIGRATIONS, Catalog, FileRecord, ImageRecord
from emdig.errors import CatalogError, CatalogLocked, QueryError

PYTHON = sys.executable


# ----------------------------------------------------------------------------- helpers
def image(
    index: int,
    *,
    mode: str | None,
    detector: str | None,
    voltage_kv: float | None,
    instrument: str | None = None,
    pixel_size_nm: float | None = 0.1,
    thumbnail: bytes | None = None,
    signal: str | None = "image",
) -> ImageRecord:
    acq = {"mode": mode, "detector": detector, "voltage_kv": voltage_kv, "instrument": instrument}
    return ImageRecord(
        index=index,
        signal=signal,
        height=64,
        width=48,
        dtype="uint16",
        pixel_size_nm=pixel_size_nm,
        acquisition={k: v for k, v in acq.items() if v is not None},
        stats={"min": 0.0, "max": 100.0 + index, "mean": 50.0, "std": 3.5},
        raw_metadata_json=json.dumps({"Microscope": {"HT": voltage_kv, "idx": index}}),
        source={"path": "unused", "index": index, "signal": signal},
        thumbnail_png=thumbnail,
        thumbnail_size=(16, 12) if thumbnail else (0, 0),
    )


def sha(ch: str) -> str:
    return ch * 64


def sample_records() -> list[FileRecord]:
    """Three good files (5 micrographs, ids 1..5 in this order) and one failed file."""
    return [
        FileRecord(
            path="/data/a.dm4",
            sha256=sha("a"),
            size_bytes=1000,
            mtime=1.0,
            format="dm4",
            status="ok",
            images=[
                # id 1
                image(
                    0,
                    mode="STEM",
                    detector="HAADF",
                    voltage_kv=200.0,
                    instrument="Titan Themis",
                    thumbnail=b"\x89PNG-a0",
                ),
                # id 2
                image(1, mode="STEM", detector="BF", voltage_kv=120.0, instrument="Titan Themis"),
            ],
        ),
        FileRecord(
            path="/data/b.emd",
            sha256=sha("b"),
            size_bytes=2000,
            mtime=2.0,
            format="emd",
            status="ok",
            images=[
                # id 3
                image(0, mode="STEM", detector="HAADF", voltage_kv=300.0, instrument="JEOL ARM"),
            ],
        ),
        FileRecord(
            path="/data/c.tif",
            sha256=sha("c"),
            size_bytes=3000,
            mtime=3.0,
            format="tiff",
            status="ok",
            images=[
                # id 4
                image(0, mode="TEM", detector="camera", voltage_kv=80.0, pixel_size_nm=None),
                # id 5
                image(1, mode="SEM", detector="SE", voltage_kv=20.0, instrument="Zeiss Gemini"),
            ],
        ),
        FileRecord(
            path="/data/d.dm3",
            sha256=sha("d"),
            size_bytes=10,
            mtime=4.0,
            format="dm3",
            status="failed",
            error_code="truncated",
            error_message="/data/d.dm3: ends at byte 10 of 4096",
        ),
    ]


def table_counts(cat: Catalog) -> dict[str, int]:
    return {
        t: int(cat.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        for t in ("files", "file_paths", "micrographs", "thumbnails", "runs", "micrographs_fts")
    }


@pytest.fixture()
def cat(catalog_path: Path):
    c = Catalog(catalog_path)
    yield c
    c.close()


@pytest.fixture()
def filled(cat: Catalog) -> Catalog:
    run_id = cat.start_run("ingest", {})
    with cat.transaction():
        for rec in sample_records():
            assert cat.add_file(rec, run_id) == "added"
    return cat


def ids(rows: list[dict]) -> list[int]:
    return [r["id"] for r in rows]


# ------------------------------------------------------------------------------ schema
def test_new_catalog_schema_version_and_wal(catalog_path: Path) -> None:
    with Catalog(catalog_path) as cat:
        assert cat.schema_version == len(MIGRATIONS)
        assert cat.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the mode is persistent: a plain connection sees it too
    raw = sqlite3.connect(catalog_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        raw.close()


def test_reopen_does_not_rerun_migrations(
    catalog_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Catalog(catalog_path) as cat:
        run_id = cat.start_run("ingest", {"x": 1})
    calls: list[str] = []
    real_split = store._split_sql

    def spy(script: str) -> list[str]:
        calls.append(script)
        return real_split(script)

    monkeypatch.setattr(store, "_split_sql", spy)
    with Catalog(catalog_path) as cat:
        assert cat.schema_version == len(MIGRATIONS)
        row = cat.conn.execute("SELECT kind, args FROM runs WHERE id = ?", (run_id,)).fetchone()
        assert tuple(row) == ("ingest", '{"x": 1}')
    assert calls == []


def test_newer_schema_is_refused(catalog_path: Path) -> None:
    Catalog(catalog_path).close()
    raw = sqlite3.connect(catalog_path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.close()
    with pytest.raises(CatalogError, match="newer") as info:
        Catalog(catalog_path)
    assert str(catalog_path) in str(info.value)


def test_create_false_on_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(CatalogError) as info:
        Catalog(path, create=False)
    assert not isinstance(info.value, CatalogLocked)
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_not_a_database(catalog_path: Path) -> None:
    catalog_path.write_bytes(b"this is not an SQLite database at all" * 100)
    with pytest.raises(CatalogError) as info:
        Catalog(catalog_path)
    assert str(catalog_path) in str(info.value)


def test_create_false_opens_existing(catalog_path: Path) -> None:
    Catalog(catalog_path).close()
    with Catalog(catalog_path, create=False) as cat:
        assert cat.count() == 0


# ----------------------------------------------------------------------------- queries
def test_select_where(filled: Catalog) -> None:
    assert ids(filled.select(where="voltage_kv >= 200 and detector = 'HAADF'")) == [1, 3]
    assert ids(filled.select(where="detector = haadf")) == [1, 3]  # text equality ignores case
    assert ids(filled.select(where="mode = 'STEM' and not detector = 'HAADF'")) == [2]
    assert ids(filled.select(where="pixel_size_nm is null")) == [4]
    assert ids(filled.select(where="format in ('tiff', 'emd')")) == [3, 4, 5]
    assert ids(filled.select(where="voltage_kv between 50 and 150")) == [2, 4]
    assert ids(filled.select(where="instrument ~ titan")) == [1, 2]
    assert ids(filled.select(where="voltage_kv > 1000")) == []
    assert ids(filled.select()) == [1, 2, 3, 4, 5]


def test_select_row_contents(filled: Catalog) -> None:
    (row,) = filled.select(where="id = 3")
    assert row["path"] == "/data/b.emd"
    assert row["format"] == "emd"
    assert row["index"] == 0
    assert row["detector"] == "HAADF"
    assert row["voltage_kv"] == 300.0
    assert row["sha256"] == sha("b")
    assert (row["height"], row["width"], row["dtype"]) == (64, 48, "uint16")
    assert row["max"] == 100.0 and row["std"] == 3.5
    assert "raw_metadata" not in row


def test_count(filled: Catalog) -> None:
    assert filled.count() == 5
    assert filled.count(where="voltage_kv >= 200 and detector = 'HAADF'") == 2
    assert filled.count(where="mode = 'TEM'") == 1
    assert filled.count(search="titan") == 2


def test_order_limit_offset(filled: Catalog) -> None:
    assert ids(filled.select(order="voltage_kv desc")) == [3, 1, 2, 4, 5]
    assert ids(filled.select(order="voltage_kv")) == [5, 4, 2, 1, 3]
    assert ids(filled.select(order="voltage_kv desc", limit=2)) == [3, 1]
    assert ids(filled.select(order="voltage_kv desc", limit=2, offset=1)) == [1, 2]
    assert ids(filled.select(order="voltage_kv desc", limit=10, offset=4)) == [5]
    assert ids(filled.select(order="voltage_kv desc", limit=2, offset=5)) == []
    assert ids(filled.select(order="format desc, index desc")) == [5, 4, 3, 2, 1]
    with pytest.raises(QueryError):
        filled.select(order="voltage_kv; drop table files")


def test_search_fts(filled: Catalog) -> None:
    assert ids(filled.select(search="haadf")) == [1, 3]
    assert ids(filled.select(search="HAADF")) == [1, 3]
    assert ids(filled.select(search="titan")) == [1, 2]
    assert ids(filled.select(search="haadf titan")) == [1]  # all words must match
    assert ids(filled.select(search="gem")) == [5]  # prefix match
    assert ids(filled.select(search="tiff")) == [4, 5]
    assert ids(filled.select(search="haadf", where="voltage_kv > 250")) == [3]
    assert ids(filled.select(search="nothing-like-this")) == []


def test_get_parses_json(filled: Catalog) -> None:
    d = filled.get(2)
    assert d is not None
    assert d["id"] == 2
    assert d["raw_metadata"] == {"Microscope": {"HT": 120.0, "idx": 1}}
    assert d["source"] == {"path": "unused", "index": 1, "signal": "image"}
    assert d["size_bytes"] == 1000
    assert d["path"] == "/data/a.dm4"
    assert filled.get(999) is None


def test_thumbnail(filled: Catalog) -> None:
    assert filled.thumbnail(1) == b"\x89PNG-a0"
    assert filled.thumbnail(2) is None
    assert filled.thumbnail(999) is None


def test_stats(filled: Catalog) -> None:
    s = filled.stats()
    assert s["micrographs"] == 5
    assert s["calibrated"] == 4
    assert s["files"] == {"ok": 3, "failed": 1}
    assert s["errors"] == {"truncated": 1}
    assert s["by_detector"] == {"HAADF": 2, "BF": 1, "SE": 1, "camera": 1}
    assert s["by_mode"] == {"STEM": 3, "SEM": 1, "TEM": 1}
    assert s["by_format"] == {"dm4": 2, "tiff": 2, "emd": 1}
    assert s["by_voltage_kv"] == {"120": 1, "20": 1, "200": 1, "300": 1, "80": 1}
    narrowed = filled.stats(where="mode = 'STEM'")
    assert narrowed["micrographs"] == 3
    assert narrowed["by_detector"] == {"HAADF": 2, "BF": 1}
    assert filled.file_count() == {"ok": 3, "failed": 1}


def test_failures(filled: Catalog) -> None:
    assert filled.failures() == [
        {
            "path": "/data/d.dm3",
            "format": "dm3",
            "error_code": "truncated",
            "error_message": "/data/d.dm3: ends at byte 10 of 4096",
        }
    ]


# -------------------------------------------------------------------- add_file semantics
def test_duplicate_content_remembers_path(filled: Catalog) -> None:
    before = table_counts(filled)
    a = sample_records()[0]
    copy = FileRecord(
        path="/backup/a-copy.dm4",
        sha256=a.sha256,
        size_bytes=a.size_bytes,
        mtime=9.0,
        format=a.format,
        status="ok",
        images=a.images,
    )
    with filled.transaction():
        assert filled.add_file(copy, None) == "duplicate"
    after = table_counts(filled)
    assert after["micrographs"] == before["micrographs"]
    assert after["files"] == before["files"]
    assert after["thumbnails"] == before["thumbnails"]
    assert after["micrographs_fts"] == before["micrographs_fts"]
    assert after["file_paths"] == before["file_paths"] + 1
    rows = filled.conn.execute(
        "SELECT p.path, p.mtime FROM file_paths p JOIN files f ON f.id = p.file_id "
        "WHERE f.sha256 = ? ORDER BY p.path",
        (a.sha256,),
    ).fetchall()
    assert [tuple(r) for r in rows] == [("/backup/a-copy.dm4", 9.0), ("/data/a.dm4", 1.0)]
    assert filled.known_path("/backup/a-copy.dm4", 1000, 9.0) == "ok"


def test_failed_file_retried(filled: Catalog) -> None:
    d = sample_records()[3]
    # failing again is just a duplicate
    with filled.transaction():
        assert filled.add_file(d, None) == "duplicate"
    fixed = FileRecord(
        path=d.path,
        sha256=d.sha256,
        size_bytes=d.size_bytes,
        mtime=5.0,
        format="dm3",
        status="ok",
        images=[image(0, mode="TEM", detector="BF", voltage_kv=200.0)],
    )
    with filled.transaction():
        assert filled.add_file(fixed, None) == "retried"
    rows = filled.conn.execute(
        "SELECT id, status, error_code, n_images FROM files WHERE sha256 = ?", (d.sha256,)
    ).fetchall()
    assert len(rows) == 1
    _new_id, status, code, n_images = rows[0]
    assert (status, code, n_images) == ("ok", None, 1)
    assert filled.failures() == []
    assert filled.count() == 6
    assert filled.known_path(d.path, d.size_bytes, 5.0) == "ok"
    assert filled.known_path(d.path, d.size_bytes, 4.0) is None  # the old mtime is gone
    # and a good file is never replaced by a later failure
    broken = FileRecord(d.path, d.sha256, d.size_bytes, 6.0, "dm3", "failed", "corrupt", "bad")
    with filled.transaction():
        assert filled.add_file(broken, None) == "duplicate"
    assert filled.failures() == []


def test_known_path(filled: Catalog) -> None:
    assert filled.known_path("/data/a.dm4", 1000, 1.0) == "ok"
    assert filled.known_path("/data/d.dm3", 10, 4.0) == "failed"
    assert filled.known_path("/data/a.dm4", 1001, 1.0) is None
    assert filled.known_path("/data/a.dm4", 1000, 1.5) is None
    assert filled.known_path("/data/nope.dm4", 1000, 1.0) is None


def test_add_file_without_hash_identified_by_path(cat: Catalog) -> None:
    rec = FileRecord("/data/gone.dm4", None, 0, None, None, "failed", "io_error", "vanished")
    with cat.transaction():
        assert cat.add_file(rec, None) == "added"
        assert cat.add_file(rec, None) == "duplicate"
    assert cat.file_count() == {"failed": 1}


def test_failure_without_hash_replaced_when_file_reads_later(cat: Catalog) -> None:
    unreadable = FileRecord("/data/x.dm4", None, 0, None, None, "failed", "io_error", "denied")
    with cat.transaction():
        assert cat.add_file(unreadable, None) == "added"
    fixed = FileRecord("/data/x.dm4", sha("e"), 100, 1.0, "dm4", "ok")
    with cat.transaction():
        cat.add_file(fixed, None)
    assert cat.failures() == []
    assert cat.file_count() == {"ok": 1}


def test_transaction_rolls_back(filled: Catalog) -> None:
    before = table_counts(filled)
    rec = FileRecord("/data/e.tif", sha("e"), 5, 5.0, "tiff", "ok")
    with pytest.raises(RuntimeError), filled.transaction():
        filled.add_file(rec, None)
        raise RuntimeError("abort")
    assert table_counts(filled) == before
    assert filled.known_path("/data/e.tif", 5, 5.0) is None


# --------------------------------------------------------------------------- injection
@pytest.mark.parametrize(
    "where",
    [
        "detector = 'x' or 1=1 --",
        "voltage_kv >= 200; DROP TABLE files",
        "sqlite_master.name = 'x'",
        "detector = 'x') or (1=1",
        "detector = 'x' union select * from files",
        "voltage_kv >= (select 1)",
        "detector = x' or 'a'='a",
        "files.path = 'x'",
        'detector = "x" or "1"="1"',
    ],
)
def test_where_injection(filled: Catalog, where: str) -> None:
    before = table_counts(filled)
    try:
        rows = filled.select(where=where)
    except QueryError:
        pass
    else:
        assert rows == []
    try:
        n = filled.count(where=where)
    except QueryError:
        pass
    else:
        assert n == 0
    assert table_counts(filled) == before
    names = {r[0] for r in filled.conn.execute("SELECT name FROM sqlite_master")}
    assert {"files", "micrographs", "runs", "thumbnails", "file_paths"} <= names


@pytest.mark.parametrize(
    "text",
    [
        '" OR 1 --',
        "haadf OR titan",
        "detector:haadf",
        'NEAR("a" "b")',
        "* ^ ( ) : + - \"'",
        "'; DROP TABLE files; --",
        "a AND NOT b",
    ],
)
def test_search_text_never_raises_sqlite_errors(filled: Catalog, text: str) -> None:
    before = table_counts(filled)
    try:
        rows = filled.select(search=text)
        n = filled.count(search=text)
    except QueryError:
        pass
    except sqlite3.Error as e:  # pragma: no cover - the failure being tested for
        pytest.fail(f"search {text!r} raised {type(e).__name__}: {e}")
    else:
        assert len(rows) == n
    assert table_counts(filled) == before


def test_search_operators_are_plain_words(filled: Catalog) -> None:
    # "OR" is searched for as a word, not an FTS operator: nothing has the word "or"
    assert filled.select(search="haadf OR titan") == []


# ------------------------------------------------------------------------ writer lock
def test_writer_lock_same_process(catalog_path: Path) -> None:
    with Catalog(catalog_path) as first, Catalog(catalog_path) as second:
        first.acquire_writer()
        first.acquire_writer()  # re-entrant within one Catalog
        with pytest.raises(CatalogLocked) as info:
            second.acquire_writer()
        msg = str(info.value)
        assert "locked by PID" in msg
        assert f"PID {os.getpid()}" in msg
        assert info.value.code == "catalog_locked"
        first.release_writer()
        second.acquire_writer()
        with pytest.raises(CatalogLocked):
            first.acquire_writer()
        second.release_writer()
    # close() releases the lock too
    holder = Catalog(catalog_path)
    holder.acquire_writer()
    holder.close()
    with Catalog(catalog_path) as again:
        again.acquire_writer()


_LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from emdig.catalog.store import Catalog
    cat = Catalog(sys.argv[1])
    cat.acquire_writer()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_writer_lock_across_processes(catalog_path: Path) -> None:
    Catalog(catalog_path).close()
    proc = subprocess.Popen(
        [PYTHON, "-c", _LOCK_HOLDER, str(catalog_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with Catalog(catalog_path) as cat:
            with pytest.raises(CatalogLocked) as info:
                cat.acquire_writer()
            assert f"locked by PID {proc.pid}" in str(info.value)
            proc.kill()
            proc.wait(10)
            cat.acquire_writer()  # the lock dies with its holder
            cat.release_writer()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# -------------------------------------------------------------------------- concurrency
_WRITER = textwrap.dedent(
    """
    import sys, time
    from emdig.catalog.store import Catalog, FileRecord, ImageRecord

    path, seconds, per_tx = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    cat = Catalog(path)
    cat.acquire_writer()
    run_id = cat.start_run("ingest", {})
    print("ready", flush=True)
    n = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        with cat.transaction():
            for _ in range(per_tx):
                im = ImageRecord(0, "s", 8, 8, "uint8", 0.1, {"detector": "HAADF",
                                 "voltage_kv": 200.0}, {}, "{}", {})
                rec = FileRecord(f"/w/{n}.tif", f"{n:064x}", 1, 1.0, "tiff", "ok", images=[im])
                assert cat.add_file(rec, run_id) == "added"
                n += 1
        time.sleep(0.002)
    cat.finish_run(run_id, "done", {"added": n})
    cat.close()
    print(n, flush=True)
    """
)


def test_readers_not_blocked_by_writer_process(catalog_path: Path) -> None:
    per_tx = 3
    Catalog(catalog_path).close()  # create first: the writer and the reader never both migrate
    proc = subprocess.Popen(
        [PYTHON, "-c", _WRITER, str(catalog_path), "2.0", str(per_tx)],
        stdout=subprocess.PIPE,
        text=True,
    )
    observed: list[int] = []
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with Catalog(catalog_path, create=False) as reader:
            while proc.poll() is None:
                n = reader.count()  # plain autocommit reads
                observed.append(n)
                assert n % per_tx == 0  # each transaction is seen whole or not at all
                assert len(reader.select(limit=5, offset=max(0, n - 5))) >= min(5, n)
                # several reads in one read transaction see one snapshot
                reader.conn.execute("BEGIN")
                try:
                    m = reader.count()
                    rows = reader.select(where="detector = 'HAADF'", order="id desc", limit=5)
                    assert len(rows) == min(5, m)
                    assert reader.count(search="haadf") == m
                    assert reader.stats()["micrographs"] == m
                finally:
                    reader.conn.execute("COMMIT")
                assert m >= n
                observed.append(m)
                time.sleep(0.001)
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            total = int(out.strip())
            final = reader.count()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert total > 10 * per_tx
    assert len(observed) > 20
    assert observed == sorted(observed)
    assert len(set(observed)) > 2  # the reader really saw the writer's progress
    assert final == total


def _open_concurrently(path: Path, n: int) -> list[BaseException | None]:
    """Open n Catalogs on one fresh path at the same moment; return each one's error."""
    # hold the write lock so every opener reads schema version 0 and then queues on it
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("BEGIN IMMEDIATE")
    errors: list[BaseException | None] = [None] * n

    def open_one(i: int) -> None:
        try:
            Catalog(path).close()
        except BaseException as e:
            errors[i] = e

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let every opener read version 0 and queue on the lock
    raw.execute("ROLLBACK")
    raw.close()
    for t in threads:
        t.join(30)
    return errors


def test_concurrent_creation_migrates_once(catalog_path: Path) -> None:
    errors = _open_concurrently(catalog_path, 2)
    assert errors == [None, None], [repr(e) for e in errors]
    with Catalog(catalog_path) as cat:
        assert cat.schema_version == len(MIGRATIONS)


# --------------------------------------------------------------------------------- runs
def test_runs_round_trip(cat: Catalog) -> None:
    run_id = cat.start_run("ingest", {"paths": ["/data"], "workers": 2})
    row = cat.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert row["kind"] == "ingest"
    assert row["status"] == "running"
    assert json.loads(row["args"]) == {"paths": ["/data"], "workers": 2}
    assert row["pid"] == os.getpid()
    assert row["finished_at"] is None

    cat.record_items(
        run_id,
        [
            ("/data/a.dm4", "ok", None, None, 0.5),
            ("/data/d.dm3", "failed", "truncated", "cut short", 0.1),
        ],
    )
    cat.record_items(run_id, [("/data/a.dm4", "ok", None, "again", 0.25)])  # replaces
    items = cat.conn.execute(
        "SELECT key, status, error_code, message, seconds FROM run_items WHERE run_id = ? "
        "ORDER BY key",
        (run_id,),
    ).fetchall()
    assert [tuple(r) for r in items] == [
        ("/data/a.dm4", "ok", None, "again", 0.25),
        ("/data/d.dm3", "failed", "truncated", "cut short", 0.1),
    ]

    cat.finish_run(run_id, "done", {"added": 1, "failed": 1})
    row = cat.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert row["status"] == "done"
    assert row["finished_at"] is not None
    assert json.loads(row["counts"]) == {"added": 1, "failed": 1}


def test_start_run_marks_stale_run_killed(cat: Catalog) -> None:
    first = cat.start_run("ingest", {})
    other_kind = cat.start_run("measure", {})
    done = cat.start_run("export", {})
    cat.finish_run(done, "done", {})
    second = cat.start_run("ingest", {})
    status = {
        r["id"]: r["status"] for r in cat.conn.execute("SELECT id, status FROM runs").fetchall()
    }
    assert status[first] == "killed"
    assert status[second] == "running"
    assert status[other_kind] == "running"  # other kinds are left alone
    assert status[done] == "done"
    third = cat.start_run("export", {})
    status = {
        r["id"]: r["status"] for r in cat.conn.execute("SELECT id, status FROM runs").fetchall()
    }
    assert status[done] == "done"  # a finished run is never marked killed
    assert status[third] == "running"
    assert len({first, other_kind, done, second, third}) == 5
