"""Synthetic FRIL images: determinism, ground truth, measurability, and likeness to real images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from emdig.particles import (
    NEGATIVE_DTYPE,
    NEGATIVE_KINDS,
    PARTICLE_DTYPE,
    SynthConfig,
    SynthImage,
    synth_batch,
    synthesize,
)

IMMUNOGOLD = Path(__file__).resolve().parents[3] / "shared" / "data" / "immunogold"
PX = 0.5587

# a crowded config that stresses placement: many particles, many clusters, all contacts touching
CROWDED = SynthConfig(
    shape=(384, 448),
    particle_density_per_um2=1500.0,
    clustered_fraction=0.6,
    touching_fraction=1.0,
    negative_density_per_um2=200.0,
    info_strip=True,
)


# ---------------------------------------------------------------------------------------------
# independent measurement helpers (no code shared with the generator)


def _region_from(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """4-connected component of ``mask`` that contains ``seed`` (by repeated dilation)."""
    reg = np.zeros_like(mask)
    if not mask[seed]:
        return reg
    reg[seed] = True
    while True:
        grown = reg.copy()
        grown[1:] |= reg[:-1]
        grown[:-1] |= reg[1:]
        grown[:, 1:] |= reg[:, :-1]
        grown[:, :-1] |= reg[:, 1:]
        grown &= mask
        if np.array_equal(grown, reg):
            return reg
        reg = grown


def _crop(img: np.ndarray, x: float, y: float, half: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop around (x, y) and the distance of each crop pixel from (x, y); None at the border."""
    yi, xi = round(y), round(x)
    if yi - half < 0 or xi - half < 0 or yi + half >= img.shape[0] or xi + half >= img.shape[1]:
        return None
    c = img[yi - half : yi + half + 1, xi - half : xi + half + 1].astype(float)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    return c, np.hypot(yy - (y - yi), xx - (x - xi))


def _half_level_diameter_px(img: np.ndarray, x: float, y: float, r: float) -> float | None:
    """Equivalent diameter of the dark region below the level halfway between the local
    background (annulus median) and the particle core (central median)."""
    got = _crop(img, x, y, int(np.ceil(2.6 * r)) + 2)
    if got is None:
        return None
    c, rr = got
    bg = np.median(c[(rr > 1.6 * r) & (rr < 2.5 * r)])
    core = np.median(c[rr < 0.35 * r])
    half = c.shape[0] // 2
    region = _region_from(c < (bg + core) / 2, (half, half))
    return 2.0 * float(np.sqrt(region.sum() / np.pi))


def _isolated(s: SynthImage, factor: float = 4.0, extra_px: float = 10.0) -> np.ndarray:
    """Indices of particles with no other particle or look-alike within factor * r + extra."""
    p, n = s.particles, s.negatives
    xs = np.concatenate([p["x_px"], n["x_px"]])
    ys = np.concatenate([p["y_px"], n["y_px"]])
    keep = []
    for i, row in enumerate(p):
        r = row["diameter_nm"] / 2 / s.pixel_size_nm
        d = np.hypot(xs - row["x_px"], ys - row["y_px"])
        d = d[d > 0]
        if d.size == 0 or d.min() > factor * r + extra_px:
            keep.append(i)
    return np.asarray(keep, dtype=int)


def _psd_slope(a: np.ndarray, fmin: float = 1 / 128, fmax: float = 1 / 8) -> float:
    """Log-log slope of the radially averaged power spectrum (Hann-windowed)."""
    a = a - a.mean()
    n = min(a.shape)
    a = a[:n, :n]
    w = np.hanning(n)
    power = np.abs(np.fft.fft2(a * np.outer(w, w))) ** 2
    f = np.fft.fftfreq(n)
    fr = np.hypot(f[:, None], f[None, :]).ravel()
    edges = np.geomspace(fmin, fmax, 16)
    idx = np.digitize(fr, edges)
    sums = np.bincount(idx, power.ravel(), minlength=edges.size + 1)
    counts = np.bincount(idx, minlength=edges.size + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    return float(np.polyfit(np.log(centres), np.log(sums[1:-1] / counts[1:-1]), 1)[0])


def _autocorrelation_length(a: np.ndarray) -> float:
    """Radius (px) at which the radially averaged autocorrelation falls below 1/e."""
    a = a - a.mean()
    ac = np.real(np.fft.ifft2(np.abs(np.fft.fft2(a)) ** 2))
    ac = np.fft.fftshift(ac / ac[0, 0])
    cy, cx = np.array(ac.shape) // 2
    yy, xx = np.indices(ac.shape)
    r = np.hypot(yy - cy, xx - cx).astype(int).ravel()
    prof = np.bincount(r, ac.ravel()) / np.bincount(r)
    return float(np.argmax(prof < np.exp(-1)))


def _stats(a: np.ndarray) -> np.ndarray:
    a = a.astype(float)
    return np.array([a.mean(), a.std(), _psd_slope(a), _autocorrelation_length(a)])


# ---------------------------------------------------------------------------------------------
# API and determinism


def test_dtypes_and_shapes() -> None:
    s = synthesize(SynthConfig(shape=(200, 300)), seed=1)
    assert s.image.shape == (200, 300) and s.image.dtype == np.uint8
    assert s.region_mask.shape == (200, 300) and s.region_mask.dtype == bool
    assert s.region_mask.all()  # no info strip by default
    assert s.particles.dtype == PARTICLE_DTYPE
    assert s.negatives.dtype == NEGATIVE_DTYPE
    assert {"x_px", "y_px", "diameter_nm", "class_nm"} <= set(PARTICLE_DTYPE.names or ())
    assert {"x_px", "y_px", "diameter_nm", "class_nm", "kind"} <= set(NEGATIVE_DTYPE.names or ())
    assert s.pixel_size_nm == PX
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 2  # type: ignore[misc]


def test_same_seed_same_image_and_truth() -> None:
    cfg = SynthConfig(shape=(256, 256))
    a, b = synthesize(cfg, seed=7), synthesize(cfg, seed=7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.particles, b.particles)
    assert np.array_equal(a.negatives, b.negatives)
    c = synthesize(cfg, seed=8)
    assert not np.array_equal(a.image, c.image)
    # the config's seed is the default; a fresh seed is drawn and recorded when there is none
    d = synthesize(dataclasses.replace(cfg, seed=7))
    assert np.array_equal(a.image, d.image)
    e = synthesize(cfg)
    assert np.array_equal(synthesize(cfg, seed=e.seed).image, e.image)


def test_batch_is_deterministic_and_each_image_reproducible() -> None:
    cfg = SynthConfig(shape=(160, 160))
    first = list(synth_batch(cfg, 4, seed=3))
    again = list(synth_batch(cfg, 4, seed=3))
    assert [s.seed for s in first] == [s.seed for s in again]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(first, again, strict=True))
    assert len({s.seed for s in first}) == 4
    shorter = list(synth_batch(cfg, 2, seed=3))
    assert [s.seed for s in shorter] == [s.seed for s in first[:2]]
    assert np.array_equal(synthesize(cfg, seed=first[2].seed).image, first[2].image)
    assert list(synth_batch(cfg, 0, seed=3)) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"shape": (10, 512)},
        {"pixel_size_nm": 0.0},
        {"size_weights": (1.0, 1.0)},
        {"sizes_nm": (6.0, 6.0, 12.0)},
        {"clustered_fraction": 1.5},
        {"gold_imp_fraction": -0.1},
        {"negative_kinds": ("pit", "ghost")},
        {"blur_nm_range": (1.0, 0.5)},
        {"jpeg_quality_range": (0, 90)},
        {"shape": (40, 512), "info_strip": True},
    ],
)
def test_bad_config_is_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ground truth


def test_no_overlaps_and_touching_pairs_exist() -> None:
    touching = 0
    for s in synth_batch(CROWDED, 3, seed=11):
        p = s.particles
        assert p.size > 40
        r = p["diameter_nm"] / 2 / s.pixel_size_nm
        d = np.hypot(p["x_px"][:, None] - p["x_px"], p["y_px"][:, None] - p["y_px"])
        need = r[:, None] + r[None, :]
        off = ~np.eye(p.size, dtype=bool)
        assert np.all(d[off] >= need[off] - 1e-9), "particles overlap"
        # semi-major axes touch exactly in clusters; equivalent radii then sit within the aspect
        semi = r * np.sqrt(p["aspect"])
        contact = np.isclose(d, semi[:, None] + semi[None, :], rtol=1e-9, atol=1e-9) & off
        touching += int(contact.sum()) // 2
        same = p["cluster"][:, None] == p["cluster"][None, :]
        assert np.all(same[contact]), "touching particles belong to one cluster"
    assert touching > 10


def test_particles_inside_image_and_above_info_strip() -> None:
    for s in synth_batch(CROWDED, 3, seed=12):
        rows, cols = s.image.shape
        content = int(s.region_mask[:, 0].sum())
        assert 16 <= rows - content <= 40
        assert s.region_mask[:content].all() and not s.region_mask[content:].any()
        p = s.particles
        a = p["diameter_nm"] / 2 / s.pixel_size_nm * np.sqrt(p["aspect"])  # semi-major, px
        assert np.all(p["x_px"] - a >= -0.5) and np.all(p["x_px"] + a <= cols - 0.5)
        assert np.all(p["y_px"] - a >= -0.5) and np.all(p["y_px"] + a <= content - 0.5)
        n = s.negatives
        assert np.all((n["y_px"] >= 0) & (n["y_px"] <= content - 1))
        # the strip is black but for the white scale bar and its label
        strip = s.image[content:]
        assert np.median(strip) < 20 and (strip > 200).any()
        # sub-pixel centres: the fractional parts are spread, not snapped to the grid
        frac = p["x_px"] % 1.0
        assert np.std(frac) > 0.2


def test_scale_bar_length_matches_pixel_size() -> None:
    cfg = SynthConfig(shape=(600, 1024), info_strip=True, jpeg_quality_range=None)
    s = synthesize(cfg, seed=2)
    content = int(s.region_mask[:, 0].sum())
    strip = s.image[content:] > 128
    row = strip[np.argmax(strip.sum(axis=1))]
    run = np.flatnonzero(row)
    # the longest white run is the bar: 100 nm is the largest round length <= 18% of the width
    breaks = np.flatnonzero(np.diff(run) > 1)
    starts = np.r_[run[0], run[breaks + 1]]
    ends = np.r_[run[breaks], run[-1]]
    longest = int((ends - starts).max()) + 1
    assert abs(longest - 100 / PX) <= 2


def test_class_is_nearest_size_and_diameters_spread_around_nominal() -> None:
    cfg = SynthConfig(shape=(512, 512), particle_density_per_um2=1500.0)
    p = np.concatenate([s.particles for s in synth_batch(cfg, 4, seed=13)])
    sizes = np.asarray(cfg.sizes_nm)
    nearest = sizes[np.argmin(np.abs(p["diameter_nm"][:, None] - sizes[None, :]), axis=1)]
    assert np.array_equal(p["class_nm"], nearest)
    for size, weight in zip(cfg.sizes_nm, cfg.size_weights, strict=True):
        d = p["diameter_nm"][p["class_nm"] == size]
        assert d.size > 20
        assert abs(d.size / p.size - weight) < 0.1
        assert abs(d.mean() / size - 1) < 0.03
        assert 0.05 < d.std() / size < 0.10  # 8% CV, truncated at 2.5 SD
    assert np.all(p["aspect"] >= 1.0)
    assert np.all(p["aspect"] <= 1 + cfg.ellipticity * p["diameter_nm"] / 18.0 + 1e-12)


def test_negatives_present_with_all_kinds_and_clear_of_gold() -> None:
    kinds: set[str] = set()
    for s in synth_batch(CROWDED, 3, seed=14):
        n, p = s.negatives, s.particles
        assert n.size > 0
        kinds |= set(n["kind"].tolist())
        assert set(np.unique(n["class_nm"])) <= set(CROWDED.sizes_nm)
        rn = n["diameter_nm"] / 2 / s.pixel_size_nm
        rp = p["diameter_nm"] / 2 / s.pixel_size_nm
        d = np.hypot(n["x_px"][:, None] - p["x_px"], n["y_px"][:, None] - p["y_px"])
        assert np.all(d >= rn[:, None] + rp[None, :] + 2.0 - 1e-9)
    assert kinds == set(NEGATIVE_KINDS)
    only = dataclasses.replace(CROWDED, negative_kinds=("pit",))
    assert set(synthesize(only, seed=1).negatives["kind"].tolist()) == {"pit"}
    none = dataclasses.replace(CROWDED, negative_kinds=())
    assert synthesize(none, seed=1).negatives.size == 0


# ---------------------------------------------------------------------------------------------
# the image agrees with the ground truth


def test_measured_diameter_matches_truth_for_isolated_12_and_18_nm() -> None:
    cfg = SynthConfig(
        shape=(512, 512), sizes_nm=(12.0, 18.0), size_weights=(1.0, 1.0), size_cv=(0.08, 0.08)
    )
    errors: dict[float, list[float]] = {12.0: [], 18.0: []}
    for s in synth_batch(cfg, 12, seed=15):
        for i in _isolated(s, factor=3.0, extra_px=6.0):
            row = s.particles[i]
            r = row["diameter_nm"] / 2 / s.pixel_size_nm
            d_px = _half_level_diameter_px(s.image, row["x_px"], row["y_px"], r)
            if d_px is not None:
                errors[row["class_nm"]].append(d_px * s.pixel_size_nm / row["diameter_nm"] - 1)
    for size, err in errors.items():
        e = np.asarray(err)
        assert e.size >= 6, size
        # the odd particle sits on a fold or an IMP clump that skews the threshold
        assert np.mean(np.abs(e) < 0.10) >= 0.8, (size, e.round(3))
        assert abs(np.median(e)) < 0.06, (size, e.round(3))


def test_measured_diameter_scales_with_pixel_size() -> None:
    # the same particles at half the magnification: the diameter in nm is still right
    cfg = SynthConfig(
        shape=(384, 384),
        pixel_size_nm=2 * PX,
        sizes_nm=(18.0,),
        size_weights=(1.0,),
        size_cv=(0.08,),
        particle_density_per_um2=120.0,
    )
    err = []
    for s in synth_batch(cfg, 3, seed=16):
        for i in _isolated(s):
            row = s.particles[i]
            r = row["diameter_nm"] / 2 / s.pixel_size_nm
            d_px = _half_level_diameter_px(s.image, row["x_px"], row["y_px"], r)
            if d_px is not None:
                err.append(d_px * s.pixel_size_nm / row["diameter_nm"] - 1)
    assert len(err) >= 5
    assert abs(float(np.median(err))) < 0.10


def test_rendered_centres_match_subpixel_truth() -> None:
    cfg = SynthConfig(shape=(512, 512), sizes_nm=(12.0,), size_weights=(1.0,), size_cv=(0.08,))
    offsets = []
    for s in synth_batch(cfg, 4, seed=17):
        for i in _isolated(s):
            row = s.particles[i]
            r = row["diameter_nm"] / 2 / s.pixel_size_nm
            got = _crop(s.image, row["x_px"], row["y_px"], int(2 * r))
            if got is None:
                continue
            c, rr = got
            bg = np.median(c[rr > 1.5 * r])
            core = np.median(c[rr < 0.35 * r])
            half = c.shape[0] // 2
            # darkness-weighted centroid of the connected region below the half level
            region = _region_from(c < (bg + core) / 2, (half, half))
            w = np.clip(bg - c, 0, None) * region
            yy, xx = np.indices(c.shape) - half
            cy = (w * yy).sum() / w.sum() + round(row["y_px"])
            cx = (w * xx).sum() / w.sum() + round(row["x_px"])
            offsets.append(np.hypot(cy - row["y_px"], cx - row["x_px"]))
    assert len(offsets) >= 5
    assert np.median(offsets) < 0.3


@pytest.mark.parametrize("invert", [0.0, 1.0])
def test_particle_cores_darker_than_local_background(invert: float) -> None:
    cfg = SynthConfig(shape=(512, 512), invert_probability=invert)
    n_checked = 0
    for s in synth_batch(cfg, 6, seed=18):
        for i in _isolated(s, factor=3.0, extra_px=4.0):
            row = s.particles[i]
            r = row["diameter_nm"] / 2 / s.pixel_size_nm
            got = _crop(s.image, row["x_px"], row["y_px"], int(np.ceil(2.6 * r)) + 2)
            if got is None:
                continue
            c, rr = got
            core = c[rr < max(1.0, 0.35 * r)].mean()
            bg = np.median(c[(rr > 1.6 * r) & (rr < 2.5 * r)])
            margin = 25.0 if row["class_nm"] > 6 else 12.0
            if invert:
                assert core > bg + margin
            else:
                assert core < bg - margin
            n_checked += 1
    assert n_checked >= 10


def test_gold_imp_fraction_puts_bright_crescents_beside_gold_and_nothing_else() -> None:
    base = SynthConfig(shape=(384, 384), particle_density_per_um2=300.0, negative_kinds=())
    with_imps = dataclasses.replace(base, gold_imp_fraction=1.0)
    # off by default: the images are those of the generator without the option, bit for bit
    assert np.array_equal(
        synthesize(base, seed=4).image,
        synthesize(dataclasses.replace(base, gold_imp_fraction=0.0), seed=4).image,
    )
    ring = {0.0: [], 1.0: []}
    for frac, cfg in ((0.0, base), (1.0, with_imps)):
        for seed in range(6):
            s = synthesize(cfg, seed=seed)
            for row in s.particles:
                r = row["diameter_nm"] / 2 / s.pixel_size_nm
                got = _crop(s.image, row["x_px"], row["y_px"], int(np.ceil(r + 14)))
                if got is None:
                    continue
                c, rr = got
                ann = c[(rr > r + 1) & (rr < r + 10)]
                ring[frac].append(np.percentile(ann, 95) - np.median(c[rr > r + 11]))
    # the brightest pixels right beside the gold: the abutting IMPs' crescents
    assert np.median(ring[1.0]) > np.median(ring[0.0]) + 8


def test_debris_is_a_lumpy_clump_not_a_gold_like_disc() -> None:
    """A gold particle is one dark, filled disc; debris must not be: within the same radius
    its darkness is patchy (granules with gaps), and its core is lighter than gold's."""
    cfg = dataclasses.replace(
        SynthConfig(shape=(512, 512), jpeg_quality_range=None),
        negative_kinds=("debris",),
        negative_density_per_um2=150.0,
    )
    gold_fill, debris_fill = [], []
    for s in synth_batch(cfg, 6, seed=21):
        for tab, out in ((s.particles, gold_fill), (s.negatives, debris_fill)):
            for row in tab:
                if row["class_nm"] < 12:
                    continue
                r = row["diameter_nm"] / 2 / s.pixel_size_nm
                got = _crop(s.image, row["x_px"], row["y_px"], int(np.ceil(2.6 * r)) + 2)
                if got is None:
                    continue
                c, rr = got
                bg = np.median(c[(rr > 1.8 * r) & (rr < 2.5 * r)])
                inner = c[rr < 0.7 * r]
                # fraction of the inner disc at least 40 % darker than the surroundings
                out.append(float(np.mean(inner < 0.6 * bg)))
    assert len(gold_fill) >= 10 and len(debris_fill) >= 10
    assert np.median(gold_fill) > 0.9
    assert np.median(debris_fill) < 0.3
    assert np.mean(np.asarray(debris_fill) > 0.8) < 0.05  # hardly any debris fills like gold


# ---------------------------------------------------------------------------------------------
# likeness to the real MPFI images


@pytest.fixture(scope="module")
def real_images() -> dict[str, np.ndarray]:
    if not (IMMUNOGOLD / "annotations.csv").is_file():
        pytest.skip(f"real immunogold images not found at {IMMUNOGOLD}")
    from PIL import Image

    out = {}
    for path in sorted((IMMUNOGOLD / "images").glob("*.jpg")):
        with Image.open(path) as im:
            out[path.name] = np.asarray(im.convert("L"))
    return out


@pytest.mark.shared_data
def test_image_statistics_like_real(real_images: dict[str, np.ndarray]) -> None:
    # 512 x 512 tiles of the content area (above the info strip) of every real image
    real = np.median(
        [
            _stats(img[y : y + 512, x : x + 512])
            for img in real_images.values()
            for y in range(0, 2048, 512)
            for x in range(0, 2048, 512)
        ],
        axis=0,
    )
    synth = np.median(
        [_stats(s.image) for s in synth_batch(SynthConfig(), 16, seed=19)],
        axis=0,
    )
    names = ["mean", "std", "psd slope", "autocorrelation length"]
    for name, r, s in zip(names, real, synth, strict=True):
        assert abs(s / r - 1) <= 0.5, f"{name}: synthetic {s:.3g} vs real {r:.3g}"


@pytest.mark.shared_data
def test_gold_contrast_like_annotated_real_particles(real_images: dict[str, np.ndarray]) -> None:
    import csv

    def contrast(img: np.ndarray, x: float, y: float, d_nm: float) -> float | None:
        r = d_nm / 2 / PX
        got = _crop(img, x, y, int(np.ceil(2.6 * r)) + 2)
        if got is None:
            return None
        c, rr = got
        bg = np.median(c[(rr > 1.8 * r) & (rr < 2.5 * r)])
        return float((bg - c[rr < max(1.0, 0.35 * r)].mean()) / bg)

    real: dict[float, list[float]] = {6.0: [], 12.0: []}
    with open(IMMUNOGOLD / "annotations.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            img = real_images[row["image"]]
            # the annotated centres are integers: take the darkest pixel nearby as the centre
            x, y = round(float(row["x_px"])), round(float(row["y_px"]))
            win = img[y - 3 : y + 4, x - 3 : x + 4]
            dy, dx = np.unravel_index(np.argmin(win), win.shape)
            c = contrast(img, x + dx - 3, y + dy - 3, float(row["diameter_nm"]))
            if c is not None:
                real[float(row["diameter_nm"])].append(c)
    synth: dict[float, list[float]] = {6.0: [], 12.0: []}
    for s in synth_batch(SynthConfig(shape=(384, 384)), 8, seed=20):
        for i in _isolated(s, factor=3.0, extra_px=4.0):
            row = s.particles[i]
            if row["class_nm"] in synth:
                c = contrast(s.image, row["x_px"], row["y_px"], row["class_nm"])
                if c is not None:
                    synth[row["class_nm"]].append(c)
    for size in (6.0, 12.0):
        r, s = np.median(real[size]), np.median(synth[size])
        assert abs(s / r - 1) <= 0.3, f"{size} nm contrast: synthetic {s:.2f} vs real {r:.2f}"
