"""Synthetic STEM archive: images whose pixels carry the physical trace of their metadata.

The demo, test and benchmark data of the contrastive (image-metadata) model. Each image is a
specimen's projected scattering, convolved with the probe, seen through a detector's collection
angles, sampled by a scan with its distortions, and recorded with shot noise:

- voltage and convergence semi-angle set the probe (relativistic wavelength, diffraction limit,
  spherical aberration, source size), the scattering cross-sections and the depth of field;
- magnification sets the pixel size: ``pixel_size_nm = scan_k_nm / magnification`` with a fixed
  scan calibration per instrument (``scan_k_nm`` of :data:`INSTRUMENTS`), whatever the image size;
- detector and camera length set the collection angles (fixed physical radii, angles as
  ``atan(r / L)``) and hence the contrast: screened-Rutherford (Wentzel) cross-sections into the
  annulus for dark field, out-scattering, annular-bright-field dips and phase contrast for the
  part of the detector inside the bright-field disk; a low-angle ADF detector (inner angle
  within ~3 α) also collects coherent scattering: bend contours of a foil, the Bragg
  excitation of particles, boundary strain and the speckle of amorphous matter, which HAADF
  does not see;
- dwell time and beam current set the dose (``I t / e`` electrons per pixel) and so the shot noise;
  dwell also sets the frame time (drift shear), the mains-interference period in lines, the
  fly-back distortion width and the amplifier streaking; current also sets the source size;
- stage tilt foreshortens the film plane by ``cos(tilt)`` across the tilt axis and elongates
  crystal columns by ``z tan(tilt)`` with depth; scan rotation turns the specimen on screen.

The archive (:func:`sample_params`) is made of sessions that keep the optics, detector, camera
length, current, tilt and scan rotation and vary magnification and dwell; each detector works
in its own angular regime (:data:`DETECTOR_REGIMES`), and operators keep only images whose
structure stands out of the shot noise (they lengthen the dwell until it does).

Conventions: image coordinates are ``(col, row)``, row down. A positive ``scan_rotation_deg``
turns the specimen counterclockwise on screen. ``tilt_alpha_deg`` tilts about the stage x axis
(foreshortens stage y), ``tilt_beta_deg`` about stage y (foreshortens stage x).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DETECTOR_REGIMES",
    "INSTRUMENTS",
    "SPECIMENS",
    "StemParams",
    "camera_lengths_for",
    "collection_angles_mrad",
    "electrons_per_pixel",
    "make_params",
    "pixel_size_nm",
    "probe_fwhm_nm",
    "sample_params",
    "simulate_archive",
    "simulate_image",
    "wavelength_pm",
    "write_image",
]

log = logging.getLogger(__name__)

# CODATA 2018
_H = 6.62607015e-34  # J s
_ME = 9.1093837015e-31  # kg
_QE = 1.602176634e-19  # C
_C = 299792458.0  # m/s
_A0_NM = 0.0529177210903  # Bohr radius
_COL_AREA_NM2 = math.pi * 0.04**2  # area a channelling column scatters from
_N_SLICES = 5
_SPECKLE = 0.5  # relative speckle of amorphous matter's low-angle scattering (c_diff = 1)
_CHANNEL_SPREAD = 0.25  # probe spread in a channelling crystal / geometric spread
# projected-potential phase per atom, rad nm^2 at 200 kV, over Z^0.55: σ ∫V dA with
# σ = 7.29e-3 rad/(V nm) and ∫V dA = 0.479 V nm^2 per Å of f_e(0) ≈ 0.75 Z^0.55 Å
_PHASE_K = 2.6e-3


# ------------------------------------------------------------------------------- physics
def wavelength_pm(voltage_kv: float) -> float:
    """Relativistic electron wavelength in pm: ``h / sqrt(2 m e V (1 + e V / (2 m c^2)))``."""
    v = voltage_kv * 1e3
    p = math.sqrt(2.0 * _ME * _QE * v * (1.0 + _QE * v / (2.0 * _ME * _C**2)))
    return _H / p * 1e12


def _gamma(voltage_kv: float) -> float:
    return 1.0 + _QE * voltage_kv * 1e3 / (_ME * _C**2)


def probe_fwhm_nm(
    voltage_kv: float,
    convergence_mrad: float,
    *,
    cs_mm: float,
    source_nm: float,
) -> float:
    """Probe FWHM in nm: diffraction, spherical aberration and source size in quadrature.

    ``sqrt((0.61 λ/α)^2 + (0.05 Cs α^3)^2 + d_source^2)``: the diffraction limit, the
    aberration blur at the defocus that balances it (the factor 0.05 makes the best probe of an
    uncorrected column the textbook 0.43 Cs^(1/4) λ^(3/4), reached at α = 1.64 (λ/Cs)^(1/4))
    and the demagnified source. On a corrected column (Cs ~ µm) the probe shrinks as α grows;
    on an uncorrected one it has that minimum and grows beyond it.
    """
    lam_nm = wavelength_pm(voltage_kv) * 1e-3
    a = convergence_mrad * 1e-3
    d_diff = 0.61 * lam_nm / a
    d_cs = 0.05 * cs_mm * 1e6 * a**3
    return math.sqrt(d_diff**2 + d_cs**2 + source_nm**2)


def electrons_per_pixel(beam_current_pa: float, dwell_us: float) -> float:
    """Dose per pixel: ``I t / e``."""
    return beam_current_pa * 1e-12 * dwell_us * 1e-6 / _QE


def _wentzel_nm2(z: float, voltage_kv: float, lo_mrad: float, hi_mrad: float) -> float:
    """Screened-Rutherford (Wentzel) elastic cross-section into ``[lo, hi]`` mrad, in nm^2.

    ``σ = γ² Z² λ⁴ / (4 π³ a0²) [1/(θ1²+θ0²) − 1/(θ2²+θ0²)]``, with the Thomas-Fermi screening
    angle ``θ0 = λ / (2 π a)``, ``a = 0.885 a0 Z^(-1/3)``. Light elements and low angles give a
    weaker Z dependence (screening), high angles approach Z².
    """
    if hi_mrad <= lo_mrad:
        return 0.0
    lam = wavelength_pm(voltage_kv) * 1e-3
    g = _gamma(voltage_kv)
    t0 = lam / (2 * math.pi * 0.885 * _A0_NM * z ** (-1.0 / 3.0))
    t1, t2 = lo_mrad * 1e-3, hi_mrad * 1e-3
    inv2 = 0.0 if math.isinf(t2) else 1.0 / (t2 * t2 + t0 * t0)
    return (
        g * g * z * z * lam**4 / (4 * math.pi**3 * _A0_NM**2) * (1.0 / (t1 * t1 + t0 * t0) - inv2)
    )


# ------------------------------------------------------------------------------- instruments
@dataclass(frozen=True)
class Instrument:
    """One microscope: its discrete settings and the traits its images carry.

    Radii are the detectors' physical inner/outer radii in mm; ``scan_k_nm`` is the scan
    calibration (``pixel_size_nm = scan_k_nm / magnification``); ``mains_hz``/``mains_nm``
    the stray-field interference; ``settle_us`` the scan-coil settling after fly-back;
    ``amp_tau_us`` the detector amplifier's time constant; ``pmt_shape`` the gamma shape of the
    single-electron pulse height (excess noise factor ``1 + 1/shape``).
    """

    name: str
    voltages_kv: tuple[float, ...]
    convergences_mrad: tuple[float, ...]
    cs_mm: float
    source_nm: float
    scan_k_nm: float
    magnifications: tuple[float, ...]
    camera_lengths_mm: tuple[float, ...]
    detectors: dict[str, tuple[float, float]]
    dwells_us: tuple[float, ...]
    currents_pa: tuple[float, ...]
    mains_hz: float
    mains_nm: float
    jitter_nm: float
    flyback_us: float
    settle_us: float
    amp_tau_us: float
    pmt_shape: float
    years: tuple[int, int]


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        Instrument(
            name="Spectra 300",
            voltages_kv=(60.0, 80.0, 120.0, 200.0, 300.0),
            convergences_mrad=(17.9, 21.4, 25.0, 30.0),
            cs_mm=0.002,
            source_nm=0.035,
            scan_k_nm=4.0e5,
            magnifications=(
                *(x * 1e3 for x in (640, 910)),
                *(x * 1e6 for x in (1.3, 1.8, 2.55, 3.6, 5.1, 7.2, 10, 14.5, 20.5, 29, 41)),
            ),
            camera_lengths_mm=(46.0, 58.0, 73.0, 91.0, 115.0, 145.0, 185.0, 230.0),
            detectors={
                "HAADF": (6.9, 23.0),
                "ADF": (2.3, 6.9),
                "ABF": (1.2, 2.3),
                "BF": (0.0, 1.0),
            },
            dwells_us=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
            currents_pa=(5.0, 10.0, 20.0, 40.0, 80.0, 150.0),
            mains_hz=50.0,
            mains_nm=0.012,
            jitter_nm=0.004,
            flyback_us=200.0,
            settle_us=15.0,
            amp_tau_us=0.25,
            pmt_shape=6.0,
            years=(2019, 2025),
        ),
        Instrument(
            name="JEM-ARM200F",
            voltages_kv=(80.0, 120.0, 200.0),
            convergences_mrad=(22.0, 24.0, 27.5),
            cs_mm=0.005,
            source_nm=0.045,
            scan_k_nm=3.2e5,
            magnifications=(
                *(x * 1e6 for x in (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10, 12, 15, 20, 25)),
                *(x * 1e6 for x in (30, 40)),
            ),
            camera_lengths_mm=(40.0, 50.0, 60.0, 80.0, 100.0, 120.0, 150.0, 200.0),
            detectors={
                "HAADF": (4.5, 16.0),
                "ADF": (1.8, 4.5),
                "ABF": (1.0, 2.0),
                "BF": (0.0, 0.8),
            },
            dwells_us=(1.0, 2.0, 5.0, 10.0, 20.0, 38.0),
            currents_pa=(8.0, 15.0, 25.0, 50.0, 100.0),
            mains_hz=60.0,
            mains_nm=0.02,
            jitter_nm=0.006,
            flyback_us=400.0,
            settle_us=30.0,
            amp_tau_us=0.6,
            pmt_shape=3.0,
            years=(2013, 2023),
        ),
        Instrument(
            name="Tecnai F20",
            voltages_kv=(120.0, 200.0),
            convergences_mrad=(9.6, 10.5, 13.5),
            cs_mm=1.2,
            source_nm=0.08,
            scan_k_nm=5.0e5,
            magnifications=(
                *(x * 1e3 for x in (450, 640, 910)),
                *(x * 1e6 for x in (1.3, 1.8, 2.55, 3.6, 5.1, 7.2, 10, 14.5)),
            ),
            camera_lengths_mm=(100.0, 130.0, 160.0, 200.0, 250.0, 330.0, 420.0),
            detectors={"HAADF": (8.0, 30.0), "ADF": (3.0, 8.0), "BF": (0.0, 1.6)},
            dwells_us=(2.0, 4.0, 8.0, 16.0, 32.0),
            currents_pa=(10.0, 25.0, 50.0, 100.0),
            mains_hz=50.0,
            mains_nm=0.03,
            jitter_nm=0.01,
            flyback_us=600.0,
            settle_us=40.0,
            amp_tau_us=1.0,
            pmt_shape=2.5,
            years=(2006, 2016),
        ),
    )
}


def pixel_size_nm(instrument: str, magnification: float) -> float:
    """``scan_k_nm / magnification`` of the instrument's fixed scan calibration."""
    return INSTRUMENTS[instrument].scan_k_nm / magnification


def collection_angles_mrad(
    instrument: str, detector: str, camera_length_mm: float
) -> tuple[float, float]:
    """Inner/outer collection semi-angles (mrad) of a detector's fixed radii at a camera length."""
    r_in, r_out = INSTRUMENTS[instrument].detectors[detector]
    return (
        round(1e3 * math.atan(r_in / camera_length_mm), 2),
        round(1e3 * math.atan(r_out / camera_length_mm), 2),
    )


# ------------------------------------------------------------------------------- specimens
@dataclass(frozen=True)
class _Site:
    fx: float
    fy: float
    z: int
    per_nm: float  # atoms per nm of column length (or per layer for 2-D materials)


@dataclass(frozen=True)
class _Lattice:
    a1: tuple[float, float]  # nm, film plane
    a2: tuple[float, float]
    sites: tuple[_Site, ...]
    two_d: bool = False


def _fcc001(a: float, z: int) -> _Lattice:
    return _Lattice((a / 2, 0.0), (0.0, a / 2), (_Site(0, 0, z, 1 / a),))


def _fcc110(a: float, z: int) -> _Lattice:
    d = math.sqrt(2) / a
    return _Lattice((a / math.sqrt(2), 0.0), (0.0, a), (_Site(0, 0, z, d), _Site(0.5, 0.5, z, d)))


def _perovskite(a: float, za: int, zb: int) -> _Lattice:
    d = 1 / a
    return _Lattice(
        (a, 0.0),
        (0.0, a),
        (
            _Site(0, 0, za, d),
            _Site(0.5, 0.5, zb, d),
            _Site(0.5, 0.5, 8, d),
            _Site(0.5, 0, 8, d),
            _Site(0, 0.5, 8, d),
        ),
    )


def _diamond110(a: float, z1: int, z2: int) -> _Lattice:
    d = math.sqrt(2) / a
    return _Lattice(
        (a / math.sqrt(2), 0.0),
        (0.0, a),
        (
            _Site(0, 0, z1, d),
            _Site(0, 0.25, z2, d),
            _Site(0.5, 0.5, z1, d),
            _Site(0.5, 0.75, z2, d),
        ),
    )


def _hexagonal(a: float, sites: tuple[tuple[float, float, int, float], ...]) -> _Lattice:
    return _Lattice(
        (a, 0.0), (a / 2, a * math.sqrt(3) / 2), tuple(_Site(*s) for s in sites), two_d=True
    )


@dataclass(frozen=True)
class Specimen:
    """A specimen of the archive: its kind, structure and the pixel sizes it is imaged at."""

    name: str
    kind: str  # "crystal", "2d", "particles", "bicrystal", "amorphous"
    lattice: _Lattice | None
    pixel_nm: tuple[float, float]  # range of pixel sizes it is imaged at
    mount_deg: float  # in-plane orientation of the mounted specimen w.r.t. stage x
    z_main: int = 0
    support_z: tuple[int, ...] = (6,)
    support_density: float = 100.0  # atoms per nm^3
    particle_nm: float = 2.0  # median particle radius


SPECIMENS: dict[str, Specimen] = {
    s.name: s
    for s in (
        Specimen("Au [001]", "crystal", _fcc001(0.408, 79), (0.012, 0.06), 12.0),
        Specimen("Pt [110]", "crystal", _fcc110(0.392, 78), (0.012, 0.06), -7.0),
        Specimen("Ni [110]", "crystal", _fcc110(0.352, 28), (0.012, 0.05), 31.0),
        Specimen("SrTiO3 [001]", "crystal", _perovskite(0.3905, 38, 22), (0.012, 0.06), 3.0),
        Specimen("BaTiO3 [001]", "crystal", _perovskite(0.400, 56, 22), (0.012, 0.06), 21.0),
        Specimen("LaAlO3 [001]", "crystal", _perovskite(0.379, 57, 13), (0.012, 0.06), -18.0),
        Specimen("Si [110]", "crystal", _diamond110(0.5431, 14, 14), (0.010, 0.045), 0.0),
        Specimen("GaAs [110]", "crystal", _diamond110(0.5653, 31, 33), (0.010, 0.045), 45.0),
        Specimen(
            "graphene",
            "2d",
            _hexagonal(0.246, ((0, 0, 6, 1), (1 / 3, 1 / 3, 6, 1))),
            (0.01, 0.04),
            8.0,
        ),
        Specimen(
            "MoS2",
            "2d",
            _hexagonal(0.316, ((0, 0, 42, 1), (2 / 3, 2 / 3, 16, 2))),
            (0.012, 0.06),
            -25.0,
        ),
        Specimen(
            "Au nanoparticles on a-C", "particles", _fcc110(0.408, 79), (0.03, 0.45), 0.0, 79,
            particle_nm=2.5,
        ),
        Specimen(
            "Pt/C catalyst", "particles", _fcc110(0.392, 78), (0.02, 0.25), 0.0, 78,
            particle_nm=1.1,
        ),
        Specimen(
            "Pd nanoparticles on SiN", "particles", _fcc110(0.389, 46), (0.03, 0.3), 0.0, 46,
            support_z=(14, 14, 14, 7, 7, 7, 7), support_density=95.0, particle_nm=3.5,
        ),
        Specimen("Cu Σ5 bicrystal", "bicrystal", _fcc001(0.3615, 29), (0.012, 0.05), 15.0),
        Specimen(
            "SrTiO3 Σ5 bicrystal", "bicrystal", _perovskite(0.3905, 38, 22), (0.015, 0.06), 40.0
        ),
        Specimen("Pt atoms on a-C", "amorphous", None, (0.012, 0.12), 0.0, 78),
        Specimen(
            "amorphous SiO2", "amorphous", None, (0.015, 0.3), 0.0,
            support_z=(14, 8, 8), support_density=66.0,
        ),
    )
}  # fmt: skip


# ------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class StemParams:
    """Everything that determines one simulated image.

    The first block is recorded in the file (``pixel_size_nm`` derives from ``magnification``,
    the collection angles from ``detector`` and ``camera_length_mm``); the rest is hidden
    (recorded only in the manifest): specimen thickness, defocus, drift (stage frame, nm/s),
    in-plane orientation,
    the user's contrast/brightness setting and the seed of the specimen and scan realisation.
    """

    specimen: str
    voltage_kv: float
    convergence_mrad: float
    magnification: float
    pixel_size_nm: float
    detector: str
    camera_length_mm: float
    collection_inner_mrad: float
    collection_outer_mrad: float
    dwell_us: float
    beam_current_pa: float
    tilt_alpha_deg: float
    tilt_beta_deg: float
    scan_rotation_deg: float
    instrument: str
    acquired_at: str = "2024-05-06T10:00:00"
    # hidden
    thickness_nm: float = 8.0
    defocus_nm: float = 0.0
    drift_x_nm_s: float = 0.0
    drift_y_nm_s: float = 0.0
    orientation_deg: float = 0.0
    contrast: float = 0.6
    offset_adc: float = 1000.0
    seed: int = 0


def make_params(
    *,
    specimen: str = "Au [001]",
    instrument: str = "Spectra 300",
    voltage_kv: float = 300.0,
    convergence_mrad: float = 25.0,
    magnification: float = 14.5e6,
    detector: str = "HAADF",
    camera_length_mm: float = 115.0,
    dwell_us: float = 4.0,
    beam_current_pa: float = 40.0,
    tilt_alpha_deg: float = 0.0,
    tilt_beta_deg: float = 0.0,
    scan_rotation_deg: float = 0.0,
    acquired_at: str = "2024-05-06T10:00:00",
    **hidden: Any,
) -> StemParams:
    """A :class:`StemParams` with the derived fields (pixel size, angles) computed.

    ``hidden`` sets the hidden fields (``thickness_nm``, ``defocus_nm``, ``drift_x_nm_s``,
    ``drift_y_nm_s``, ``orientation_deg``, ``contrast``, ``offset_adc``, ``seed``); the
    orientation defaults to the specimen's mounting angle.
    """
    hidden.setdefault("orientation_deg", SPECIMENS[specimen].mount_deg)
    inner, outer = collection_angles_mrad(instrument, detector, camera_length_mm)
    return StemParams(
        specimen=specimen,
        voltage_kv=voltage_kv,
        convergence_mrad=convergence_mrad,
        magnification=magnification,
        pixel_size_nm=pixel_size_nm(instrument, magnification),
        detector=detector,
        camera_length_mm=camera_length_mm,
        collection_inner_mrad=inner,
        collection_outer_mrad=outer,
        dwell_us=dwell_us,
        beam_current_pa=beam_current_pa,
        tilt_alpha_deg=tilt_alpha_deg,
        tilt_beta_deg=tilt_beta_deg,
        scan_rotation_deg=scan_rotation_deg,
        instrument=instrument,
        acquired_at=acquired_at,
        **hidden,
    )


_INSTRUMENT_WEIGHTS = {"Spectra 300": 0.45, "JEM-ARM200F": 0.35, "Tecnai F20": 0.2}
_DETECTOR_WEIGHTS = {"HAADF": 0.45, "ADF": 0.15, "ABF": 0.2, "BF": 0.2}

#: The angular regime each detector is used in: which of its radii sets it and the range of
#: that collection angle in units of the convergence semi-angle. HAADF: inner angle beyond
#: ~3 α (incoherent, Z-contrast); ADF (LAADF/MAADF): inner angle just outside the bright-field
#: disk (diffraction and strain contrast); ABF: an annulus in the outer half of the disk; BF:
#: the central part of the disk (phase contrast).
DETECTOR_REGIMES: dict[str, tuple[str, float, float]] = {
    "HAADF": ("inner", 3.0, 8.0),
    "ADF": ("inner", 1.0, 2.3),
    "ABF": ("outer", 0.85, 1.2),
    "BF": ("outer", 0.15, 0.5),
}
#: Images per session (geometric distribution): a user keeps the optics of a session and
#: varies magnification, dwell time and position.
_SESSION_MEAN = 8.0
#: The signal-to-noise ratio of the structure over a probe-sized patch (standard deviation of
#: the detected counts over the shot noise of their mean) below which an operator takes a
#: longer dwell; an image still below it at the longest dwell is not kept.
_MIN_SNR = 3.0


def camera_lengths_for(
    instrument: str, detector: str, convergence_mrad: float
) -> tuple[float, ...]:
    """The instrument's camera lengths (mm) that put ``detector`` in its angular regime
    (:data:`DETECTOR_REGIMES`) at this convergence semi-angle (mrad)."""
    inst = INSTRUMENTS[instrument]
    which, lo, hi = DETECTOR_REGIMES[detector]
    r_in, r_out = inst.detectors[detector]
    r = r_in if which == "inner" else r_out
    return tuple(
        cl
        for cl in inst.camera_lengths_mm
        if lo * convergence_mrad <= 1e3 * math.atan(r / cl) <= hi * convergence_mrad
    )


def _choice(
    rng: np.random.Generator, items: Sequence[Any], weights: Sequence[float] | None = None
) -> Any:
    if weights is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(weights, float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def _visibility(p: StemParams, size: int = 64) -> float:
    """Structure SNR per pixel at one electron per pixel: ``std(f) / sqrt(mean(f) F)`` of the
    noiseless detected fraction ``f`` of a small render (F: the detector's excess noise
    factor). The SNR at a dose of N electrons per pixel is ``sqrt(N)`` times this."""
    inst = INSTRUMENTS[p.instrument]
    full = _padded(size)
    scene = _build_scene(p, inst, full, np.random.default_rng([p.seed, 1]), size)
    pad = (full - size) // 2
    f = _signal(p, inst, scene, full)[pad : pad + size, pad : pad + size]
    mean = float(f.mean())
    if mean <= 0:
        return 0.0
    return float(f.std()) / math.sqrt(mean * (1 + 1 / inst.pmt_shape))


def _session(rng: np.random.Generator) -> dict[str, Any]:
    """The settings a user keeps for a session: instrument, specimen and region, optics,
    detector and camera length, spot current, stage tilt, scan rotation."""
    names = list(INSTRUMENTS)
    inst = INSTRUMENTS[_choice(rng, names, [_INSTRUMENT_WEIGHTS[k] for k in names])]
    spec = SPECIMENS[_choice(rng, list(SPECIMENS))]
    volts = list(inst.voltages_kv)
    if spec.kind == "2d":  # knock-on damage: 2-D materials are imaged at low voltage
        vw = [4.0 if v <= 80 else 0.3 for v in volts]
    else:
        vw = [0.4 if v < 120 else 1.0 for v in volts]
    kv = float(_choice(rng, volts, vw))
    conv = float(_choice(rng, inst.convergences_mrad))
    dets = list(inst.detectors)
    det = str(_choice(rng, dets, [_DETECTOR_WEIGHTS[d] for d in dets]))
    cl = float(_choice(rng, camera_lengths_for(inst.name, det, conv)))
    cur = float(_choice(rng, inst.currents_pa)) * float(np.exp(rng.normal(0.0, 0.08)))
    if spec.kind in ("crystal", "bicrystal"):  # aligned on the zone axis: small stage tilts
        ta, tb = rng.normal(0.0, 1.5), rng.normal(0.0, 1.5)
    else:
        ta, tb = rng.normal(0.0, 12.0), rng.normal(0.0, 6.0)
    if spec.kind == "2d":
        thick = float(rng.integers(1, 4))  # layers
    elif spec.kind == "amorphous":
        thick = float(np.exp(rng.normal(np.log(12), 0.4)))
    elif spec.kind == "particles":
        thick = float(np.exp(rng.normal(np.log(6), 0.3)))  # support film
    else:  # a thin crystal region chosen for high resolution
        thick = float(np.clip(np.exp(rng.normal(np.log(9), 0.4)), 3, 30))
    y0, y1 = inst.years
    start = datetime(y0, 1, 1) + timedelta(  # a working day's session
        days=int(rng.integers(0, 365 * (y1 - y0 + 1))),
        seconds=int(rng.integers(8 * 3600, 18 * 3600)),
    )
    return {
        "inst": inst,
        "spec": spec,
        "kv": kv,
        "conv": conv,
        "det": det,
        "cl": cl,
        "cur": round(cur, 1),
        "tilt": (float(np.clip(ta, -35, 35)), float(np.clip(tb, -25, 25))),
        "rot": 0.0 if rng.random() < 0.3 else float(rng.uniform(-180.0, 180.0)),
        "thick": thick,
        "orient": spec.mount_deg + float(rng.normal(0, 2.0)),
        "dwell_index": int(rng.integers(len(inst.dwells_us))),
        "contrast": float(rng.uniform(0.45, 0.85)),
        "offset": float(rng.uniform(200, 3000)),
        "start": start,
    }


def _session_image(
    rng: np.random.Generator, s: dict[str, Any], when: datetime
) -> StemParams | None:
    """One image of a session, or None when even the longest dwell leaves it uninterpretable
    (the operator does not keep it)."""
    inst, spec = s["inst"], s["spec"]
    lo, hi = spec.pixel_nm
    mags = [m for m in inst.magnifications if lo <= inst.scan_k_nm / m <= hi]
    mag = float(_choice(rng, mags))
    dwells = inst.dwells_us
    di = int(np.clip(s["dwell_index"] + rng.integers(-1, 2), 0, len(dwells) - 1))
    kv = s["kv"]
    defocus = _best_defocus_nm(inst, kv) + rng.normal(0, 8.0 if inst.cs_mm > 0.1 else 3.0)
    if s["det"] == "BF" and inst.cs_mm <= 0.1:
        # bright field is phase contrast: on a corrected column the user underfocuses a little
        # for it, as in HRTEM
        defocus += float(rng.uniform(-14.0, -4.0))
    drift_speed = float(np.exp(rng.normal(np.log(0.03), 0.8)))  # nm/s (~2 nm/min)
    # a side-entry holder drifts mostly along its rod (stage x), either way
    drift_dir = float(rng.choice([0.0, np.pi]) + rng.normal(0.0, 0.35))
    thick = s["thick"] if spec.kind == "2d" else s["thick"] * float(np.exp(rng.normal(0, 0.1)))
    p = make_params(
        specimen=spec.name,
        instrument=inst.name,
        voltage_kv=kv,
        convergence_mrad=s["conv"],
        magnification=mag,
        detector=s["det"],
        camera_length_mm=s["cl"],
        dwell_us=float(dwells[di]),
        beam_current_pa=s["cur"],
        tilt_alpha_deg=round(s["tilt"][0], 2),
        tilt_beta_deg=round(s["tilt"][1], 2),
        scan_rotation_deg=round(s["rot"], 1),
        acquired_at=when.isoformat(),
        thickness_nm=round(thick, 3),
        defocus_nm=round(float(defocus), 2),
        drift_x_nm_s=round(drift_speed * math.cos(drift_dir), 5),
        drift_y_nm_s=round(drift_speed * math.sin(drift_dir), 5),
        orientation_deg=round(s["orient"], 3),
        contrast=round(s["contrast"] + float(rng.normal(0, 0.03)), 3),
        offset_adc=round(s["offset"] + float(rng.normal(0, 20)), 1),
        seed=int(rng.integers(2**31 - 1)),
    )
    # the eye averages over a probe-sized patch: the SNR that matters is per probe area
    fwhm = probe_fwhm_nm(kv, s["conv"], cs_mm=inst.cs_mm, source_nm=_source_nm(p, inst))
    v = _visibility(p) * max(1.0, fwhm / p.pixel_size_nm)
    # the operator lengthens the dwell until the structure stands out of the shot noise
    while v * math.sqrt(electrons_per_pixel(p.beam_current_pa, p.dwell_us)) < _MIN_SNR:
        di += 1
        if di >= len(dwells):
            return None
        p = dataclasses.replace(p, dwell_us=float(dwells[di]))
    return p


def sample_params(rng: np.random.Generator, n: int) -> list[StemParams]:
    """Draw ``n`` parameter sets from an archive-like distribution.

    The archive is made of sessions (:data:`_SESSION_MEAN` images on average) on several
    instruments and specimens. A session keeps the instrument's discrete settings (voltage,
    convergence aperture, detector, a camera length that puts the detector in its angular
    regime, :data:`DETECTOR_REGIMES`), the spot current (with its measured spread), the stage
    tilt and the scan rotation; each image has its own magnification step, dwell time, focus,
    drift and position. The operator keeps only interpretable images: the dwell is lengthened
    until the structure's SNR per pixel reaches :data:`_MIN_SNR`, and an image that cannot
    reach it is dropped. Hidden parameters (thickness, defocus, drift, orientation scatter,
    contrast, black level, seed) are drawn too.
    """
    out: list[StemParams] = []
    while len(out) < n:
        s = _session(rng)
        when = s["start"]
        for _ in range(int(rng.geometric(1.0 / _SESSION_MEAN))):
            if len(out) >= n:
                break
            when = when + timedelta(seconds=int(rng.integers(30, 900)))
            p = _session_image(rng, s, when)
            if p is not None:
                out.append(p)
    return out


# ------------------------------------------------------------------------------- geometry
@dataclass
class _Scene:
    """Columns (positions in px) and continuous areal densities (atoms/nm^2) per element."""

    size: int
    px: float
    scan_px: int
    film_xy: list[np.ndarray] = field(default_factory=list)  # (N, 2) col,row
    film_z: list[np.ndarray] = field(default_factory=list)
    film_n: list[np.ndarray] = field(default_factory=list)  # atoms in the column
    film_b: list[np.ndarray] = field(default_factory=list)  # Bragg excitation factor
    part_xy: list[np.ndarray] = field(default_factory=list)
    part_z: list[np.ndarray] = field(default_factory=list)
    part_n: list[np.ndarray] = field(default_factory=list)
    part_b: list[np.ndarray] = field(default_factory=list)
    density: dict[int, np.ndarray] = field(default_factory=dict)
    strain: np.ndarray | None = None  # extra low-angle (diffraction) scattering fraction
    # medium-range order of amorphous matter: unit-variance speckle of its low-angle scattering
    speckle: np.ndarray | None = None

    def add_density(self, z: int, rho: np.ndarray) -> None:
        if z in self.density:
            self.density[z] = self.density[z] + rho
        else:
            self.density[z] = rho


def _rot(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def _maps(p: StemParams, inst: Instrument, scan_px: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Stage (nm, y up) -> image (px) linear map for film vectors, and for beam-frame vectors.

    Returns ``(L_film, L_beam, line_time_s)``; ``L_film`` includes the tilt foreshortening,
    ``L_beam`` (3-D objects, on-zone particles) does not. Drift shears and stretches both.
    """
    px = p.pixel_size_nm
    line_t = (scan_px * p.dwell_us + inst.flyback_us) * 1e-6
    flip = np.array([[1.0, 0.0], [0.0, -1.0]])
    # stage-frame drift as seen in the scan frame (col, row): it turns with the scan rotation
    vx, vy = flip @ _rot(p.scan_rotation_deg) @ np.array([p.drift_x_nm_s, p.drift_y_nm_s])
    den = px - vy * line_t
    drift = np.array([[1.0 / px, vx * line_t / (px * den)], [0.0, 1.0 / den]])
    tilt = np.diag(
        [math.cos(math.radians(p.tilt_beta_deg)), math.cos(math.radians(p.tilt_alpha_deg))]
    )
    beam = drift @ flip @ _rot(p.scan_rotation_deg)
    return beam @ tilt, beam, line_t


def _lattice_columns(
    lat: _Lattice,
    orient_deg: float,
    lmap: np.ndarray,
    origin: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> list[tuple[np.ndarray, _Site]]:
    """Column positions (px) of every site whose position falls in the box ``[lo, hi]`` px."""
    r = _rot(orient_deg)
    m = lmap @ r @ np.column_stack([lat.a1, lat.a2])  # lattice vectors in px (columns)
    minv = np.linalg.inv(m)
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]]]) - origin
    ij = corners @ minv.T
    i0, j0 = np.floor(ij.min(0)) - 1
    i1, j1 = np.ceil(ij.max(0)) + 1
    if (i1 - i0) * (j1 - j0) > 4e6:
        raise ValueError("lattice too fine for the field of view")
    ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1), indexing="ij")
    out = []
    for s in lat.sites:
        f = np.stack([ii.ravel() + s.fx, jj.ravel() + s.fy], 1)
        xy = f @ m.T + origin
        keep = np.all((xy >= lo) & (xy <= hi), axis=1)
        out.append((xy[keep], s))
    return out


def _smooth_field(rng: np.random.Generator, size: int, corr_px: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``corr_px``."""
    w = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    # beyond a quarter of the field a "correlation length" is a ramp: keep a visible variation
    corr = min(corr_px, size / 4.0)
    k = np.exp(-2 * np.pi**2 * corr**2 * (fx**2 + fy**2))
    k[0, 0] = 0.0
    f = np.fft.irfft2(np.fft.rfft2(w) * k, s=(size, size))
    return f / max(float(f.std()), 1e-9)


def _build_scene(
    p: StemParams, inst: Instrument, size: int, rng: np.random.Generator, scan_px: int
) -> _Scene:
    """The specimen on the ``size``-pixel render grid of a ``scan_px``-pixel scan."""
    spec = SPECIMENS[p.specimen]
    px = p.pixel_size_nm
    sc = _Scene(size=size, px=px, scan_px=scan_px)
    l_film, l_beam, _ = _maps(p, inst, scan_px)
    centre = np.array([size / 2.0, size / 2.0])
    # the grid is padded beyond the image: keep columns off its edges, where FFTs wrap
    lo, hi = np.array([2.0, 2.0]), np.array([size - 3.0, size - 3.0])
    px2 = px * px
    cos_t = math.cos(math.radians(p.tilt_alpha_deg)) * math.cos(math.radians(p.tilt_beta_deg))

    def support(zs: tuple[int, ...], dens: float, thick: float, holes: bool) -> None:
        # film thickness along the beam grows as 1/cos(tilt); gentle undulation; optional hole
        t = thick / cos_t * (1.0 + 0.15 * _smooth_field(rng, size, 12.0 / px))
        if holes and rng.random() < 0.35:
            # edge of a hole in the support film, curved, somewhere in the field
            yy, xx = np.mgrid[0:size, 0:size].astype(float)
            rad = float(rng.uniform(0.6, 2.0)) * size
            ang = rng.uniform(0, 2 * np.pi)
            cx = size / 2 + math.cos(ang) * (rad + rng.uniform(-0.4, 0.3) * size)
            cy = size / 2 + math.sin(ang) * (rad + rng.uniform(-0.4, 0.3) * size)
            edge = np.hypot(xx - cx, yy - cy) - rad
            t = t * np.clip(edge / (1.5 / px) + 0.5, 0, 1)
        t = np.clip(t, 0, None)
        per_z = dens * t * px2 / len(zs)  # atoms per pixel per listed element
        for z in sorted(set(zs)):
            k = zs.count(z)
            # random (Poisson) atom positions binned to pixels: an amorphous film
            sc.add_density(z, rng.poisson(per_z * k).astype(np.float64) / px2)
        if sc.speckle is None:
            # the diffuse rings of amorphous matter (d ~ 0.2-0.4 nm) fall inside a low-angle
            # ADF detector: coherent interference from medium-range order makes a speckle on
            # the scale of the probe; beyond ~3 α (HAADF) the scattering is incoherent
            sc.speckle = _smooth_field(rng, size, max(0.1 / px, 0.5))

    if spec.kind in ("crystal", "bicrystal", "2d"):
        assert spec.lattice is not None
        lat = spec.lattice
        if spec.kind == "bicrystal":
            half = 36.87 / 2  # Σ5 [001] symmetric tilt boundary
            gb_angle = p.orientation_deg  # boundary along the bisector
            shift = rng.uniform(-0.25, 0.25) * size * px
            normal_stage = _rot(gb_angle) @ np.array([0.0, 1.0])
            grains = [(p.orientation_deg + half, 1.0), (p.orientation_deg - half, -1.0)]
        else:
            grains = [(p.orientation_deg, 0.0)]
        linv = np.linalg.inv(l_film)
        # a thin foil is bent: the Bragg excitation drifts across the field (bend contours,
        # seen by a low-angle ADF detector, hardly by HAADF)
        bend = _smooth_field(rng, size, size / 5.0)
        for g_orient, side in grains:
            b0 = float(rng.uniform(0.5, 1.5))
            origin = centre + l_film @ rng.uniform(-0.3, 0.3, 2)
            for xy, s in _lattice_columns(lat, g_orient, l_film, origin, lo, hi):
                if spec.kind == "bicrystal":
                    st = (xy - centre) @ linv.T  # back to stage nm
                    d = st @ normal_stage - shift
                    keep = d * side > 0.05
                    xy, d = xy[keep], d[keep]
                    # static disorder near the boundary
                    amp = 0.035 * np.exp(-np.abs(d) / 0.4) / px
                    xy = xy + rng.normal(0, 1, xy.shape) * amp[:, None]
                # atoms per nm x thickness, or (2-D) atoms per layer x layers
                n = s.per_nm * p.thickness_nm
                sc.film_xy.append(xy)
                sc.film_z.append(np.full(len(xy), s.z))
                sc.film_n.append(np.full(len(xy), n))
                ij = np.clip(np.rint(xy).astype(np.int64), 0, size - 1)
                b = np.clip(b0 * (1 + 0.45 * bend[ij[:, 1], ij[:, 0]]), 0.1, None)
                sc.film_b.append(b)
        if spec.kind == "bicrystal":
            yy, xx = np.mgrid[0:size, 0:size].astype(float)
            st = np.stack([xx - centre[0], yy - centre[1]], -1) @ linv.T
            d = st @ normal_stage - shift
            sc.strain = 0.04 * np.exp(-(d**2) / (2 * 0.7**2))
        if lat.two_d and rng.random() < 0.5:  # adsorbed hydrocarbon contamination
            sc.add_density(6, np.clip(_smooth_field(rng, size, 1.5 / px) - 0.8, 0, None) * 15.0)
    elif spec.kind == "particles":
        support(spec.support_z, spec.support_density, p.thickness_nm, holes=True)
        fov = size * px
        n_part = int(np.clip(rng.poisson(fov * fov * 0.02 / (spec.particle_nm / 2.5) ** 2), 1, 400))
        radii = np.exp(rng.normal(np.log(spec.particle_nm), 0.35, n_part))
        # positions on the film (foreshortened by the tilt), centred on the field
        st = rng.uniform(-0.55, 0.55, (n_part, 2)) * fov
        st[:, 0] /= math.cos(math.radians(p.tilt_beta_deg))
        st[:, 1] /= math.cos(math.radians(p.tilt_alpha_deg))
        centres = st @ l_film.T + centre
        binv = np.linalg.inv(l_beam)
        yy, xx = np.mgrid[0:size, 0:size].astype(float)
        plat = spec.lattice
        assert plat is not None
        cell = abs(plat.a1[0] * plat.a2[1] - plat.a1[1] * plat.a2[0])
        rho_at = sum(s.per_nm for s in plat.sites) / cell  # atoms per nm^3
        for c, r in zip(centres, radii, strict=True):
            rpx = r / px + 2
            if not (-rpx < c[0] < size + rpx and -rpx < c[1] < size + rpx):
                continue
            b = float(rng.uniform(0.3, 1.7))
            if rng.random() < 0.55 and r / px > 1.5:  # on a zone axis: columns
                box_lo, box_hi = c - rpx, c + rpx
                for xy, s in _lattice_columns(
                    plat, float(rng.uniform(0, 360)), l_beam, c, box_lo, box_hi
                ):
                    st_nm = (xy - c) @ binv.T
                    rho2 = (st_nm**2).sum(1)
                    inside = rho2 < r * r
                    t = 2 * np.sqrt(np.clip(r * r - rho2[inside], 0, None))
                    sc.part_xy.append(xy[inside])
                    sc.part_z.append(np.full(int(inside.sum()), s.z))
                    sc.part_n.append(s.per_nm * t)
                    sc.part_b.append(np.full(int(inside.sum()), b))
            else:  # off zone: projected sphere thickness, no lattice
                x0, x1 = max(int(c[0] - rpx), 0), min(int(c[0] + rpx) + 1, size)
                y0, y1 = max(int(c[1] - rpx), 0), min(int(c[1] + rpx) + 1, size)
                if x1 <= x0 or y1 <= y0:
                    continue
                d = np.stack([xx[y0:y1, x0:x1] - c[0], yy[y0:y1, x0:x1] - c[1]], -1) @ binv.T
                t = 2 * np.sqrt(np.clip(r * r - (d**2).sum(-1), 0, None))
                full = np.zeros((size, size))
                full[y0:y1, x0:x1] = t * rho_at
                sc.add_density(spec.z_main, full)
                # its Bragg excitation shows at low angles only (diffraction contrast in ADF)
                if sc.strain is None:
                    sc.strain = np.zeros((size, size))
                sc.strain[y0:y1, x0:x1] += 0.3 * (b - 1) * t / (2 * r)
    elif spec.kind == "amorphous":
        support(spec.support_z, spec.support_density, p.thickness_nm, holes=spec.z_main == 0)
        if spec.z_main:
            fov = size * px
            n_at = int(rng.poisson(fov * fov * 0.25))
            st = rng.uniform(-0.55, 0.55, (n_at, 2)) * fov
            # some atoms cluster
            nc = n_at // 5
            if nc:
                st[:nc] = st[:nc] // 0.6 * 0.6 + rng.normal(0, 0.15, (nc, 2))
            xy = st @ l_film.T + centre
            sc.part_xy.append(xy)
            sc.part_z.append(np.full(n_at, spec.z_main))
            sc.part_n.append(np.ones(n_at))
            sc.part_b.append(np.ones(n_at))
    if spec.kind in ("crystal", "bicrystal") and rng.random() < 0.4:
        # thin amorphous surface layer
        support((6, 8), 60.0, float(rng.uniform(0.5, 2.0)), holes=False)
    return sc


# ------------------------------------------------------------------------------- imaging
def _splat(xy: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
    """Bilinear deposit of point weights onto a ``size x size`` grid (periodic)."""
    if len(xy) == 0:
        return np.zeros((size, size))
    x0 = np.floor(xy[:, 0])
    y0 = np.floor(xy[:, 1])
    fx = xy[:, 0] - x0
    fy = xy[:, 1] - y0
    xi = x0.astype(np.int64)
    yi = y0.astype(np.int64)
    idx = []
    wt = []
    for dx, dy, ww in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        idx.append(((yi + dy) % size) * size + (xi + dx) % size)
        wt.append(ww * w)
    return np.bincount(np.concatenate(idx), np.concatenate(wt), minlength=size * size).reshape(
        size, size
    )


def _kernels(
    p: StemParams, inst: Instrument, size: int, l_film: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Fourier-space probe kernels (rfft layout) for film columns and for the rest.

    The probe (Gaussian core plus a wide tail, FWHM from :func:`probe_fwhm_nm`) is averaged
    over depth slices of the specimen, weighted by channelling decay; at depth ``z`` it is
    defocused by ``z - z_focus`` (spread ``α |z - z_focus| / 2``), and for the film's columns
    it is shifted by ``z tan(tilt)``: a tilted column projects as a comet whose head is the
    entrance surface.
    """
    px = p.pixel_size_nm
    fwhm = probe_fwhm_nm(
        p.voltage_kv, p.convergence_mrad, cs_mm=inst.cs_mm, source_nm=_source_nm(p, inst)
    )
    sig0 = math.sqrt((fwhm / 2.3548) ** 2 + 0.007**2)  # + thermal vibration
    fy = np.fft.fftfreq(size) / px  # 1/nm
    fx = np.fft.rfftfreq(size) / px
    a = p.convergence_mrad * 1e-3
    t_col = p.thickness_nm if SPECIMENS[p.specimen].kind != "2d" else 0.3 * p.thickness_nm
    xi = 6.0  # channelling depth, nm
    zs = (np.arange(_N_SLICES) + 0.5) / _N_SLICES * t_col
    ws = np.exp(-zs / xi)
    ws /= ws.sum()
    # underfocus puts the focus below the entrance surface; the probe FWHM already holds the
    # aberration balance of an uncorrected column, so only the departure from that best
    # defocus spreads the probe further
    z_focus = -(p.defocus_nm - _best_defocus_nm(inst, p.voltage_kv))
    tb, ta = math.radians(p.tilt_beta_deg), math.radians(p.tilt_alpha_deg)
    tan = np.array([math.tan(tb), math.tan(ta)])
    l_beam = l_film @ np.diag([1.0 / math.cos(tb), 1.0 / math.cos(ta)])
    tail_frac = 0.12 if inst.cs_mm < 0.1 else 0.25
    tail_s2 = (4 * sig0 + 0.05) ** 2
    film = np.zeros((size, size // 2 + 1), complex)
    plain = np.zeros((size, size // 2 + 1))
    fx2, fy2 = fx**2, fy**2
    fxp, fyp = np.fft.rfftfreq(size), np.fft.fftfreq(size)

    def envelope(s2: float) -> np.ndarray:
        # Gaussians are separable: outer products instead of 2-D exponentials
        core = np.outer(np.exp(-2 * np.pi**2 * s2 * fy2), np.exp(-2 * np.pi**2 * s2 * fx2))
        st = s2 + tail_s2
        tail = np.outer(np.exp(-2 * np.pi**2 * st * fy2), np.exp(-2 * np.pi**2 * st * fx2))
        out: np.ndarray = (1 - tail_frac) * core + tail_frac * tail
        return out

    for z, w in zip(zs, ws, strict=True):
        spread2 = (a * (z - z_focus)) ** 2 / 4.0
        # on a zone axis the probe channels along the columns and stays far narrower than
        # the geometric cone α |z - z_focus| (taken as a quarter of it); amorphous matter and
        # particles see the geometric spread
        d_px = l_beam @ (z * tan)  # column elongation, px
        ph = np.outer(np.exp(-2j * np.pi * fyp * d_px[1]), np.exp(-2j * np.pi * fxp * d_px[0]))
        film += w * envelope(sig0**2 + spread2 * _CHANNEL_SPREAD**2) * ph
        plain += w * envelope(sig0**2 + spread2)
    return film, plain, fwhm


def _best_defocus_nm(inst: Instrument, voltage_kv: float) -> float:
    """Defocus (nm, negative: under) an operator focuses to: ``-1.2 sqrt(Cs λ)`` on an
    uncorrected column (where :func:`probe_fwhm_nm` balances the aberration), 0 on a corrected
    one."""
    if inst.cs_mm <= 0.1:
        return 0.0
    return -1.2 * math.sqrt(inst.cs_mm * 1e6 * wavelength_pm(voltage_kv) * 1e-3)


def _source_nm(p: StemParams, inst: Instrument) -> float:
    # a larger current means a less demagnified source: size grows as sqrt(current)
    return inst.source_nm * math.sqrt(p.beam_current_pa / 20.0)


def _conv(img_f: np.ndarray, size: int) -> np.ndarray:
    return np.fft.irfft2(img_f, s=(size, size))


def _signal(p: StemParams, inst: Instrument, sc: _Scene, size: int) -> np.ndarray:
    """Noiseless fraction of incident electrons reaching the detector, per pixel."""
    kv, a = p.voltage_kv, p.convergence_mrad
    inner, outer = p.collection_inner_mrad, p.collection_outer_mrad
    lo_bf, hi_bf = min(inner, a), min(outer, a)
    o = max(0.0, hi_bf**2 - lo_bf**2) / a**2  # share of the bright-field disk collected
    df_lo = max(inner, a)
    has_df = outer > a
    c_abf = float(np.clip((inner / a - 0.15) / 0.35, 0, 1)) if o > 0 else 0.0
    c_ph = float(np.clip(1 - outer / a, 0, 1)) if o > 0 else 0.0
    # coherent (Bragg, strain) scattering reaches a detector whose inner angle is within a few
    # convergence angles; beyond ~3 α (HAADF) the signal is incoherent thermal-diffuse
    c_diff = float(np.clip((3.0 * a - df_lo) / (2.0 * a), 0, 1)) if has_df else 0.0
    l_film, _, _ = _maps(p, inst, sc.scan_px)
    k_film, k_plain, _ = _kernels(p, inst, size, l_film)
    px2 = sc.px**2
    zs = {int(z) for arr in sc.film_z + sc.part_z for z in np.unique(arr)} | set(sc.density)
    sig_df = {z: _wentzel_nm2(z, kv, df_lo, outer) if has_df else 0.0 for z in zs}
    sig_out = {z: _wentzel_nm2(z, kv, hi_bf, math.inf) for z in zs}
    # lookup tables by atomic number for the columns
    tab_df, tab_out = np.zeros(120), np.zeros(120)
    for z in zs:
        tab_df[z], tab_out[z] = sig_df[z], sig_out[z]
    lam_rel = wavelength_pm(kv) / wavelength_pm(200.0)

    def col_weights(z: np.ndarray, n: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
        if kind == "df":
            s = tab_df[z]
            w = _COL_AREA_NM2 * (1 - np.exp(-n * s / _COL_AREA_NM2))
            return w * (1 + c_diff * (b - 1))
        if kind == "out":
            s = tab_out[z]
            return _COL_AREA_NM2 * (1 - np.exp(-n * s / _COL_AREA_NM2))
        if kind == "abf":
            return _COL_AREA_NM2 * (1 - np.exp(-n * 1.2e-4 * np.cbrt(z) / _COL_AREA_NM2))
        # projected potential, scaled with the interaction constant (∝ λγ)
        return n * z**0.55 * _PHASE_K * lam_rel

    def channel(kind: str) -> np.ndarray:
        out_f = np.zeros((size, size // 2 + 1), complex)
        if sc.film_xy:
            xy = np.concatenate(sc.film_xy)
            w = col_weights(
                np.concatenate(sc.film_z),
                np.concatenate(sc.film_n),
                np.concatenate(sc.film_b),
                kind,
            )
            out_f += np.fft.rfft2(_splat(xy, w / px2, size)) * k_film
        extra = np.zeros((size, size))
        if sc.part_xy:
            xy = np.concatenate(sc.part_xy)
            w = col_weights(
                np.concatenate(sc.part_z),
                np.concatenate(sc.part_n),
                np.concatenate(sc.part_b),
                kind,
            )
            extra += _splat(xy, w / px2, size)
        if sc.density:
            if kind == "df":
                tau = sum(sig_df[z] * r for z, r in sc.density.items())
                extra += 1 - np.exp(-tau)
                if sc.strain is not None:
                    extra += c_diff * sc.strain
                if sc.speckle is not None:
                    extra += c_diff * _SPECKLE * (1 - np.exp(-tau)) * sc.speckle
            elif kind == "out":
                tau = sum(sig_out[z] * r for z, r in sc.density.items())
                extra += 1 - np.exp(-tau)
            elif kind == "abf":
                extra += sum(1.2e-4 * np.cbrt(z) * r for z, r in sc.density.items())
            else:
                extra += sum(z**0.55 * _PHASE_K * lam_rel * r for z, r in sc.density.items())
        if extra.any():
            out_f += np.fft.rfft2(extra) * k_plain
        return out_f

    sig = np.zeros((size, size))
    if has_df:
        sig += 1 - np.exp(-np.clip(_conv(channel("df"), size), 0, None))
    if o > 0:
        bf = o * np.exp(-np.clip(_conv(channel("out"), size), 0, None))
        if c_abf > 0:
            bf *= 1 - c_abf * 0.6 * (1 - np.exp(-np.clip(_conv(channel("abf"), size), 0, None)))
        if c_ph > 0:
            pot_f = channel("pot")
            lam = wavelength_pm(kv) * 1e-3
            fy = np.fft.fftfreq(size)[:, None] / sc.px
            fx = np.fft.rfftfreq(size)[None, :] / sc.px
            g2 = fx**2 + fy**2
            chi = np.pi * lam * p.defocus_nm * g2 + 0.5 * np.pi * inst.cs_mm * 1e6 * lam**3 * g2**2
            aperture = g2 < (a * 1e-3 / lam) ** 2
            # k_plain already holds the incoherent blur: undo nothing, phase contrast is coherent
            phase = _conv(pot_f * np.sin(chi) * aperture, size)
            bf *= 1 + c_ph * 2 * np.clip(phase, -0.45, 0.45)
        sig += bf
    return np.clip(sig, 0, None)


def _scan_distort(
    img: np.ndarray, p: StemParams, inst: Instrument, rng: np.random.Generator, size: int
) -> np.ndarray:
    """Fly-back settling, mains interference and line jitter: per-row resampling along x.

    ``img`` is the padded render; returns the central ``size x size`` scan.
    """
    pad = (img.shape[0] - size) // 2
    px = p.pixel_size_nm
    line_t = size * p.dwell_us * 1e-6 + inst.flyback_us * 1e-6
    rows = np.arange(size)
    t_row = rows * line_t
    phase = rng.uniform(0, 2 * np.pi)
    mains = inst.mains_nm * np.sin(2 * np.pi * inst.mains_hz * t_row + phase)
    jitter = rng.normal(0, inst.jitter_nm, size)
    row_shift = (mains + jitter) / px  # px
    cols = np.arange(size, dtype=float)
    fov = size * px
    # the scan lags at the start of a line; the lag decays with the coils' settling time
    flyback = -0.02 * fov / px * np.exp(-cols * p.dwell_us / inst.settle_us)
    src = pad + cols[None, :] + flyback[None, :] + row_shift[:, None]
    src = np.clip(src, 0, img.shape[1] - 1.001)
    i0 = np.floor(src).astype(np.int64)
    f = src - i0
    r = pad + rows[:, None]
    return img[r, i0] * (1 - f) + img[r, i0 + 1] * f


def _detect(
    expected: np.ndarray, p: StemParams, inst: Instrument, rng: np.random.Generator, noise: bool
) -> np.ndarray:
    """Electrons -> PMT pulses -> amplifier low-pass -> ADC (uint16) or the noiseless mean."""
    from scipy.signal import lfilter

    # the user sets the contrast on the live, noisy image: its brightest pixels, shot noise
    # included, fill a share of the ADC range
    q = float(np.quantile(expected, 0.998))
    scale = q + 4.0 * math.sqrt(q * (1 + 1 / inst.pmt_shape)) + 1.0
    gain = p.contrast * 60000.0 / scale
    if noise:
        counts = rng.poisson(expected).astype(np.float64)
        k = inst.pmt_shape
        # a sum of `counts` gamma(k, 1/k) pulse heights: mean counts, variance counts / k
        # (drawn as its normal approximation, ten times cheaper than the gamma)
        pulses = np.maximum(counts + np.sqrt(counts / k) * rng.standard_normal(counts.shape), 0)
    else:
        pulses = expected
    a = math.exp(-p.dwell_us / inst.amp_tau_us)
    filt = lfilter([1 - a], [1.0, -a], pulses, axis=1)
    out = p.offset_adc + gain * filt
    if not noise:
        return out.astype(np.float32)
    out = out + rng.normal(0, 3.0, out.shape)  # amplifier/ADC read noise (ADC units)
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def _padded(size: int) -> int:
    """Render grid side: the image plus a margin for wrap-around and scan distortions."""
    n = size + max(16, size // 8) * 2
    return int(-(-n // 32) * 32)


def simulate_image(
    params: StemParams,
    *,
    size: int = 256,
    rng: np.random.Generator | None = None,
    noise: bool = True,
) -> np.ndarray:
    """Simulate one STEM image.

    Parameters
    ----------
    params
        The settings; the specimen and scan realisation derive from ``params.seed``.
    size
        Image side in pixels (the pixel size stays ``params.pixel_size_nm``).
    rng
        Generator of the shot and detector noise (default: seeded from ``params.seed``).
    noise
        False returns the noiseless expected image (float32, same ADC scale and offset).

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` uint16 ADC counts (float32 when ``noise`` is False).
    """
    inst = INSTRUMENTS[params.instrument]
    world = np.random.default_rng([params.seed, 1])
    if rng is None:
        rng = np.random.default_rng([params.seed, 2])
    full = _padded(size)
    scene = _build_scene(params, inst, full, world, size)
    frac = _signal(params, inst, scene, full)
    frac = _scan_distort(frac, params, inst, world, size)
    # slow gain drift of the detector over the frame
    frac = frac * (1 + world.normal(0, 0.02) * np.linspace(-1, 1, size))[:, None]
    expected = electrons_per_pixel(params.beam_current_pa, params.dwell_us) * frac
    return _detect(expected, params, inst, rng, noise)


# ------------------------------------------------------------------------------- archive
_MANIFEST_FIELDS = ("file", *(f.name for f in dataclasses.fields(StemParams)))


def _hspy_acq(p: StemParams) -> dict[str, Any]:
    return {
        "beam_energy": p.voltage_kv,
        "magnification": p.magnification,
        "camera_length": p.camera_length_mm,
        "convergence_angle": p.convergence_mrad,
        "dwell_time": p.dwell_us * 1e-6,
        "beam_current": p.beam_current_pa * 1e-3,
        "microscope": p.instrument,
        "acquisition_mode": "STEM",
        "scan_rotation": p.scan_rotation_deg,
        "Stage": {"tilt_alpha": p.tilt_alpha_deg, "tilt_beta": p.tilt_beta_deg},
        "Detector": {
            "STEM": {
                "name": p.detector,
                "collection_angle_inner": p.collection_inner_mrad,
                "collection_angle_outer": p.collection_outer_mrad,
            }
        },
    }


def write_image(path: Path, data: np.ndarray, p: StemParams) -> None:
    """Write one simulated image as HSPY with ``p`` as its recorded metadata (atomically:
    through a ``.part`` file)."""
    from rsciio.hspy import file_writer

    axes = [
        {
            "name": n,
            "size": s,
            "scale": p.pixel_size_nm,
            "offset": 0.0,
            "units": "nm",
            "navigate": False,
        }
        for n, s in zip(("y", "x"), data.shape, strict=True)
    ]
    date, _, time = p.acquired_at.partition("T")
    md = {
        "General": {"title": f"{p.detector} image", "date": date, "time": time},
        "Signal": {"signal_type": ""},
        "Acquisition_instrument": {"TEM": _hspy_acq(p)},
    }
    tmp = path.with_name(path.name + ".part")
    file_writer(
        str(tmp),
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
    os.replace(tmp, path)


def _work(job: tuple[str, int, list[tuple[int, StemParams]]]) -> list[int]:
    out, size, items = job
    done = []
    for i, p in items:
        img = simulate_image(p, size=size)
        write_image(Path(out) / _name(i), img, p)
        done.append(i)
    return done


def _name(i: int) -> str:
    return f"stem_{i:05d}.hspy"


def simulate_archive(
    out: str | Path,
    *,
    n: int = 7330,
    seed: int = 0,
    size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> list[Path]:
    """Write ``n`` simulated HSPY files and ``manifest.csv`` (all true parameters) into ``out``.

    Deterministic under ``seed`` (each image's realisation derives from its own seed, so the
    result does not depend on ``workers``). ``workers`` > 1 simulates in that many processes.
    Returns the paths in index order.
    """
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    params = sample_params(np.random.default_rng(seed), n)
    workers = workers or 1
    chunk = 16
    jobs = [
        (str(dest), size, [(i, params[i]) for i in range(s, min(s + chunk, n))])
        for s in range(0, n, chunk)
    ]
    done = 0
    if workers <= 1:
        for job in jobs:
            done += len(_work(job))
            if progress:
                progress(done, n)
    else:
        import multiprocessing as mp
        import threading

        # fork needs no `if __name__ == "__main__"` guard in the caller's script; with other
        # threads alive forking is unsafe, and a fork server is the fallback
        methods = mp.get_all_start_methods()
        method = "fork" if "fork" in methods and threading.active_count() == 1 else "spawn"
        if method == "spawn" and "forkserver" in methods:
            method = "forkserver"
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as ex:
            futures = [ex.submit(_work, job) for job in jobs]
            for fut in as_completed(futures):
                done += len(fut.result())
                if progress:
                    progress(done, n)
    manifest = dest / "manifest.csv"
    tmp = manifest.with_name("manifest.csv.part")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_MANIFEST_FIELDS)
        for i, p in enumerate(params):
            w.writerow([_name(i), *dataclasses.astuple(p)])
    os.replace(tmp, manifest)
    log.info("simulated %d STEM images into %s", n, dest)
    return [dest / _name(i) for i in range(n)]
