"""The synthetic STEM archive: metadata round trip, determinism and the physics of the pixels."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import emdig
from emdig.contrastive import simulate as sim
from emdig.contrastive.simulate import make_params, simulate_image

ACQ_FIELDS = (
    "detector",
    "voltage_kv",
    "magnification",
    "camera_length_mm",
    "convergence_mrad",
    "collection_inner_mrad",
    "collection_outer_mrad",
    "dwell_us",
    "beam_current_pa",
    "tilt_alpha_deg",
    "tilt_beta_deg",
    "scan_rotation_deg",
    "instrument",
    "acquired_at",
)


# ----------------------------------------------------------------------------- helpers
def _peaks(img: np.ndarray, k: int, min_r: float = 4.0) -> list[tuple[float, float]]:
    """The k strongest FFT peaks as (fx, fy) in cycles/pixel, fy pointing up on screen.

    One of each Friedel pair, refined by a 3x3 centroid of the power.
    """
    a = img.astype(float) - img.mean()
    n = a.shape[0]
    w = np.hanning(n)
    p = np.abs(np.fft.fftshift(np.fft.fft2(a * np.outer(w, w)))) ** 2
    c = n // 2
    yy, xx = np.mgrid[0:n, 0:n] - c
    p[np.hypot(xx, yy) < min_r] = 0
    out: list[tuple[float, float]] = []
    work = p.copy()
    while len(out) < k:
        iy, ix = np.unravel_index(int(np.argmax(work)), work.shape)
        sl = (slice(iy - 1, iy + 2), slice(ix - 1, ix + 2))
        wsum = p[sl].sum()
        fx = float((p[sl] * xx[sl]).sum() / wsum) / n
        fy = float((p[sl] * yy[sl]).sum() / wsum) / n
        for sy, sx in ((iy, ix), (2 * c - iy, 2 * c - ix)):  # the peak and its Friedel mate
            work[max(sy - 3, 0) : sy + 4, max(sx - 3, 0) : sx + 4] = 0
        out.append((fx, -fy))
    return out


def _square_lattice_params(**kw: object) -> sim.StemParams:
    # a thin Au [001] film, no drift: a square lattice of columns 0.204 nm apart
    base: dict[str, object] = dict(
        specimen="Au [001]",
        magnification=10e6,
        thickness_nm=1.5,
        orientation_deg=0.0,
        seed=5,
    )
    base.update(kw)
    return make_params(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- physics
def test_wavelength_matches_textbook() -> None:
    assert sim.wavelength_pm(200.0) == pytest.approx(2.508, abs=0.001)
    assert sim.wavelength_pm(300.0) == pytest.approx(1.969, abs=0.001)
    assert sim.wavelength_pm(100.0) == pytest.approx(3.701, abs=0.001)


def test_probe_size_model() -> None:
    corrected = {"cs_mm": 0.002, "source_nm": 0.0}
    fwhm = [sim.probe_fwhm_nm(kv, 25.0, **corrected) for kv in (60.0, 80.0, 120.0, 200.0, 300.0)]
    assert all(a > b for a, b in itertools.pairwise(fwhm))
    # diffraction-limited: 0.61 λ/α
    assert fwhm[-1] == pytest.approx(0.61 * 1.969e-3 / 0.025, rel=0.01)
    # corrected: larger aperture, smaller probe
    assert sim.probe_fwhm_nm(200.0, 30.0, **corrected) < sim.probe_fwhm_nm(200.0, 20.0, **corrected)
    # uncorrected (200 kV, Cs 1.2 mm): a minimum near the optimum aperture, ~10 mrad
    unc = {"cs_mm": 1.2, "source_nm": 0.0}
    sizes = {a: sim.probe_fwhm_nm(200.0, a, **unc) for a in (5.0, 10.5, 20.0)}
    assert sizes[10.5] < sizes[5.0] and sizes[10.5] < sizes[20.0]
    # there it is the textbook optimum probe, 0.43 Cs^(1/4) λ^(3/4)
    opt = 0.43 * (1.2e6) ** 0.25 * (2.508e-3) ** 0.75
    assert sizes[10.5] == pytest.approx(opt, rel=0.05)


def test_probe_size_shows_in_fringe_contrast() -> None:
    # fringe visibility (FFT peak over mean) falls with the probe: 300 kV sharper than 60 kV
    vis = {}
    for kv in (60.0, 300.0):
        p = _square_lattice_params(voltage_kv=kv, convergence_mrad=17.9, thickness_nm=1.0)
        img = simulate_image(p, noise=False) - p.offset_adc
        f = np.abs(np.fft.fft2(img))
        vis[kv] = np.sort(f.ravel())[-2] / f[0, 0]
    assert vis[300.0] > 1.5 * vis[60.0]


def test_period_scales_with_pixel_size() -> None:
    measured = {}
    for mag in (7.2e6, 14.5e6):
        p = _square_lattice_params(magnification=mag)
        fx, fy = _peaks(simulate_image(p, noise=False), 1)[0]
        measured[mag] = 1.0 / math.hypot(fx, fy)  # period in px
        expected = 0.408 / 2 / p.pixel_size_nm
        assert measured[mag] == pytest.approx(expected, rel=0.03)
    assert measured[14.5e6] / measured[7.2e6] == pytest.approx(14.5 / 7.2, rel=0.03)


def test_bf_anticorrelated_with_haadf() -> None:
    for spec in ("Au nanoparticles on a-C", "SrTiO3 [001]"):
        kw = dict(specimen=spec, magnification=5.1e6, seed=11, thickness_nm=6.0)
        haadf = simulate_image(make_params(detector="HAADF", **kw), noise=False)  # type: ignore[arg-type]
        # bright field is phase contrast: taken a little underfocus (atoms dark), as the
        # simulated operators do (at zero defocus a positive Cs makes weak atoms bright)
        bf_kw = dict(kw, defocus_nm=-12.0)
        bf = simulate_image(make_params(detector="BF", **bf_kw), noise=False)  # type: ignore[arg-type]
        r = np.corrcoef(haadf.ravel(), bf.ravel())[0, 1]
        assert r < -0.5, (spec, r)


def test_noise_variance_follows_dose() -> None:
    # same specimen and scan; 4x the current -> 4x the electrons -> relative variance / 4
    rel = {}
    for cur in (10.0, 40.0):
        p = make_params(
            specimen="amorphous SiO2", magnification=2.55e6, beam_current_pa=cur, seed=3
        )
        clean = simulate_image(p, noise=False).astype(float) - p.offset_adc
        noisy = simulate_image(p, rng=np.random.default_rng(9)).astype(float) - p.offset_adc
        rel[cur] = np.var(noisy - clean) / np.mean(clean) ** 2
    assert rel[10.0] / rel[40.0] == pytest.approx(4.0, rel=0.15)
    dose = sim.electrons_per_pixel(40.0, 4.0)
    assert dose == pytest.approx(40e-12 * 4e-6 / 1.602176634e-19)


def test_tilt_foreshortens_period() -> None:
    flat = _square_lattice_params(thickness_nm=1.0)
    tilted = _square_lattice_params(thickness_nm=1.0, tilt_alpha_deg=30.0)
    f0 = _peaks(simulate_image(flat, noise=False), 2)
    f1 = _peaks(simulate_image(tilted, noise=False), 2)
    # alpha tilts about stage x: the period along y shrinks by cos(30), along x it stays
    y0 = max(abs(fy) for _, fy in f0)
    y1 = max(abs(fy) for _, fy in f1)
    x0 = max(abs(fx) for fx, _ in f0)
    x1 = max(abs(fx) for fx, _ in f1)
    assert y0 / y1 == pytest.approx(math.cos(math.radians(30)), rel=0.02)
    assert x1 == pytest.approx(x0, rel=0.02)


@pytest.mark.parametrize("rot", [23.0, -61.5])
def test_scan_rotation_rotates_fft_peaks(rot: float) -> None:
    def angle(p: sim.StemParams) -> float:
        fx, fy = _peaks(simulate_image(p, noise=False), 1)[0]
        return math.degrees(math.atan2(fy, fx))

    d = angle(_square_lattice_params(scan_rotation_deg=rot)) - angle(_square_lattice_params())
    d = (d - rot + 45.0) % 90.0 - 45.0  # a square lattice: modulo 90 degrees
    assert abs(d) < 1.0


def test_drift_shears_lattice_as_predicted() -> None:
    # stage-x drift during a slow scan: row r is acquired r * line_time later, so the lattice
    # is sheared by v * line_time / pixel per row; reciprocal vectors move by M^-T
    still = _square_lattice_params(dwell_us=32.0)
    moving = _square_lattice_params(dwell_us=32.0, drift_x_nm_s=0.2)
    g0 = _peaks(simulate_image(still, noise=False), 2)
    g1 = _peaks(simulate_image(moving, noise=False), 2)
    line_t = (256 * 32.0 + sim.INSTRUMENTS[still.instrument].flyback_us) * 1e-6
    shear = 0.2 * line_t / still.pixel_size_nm  # columns per row
    m = np.array([[1.0, shear], [0.0, 1.0]])  # (col, row) -> (col, row)
    for fx, fy in g0:
        g = np.linalg.inv(m).T @ np.array([fx, -fy])  # in (col, row) frequency
        pred = (g[0], -g[1])
        dist = min(min(math.dist(pred, q), math.dist(pred, (-q[0], -q[1]))) for q in g1)
        moved = math.dist(pred, (fx, fy))
        assert moved > 2.0 / 256 or abs(fx) < 1e-3  # peaks with a column component move
        assert dist < 0.4 / 256


# ----------------------------------------------------------------------------- sampling and files
def test_sample_params_archive_like() -> None:
    ps = sim.sample_params(np.random.default_rng(1), 1500)
    assert {p.instrument for p in ps} == set(sim.INSTRUMENTS)
    assert {p.detector for p in ps} == {"HAADF", "ADF", "ABF", "BF"}
    assert len({p.specimen for p in ps}) == len(sim.SPECIMENS)
    for p in ps:
        inst = sim.INSTRUMENTS[p.instrument]
        assert p.voltage_kv in inst.voltages_kv and p.magnification in inst.magnifications
        assert p.pixel_size_nm == pytest.approx(inst.scan_k_nm / p.magnification)
        r_in, r_out = inst.detectors[p.detector]
        assert p.collection_outer_mrad == pytest.approx(
            1e3 * math.atan(r_out / p.camera_length_mm), abs=0.01
        )
        assert p.collection_inner_mrad == pytest.approx(
            1e3 * math.atan(r_in / p.camera_length_mm), abs=0.01
        )
        # each detector in its own angular regime, so the regimes never overlap
        which, lo, hi = sim.DETECTOR_REGIMES[p.detector]
        angle = p.collection_inner_mrad if which == "inner" else p.collection_outer_mrad
        assert lo * p.convergence_mrad <= angle <= hi * p.convergence_mrad
    inner = {
        d: [p.collection_inner_mrad / p.convergence_mrad for p in ps if p.detector == d]
        for d in ("HAADF", "ADF")
    }
    assert min(inner["HAADF"]) > max(inner["ADF"])
    # sessions: optics, current, tilt and scan rotation are kept for several images, while
    # magnification and dwell vary within a session
    session = (
        "instrument",
        "voltage_kv",
        "convergence_mrad",
        "detector",
        "camera_length_mm",
        "beam_current_pa",
        "tilt_alpha_deg",
        "tilt_beta_deg",
        "scan_rotation_deg",
    )
    groups: dict[tuple[object, ...], list[sim.StemParams]] = {}
    for p in ps:
        groups.setdefault(tuple(getattr(p, f) for f in session), []).append(p)
    assert len(ps) / 20 < len(groups) < len(ps) / 3
    big = [g for g in groups.values() if len(g) >= 5]
    assert len(big) > 20
    assert np.mean([len({p.magnification for p in g}) > 1 for g in big]) > 0.9


def test_archive_round_trip_and_determinism(tmp_path: Path) -> None:
    a = sim.simulate_archive(tmp_path / "a", n=12, seed=4, size=64)
    b = sim.simulate_archive(tmp_path / "b", n=12, seed=4, size=64, workers=2)
    rows = list(csv.DictReader((tmp_path / "a" / "manifest.csv").open()))
    assert (tmp_path / "a" / "manifest.csv").read_text() == (
        tmp_path / "b" / "manifest.csv"
    ).read_text()
    params = sim.sample_params(np.random.default_rng(4), 12)
    for path, path_b, p, row in zip(a, b, params, rows, strict=True):
        [m] = emdig.read(path)
        [mb] = emdig.read(path_b)
        assert np.array_equal(m.pixels, mb.pixels)
        assert np.array_equal(m.pixels, simulate_image(p, size=64))
        assert m.pixels.dtype == np.uint16 and m.shape == (64, 64)
        assert m.pixel_size_nm == pytest.approx(p.pixel_size_nm)
        acq = m.acquisition
        assert acq.mode == "STEM"
        for f in ACQ_FIELDS:
            got, want = getattr(acq, f), getattr(p, f)
            if isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12), f
            else:
                assert got == want, f
        assert row["file"] == path.name and row["specimen"] == p.specimen
        assert float(row["thickness_nm"]) == p.thickness_nm and int(row["seed"]) == p.seed


def test_bright_field_inner_angle_zero_is_read(tmp_path: Path) -> None:
    # the tag rows for emdig's Detector.STEM node: a BF detector starts at 0 mrad
    p = make_params(detector="BF", camera_length_mm=115.0)
    sim.write_image(tmp_path / "bf.hspy", np.zeros((8, 8), np.uint16), p)
    [m] = emdig.read(tmp_path / "bf.hspy")
    assert m.acquisition.collection_inner_mrad == 0.0
    assert m.acquisition.collection_outer_mrad == pytest.approx(
        1e3 * math.atan(1.0 / 115.0), abs=0.01
    )
    assert m.acquisition.detector == "BF"


def test_params_are_frozen() -> None:
    p = make_params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.voltage_kv = 1.0  # type: ignore[misc]


def test_kept_images_meet_the_operator_snr() -> None:
    # the operator lengthens the dwell until the structure's SNR over a probe-sized patch
    # reaches the threshold: every kept image meets it, recomputed here from the render
    ps = sim.sample_params(np.random.default_rng(3), 40)
    for p in ps:
        inst = sim.INSTRUMENTS[p.instrument]
        fwhm = sim.probe_fwhm_nm(
            p.voltage_kv, p.convergence_mrad, cs_mm=inst.cs_mm, source_nm=sim._source_nm(p, inst)
        )
        v = sim._visibility(p) * max(1.0, fwhm / p.pixel_size_nm)
        n = sim.electrons_per_pixel(p.beam_current_pa, p.dwell_us)
        assert v * math.sqrt(n) >= sim._MIN_SNR
    # the dwell is lengthened, never the optics changed: dose spreads over decades
    doses = [sim.electrons_per_pixel(p.beam_current_pa, p.dwell_us) for p in ps]
    assert max(doses) / min(doses) > 30


def test_haadf_and_adf_regimes_differ_in_contrast() -> None:
    # a low-angle ADF detector sees the Bragg excitation (bend contours: slow variation across
    # the field); HAADF beyond 3 alpha is incoherent and shows hardly any of it
    kw = dict(specimen="SrTiO3 [001]", magnification=5.1e6, seed=4, thickness_nm=10.0,
              convergence_mrad=25.0)  # fmt: skip

    def slow_share(det: str, cl: float) -> float:
        img = simulate_image(make_params(detector=det, camera_length_mm=cl, **kw), noise=False)  # type: ignore[arg-type]
        a = img.astype(float) - img.mean()
        f = np.abs(np.fft.rfft2(a)) ** 2
        r = np.hypot(np.fft.fftfreq(a.shape[0])[:, None], np.fft.rfftfreq(a.shape[1])[None, :])
        return float(f[r < 4 / a.shape[0]].sum() / f.sum())

    haadf_cl = sim.camera_lengths_for("Spectra 300", "HAADF", 25.0)[-1]
    adf_cl = sim.camera_lengths_for("Spectra 300", "ADF", 25.0)[-1]
    assert slow_share("ADF", adf_cl) > 3 * slow_share("HAADF", haadf_cl)
