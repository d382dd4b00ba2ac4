"""Every bad-input case gives one clear EmdigError naming the file and the reason.

The files come from tests/data/badfiles.py. Each case is also run through ``emdig info``: exit
status 2, one line on stderr naming the file, and never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import emdig
from emdig.cli import app
from emdig.errors import (
    CorruptFile,
    EmdigError,
    EmptyFile,
    NestingTooDeep,
    TooLarge,
    TruncatedFile,
    UnreadableFile,
    UnsupportedFormat,
)

from data import badfiles

# case -> (error class, a phrase the message must contain)
CASES: dict[str, tuple[type[EmdigError], str]] = {
    "html_as_tif": (UnsupportedFormat, "HTML page although its extension is '.tif'"),
    "zip_as_tif": (UnsupportedFormat, "ZIP archive"),
    "random_as_emd": (UnsupportedFormat, "not an EM image format"),
    "text_as_dm3": (UnsupportedFormat, "plain text"),
    "tiff_huge_header": (TooLarge, "65535x65535"),
    "png_bomb": (TooLarge, "12000x12000"),
    "tiff_ifd_loop": (CorruptFile, "loops back"),
    "tiff_ifd_self_loop": (CorruptFile, "loops back"),
    "dm3_deep_nesting": (NestingTooDeep, "nest deeper than 64 levels"),
    "dm3_bad_type": (CorruptFile, "unknown data type"),
    "dm3_bad_version": (CorruptFile, "unsupported version 333319"),
    "dm3_truncated_after_header": (TruncatedFile, "ends inside"),
    "ser_huge": (TooLarge, "2,147,483,648 elements"),
    "ser_huge_image": (TooLarge, "65535x65535"),
    "mrc_huge_header": (TooLarge, "65535x65535"),
    "symlink_loop": (UnreadableFile, "symbolic link loop"),
}


def _path(bad_files: dict[str, Path | list[Path]], case: str) -> Path:
    p = bad_files[case]
    assert isinstance(p, Path)
    return p


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_clear_error(bad_files: dict[str, Path | list[Path]], case: str) -> None:
    path = _path(bad_files, case)
    cls, phrase = CASES[case]
    with pytest.raises(cls) as info:
        emdig.read(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg  # names the file
    assert phrase in msg
    assert "\n" not in msg


def test_empty_files(bad_files: dict[str, Path | list[Path]]) -> None:
    paths = bad_files["empty_files"]
    assert isinstance(paths, list) and len(paths) == 8
    for p in paths:
        with pytest.raises(EmptyFile, match=r"file is empty \(0 bytes\)"):
            emdig.read(p)


@pytest.mark.parametrize("fraction", [10, 50, 90])
@pytest.mark.parametrize("ext", ["png", "jpg", "tif", "dm3"])
def test_truncated_files(tmp_path: Path, ext: str, fraction: int) -> None:
    builder = {
        "png": badfiles.valid_png,
        "jpg": badfiles.valid_jpeg,
        "tif": badfiles.valid_tiff,
        "dm3": badfiles.valid_dm3,
    }[ext]
    whole = builder(tmp_path).read_bytes()
    cut = tmp_path / f"cut{fraction}.{ext}"
    cut.write_bytes(whole[: len(whole) * fraction // 100])
    with pytest.raises((TruncatedFile, CorruptFile)) as info:
        emdig.read(cut)
    assert str(info.value).startswith(str(cut))
    if ext != "jpg":  # a JPEG cut at 10 % can lose its frame header: then it is "corrupt"
        assert isinstance(info.value, TruncatedFile), info.value


def test_huge_png_headers_rejected_before_decoding(bad_files: dict[str, Path | list[Path]]) -> None:
    paths = bad_files["png_huge_header"]
    assert isinstance(paths, list)
    for p, side in zip(paths, (10000, 20000), strict=True):
        assert p.stat().st_size < 1000
        with pytest.raises(TooLarge, match=f"{side}x{side}"):
            emdig.read(p)


def test_pillow_warning_band_is_rejected(tmp_path: Path) -> None:
    """A real 12000x12000 PNG (144 Mpx, between Pillow's warning and error limits)."""
    with pytest.raises(TooLarge, match="over the 89,478,485-pixel budget"):
        emdig.read(badfiles.png_bomb(tmp_path))


def test_budget_can_be_raised(bad_files: dict[str, Path | list[Path]]) -> None:
    [m] = emdig.read(
        _path(bad_files, "png_bomb"),
        limits=emdig.Limits(max_pixels=200_000_000, max_total_pixels=10**9),
    )
    assert m.shape == (12000, 12000) and int(m.pixels.max()) == 0


def test_content_not_extension_decides(bad_files: dict[str, Path | list[Path]]) -> None:
    [m] = emdig.read(_path(bad_files, "png_as_dm4"))
    assert m.source.format == "png"
    np.testing.assert_array_equal(m.pixels, badfiles.gradient_u8())


def test_valid_controls(tmp_path: Path) -> None:
    [png] = emdig.read(badfiles.valid_png(tmp_path))
    np.testing.assert_array_equal(png.pixels, badfiles.gradient_u8())
    assert png.pixel_size_nm is None  # a PNG has no microscope calibration
    [tif] = emdig.read(badfiles.valid_tiff(tmp_path))
    np.testing.assert_array_equal(tif.pixels, badfiles.gradient_u16())
    [dm] = emdig.read(badfiles.valid_dm3(tmp_path))
    np.testing.assert_array_equal(dm.pixels, badfiles.dm3_pixels())
    assert dm.pixel_size_nm == pytest.approx(badfiles.DM3_SCALE_NM)
    assert dm.acquisition.voltage_kv == 200.0


def test_vanished_and_unreadable(tmp_path: Path) -> None:
    gone = tmp_path / "gone.dm3"
    with pytest.raises(UnreadableFile, match="no such file"):
        emdig.read(gone)
    folder = tmp_path / "folder.dm3"
    folder.mkdir()
    with pytest.raises(UnreadableFile, match="not a regular file"):
        emdig.read(folder)
    locked = badfiles.unreadable(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(UnreadableFile, match="permission denied"):
            emdig.read(locked)


def _all_bad_paths(bad_files: dict[str, Path | list[Path]]) -> list[Path]:
    out: list[Path] = []
    for case in [*CASES, "empty_files", "truncated", "png_huge_header"]:
        v = bad_files[case]
        out += v if isinstance(v, list) else [v]
    return out


def test_cli_info_never_shows_a_traceback(bad_files: dict[str, Path | list[Path]]) -> None:
    runner = CliRunner()
    for path in _all_bad_paths(bad_files):
        result = runner.invoke(app, ["info", str(path), "--timeout", "20"])
        assert result.exit_code == 2, (path, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        text = result.output
        assert "Traceback" not in text
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert lines and lines[0].startswith("error: ") and path.name in " ".join(lines), text
