"""Shared fixtures: ../shared/data (skipped when absent) and generated bad files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # so `from data.badfiles import ...` works everywhere

SHARED = TESTS.parent.parent / "shared" / "data"
INSTRUMENT_FILES = SHARED / "instrument-files"


@pytest.fixture(scope="session")
def instrument_dir() -> Path:
    if not (INSTRUMENT_FILES / "manifest.json").is_file():
        pytest.skip(f"shared instrument files not found at {INSTRUMENT_FILES}")
    return INSTRUMENT_FILES


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | list[Path]]:
    from data.badfiles import build_all

    return build_all(tmp_path_factory.mktemp("bad"))


@pytest.fixture()
def catalog_path(tmp_path: Path) -> Path:
    return tmp_path / "cat.db"
