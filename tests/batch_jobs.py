"""Job functions for tests/test_batch.py.

They live in a plain module (not a test module) so that worker processes started by
emdig.batch can import them by name when unpickling the job.
"""

from __future__ import annotations

import os
import signal
import time

from emdig.errors import TruncatedFile


def double(x: int) -> int:
    return 2 * x


def fail_emdig(x: int) -> None:
    raise TruncatedFile("cut", path=f"f{x}")


def fail_bug(x: int) -> float:
    return x / 0


def hang(x: int) -> None:
    time.sleep(1000)


def segfault(x: int) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)  # the signal is delivered before this returns


def hog(x: int) -> int:
    block = bytearray(2 * 1024**3)
    return len(block)


def slow_ok(x: int) -> int:
    time.sleep(0.05)
    return x


def whoami(x: int) -> tuple[int, int]:
    """Return the payload and the worker's pid (to see worker recycling)."""
    return x, os.getpid()


def dispatch(payload: tuple[str, int]) -> object:
    """Run the job named ``payload[0]`` on ``payload[1]``: lets one run mix behaviours."""
    name, x = payload
    return JOBS[name](x)


JOBS = {
    "double": double,
    "fail_emdig": fail_emdig,
    "fail_bug": fail_bug,
    "hang": hang,
    "segfault": segfault,
    "hog": hog,
    "slow_ok": slow_ok,
    "whoami": whoami,
}
