"""Metadata encoding: records, normalisation statistics, masks, unknown categories, config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emdig import Acquisition, Micrograph
from emdig.contrastive.config import (
    ContrastiveConfig,
    FieldSpec,
    MetadataEncoderConfig,
    default_fields,
)
from emdig.contrastive.encoding import (
    ELEMENTARY_CHARGE_C,
    MetadataEncoder,
    encode_metadata,
    field_value,
    fit_fields,
    metadata_keys,
    metadata_record,
)
from emdig.errors import ModelError

SPECS = (
    FieldSpec("pixel_size_nm", "numeric", log=True),
    FieldSpec("voltage_kv", "numeric"),
    FieldSpec("tilt_alpha_deg", "numeric"),
    FieldSpec("scan_rotation_deg", "angle"),
    FieldSpec("detector", "categorical"),
)


def _records() -> list[dict[str, object]]:
    return [
        metadata_record({"pixel_size_nm": 0.01, "voltage_kv": 200.0, "tilt_alpha_deg": 1.0,
                         "scan_rotation_deg": 30.0, "detector": "HAADF"}),
        metadata_record({"pixel_size_nm": 0.1, "voltage_kv": 300.0, "tilt_alpha_deg": -3.0,
                         "detector": "BF"}),
        metadata_record({"pixel_size_nm": 1.0, "voltage_kv": 80.0, "detector": "HAADF"}),
    ]  # fmt: skip


def test_record_from_micrograph_acquisition_and_dict_with_dose() -> None:
    acq = Acquisition(detector="HAADF", beam_current_pa=40.0, dwell_us=4.0, voltage_kv=300.0)
    m = Micrograph(np.zeros((4, 4), np.uint8), pixel_size_nm=0.02, acquisition=acq)
    dose = 40e-12 * 4e-6 / 1.602176634e-19
    assert ELEMENTARY_CHARGE_C == 1.602176634e-19
    r = metadata_record(m)
    assert r["pixel_size_nm"] == 0.02 and r["detector"] == "HAADF"
    assert r["dose_e_per_px"] == pytest.approx(dose, rel=1e-12)
    assert r["dose_e_per_px"] == pytest.approx(998.64, abs=0.01)
    r2 = metadata_record(acq, pixel_size_nm=0.05)
    assert r2["pixel_size_nm"] == 0.05 and r2["voltage_kv"] == 300.0
    assert metadata_record(acq)["pixel_size_nm"] is None
    # a catalog row: extra keys ignored, missing keys are None, no dose without dwell
    r3 = metadata_record({"id": 3, "path": "x", "beam_current_pa": 10.0, "detector": "BF"})
    assert r3["dose_e_per_px"] is None and r3["magnification"] is None and "id" not in r3


def test_field_value_log_and_missing() -> None:
    spec = FieldSpec("pixel_size_nm", "numeric", log=True)
    assert field_value(spec, {"pixel_size_nm": 0.01}) == pytest.approx(-2.0)
    for bad in (0.0, -1.0, None, float("nan"), "abc"):
        assert field_value(spec, {"pixel_size_nm": bad}) is None
    assert field_value(FieldSpec("tilt_alpha_deg"), {"tilt_alpha_deg": 0.0}) == 0.0
    assert field_value(FieldSpec("detector", "categorical"), {"detector": " BF "}) == "BF"
    assert field_value(FieldSpec("detector", "categorical"), {"detector": ""}) is None


def test_normalisation_statistics_come_from_the_given_records_only() -> None:
    train = _records()[:2]
    specs = fit_fields(SPECS, train)
    px, kv, tilt, _, det = specs
    # log10 of 0.01 and 0.1 -> -2, -1 (population std)
    assert px.mean == pytest.approx(-1.5) and px.std == pytest.approx(0.5)
    assert kv.mean == pytest.approx(250.0) and kv.std == pytest.approx(50.0)
    assert tilt.mean == pytest.approx(-1.0) and tilt.std == pytest.approx(2.0)
    assert det.vocab == ("BF", "HAADF")
    # the third record (not in train) changes nothing; fitting on all three does
    all3 = fit_fields(SPECS, _records())
    assert all3[0].mean == pytest.approx(np.mean([-2.0, -1.0, 0.0]))
    enc = encode_metadata(_records(), specs)
    np.testing.assert_allclose(enc.numeric[:, 0], [-1.0, 1.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(enc.numeric[:, 1], [-1.0, 1.0, (80 - 250) / 50], rtol=1e-6)


def test_masks_and_unknown_category_indices() -> None:
    specs = fit_fields(SPECS, _records()[:2])
    recs = [
        {"tilt_alpha_deg": 0.0, "detector": "HAADF", "scan_rotation_deg": 90.0},
        {"tilt_alpha_deg": None, "detector": "ABF"},  # ABF never seen in training
        {"detector": None},
    ]
    enc = encode_metadata(recs, specs)
    assert enc.numeric_mask[:, 2].tolist() == [True, False, False]
    # present tilt 0 is standardised with the training mean -1, std 2 -> 0.5; missing stays 0
    assert enc.numeric[0, 2] == pytest.approx(0.5) and enc.numeric[1, 2] == 0.0
    assert enc.angle[0, 0] == pytest.approx(math.pi / 2) and enc.angle_mask[:, 0].tolist() == [
        True, False, False]  # fmt: skip
    # vocab ("BF", "HAADF"): HAADF -> 2; unseen ABF -> 0 ("unknown") but present; None missing
    assert enc.categorical[:, 0].tolist() == [2, 0, 0]
    assert enc.categorical_mask[:, 0].tolist() == [True, True, False]


def _encoder(specs: tuple[FieldSpec, ...]) -> MetadataEncoder:
    torch.manual_seed(0)
    cfg = MetadataEncoderConfig(fields=specs, frequencies=3, harmonics=2, token_dim=8, hidden=16)
    return MetadataEncoder(cfg, 8).eval()


def test_missing_is_not_zero_and_unknown_is_not_missing() -> None:
    specs = fit_fields(SPECS, _records())
    enc_model = _encoder(specs)
    base = {"pixel_size_nm": 0.1, "voltage_kv": 200.0, "detector": "HAADF"}
    recs = [
        {**base, "tilt_alpha_deg": -1.0},  # exactly the training mean -> standardised 0
        {**base, "tilt_alpha_deg": None},
        {**base, "detector": "ABF"},  # unknown
        {**base, "detector": None},  # missing
    ]
    enc = encode_metadata(recs, specs)
    assert enc.numeric[0, 2] == pytest.approx(0.0, abs=1e-6)  # same input number as missing
    with torch.no_grad():
        t = enc.tensors()
        tok = enc_model.tokens(**t)
        out = enc_model(**t)
    # the missing tilt's token is the learned missing vector, the zero tilt's is not
    np.testing.assert_array_equal(tok[1, 2].numpy(), enc_model.missing[2].detach().numpy())
    assert not torch.allclose(tok[0, 2], tok[1, 2])
    assert not torch.allclose(out[0], out[1])
    # unknown detector -> the "unknown" row of the table; missing -> the missing vector
    det_slot = 4  # numeric fields, then the angle, then categorical
    unknown_row = enc_model.cat_table.weight[enc_model.cat_offset[0]]
    np.testing.assert_array_equal(tok[2, det_slot].numpy(), unknown_row.detach().numpy())
    np.testing.assert_array_equal(
        tok[3, det_slot].numpy(), enc_model.missing[det_slot].detach().numpy()
    )
    assert not torch.allclose(out[2], out[3])
    # the value under a False mask does not matter
    t2 = dict(t)
    t2["numeric"] = t["numeric"].clone()
    t2["numeric"][1, 2] = 5.0
    with torch.no_grad():
        torch.testing.assert_close(enc_model(**t2)[1], out[1])


def test_metadata_keys_identify_identical_records() -> None:
    specs = fit_fields(SPECS, _records())
    a = {"pixel_size_nm": 0.1, "voltage_kv": 200.0, "detector": "HAADF"}
    keys = metadata_keys([a, dict(a), {**a, "voltage_kv": 200.0 + 1e-12}, {**a, "detector": "BF"},
                          {**a, "acquired_at": "2020"}], specs)  # fmt: skip
    assert keys[0] == keys[1] == keys[2] == keys[4]  # acquired_at is not an encoded field
    assert keys[3] != keys[0]


def test_config_json_round_trip_and_errors() -> None:
    specs = fit_fields(default_fields(), _records())
    cfg = ContrastiveConfig(embed_dim=32).with_fields(specs)
    again = ContrastiveConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.metadata.fields[0].mean == specs[0].mean
    assert dict((s.name, s.vocab) for s in again.metadata.fields)["detector"] == ("BF", "HAADF")
    with pytest.raises(ModelError, match="does not describe"):
        ContrastiveConfig.from_json('{"arch": "other"}')
    with pytest.raises(ModelError, match="not valid JSON"):
        ContrastiveConfig.from_json("{")
    bad = cfg.to_json().replace('"embed_dim"', '"embed_dims"')
    with pytest.raises(ModelError, match="unknown keys"):
        ContrastiveConfig.from_json(bad)


# ----------------------------------------------------------------------------- preprocessing
def test_preprocess_takes_the_native_scale_centre_and_its_percentiles() -> None:
    from emdig.contrastive.config import ImageEncoderConfig
    from emdig.contrastive.encoders import center_crop, preprocess

    cfg = ImageEncoderConfig(input_size=16, cache_size=24)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, (60, 50)).astype(np.uint16)
    out = preprocess(img, config=cfg)
    region = img[18:42, 13:37].astype(np.float64)  # (60-24)//2, (50-24)//2: no resampling
    lo, hi = np.percentile(region, [1, 99])
    ref = np.clip((region - lo) / (hi - lo), -1, 2)
    assert out.shape == (24, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # a contrast-inverted image gives the inverted result (polarity is kept)
    inv = preprocess(4000 - img.astype(np.int32), config=cfg)
    np.testing.assert_allclose(inv, np.clip(1 - ref, -1, 2), atol=1e-4)
    # gain and offset do not matter
    np.testing.assert_allclose(preprocess(img * 3.0 + 100, config=cfg), out, atol=1e-5)
    assert center_crop(out[None], 16).shape == (1, 16, 16)
    np.testing.assert_array_equal(center_crop(out[None], 16)[0], out[4:20, 4:20])


def test_preprocess_pads_small_images_and_survives_bad_pixels() -> None:
    from emdig.contrastive.config import ImageEncoderConfig
    from emdig.contrastive.encoders import preprocess

    cfg = ImageEncoderConfig(input_size=16, cache_size=24)
    small = np.arange(50, dtype=np.float32).reshape(5, 10)
    out = preprocess(small, config=cfg)
    assert out.shape == (24, 24) and np.isfinite(out).all()
    # mirror padding only repeats existing values
    lo, hi = np.percentile(out, [1, 99])
    assert lo == pytest.approx(0.0, abs=1e-6) and hi == pytest.approx(1.0, abs=1e-6)
    bad = np.ones((30, 30), np.float32)
    bad[5, 5] = np.nan
    bad[:15] = 2.0
    got = preprocess(bad, config=cfg)
    assert np.isfinite(got).all()
    assert not preprocess(np.full((30, 30), 7.0), config=cfg).any()  # flat -> zeros
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros((2, 3, 4)), config=cfg)


def test_texture_statistics_match_a_plain_numpy_reference() -> None:
    from emdig.contrastive.encoders import (
        _DIFF_EDGES,
        _INTENSITY_EDGES,
        _LAGS,
        N_STATS,
        texture_statistics,
    )

    def hist(v: np.ndarray, edges: tuple[float, float, int]) -> np.ndarray:
        first, last, n = edges
        step = (last - first) / n
        k = np.clip(np.floor((v - (first - step)) / step), 0, n + 1).astype(int)
        return np.log(np.bincount(k.ravel(), minlength=n + 2) / v.size + 1e-4)

    def reference(im: np.ndarray) -> np.ndarray:
        im = im.astype(np.float64)
        parts = [
            hist(im, _INTENSITY_EDGES),
            hist(im[1:] - im[:-1], _DIFF_EDGES),
            hist(im[:, 1:] - im[:, :-1], _DIFF_EDGES),
        ]
        xc = im - im.mean()
        var = (xc * xc).mean() + 1e-8
        corr = []
        for lag in _LAGS:
            corr += [(xc[:, lag:] * xc[:, :-lag]).mean() / var, (xc[lag:] * xc[:-lag]).mean() / var]
        skew = (xc**3).mean() / var**1.5
        return np.concatenate([*parts, [*corr, im.mean(), np.sqrt(var), np.clip(skew, -20, 20)]])

    rng = np.random.default_rng(0)
    x = rng.random((6, 40, 56)).astype(np.float32) * 1.8 - 0.4  # values beyond both ends
    x[3] = rng.normal(0.5, 0.02, (40, 56))  # narrow: out-of-range difference bins empty
    x[4] = np.where(rng.random((40, 56)) < 0.1, 1.9, 0.1)  # strongly skewed
    x[5, :, ::2] = x[5, :, 1::2]  # horizontal pairs repeat: many exact zero differences
    got = texture_statistics(x)
    assert got.shape == (6, N_STATS) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack([reference(im) for im in x]), atol=2e-4)
    assert texture_statistics(np.zeros((0, 40, 56), np.float32)).shape == (0, N_STATS)
    with pytest.raises(ValueError, match="8 x 40 px"):
        texture_statistics(np.zeros((1, 8, 40), np.float32))  # no room for the 8-px lag
