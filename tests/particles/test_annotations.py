# SPDX-License-Identifier: GPL-3.0-or-later
"""Annotation I/O: the points table, emdig CSV, ImageJ Results tables and ImageJ ROI sets.

The ROI files in the parser tests are built here byte by byte from ImageJ's published header
layout (RoiDecoder), independently of emdig's writer.
"""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

import emdig.particles.annotations as annotations_module
from emdig.errors import (
    ArchiveError,
    CorruptFile,
    EmdigError,
    EmptyFile,
    MissingCalibration,
    TruncatedFile,
    UnreadableFile,
    UnsupportedFormat,
)
from emdig.particles.annotations import (
    Points,
    read_annotations,
    read_imagej_results,
    read_imagej_roi,
    read_imagej_roi_zip,
    read_points_csv,
    write_imagej_roi_zip,
)

IMMUNOGOLD = Path(__file__).resolve().parents[3] / "shared" / "data" / "immunogold"
PIXEL_NM = 0.5587


def sample_points() -> Points:
    return Points.create(
        image=["S7.jpg", "S7.jpg", "odd, name µ.tif", "S8.jpg"],
        x_px=[935.0, 12.25, 0.0, 2047.5],
        y_px=[911.0, 7.125, 3.0, 1.0 / 3.0],
        diameter_nm=[6.0, math.nan, 12.5, 18.0],
        class_nm=[6.0, 12.0, math.nan, 18.0],
        score=[math.nan, 0.25, 0.999, 1.0],
    )


def assert_points_equal(a: Points, b: Points, *, atol: float = 0.0) -> None:
    assert len(a) == len(b)
    assert a.image.tolist() == b.image.tolist()
    for col in ("x_px", "y_px", "diameter_nm", "class_nm", "score"):
        np.testing.assert_allclose(getattr(a, col), getattr(b, col), rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------
# Points


def test_points_create_select_concat_and_index() -> None:
    p = sample_points()
    assert len(p) == 4
    assert p.images() == ["S7.jpg", "odd, name µ.tif", "S8.jpg"]
    s7 = p.select(image="S7.jpg")
    assert len(s7) == 2 and s7.x_px.tolist() == [935.0, 12.25]
    assert len(p.select(image="nope")) == 0
    both = Points.concat([s7, p.select(image="S8.jpg")])
    assert both.image.tolist() == ["S7.jpg", "S7.jpg", "S8.jpg"]
    assert p[[3, 0]].x_px.tolist() == [2047.5, 935.0]
    assert p[1:2].score.tolist() == [0.25]
    assert len(Points.concat([])) == 0 and len(Points.empty()) == 0

    scalar = Points.create(image="a", x_px=[1, 2, 3], y_px=[4, 5, 6], class_nm=6)
    assert scalar.image.tolist() == ["a"] * 3
    assert scalar.class_nm.tolist() == [6.0] * 3
    assert np.isnan(scalar.diameter_nm).all() and np.isnan(scalar.score).all()
    with pytest.raises(ValueError, match="y_px"):
        Points.create(image="a", x_px=[1, 2], y_px=[1, 2, 3])


def test_points_csv_round_trip_is_exact(tmp_path: Path) -> None:
    p = sample_points()
    out = tmp_path / "points.csv"
    p.to_csv(out)
    assert out.read_text(encoding="utf-8").splitlines()[0] == (
        "image,x_px,y_px,diameter_nm,class_nm,score"
    )
    assert_points_equal(Points.from_csv(out), p)
    assert_points_equal(read_annotations(out), p)
    # atomic write: nothing but the result is left behind, and a rewrite replaces it
    p.select(image="S8.jpg").to_csv(out)
    assert [f.name for f in tmp_path.iterdir()] == ["points.csv"]
    assert len(read_points_csv(out)) == 1


def test_points_csv_optional_and_extra_columns(tmp_path: Path) -> None:
    f = tmp_path / "pts.csv"
    f.write_text("note,image,y_px,x_px\nhello,a.tif,1.5,2.5\n\n,b.tif,3,4\n", encoding="utf-8")
    p = read_points_csv(f)
    assert p.image.tolist() == ["a.tif", "b.tif"]
    assert p.x_px.tolist() == [2.5, 4.0] and p.y_px.tolist() == [1.5, 3.0]
    assert np.isnan(p.diameter_nm).all() and np.isnan(p.class_nm).all()
    assert read_points_csv(f, image="b.tif").x_px.tolist() == [4.0]
    assert len(read_annotations(f, image="c.tif")) == 0


# ---------------------------------------------------------------------------------------------
# ImageJ Results


def imagej_results_text(x_um: list[float], y_um: list[float], area_um2: list[float]) -> str:
    # what ImageJ's File > Save As on a Results window writes: unnamed row-number column first
    lines = [" ,Area,Mean,X,Y"]
    for i, (x, y, a) in enumerate(zip(x_um, y_um, area_um2, strict=True), start=1):
        # ImageJ switches to scientific notation for tiny values such as areas in µm²
        lines.append(f"{i},{a:.3E},87.125,{x:.6f},{y:.6f}")
    return "\n".join(lines) + "\n"


def test_imagej_results_round_trip_in_micrometres(tmp_path: Path) -> None:
    x_px = np.array([935.0, 927.0, 1094.0, 3.0])
    y_px = np.array([911.0, 843.0, 701.0, 2000.0])
    d_nm = np.array([6.0, 12.0, 18.0, 7.5])
    px_um = PIXEL_NM / 1000.0
    area_um2 = math.pi * (d_nm / 2000.0) ** 2
    f = tmp_path / "Results.csv"
    f.write_text(
        imagej_results_text((x_px * px_um).tolist(), (y_px * px_um).tolist(), area_um2.tolist())
    )
    for p in (
        read_imagej_results(f, pixel_size_nm=PIXEL_NM, image="S7.jpg"),
        read_annotations(f, pixel_size_nm=PIXEL_NM, image="S7.jpg"),
    ):
        assert p.image.tolist() == ["S7.jpg"] * 4
        # 6 decimals of a µm is 1e-6 µm = 0.0018 px
        np.testing.assert_allclose(p.x_px, x_px, atol=0.002)
        np.testing.assert_allclose(p.y_px, y_px, atol=0.002)
        np.testing.assert_allclose(p.diameter_nm, d_nm, rtol=1e-3)
        assert np.isnan(p.score).all()
    # the README's rule of thumb: 1 µm is 1790 px at 0.5587 nm/px
    assert read_imagej_results(f, pixel_size_nm=1000 / 1790).x_px[0] == pytest.approx(
        round(x_px[0] * px_um, 6) * 1790, abs=1e-6
    )
    assert read_imagej_results(f, pixel_size_nm=PIXEL_NM).image[0] == "Results"


def test_imagej_results_variants(tmp_path: Path) -> None:
    # tab-separated .xls with XM/YM and a Feret column, in nm
    xls = tmp_path / "r.xls"
    xls.write_text("\tXM\tYM\tFeret\n1\t55.87\t111.74\t6.5\n2\t0\t5.587\t\n")
    p = read_imagej_results(xls, pixel_size_nm=PIXEL_NM, unit="nm", image="a")
    np.testing.assert_allclose(p.x_px, [100.0, 0.0])
    np.testing.assert_allclose(p.y_px, [200.0, 10.0])
    assert p.diameter_nm[0] == pytest.approx(6.5) and np.isnan(p.diameter_nm[1])

    # Gold Digger style: pixels, with Area in px²; a 1-px area is a point, not a particle
    gd = tmp_path / "coords.csv"
    gd.write_text("X,Y,Area\n10,20,113.097\n30,40,1\n")
    p = read_annotations(gd, unit="px", pixel_size_nm=0.5)
    assert p.x_px.tolist() == [10.0, 30.0]
    assert p.diameter_nm[0] == pytest.approx(12.0 * 0.5, rel=1e-4)  # 113.097 px² -> 12 px
    assert np.isnan(p.diameter_nm[1])
    assert np.isnan(read_annotations(gd, unit="px").diameter_nm).all()  # no pixel size

    # Major/Minor give the mean axis
    mm = tmp_path / "mm.csv"
    mm.write_text("X,Y,Major,Minor\n1,1,0.008,0.006\n")
    p = read_imagej_results(mm, pixel_size_nm=1.0)
    assert p.diameter_nm[0] == pytest.approx(7.0)
    assert p.x_px[0] == pytest.approx(1000.0)


def test_imagej_results_needs_pixel_size(tmp_path: Path) -> None:
    f = tmp_path / "Results.csv"
    f.write_text(imagej_results_text([0.5], [0.5], [0.0]))
    with pytest.raises(MissingCalibration, match="pass pixel_size_nm") as e:
        read_annotations(f)
    assert str(f) in str(e.value)


def test_imagej_results_in_pixels_taken_for_micrometres_is_caught(tmp_path: Path) -> None:
    f = tmp_path / "Results.csv"
    f.write_text(" ,X,Y\n1,1500,2000\n")
    with pytest.raises(CorruptFile, match="unit='px'"):
        read_imagej_results(f, pixel_size_nm=PIXEL_NM)


# ---------------------------------------------------------------------------------------------
# ImageJ ROI: a hand-made encoder following the published header layout


def roi_blob(
    roi_type: int,
    *,
    top: int = 0,
    left: int = 0,
    bottom: int = 0,
    right: int = 0,
    xs: list[int] | None = None,
    ys: list[int] | None = None,
    xf: list[float] | None = None,
    yf: list[float] | None = None,
    rect_f: tuple[float, float, float, float] | None = None,
    version: int = 228,
) -> bytes:
    xs, ys = xs or [], ys or []
    header = bytearray(64)
    header[0:4] = b"Iout"
    struct.pack_into(">h", header, 4, version)
    header[6] = roi_type
    struct.pack_into(">hhhhH", header, 8, top, left, bottom, right, len(xs))
    options = 0
    if xf is not None or rect_f is not None:
        options |= 128
    if rect_f is not None:
        struct.pack_into(">ffff", header, 18, *rect_f)
    struct.pack_into(">h", header, 50, options)
    body = struct.pack(f">{len(xs)}h", *xs) + struct.pack(f">{len(ys)}h", *ys)
    if xf is not None and yf is not None:
        body += struct.pack(f">{len(xf)}f", *xf) + struct.pack(f">{len(yf)}f", *yf)
    return bytes(header) + body


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_roi_parser_reads_points_and_ovals(tmp_path: Path) -> None:
    members = {
        # multi-point ROI with integer coordinates relative to (left, top)
        "0001-0100-0200.roi": roi_blob(
            10, top=100, left=200, bottom=131, right=221, xs=[0, 20, 5], ys=[0, 30, 1]
        ),
        # sub-pixel point: the float coordinates are absolute and win
        "0002.roi": roi_blob(10, top=7, left=3, xs=[0], ys=[0], xf=[3.25], yf=[7.75]),
        # integer oval: box (40, 60) 10 x 12 in area coordinates -> centre (44.5, 65.5)
        "0003.roi": roi_blob(2, top=60, left=40, bottom=72, right=50),
        # sub-pixel oval
        "0004.roi": roi_blob(2, top=0, left=0, bottom=1, right=1, rect_f=(10.5, 20.0, 21.5, 21.5)),
        "folder/": b"",
        "__MACOSX/._0001.roi": b"\x00\x05\x16\x07junk",
    }
    f = write_zip(tmp_path / "RoiSet.zip", members)
    p = read_imagej_roi_zip(f, pixel_size_nm=0.5)
    assert p.image.tolist() == ["RoiSet"] * 6
    np.testing.assert_allclose(p.x_px, [200, 220, 205, 3.25, 44.5, 20.75])
    np.testing.assert_allclose(p.y_px, [100, 130, 101, 7.75, 65.5, 30.25])
    np.testing.assert_allclose(p.diameter_nm[4:], [11 * 0.5, 21.5 * 0.5])
    assert np.isnan(p.diameter_nm[:4]).all()
    assert np.isnan(read_imagej_roi_zip(f).diameter_nm).all()  # no pixel size: no size
    assert read_annotations(f, image="S7.jpg").image.tolist() == ["S7.jpg"] * 6

    single = tmp_path / "one.roi"
    single.write_bytes(members["0001-0100-0200.roi"])
    assert read_imagej_roi(single).x_px.tolist() == [200, 220, 205]
    assert read_annotations(single, image="x").image.tolist() == ["x"] * 3


def test_roi_zip_round_trip_through_writer(tmp_path: Path) -> None:
    p = sample_points()
    f = tmp_path / "detections.zip"
    write_imagej_roi_zip(p, f)
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        assert len(names) == 4 and all(n.endswith(".roi") for n in names)
        assert zf.read(names[0])[:4] == b"Iout"
    back = read_annotations(f)
    # coordinates pass through 32-bit floats; the properties keep diameter, class and score
    assert_points_equal(back, p, atol=2e-4)
    assert_points_equal(read_imagej_roi_zip(f, image="S7.jpg"), p.select(image="S7.jpg"), atol=2e-4)
    # empty sets round-trip too
    write_imagej_roi_zip(Points.empty(), f)
    assert len(read_imagej_roi_zip(f)) == 0


def test_roi_writer_rejects_what_imagej_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="60535"):
        write_imagej_roi_zip(Points.create(image="a", x_px=[70000.0], y_px=[1.0]), tmp_path / "z")
    with pytest.raises(ValueError, match="line break"):
        write_imagej_roi_zip(Points.create(image="a\nb", x_px=[1.0], y_px=[1.0]), tmp_path / "z")
    assert not (tmp_path / "z").exists()


# ---------------------------------------------------------------------------------------------
# shared reference annotations


@pytest.mark.shared_data
def test_shared_immunogold_annotations() -> None:
    csv_path = IMMUNOGOLD / "annotations.csv"
    if not csv_path.is_file():
        pytest.skip(f"shared immunogold annotations not found at {csv_path}")
    p = read_annotations(csv_path)
    assert len(p) == 136
    counts = {
        image: (
            int((p.select(image=image).diameter_nm == 6).sum()),
            int((p.select(image=image).diameter_nm == 12).sum()),
        )
        for image in p.images()
    }
    assert counts == {"S7.jpg": (22, 3), "S8.jpg": (66, 4), "S25.jpg": (31, 10)}
    assert (p.x_px >= 0).all() and (p.x_px < 2048).all()
    assert (p.y_px >= 0).all() and (p.y_px < 2048).all()  # above the information strip


# ---------------------------------------------------------------------------------------------
# bad input: one clear EmdigError that names the file


def test_bad_tables(tmp_path: Path) -> None:
    cases: list[tuple[str, bytes, type[EmdigError], str]] = [
        ("empty.csv", b"", EmptyFile, "empty"),
        ("blank.csv", b"\n \n", EmptyFile, "no header"),
        ("nocols.csv", b"image,x_px\na,1\n", CorruptFile, "missing column(s) y_px"),
        ("text.csv", b"image,x_px,y_px\na,1,2\nb,one,2\n", CorruptFile, "line 3, column 'x_px'"),
        ("nan.csv", b"image,x_px,y_px\na,nan,2\n", CorruptFile, "not finite"),
        ("short.csv", b"image,x_px,y_px\na,1\n", CorruptFile, "line 2 has 2 fields"),
        ("noname.csv", b"image,x_px,y_px\n,1,2\n", CorruptFile, "column 'image'"),
        ("size.csv", b"image,x_px,y_px,diameter_nm\na,1,2,big\n", CorruptFile, "'big'"),
        ("other.csv", b"a,b,c\n1,2,3\n", UnsupportedFormat, "not a known annotation format"),
        ("bin.csv", b"\x89PNG\r\n\x1a\n\x00\x00", UnsupportedFormat, "binary"),
        ("ij.csv", b" ,X,Y\n1,0.1,zero\n", CorruptFile, "line 2, column 'Y'"),
    ]
    for name, data, error, phrase in cases:
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(error) as e:
            read_annotations(f, pixel_size_nm=PIXEL_NM)
        assert str(f) in str(e.value), name
        assert phrase in str(e.value), (name, str(e.value))
    with pytest.raises(CorruptFile, match="no X,Y"):
        read_imagej_results(tmp_path / "nocols.csv", pixel_size_nm=1.0)
    with pytest.raises(UnreadableFile, match=r"missing\.csv"):
        read_annotations(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="pixel_size_nm"):
        read_imagej_results(tmp_path / "ij.csv", pixel_size_nm=-1.0)


def test_bad_roi_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    point = roi_blob(10, xs=[1], ys=[2])
    polygon = roi_blob(0, xs=[0, 5, 5], ys=[0, 0, 5])
    cases: list[tuple[str, dict[str, bytes], type[EmdigError], str]] = [
        ("readme.zip", {"a.roi": point, "notes.txt": b"hi"}, UnsupportedFormat, "notes.txt"),
        ("trunc.zip", {"a.roi": point[:40]}, TruncatedFile, "64-byte header"),
        ("coords.zip", {"a.roi": point[:66]}, TruncatedFile, "1 point coordinates"),
        ("magic.zip", {"a.roi": b"Nope" + point[4:]}, CorruptFile, "'Iout'"),
        ("poly.zip", {"a.roi": polygon}, UnsupportedFormat, "polygon ROI"),
    ]
    for name, members, error, phrase in cases:
        f = write_zip(tmp_path / name, members)
        with pytest.raises(error) as e:
            read_annotations(f)
        assert str(f) in str(e.value), name
        assert phrase in str(e.value), (name, str(e.value))

    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(CorruptFile, match="ZIP structure"):
        read_annotations(fake)
    single = tmp_path / "short.roi"
    single.write_bytes(point[:20])
    with pytest.raises(TruncatedFile, match=r"short\.roi"):
        read_annotations(single)

    f = write_zip(tmp_path / "many.zip", {f"{i}.roi": point for i in range(5)})
    monkeypatch.setattr(annotations_module, "MAX_ROI_ENTRIES", 4)
    with pytest.raises(ArchiveError, match="5 entries"):
        read_imagej_roi_zip(f)
    monkeypatch.setattr(annotations_module, "MAX_ROI_BYTES", len(point) - 1)
    monkeypatch.setattr(annotations_module, "MAX_ROI_ENTRIES", 10)
    with pytest.raises(ArchiveError, match=r"many\.zip!0\.roi"):
        read_imagej_roi_zip(f)
