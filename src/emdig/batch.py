"""Isolated, resumable batch jobs: a local process pool, or Dask distributed.

Every item runs in a worker process under a wall-clock limit and an address-space limit, so a
parser that hangs, crashes natively or balloons costs that one item, never the batch. The
runner knows nothing about files or catalogs: it takes :class:`Task` objects and a job function
and reports one :class:`Outcome` per task through a callback. Callers (ingest, and later batch
commands) record outcomes durably and skip finished keys on the next run, which is what makes a
killed run resumable with every item done exactly once.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import resource
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from .errors import EmdigError
from .io.limits import Limits

__all__ = ["Outcome", "Task", "default_workers", "run_tasks"]

log = logging.getLogger(__name__)

Status = Literal["ok", "failed", "timeout", "crashed"]
Job = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a unique ``key`` and a picklable ``payload`` for the job."""

    key: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one task.

    ``status`` is ``"ok"`` (``value`` holds the job's return value), ``"failed"`` (the job
    raised; ``error_code`` and ``message`` say why), ``"timeout"`` or ``"crashed"`` (the worker
    died: a native crash, or killed for memory).
    """

    key: str
    status: Status
    value: Any = None
    error_code: str | None = None
    message: str | None = None
    seconds: float = 0.0


def default_workers() -> int:
    """One worker per available core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------------- in the worker
def _limit_memory(limits: Limits) -> None:
    if limits.memory_bytes > 0:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        except (ValueError, OSError):  # pragma: no cover - platform refuses
            log.warning("could not set the worker memory limit")


def _call(job: Job, payload: Any) -> tuple[Status, Any, str | None, str | None]:
    try:
        return "ok", job(payload), None, None
    except EmdigError as e:
        return "failed", None, e.code, str(e)
    except MemoryError:
        return "failed", None, "memory", "ran out of memory within the worker's memory limit"
    except RecursionError:
        return "failed", None, "nesting_depth", "data nested too deep for the parser"
    except Exception as e:  # a bug or an unmapped parser error: record it, keep going
        return "failed", None, "internal_error", f"{type(e).__name__}: {e}"[:500]


def _worker_main(conn: Connection, job: Job, limits: Limits) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C means
    _limit_memory(limits)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        key, payload = msg
        t0 = time.perf_counter()
        status, value, code, message = _call(job, payload)
        conn.send((key, status, value, code, message, time.perf_counter() - t0))


def _single_main(conn: Connection, job: Job, payload: Any, limits: Limits) -> None:
    _limit_memory(limits)
    t0 = time.perf_counter()
    status, value, code, message = _call(job, payload)
    conn.send((status, value, code, message, time.perf_counter() - t0))


def _death_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (likely killed for memory)" if name == "SIGKILL" else ""
        return f"worker process died with {name}{hint}"
    return f"worker process exited unexpectedly with code {exitcode}"


# Imported once in the fork server, so every worker starts warm (readers are the usual job).
_PRELOAD = [
    "emdig.ingest",
    "rsciio.digitalmicrograph",
    "rsciio.tiff",
    "rsciio.emd",
    "rsciio.tia",
    "h5py",
    "tifffile",
    "PIL.Image",
    "PIL.PngImagePlugin",
]


def _context() -> Any:
    # forkserver: workers start clean even when the parent runs threads (progress bars, dask)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def run_isolated(job: Job, payload: Any, *, key: str = "", limits: Limits | None = None) -> Outcome:
    """Run one job in a fresh child process with the time and memory limits."""
    lim = limits or Limits.from_env()
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_single_main, args=(child, job, payload, lim), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    child.close()
    try:
        if parent.poll(lim.seconds):
            try:
                status, value, code, message, secs = parent.recv()
                return Outcome(key, status, value, code, message, secs)
            except EOFError:
                proc.join(5)
                return Outcome(
                    key,
                    "crashed",
                    None,
                    "crashed",
                    _death_message(proc.exitcode),
                    time.perf_counter() - t0,
                )
        return Outcome(
            key,
            "timeout",
            None,
            "timeout",
            f"gave no result within the {lim.seconds:g} s time limit",
            time.perf_counter() - t0,
        )
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()


# ---------------------------------------------------------------------- local pool
class _Worker:
    """One worker process and the tasks sent to it, in order; the first one is running."""

    def __init__(self, ctx: Any, job: Job, limits: Limits) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, job, limits), daemon=True)
        self.proc.start()
        child.close()
        self.tasks: deque[Task] = deque()
        self.started = 0.0  # when the running task started
        self.done = 0

    def send(self, task: Task) -> None:
        if not self.tasks:
            self.started = time.perf_counter()
        self.tasks.append(task)
        self.conn.send((task.key, task.payload))

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                self.proc.kill()
        self.proc.join(2 if not kill else 5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


# Tasks queued per worker: the next one waits in the pipe, so a worker never idles while the
# parent stores the previous result.
_DEPTH = 2


def _run_local(
    tasks: Iterator[Task],
    job: Job,
    on_outcome: Callable[[Outcome], None],
    workers: int,
    limits: Limits,
    max_tasks_per_child: int,
) -> None:
    ctx = _context()
    pool: list[_Worker] = []
    retry: deque[Task] = deque()  # tasks queued behind one that crashed or timed out
    exhausted = False

    def next_task() -> Task | None:
        nonlocal exhausted
        if retry:
            return retry.popleft()
        if exhausted:
            return None
        t = next(tasks, None)
        exhausted = t is None
        return t

    def replace(i: int, outcome: Outcome) -> None:
        w = pool[i]
        w.stop(kill=True)
        w.tasks.popleft()
        retry.extend(w.tasks)  # not started: run them on another worker
        pool[i] = _Worker(ctx, job, limits)
        on_outcome(outcome)

    try:
        for _ in range(workers):
            pool.append(_Worker(ctx, job, limits))
        while True:
            for i, w in enumerate(pool):
                if not w.tasks and w.done >= max_tasks_per_child:  # bounds slow leaks
                    w.stop()
                    w = pool[i] = _Worker(ctx, job, limits)
                while len(w.tasks) < _DEPTH and w.done + len(w.tasks) < max_tasks_per_child:
                    t = next_task()
                    if t is None:
                        break
                    w.send(t)
            busy = [w for w in pool if w.tasks]
            if not busy:
                return
            now = time.perf_counter()
            timeout = max(0.0, min(w.started + limits.seconds for w in busy) - now)
            ready = wait([w.conn for w in busy], timeout=timeout)
            for i, w in enumerate(pool):
                if not w.tasks:
                    continue
                task = w.tasks[0]
                elapsed = time.perf_counter() - w.started
                if w.conn in ready:
                    try:
                        key, status, value, code, message, secs = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(5)
                        msg = _death_message(w.proc.exitcode)
                        replace(i, Outcome(task.key, "crashed", None, "crashed", msg, elapsed))
                        continue
                    w.tasks.popleft()
                    w.started = time.perf_counter()
                    w.done += 1
                    on_outcome(Outcome(key, status, value, code, message, secs))
                elif elapsed >= limits.seconds:
                    msg = f"gave no result within the {limits.seconds:g} s time limit"
                    replace(i, Outcome(task.key, "timeout", None, "timeout", msg, elapsed))
    finally:
        for w in pool:
            w.stop(kill=bool(w.tasks))


# ---------------------------------------------------------------------------- dask
def _dask_task(job: Job, payload: Any, key: str, limits: Limits) -> Outcome:
    return run_isolated(job, payload, key=key, limits=limits)


def _run_dask(
    tasks: Iterator[Task],
    job: Job,
    on_outcome: Callable[[Outcome], None],
    address: str,
    limits: Limits,
) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as e:  # pragma: no cover - a dependency
        raise EmdigError("the Dask path needs distributed: pip install 'dask[distributed]'") from e
    with Client(address, set_as_default=False) as client:
        window = max(4, 4 * sum(client.nthreads().values()))
        ac = as_completed(loop=client.loop)
        in_flight = 0

        def submit_next() -> bool:
            t = next(tasks, None)
            if t is None:
                return False
            ac.add(
                client.submit(
                    _dask_task,
                    job,
                    t.payload,
                    t.key,
                    limits,
                    pure=False,
                    key=f"emdig-{t.key[:40]}-{time.monotonic_ns()}",
                )
            )
            return True

        while in_flight < window and submit_next():
            in_flight += 1
        for fut in ac:
            outcome = fut.result()
            in_flight -= 1
            on_outcome(outcome)
            if submit_next():
                in_flight += 1


def run_tasks(
    tasks: Iterable[Task],
    job: Job,
    *,
    on_outcome: Callable[[Outcome], None],
    workers: int | None = None,
    limits: Limits | None = None,
    dask_address: str | None = None,
    max_tasks_per_child: int = 10_000,
) -> None:
    """Run ``job(task.payload)`` for every task in isolated worker processes.

    Parameters
    ----------
    tasks
        Iterable of :class:`Task`; consumed lazily.
    job
        A picklable top-level function. It may raise :class:`~emdig.errors.EmdigError`
        (recorded as ``failed`` with its code) or anything else (``internal_error``).
    on_outcome
        Called in the parent, in completion order, once per task.
    workers
        Local worker processes; default one per core.
    limits
        ``seconds`` (wall clock per task) and ``memory_bytes`` (per worker) are used.
    dask_address
        Scheduler address (``tcp://host:8786``): run on Dask distributed instead, each task
        in its own child process on the Dask worker with the same limits.
    max_tasks_per_child
        Local workers are replaced after this many tasks.

    Raises
    ------
    KeyboardInterrupt
        Propagated after all workers are stopped; finished outcomes were already reported.
    """
    lim = limits or Limits.from_env()
    it = iter(tasks)
    if dask_address:
        _run_dask(it, job, on_outcome, dask_address, lim)
    else:
        _run_local(it, job, on_outcome, workers or default_workers(), lim, max_tasks_per_child)
