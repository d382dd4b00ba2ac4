"""The fast DM reader returns what RosettaSciIO returns: pixels, calibration, title, metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rsciio.digitalmicrograph import file_reader

from emdig.io.dm import read_dm
from emdig.io.tags import flatten

from data import badfiles


def _dm_files(instrument_dir: Path, tmp: Path) -> list[Path]:
    return [*sorted(instrument_dir.rglob("*.dm3")), badfiles.valid_dm3(tmp)]


def _scalar_leaves(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flatten(tree).items() if isinstance(v, int | float | str)}


@pytest.mark.shared_data
def test_fast_reader_matches_rosettasciio(instrument_dir: Path, tmp_path: Path) -> None:
    files = _dm_files(instrument_dir, tmp_path)
    assert len(files) >= 12
    for path in files:
        fast, ref = read_dm(path), file_reader(str(path))
        assert len(fast) == len(ref), path
        for a, b in zip(fast, ref, strict=True):
            assert a["metadata"]["General"]["title"] == b["metadata"]["General"].get("title", "")
            assert a["data"].shape == np.shape(b["data"])
            if a["data"].strides != (0,) * a["data"].ndim:  # skipped spectra are stand-ins
                np.testing.assert_array_equal(a["data"], np.asarray(b["data"]))
            for x, y in zip(a["axes"], b["axes"], strict=True):
                assert x["scale"] == pytest.approx(float(y["scale"]))
                assert (x["units"] or "") == (y["units"] or "")
            assert _scalar_leaves(a["original_metadata"]) == _scalar_leaves(b["original_metadata"])


def test_prescan_accepts_string_and_nested_arrays(tmp_path: Path) -> None:
    """Arrays of strings and arrays of arrays are valid DM types (RosettaSciIO reads them)."""
    from emdig.io.limits import Limits
    from emdig.io.prescan import _dm_data_size

    p = tmp_path / "x.dm3"
    assert _dm_data_size([20, 18, 5, 3], p, "names", 0) == 30
    assert _dm_data_size([20, 20, 4, 6, 2], p, "pairs", 0) == 24
    assert Limits().max_nesting == 64
