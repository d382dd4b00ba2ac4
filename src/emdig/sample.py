"""A small generated archive of real instrument-format files, for the demo and tests.

The files are written with the same libraries a lab's software uses (RosettaSciIO's HyperSpy
writer, tifffile, mrcfile, Pillow), so reading them back exercises the real readers.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = ["make_sample_archive", "synthetic_stem"]


def synthetic_stem(
    shape: tuple[int, int] = (256, 256),
    *,
    pixel_nm: float = 0.02,
    spacing_nm: float = 0.39,
    probe_nm: float = 0.08,
    rotation_deg: float = 0.0,
    dose: float = 200.0,
    bright_field: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """A lattice of Gaussian atomic columns with Poisson noise (HAADF-like; inverted for BF).

    Returns uint16 counts.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) * pixel_nm
    t = np.deg2rad(rotation_deg)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    du = (u / spacing_nm) % 1.0 - 0.5
    dv = (v / spacing_nm) % 1.0 - 0.5
    r2 = (du**2 + dv**2) * spacing_nm**2
    signal = np.exp(-r2 / (2 * probe_nm**2))
    if bright_field:
        signal = 1.0 - 0.6 * signal
    expected = dose * (0.1 + signal)
    return rng.poisson(expected).astype(np.uint16)


def _write_hspy(
    path: Path, data: np.ndarray, pixel_nm: float, acq: dict[str, object], title: str
) -> None:
    from rsciio.hspy import file_writer

    axes = [
        {"name": n, "size": s, "scale": pixel_nm, "offset": 0.0, "units": "nm", "navigate": False}
        for n, s in zip(("y", "x"), data.shape, strict=True)
    ]
    md = {
        "General": {"title": title, "date": "2026-03-14", "time": "10:15:00"},
        "Signal": {"signal_type": ""},
        "Acquisition_instrument": {"TEM": acq},
    }
    file_writer(
        str(path),
        {
            "data": data,
            "axes": axes,
            "metadata": md,
            "original_metadata": {},
            "attributes": {"_lazy": False},
            "tmp_parameters": {},
            "package_info": {"package": "emdig", "package_version": "0"},
            "learning_results": {},
            "models": {},
        },
    )


def make_sample_archive(dest: str | Path, *, n: int = 12, seed: int = 0) -> list[Path]:
    """Write a mixed sample archive into ``dest`` and return the paths written.

    Contains HSPY files (HAADF and BF STEM series at several voltages and magnifications),
    an MRC stack, a calibrated TIFF, a PNG, a ZIP holding more HSPY files, a duplicate file
    under another name and one truncated file, so an ingest shows every outcome.
    """
    import mrcfile
    import tifffile
    from PIL import Image

    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rng = np.random.default_rng(seed)
    detectors = [("HAADF", 70.0, 200.0, False), ("BF", 0.0, 10.0, True), ("ABF", 11.0, 22.0, True)]
    for i in range(n):
        det, _inner, _outer, bf = detectors[i % len(detectors)]
        kv = (300.0, 200.0, 80.0)[i % 3]
        mag = float(rng.choice([5e6, 1e7, 2e7]))
        px = 0.04 * 1e7 / mag  # nm per pixel falls with magnification
        data = synthetic_stem(
            pixel_nm=px, rotation_deg=float(rng.uniform(0, 90)), bright_field=bf, seed=seed + i
        )
        acq = {
            "beam_energy": kv,
            "magnification": mag,
            "camera_length": 100.0,
            "convergence_angle": 25.0,
            "dwell_time": 4e-6,
            "microscope": "Demo STEM",
            "acquisition_mode": "STEM",
            "Stage": {"tilt_alpha": float(rng.uniform(-5, 5)), "tilt_beta": 0.0},
        }
        p = out / f"stem_{i:03d}_{det}.hspy"
        _write_hspy(p, data, px, acq, f"{det} {i}")
        written.append(p)
    stack = np.stack([synthetic_stem((128, 128), seed=100 + k) for k in range(3)])
    mrc = out / "tomo_stack.mrc"
    with mrcfile.new(str(mrc), overwrite=True) as m:
        m.set_data(stack)
        m.voxel_size = 0.3  # Å
    written.append(mrc)
    tif = out / "overview.tif"
    tifffile.imwrite(
        tif,
        synthetic_stem((200, 300), pixel_nm=0.5, spacing_nm=4.0, probe_nm=1.0),
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "nm"},
    )
    written.append(tif)
    png = out / "snapshot.png"
    Image.fromarray((synthetic_stem((96, 96), seed=7) // 4).astype(np.uint8)).save(png)
    written.append(png)
    archive = out / "session_2026-03.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for k in range(3):
            member = out / f"_zip_{k}.hspy"
            _write_hspy(
                member,
                synthetic_stem(seed=200 + k),
                0.02,
                {
                    "beam_energy": 300.0,
                    "magnification": 1e7,
                    "microscope": "Demo STEM",
                    "acquisition_mode": "STEM",
                },
                f"HAADF zip {k}",
            )
            z.write(member, f"session/scan_{k}.hspy")
            member.unlink()
    written.append(archive)
    dup = out / "copy_of_stem_000.hspy"
    dup.write_bytes(written[0].read_bytes())
    written.append(dup)
    broken = out / "broken_transfer.tif"
    broken.write_bytes(tif.read_bytes()[: tif.stat().st_size // 3])
    written.append(broken)
    return written
