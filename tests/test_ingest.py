"""Ingest end to end: outcomes, exit codes, resume after SIGKILL, Ctrl-C, a second writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emdig.catalog import Catalog
from emdig.ingest import ingest, walk

from data import badfiles

EMDIG = str(Path(sys.executable).parent / "emdig")


def make_images(folder: Path, n: int, *, bad: int = 0, seed: int = 0) -> tuple[int, int]:
    """``n`` distinct small PNGs in subfolders plus ``bad`` truncated ones."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"d{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(sub / f"im{i}.png")
    for j in range(bad):
        data = (folder / "d0" / "im0.png").read_bytes()
        (folder / f"bad{j}.png").write_bytes(data[: 60 + j])
    return n, bad


def _db_count(db: Path, sql: str = "SELECT count(*) FROM files") -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _default_sigint() -> None:
    # a test run started in the background (`make test &`) ignores SIGINT, the child would
    # inherit that and Python would then install no KeyboardInterrupt handler: restore it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(folder: Path, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EMDIG, "ingest", str(folder), "--catalog", str(db), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _wait_for(db: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    t0 = time.monotonic()
    while _db_count(db) < n:
        assert proc.poll() is None, f"ingest ended before {n} files were stored"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


def test_ingest_outcomes_and_idempotent_rerun(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_images(folder, 20, bad=2)
    badfiles.valid_dm3(folder)
    (folder / "notes.txt").write_text("sidecar")
    (folder / "dup.png").write_bytes((folder / "d0" / "im0.png").read_bytes())
    with Catalog(tmp_path / "cat.db") as cat:
        s = ingest([folder], catalog=cat, workers=2)
        assert (s.read, s.images, s.duplicates, s.ignored) == (21, 21, 1, 1)
        assert dict(s.failed) == {"truncated": 2}
        assert all(str(folder) in path for path, _, _ in s.failures)
        again = ingest([folder], catalog=cat, workers=2)
        assert (again.read, again.skipped, again.previously_failed) == (0, 22, 2)
        assert again.n_failed == 0
        assert cat.count() == 21
        assert cat.file_count() == {"ok": 21, "failed": 2}
        # the duplicate's path is remembered against the same file
        n_paths = cat.conn.execute("SELECT count(*) FROM file_paths").fetchone()[0]
        assert n_paths == 24
        dm = cat.select(where="format = 'dm3'")[0]
        assert dm["voltage_kv"] == 200.0 and cat.thumbnail(dm["id"])


def test_cli_exit_codes(tmp_path: Path) -> None:
    good, mixed = tmp_path / "good", tmp_path / "mixed"
    make_images(good, 5)
    make_images(mixed, 5, bad=1, seed=1)
    r = subprocess.run(
        [EMDIG, "ingest", str(good), "--catalog", str(tmp_path / "a.db")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "read" in r.stdout and "5 (5 images)" in r.stdout
    r = subprocess.run(
        [EMDIG, "ingest", str(mixed), "--catalog", str(tmp_path / "b.db"), "--json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 3
    out = json.loads(r.stdout)
    assert out["read"] == 5 and out["failed"] == {"truncated": 1}
    assert "bad0.png" in out["failures"][0]["message"]


@pytest.mark.slow
def test_kill_and_resume_every_file_exactly_once(tmp_path: Path) -> None:
    folder, db = tmp_path / "data", tmp_path / "cat.db"
    n_ok, n_bad = make_images(folder, 900, bad=9)
    for stop_at in (80, 300):  # two real SIGKILLs at different points
        proc = _start(folder, db, "--workers", "2")
        _wait_for(db, stop_at, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
    stored_before = _db_count(db)
    assert stored_before < n_ok + n_bad, "the kills must interrupt the run"
    final = subprocess.run(
        [EMDIG, "ingest", str(folder), "--catalog", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr  # nothing failed in this run
    summary = json.loads(final.stdout)
    n_failed_before = _db_count(db, "SELECT count(*) FROM files WHERE status = 'failed'")
    assert summary["skipped_already_present"] == stored_before - n_failed_before
    assert summary["skipped_previously_failed"] == n_failed_before
    con = sqlite3.connect(db)
    rows = con.execute("SELECT count(*), count(DISTINCT sha256), count(DISTINCT path) FROM files")
    assert rows.fetchone() == (n_ok + n_bad, n_ok + n_bad, n_ok + n_bad)
    assert con.execute("SELECT count(*) FROM micrographs").fetchone()[0] == n_ok
    assert con.execute("SELECT count(*) FROM file_paths").fetchone()[0] == n_ok + n_bad
    failed = con.execute("SELECT error_code, count(*) FROM files WHERE status='failed' GROUP BY 1")
    assert failed.fetchall() == [("truncated", n_bad)]
    statuses = [r[0] for r in con.execute("SELECT status FROM runs ORDER BY id")]
    assert statuses == ["killed", "killed", "done"]
    # every micrograph belongs to exactly one file and every ok file has its image
    orphans = con.execute(
        "SELECT count(*) FROM files f WHERE f.status='ok' AND NOT EXISTS "
        "(SELECT 1 FROM micrographs m WHERE m.file_id = f.id)"
    ).fetchone()[0]
    assert orphans == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "status"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "interrupted")],
)
def test_interrupt_keeps_finished_work(tmp_path: Path, sig: int, code: int, status: str) -> None:
    folder, db = tmp_path / "data", tmp_path / "cat.db"
    make_images(folder, 900)
    proc = _start(folder, db, "--workers", "2")
    _wait_for(db, 70, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "resume" in err
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == status
    stored = _db_count(db)
    assert 70 <= stored < 900
    final = subprocess.run(
        [EMDIG, "ingest", str(folder), "--catalog", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0
    assert json.loads(final.stdout)["read"] == 900 - stored
    assert _db_count(db) == 900


@pytest.mark.slow
def test_second_writer_is_refused(tmp_path: Path) -> None:
    folder, db = tmp_path / "data", tmp_path / "cat.db"
    make_images(folder, 20)
    with Catalog(db) as cat:
        ingest([folder], catalog=cat)
    # another process holds the writer lock for as long as the test needs (an ingest of any
    # size can finish before a second one starts on an idle machine)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from emdig.catalog import Catalog\n"
            "c = Catalog(sys.argv[1]); c.acquire_writer(); print('locked', flush=True)\n"
            "time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = subprocess.run(
            [EMDIG, "ingest", str(folder), "--catalog", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert f"catalog locked by PID {holder.pid}" in second.stderr
        # readers keep working while the lock is held
        r = subprocess.run(
            [EMDIG, "catalog", "stats", "--catalog", str(db), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and json.loads(r.stdout)["micrographs"] == 20
    finally:
        holder.kill()
        holder.wait(10)


def test_walk_archives_and_companions(tmp_path: Path) -> None:
    import zipfile

    folder = tmp_path / "data"
    make_images(folder, 3)
    with zipfile.ZipFile(folder / "batch.zip", "w") as z:
        z.write(folder / "d0" / "im0.png", "inner/a.png")
        z.writestr("../escape.png", b"x")
    (folder / "run.emi").write_bytes(b"JK\x00\x02")
    (folder / "run_1.ser").write_bytes(b"II")
    from emdig.ingest import _WalkState

    state = _WalkState()
    entries = list(walk([folder], extract_root=tmp_path / "x", state=state))
    displays = sorted(e.display for e in entries)
    assert f"{folder}/batch.zip!inner/a.png" in displays
    assert f"{folder}/run.emi" in displays and not any(d.endswith(".ser") for d in displays)
    assert state.companions == 1
    [(where, err)] = state.problems
    assert where.endswith("batch.zip!../escape.png") and err.code == "unsafe_member_name"
    assert not (tmp_path / "escape.png").exists()


def test_nested_archives_are_bounded(tmp_path: Path) -> None:
    nested = badfiles.zip_nested(tmp_path)
    with Catalog(tmp_path / "cat.db") as cat:
        s = ingest([nested], catalog=cat, workers=1)
    assert s.read == 0 and dict(s.failed) == {"archive_budget": 1}
    assert "nest deeper than 3" in s.failures[0][2]


def test_zip_budgets(bad_files: dict[str, Path | list[Path]], tmp_path: Path) -> None:
    paths = [bad_files[k] for k in ("zip_slip", "zip_symlink", "zip_bomb", "zip_many")]
    with Catalog(tmp_path / "cat.db") as cat:
        s = ingest(paths, catalog=cat, workers=1)  # type: ignore[arg-type]
    assert s.read == 1  # zip_slip's ok/good.png
    assert s.failed["unsafe_member_name"] == 4  # ../.., /abs, C:\.., symlink
    assert s.failed["archive_budget"] == 2  # the bomb member, and 20,000 entries
    messages = " ".join(m for _, _, m in s.failures)
    assert "decompression bomb" in messages and "20,000 entries" in messages
    slip = bad_files["zip_slip"]
    assert isinstance(slip, Path)
    for escaped in (
        slip.parent / "evil.png",
        slip.parent.parent / "evil.png",
        Path("/abs/evil.png"),
        tmp_path / "evil.png",
    ):
        assert not escaped.exists()
    extracted = [p for p in (tmp_path / "cat.db.d").rglob("*") if p.is_file()]
    assert {p.name for p in extracted} <= {"good.png", "evil", ".complete"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # distributed's own noise on startup
def test_ingest_on_dask(tmp_path: Path) -> None:
    from distributed import LocalCluster

    folder = tmp_path / "data"
    make_images(folder, 6, bad=1)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Catalog(tmp_path / "c.db") as cat,
    ):
        s = ingest([folder], catalog=cat, dask_address=cluster.scheduler_address)
    assert s.read == 6 and dict(s.failed) == {"truncated": 1}
    assert os.path.exists(tmp_path / "c.db")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_image_stats_match_numpy(dtype: type) -> None:
    from emdig.ingest import image_stats

    rng = np.random.default_rng(3)
    a = (rng.normal(3800, 30, (300, 200))).astype(dtype)
    s = image_stats(a)
    f = a.astype(np.float64)
    assert s["min"] == f.min() and s["max"] == f.max()
    assert s["mean"] == pytest.approx(f.mean(), rel=1e-12)
    assert s["std"] == pytest.approx(f.std(), rel=1e-9)
    nan = np.array([[1.0, np.nan], [3.0, np.inf]])
    assert image_stats(nan) == {"min": 1.0, "max": 3.0, "mean": 2.0, "std": 1.0}
