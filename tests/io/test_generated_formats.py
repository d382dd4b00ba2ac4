"""Formats with no file in ../shared: Berkeley EMD and HyperSpy HSPY, generated here."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import emdig
from emdig.sample import make_sample_archive


def test_berkeley_emd(tmp_path: Path) -> None:
    p = tmp_path / "scan.h5"  # the extension does not matter
    with h5py.File(p, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("data/dataset_1")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=np.arange(48 * 64, dtype=np.uint16).reshape(48, 64))
        for name, n in (("dim1", 48), ("dim2", 64)):
            d = g.create_dataset(name, data=np.arange(n) * 0.05)
            d.attrs["name"], d.attrs["units"] = name, "n_m"
        m = f.create_group("microscope")
        m.attrs["high tension"] = 300_000.0
        m.attrs["magnification"] = 2e6
        m.attrs["camera length"] = 0.1
        m.attrs["convergence angle"] = 0.021
    assert emdig.sniff(p) == "berkeley_emd"
    [m] = emdig.read(p)
    assert sorted(m.shape) == [48, 64] and m.pixel_size_nm == pytest.approx(0.05)
    a = m.acquisition
    assert (a.voltage_kv, a.magnification, a.camera_length_mm) == (300.0, 2e6, 100.0)
    assert a.convergence_mrad == pytest.approx(21.0)


def test_hspy_with_hyperspy_metadata(tmp_path: Path) -> None:
    files = make_sample_archive(tmp_path, n=3)
    [m] = emdig.read(files[0])
    a = m.acquisition
    assert m.source.format == "hspy" and a.detector == "HAADF" and a.mode == "STEM"
    assert a.voltage_kv == 300.0 and a.dwell_us == pytest.approx(4.0)
    assert a.convergence_mrad == 25.0 and a.acquired_at == "2026-03-14T10:15:00"
