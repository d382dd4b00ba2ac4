"""Every shared instrument file reads with correct metadata.

Numbers (voltage, pixel size, magnification, camera length, dwell, convergence) are checked
against ``manifest.json``, which holds the values RosettaSciIO 0.15 read back independently.
Mode and detector are checked against the table below, written from what each file is (a SAED
pattern is diffraction even where RosettaSciIO says "TEM"; the manifest's "detector" is
sometimes a mode string such as "MAG").
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

import emdig

pytestmark = pytest.mark.shared_data

# file -> (mode, detector); detector None where the file does not record one
EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "bcf_v2_50x50px.bcf": ("SEM", "Ch 1"),
    "dm3_Fei_HAADF-DE_location.dm3": ("STEM", "HAADF"),
    "dm3_Fei_HAADF-FR_location.dm3": ("STEM", "HAADF"),
    "dm3_Fei_HAADF-MX_location.dm3": ("STEM", "HAADF"),
    "dm3_Fei_HAADF-UK_location.dm3": ("STEM", "HAADF"),
    "dm3_multi_signal_HAADF.dm3": ("STEM", "HAADF"),
    "dm3_test-EELS_spectrum.dm3": (None, None),  # a spectrum: no image
    "dm3_test_STEM_image.dm3": ("STEM", "HAADF"),  # QuickSaved "Fei HAADF"
    "dm3_test_diffraction_pattern.dm3": ("diffraction", "camera"),
    "dm3_test_dm_image_um_unit.dm3": ("TEM", "camera"),
    "dm3_test_stackbuilder_imagestack.dm3": ("STEM", "DigiScan"),
    "jeol_View000_0000000.img": (None, None),
    "jeol_View002_0000000_BF.img": (None, "BF"),
    "mrc_HAADFscan_FEI2-extheader.mrc": ("STEM", "HAADF"),
    "prz_panta_rhei_sample.prz": ("STEM", "ADF"),
    "tia_03_Scanning_Preview.emi": ("STEM", None),
    "tia_128x128-TEM_search.emi": ("TEM", "camera"),
    "tia_128x128_TEM_acquire-sum1.emi": ("TEM", "camera"),
    "tia_16x16_STEM_BF_DF_acquire.emi": ("STEM", None),
    "tia_64x64_TEM_images_acquire.emi": ("TEM", "camera"),
    "tia_64x64_diffraction_acquire.emi": ("diffraction", "camera"),
    "tiff_FEI-Helios-Ebeam-8bits.tif": ("SEM", "SE"),
    "tiff_JEOL-SightX-Ronchigram-dummy.tif": ("STEM", None),
    "tiff_JEOL-SightX-SAED-dummy.tif": ("diffraction", None),
    "tiff_JEOL-SightX-TEM-mag-dummy.tif": ("TEM", None),
    "tiff_TVIPS_bin4.tif": ("TEM", "camera"),
    "tiff_ZEISS_SEM_multipage.tif": ("SEM", "SE"),
    "tiff_Zeiss_SEM_1k.tif": ("SEM", "SE"),
    "tiff_Zeiss_SEM_512pix.tif": ("SEM", None),
    "velox_Test_SI_16x16_215_kx.emd": ("STEM", None),  # per image below
    "velox_fei_example_dpc_titles.emd": ("STEM", "DF"),
    "velox_fei_example_tem_stack.emd": ("TEM", "camera"),
}
# Velox SI: element maps carry the EDS detector's name, the HAADF image its own
VELOX_SI_DETECTOR = {
    "HAADF": "HAADF",
    "C": "SuperXG2",
    "Ca": "SuperXG2",
    "O": "SuperXG2",
    "Cu": "SuperXG2",
}

_UNIT_NM = {"m": 1e9, "mm": 1e6, "µm": 1e3, "nm": 1.0, "pm": 1e-3}
_SPECTRAL = {"eV", "keV"}


def _manifest(instrument_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((instrument_dir / "manifest.json").read_text())
    return {f["file"]: f for f in data["files"]}


def _expected_images(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand the manifest's signals into the 2-D images emdig should return, in order."""
    images = []
    for sig in entry["signals"]:
        shape, axes = sig["shape"], sig["axes"]
        if "complex" in sig["dtype"] or len(shape) < 2 or len(shape) > 3:
            continue
        if any(a["units"] in _SPECTRAL for a in axes):
            continue
        frames = shape[0] if len(shape) == 3 else 1
        images += [sig] * frames
    return images


def _pixel_nm(sig: dict[str, Any]) -> float | None:
    x = sig["axes"][-1]
    units = (x["units"] or "").strip()
    if units not in _UNIT_NM:
        return None
    return float(x["scale"]) * _UNIT_NM[units]


def _num(v: Any) -> float | None:
    if isinstance(v, list):  # Zeiss (label, value[, unit])
        v = v[1]
    if isinstance(v, str):
        m = re.match(r"\s*([\d.]+)\s*(K)?", v)
        return None if not m else float(m.group(1)) * (1e3 if m.group(2) else 1.0)
    return None if v is None else float(v)


def _close(a: float | None, b: float | None, rel: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _files(instrument_dir: Path) -> list[str]:
    return sorted(f for f in EXPECTED if (instrument_dir / f).exists())


def test_every_manifest_image_file_has_an_expectation(instrument_dir: Path) -> None:
    listed = {f for f in _manifest(instrument_dir) if not f.endswith(".ser")}
    assert listed == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reads_with_correct_metadata(instrument_dir: Path, name: str) -> None:
    entry = _manifest(instrument_dir)[name]
    expected = _expected_images(entry)
    micrographs = emdig.read(instrument_dir / name)
    assert len(micrographs) == len(expected), [m.source.signal for m in micrographs]
    mode, detector = EXPECTED[name]
    for i, (m, sig) in enumerate(zip(micrographs, expected, strict=True)):
        key = sig["key_params"]
        acq = m.acquisition
        assert m.pixels.ndim == 2 and list(m.shape) == sig["shape"][-2:]
        assert m.source.index == i and m.source.sha256 and m.source.format
        assert _close(m.pixel_size_nm, _pixel_nm(sig)), (m.pixel_size_nm, sig["axes"][-1])
        if "beam_energy_kV" in key:  # (MRC: rsciio reads no voltage; checked below)
            assert _close(acq.voltage_kv, key["beam_energy_kV"]), acq.voltage_kv
        assert acq.mode == mode
        want_det = VELOX_SI_DETECTOR.get(str(sig["title"])) if "Test_SI" in name else detector
        assert acq.detector == want_det
        if "magnification" in key and mode != "diffraction":
            assert _close(acq.magnification, _num(key["magnification"]))
        if "camera_length_mm" in key:
            want_cl = key["camera_length_mm"]
            if name.startswith("prz_"):  # stored in metres; RosettaSciIO copies it unconverted
                want_cl *= 1e3
            assert _close(acq.camera_length_mm, want_cl)
        if "dwell_time_s" in key:
            dwell = key["dwell_time_s"]
            want_us = _num(dwell) * (1e-3 if isinstance(dwell, str) and "ns" in dwell else 1e6)
            assert _close(acq.dwell_us, want_us), (acq.dwell_us, dwell)
        if "convergence_semiangle_mrad" in key:
            assert _close(acq.convergence_mrad, key["convergence_semiangle_mrad"], rel=1e-2)
        if isinstance(key.get("collection_angles_mrad"), list):
            inner, outer = key["collection_angles_mrad"]
            # the manifest rounds these to 0.1 mrad
            assert acq.collection_inner_mrad == pytest.approx(inner, abs=0.05)
            assert acq.collection_outer_mrad == pytest.approx(outer, abs=0.05)


def test_parameters_rosettasciio_leaves_unmapped(instrument_dir: Path) -> None:
    """Dwell, convergence, collection angles, detector, camera length and tilt come from
    ``original_metadata`` (or the MRC FEI2 extended header), which RosettaSciIO does not map."""
    [mrc] = emdig.read(instrument_dir / "mrc_HAADFscan_FEI2-extheader.mrc")
    a = mrc.acquisition
    assert a.detector == "HAADF" and a.voltage_kv == 300.0
    assert _close(a.camera_length_mm, 91.1) and _close(a.convergence_mrad, 14.3273244, rel=1e-6)
    assert a.dwell_us == pytest.approx(1e4) and a.instrument == "Spectra"
    dpc = emdig.read(instrument_dir / "velox_fei_example_dpc_titles.emd")[0].acquisition
    assert dpc.dwell_us == pytest.approx(10.0)
    assert dpc.tilt_alpha_deg == pytest.approx(4.673, abs=1e-3)  # stored in radians
    assert dpc.collection_inner_mrad == pytest.approx(0.6, abs=0.01)
    tia = emdig.read(instrument_dir / "tia_16x16_STEM_BF_DF_acquire.emi")[0].acquisition
    assert tia.dwell_us == pytest.approx(48.0)  # DwellTimePath, which rsciio maps to exposure
    cam = emdig.read(instrument_dir / "tia_128x128-TEM_search.emi")[0].acquisition
    assert cam.dwell_us is None  # for a camera DwellTimePath is the exposure, not a dwell
    zeiss = emdig.read(instrument_dir / "tiff_Zeiss_SEM_1k.tif")[0].acquisition
    assert zeiss.beam_current_pa == pytest.approx(1000.0) and zeiss.magnification == 105.0


def test_extension_is_not_trusted(instrument_dir: Path, tmp_path: Path) -> None:
    src = instrument_dir / "dm3_multi_signal_HAADF.dm3"
    renamed = tmp_path / "scan.tif"
    renamed.write_bytes(src.read_bytes())
    [m] = emdig.read(renamed)
    assert m.source.format == "dm3" and m.acquisition.detector == "HAADF"
    jeol = tmp_path / "view.dat"
    jeol.write_bytes((instrument_dir / "jeol_View002_0000000_BF.img").read_bytes())
    assert emdig.read(jeol)[0].acquisition.magnification == 1_500_000


def test_index_selects_one_image(instrument_dir: Path) -> None:
    path = instrument_dir / "tia_03_Scanning_Preview.emi"
    [third] = emdig.read(path, index=2)
    assert third.source.index == 2
    with pytest.raises(emdig.EmdigError, match="index 9 does not exist"):
        emdig.read(path, index=9)
