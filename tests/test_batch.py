"""Tests of emdig.batch: isolated workers, limits, crash recovery, interrupts and Dask."""

from __future__ import annotations

import dataclasses
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import time
from collections.abc import Iterator

import psutil
import pytest

from emdig.batch import Outcome, Task, default_workers, run_isolated, run_tasks
from emdig.io.limits import Limits

from batch_jobs import dispatch, double, fail_bug, fail_emdig, hang, hog, segfault, slow_ok, whoami

GIB = 1024**3
LIMITS = dataclasses.replace(Limits(), seconds=2, memory_bytes=1 * GIB)


def collect(
    tasks: list[Task], job: object, *, limits: Limits = LIMITS, **kwargs: object
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    run_tasks(tasks, job, on_outcome=outcomes.append, limits=limits, **kwargs)  # type: ignore[arg-type]
    return outcomes


def by_key(outcomes: list[Outcome]) -> dict[str, Outcome]:
    keys = [o.key for o in outcomes]
    assert len(keys) == len(set(keys)), f"duplicate outcomes: {sorted(keys)}"
    return {o.key: o for o in outcomes}


def assert_memory_failure(o: Outcome) -> None:
    # a MemoryError inside the worker is reported as failed/memory; the kernel may instead
    # kill the process, which is reported as a crash
    if o.status == "failed":
        assert o.error_code == "memory", o
    else:
        assert o.status == "crashed", o


# a mix whose "ok" tasks come before and after each bad one
MIX: list[tuple[str, int]] = [
    ("double", 0),
    ("hang", 1),
    ("double", 2),
    ("segfault", 3),
    ("double", 4),
    ("fail_emdig", 5),
    ("slow_ok", 6),
    ("fail_bug", 7),
    ("hog", 8),
    ("double", 9),
    ("slow_ok", 10),
    ("segfault", 11),
    ("double", 12),
    ("fail_emdig", 13),
    ("double", 14),
    ("slow_ok", 15),
    ("double", 16),
    ("double", 17),
    ("slow_ok", 18),
    ("double", 19),
]


def mix_tasks() -> list[Task]:
    return [Task(f"{x:02d}-{name}", (name, x)) for name, x in MIX]


def check_mix(outcomes: list[Outcome]) -> None:
    got = by_key(outcomes)
    assert set(got) == {t.key for t in mix_tasks()}
    for name, x in MIX:
        o = got[f"{x:02d}-{name}"]
        assert o.seconds >= 0
        if name == "double":
            assert (o.status, o.value, o.error_code) == ("ok", 2 * x, None), o
        elif name == "slow_ok":
            assert (o.status, o.value) == ("ok", x), o
            assert o.seconds >= 0.04
        elif name == "fail_emdig":
            assert (o.status, o.error_code) == ("failed", "truncated"), o
            assert o.message is not None
            assert f"f{x}" in o.message and "cut" in o.message
        elif name == "fail_bug":
            assert (o.status, o.error_code) == ("failed", "internal_error"), o
            assert o.message is not None and "ZeroDivisionError" in o.message
        elif name == "hang":
            assert (o.status, o.error_code) == ("timeout", "timeout"), o
            assert o.message is not None and "2 s" in o.message
            assert 1.9 <= o.seconds < 10
        elif name == "segfault":
            assert (o.status, o.error_code) == ("crashed", "crashed"), o
            assert o.message is not None and "SIGSEGV" in o.message
        elif name == "hog":
            assert_memory_failure(o)
        else:  # pragma: no cover
            raise AssertionError(name)


# --------------------------------------------------------------------------- local pool
def test_run_tasks_mixed_outcomes() -> None:
    t0 = time.monotonic()
    outcomes = collect(mix_tasks(), dispatch, workers=2)
    assert time.monotonic() - t0 < 15
    check_mix(outcomes)
    # the pool recovered: ok tasks kept completing after the first crash, and while one
    # worker hung the other went on (the hang's 2 s timeout is reported last)
    order = [o.key for o in outcomes]
    first_crash = order.index("03-segfault")
    assert any(o.status == "ok" for o in outcomes[first_crash + 1 :])
    assert order.index("01-hang") >= 10


def test_run_tasks_single_job_functions() -> None:
    ok = collect([Task(str(i), i) for i in range(5)], double, workers=2)
    assert {o.key: o.value for o in ok} == {str(i): 2 * i for i in range(5)}
    (failed,) = collect([Task("t", 7)], fail_emdig, workers=1)
    assert (failed.status, failed.error_code) == ("failed", "truncated")
    assert failed.message == "f7: cut"
    (bug,) = collect([Task("b", 1)], fail_bug, workers=1)
    assert bug.error_code == "internal_error" and "ZeroDivisionError" in str(bug.message)
    (slow,) = collect([Task("s", 3)], slow_ok, workers=1)
    assert (slow.status, slow.value) == ("ok", 3)


def test_run_tasks_crash_and_timeout_then_recover() -> None:
    limits = dataclasses.replace(LIMITS, seconds=1)
    tasks = [
        Task("crash", ("segfault", 0)),
        Task("hang", ("hang", 1)),
        *(Task(f"ok{i}", ("double", i)) for i in range(6)),
    ]
    outcomes = collect(tasks, dispatch, workers=1, limits=limits)
    assert [o.key for o in outcomes] == [t.key for t in tasks]  # one worker: in order
    got = by_key(outcomes)
    assert got["crash"].status == "crashed"
    assert got["hang"].status == "timeout"
    assert "1 s" in str(got["hang"].message)
    assert all(got[f"ok{i}"].value == 2 * i for i in range(6))


def test_hog_hits_memory_limit() -> None:
    (o,) = collect([Task("hog", 0)], hog, workers=1)
    assert_memory_failure(o)
    # the worker (or its replacement) still works afterwards
    tasks = [Task("hog", ("hog", 0)), Task("after", ("double", 4))]
    outcomes = collect(tasks, dispatch, workers=1)
    got = by_key(outcomes)
    assert_memory_failure(got["hog"])
    assert (got["after"].status, got["after"].value) == ("ok", 8)


def test_run_tasks_exactly_one_outcome_each_with_lazy_iterable() -> None:
    consumed: list[int] = []

    def gen() -> Iterator[Task]:
        for i in range(12):
            consumed.append(i)
            yield Task(f"k{i}", ("slow_ok", i) if i % 3 else ("double", i))

    outcomes = collect(list(gen()), dispatch, workers=2)
    got = by_key(outcomes)
    assert len(got) == 12
    assert all(o.status == "ok" for o in outcomes)
    consumed.clear()
    outcomes = []
    run_tasks(gen(), dispatch, on_outcome=outcomes.append, limits=LIMITS, workers=2)
    assert consumed == list(range(12))
    assert len(by_key(outcomes)) == 12


def test_run_tasks_empty() -> None:
    assert collect([], double, workers=2) == []


def test_max_tasks_per_child_recycles_workers() -> None:
    tasks = [Task(f"w{i}", i) for i in range(10)]
    outcomes = collect(tasks, whoami, workers=2, max_tasks_per_child=3)
    got = by_key(outcomes)
    assert len(got) == 10
    assert all(o.status == "ok" for o in outcomes)
    assert {o.value[0] for o in outcomes} == set(range(10))
    per_pid: dict[int, int] = {}
    for o in outcomes:
        per_pid[o.value[1]] = per_pid.get(o.value[1], 0) + 1
    assert max(per_pid.values()) <= 3
    assert len(per_pid) >= 4  # ceil(10 / 3)
    assert os.getpid() not in per_pid


def test_default_workers() -> None:
    assert default_workers() >= 1


# ------------------------------------------------------------------------- run_isolated
def test_run_isolated_ok() -> None:
    o = run_isolated(double, 21, key="k", limits=LIMITS)
    assert (o.key, o.status, o.value, o.error_code, o.message) == ("k", "ok", 42, None, None)


def test_run_isolated_failed() -> None:
    o = run_isolated(fail_emdig, 3, key="f", limits=LIMITS)
    assert (o.status, o.error_code, o.message) == ("failed", "truncated", "f3: cut")
    o = run_isolated(fail_bug, 3, key="b", limits=LIMITS)
    assert o.error_code == "internal_error" and "ZeroDivisionError" in str(o.message)


def test_run_isolated_timeout() -> None:
    limits = dataclasses.replace(LIMITS, seconds=0.5)
    t0 = time.monotonic()
    o = run_isolated(hang, 0, key="h", limits=limits)
    assert time.monotonic() - t0 < 5
    assert (o.key, o.status, o.error_code) == ("h", "timeout", "timeout")
    assert "0.5 s" in str(o.message)


def test_run_isolated_crash() -> None:
    o = run_isolated(segfault, 0, key="c", limits=LIMITS)
    assert (o.key, o.status, o.error_code) == ("c", "crashed", "crashed")
    assert "SIGSEGV" in str(o.message)


def test_run_isolated_memory() -> None:
    assert_memory_failure(run_isolated(hog, 0, key="m", limits=LIMITS))


# --------------------------------------------------------------------------- interrupts
def _helper_pids() -> set[int]:
    """multiprocessing's long-lived helpers (forkserver, resource tracker): not leaks."""
    pids = set()
    fs_pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    rt_pid = getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)
    for pid in (fs_pid, rt_pid):
        if pid is not None:
            pids.add(pid)
    return pids


def _live_descendants() -> list[psutil.Process]:
    live = []
    helpers = _helper_pids()
    for p in psutil.Process().children(recursive=True):
        if p.pid in helpers:
            continue
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                live.append(p)
        except psutil.NoSuchProcess:
            pass
    return live


def test_keyboard_interrupt_in_callback_stops_workers() -> None:
    tasks = [Task("hang", ("hang", 0))] + [Task(f"s{i}", ("slow_ok", i)) for i in range(20)]
    seen: list[Outcome] = []
    live_during: list[int] = []

    def on_outcome(o: Outcome) -> None:
        seen.append(o)
        live_during.append(len(_live_descendants()))
        if len(seen) == 2:
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, dispatch, on_outcome=on_outcome, workers=2, limits=LIMITS)
    assert time.monotonic() - t0 < 10
    assert len(seen) == 2
    assert live_during[-1] >= 2  # the check below does see live workers
    deadline = time.monotonic() + 5
    while (left := _live_descendants()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], [(p.pid, p.cmdline()) for p in left]


# --------------------------------------------------------------------------------- dask
@pytest.fixture()
def dask_cluster() -> Iterator[object]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    try:
        yield cluster
    finally:
        cluster.close()


DASK_TASKS = [
    Task("ok1", ("double", 1)),
    Task("fail", ("fail_emdig", 2)),
    Task("hang", ("hang", 3)),
    Task("bug", ("fail_bug", 4)),
    Task("crash", ("segfault", 5)),
    *(Task(f"ok{i}", ("double", i)) for i in range(6, 12)),
]


def check_dask(outcomes: list[Outcome]) -> None:
    got = by_key(outcomes)
    assert set(got) == {t.key for t in DASK_TASKS}
    for i in [1, *range(6, 12)]:
        assert (got[f"ok{i}"].status, got[f"ok{i}"].value) == ("ok", 2 * i)
    assert (got["fail"].status, got["fail"].error_code) == ("failed", "truncated")
    assert got["fail"].message == "f2: cut"
    assert got["bug"].error_code == "internal_error"
    assert "ZeroDivisionError" in str(got["bug"].message)
    assert (got["hang"].status, got["hang"].error_code) == ("timeout", "timeout")
    assert (got["crash"].status, got["crash"].error_code) == ("crashed", "crashed")
    assert "SIGSEGV" in str(got["crash"].message)


@pytest.mark.slow
def test_run_tasks_on_dask(dask_cluster: object) -> None:
    outcomes: list[Outcome] = []
    run_tasks(
        DASK_TASKS,
        dispatch,
        on_outcome=outcomes.append,
        limits=LIMITS,
        dask_address=dask_cluster.scheduler_address,  # type: ignore[attr-defined]
    )
    check_dask(outcomes)
