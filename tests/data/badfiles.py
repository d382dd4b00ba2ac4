"""Generators of malformed and hostile electron-microscopy input files.

Every builder writes one small file (or a few) into the directory ``dest`` and returns its
path(s).  Nothing is stored in the repository: the test suite calls these at test time.
Builders are deterministic (seeded where random) and idempotent (re-running overwrites).

Positive controls (``valid_*``) are also provided; they are the base for the truncation
cases.  ``valid_dm3`` is a minimal DigitalMicrograph 3 file written from scratch that
rosettasciio reads as one 24x32 uint16 image with a 0.25 nm pixel size.

Run ``python badfiles.py OUTDIR`` to build every case into ``OUTDIR``.

Size note: every file is < 200 KB except ``zip_many`` (~1.7 MB: 20000 zip entries cannot
be stored in less, since each needs a local and a central header).  The bombs are small on
disk but huge once decoded (that is the point).
"""

import io
import os
import random
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

# --------------------------------------------------------------------------------------
# constants describing the positive controls (tests compare against these)
# --------------------------------------------------------------------------------------

IMG_WIDTH = 64
IMG_HEIGHT = 48

DM3_WIDTH = 32
DM3_HEIGHT = 24
DM3_SCALE_NM = 0.25  # exactly representable in float32
DM3_UNITS = "nm"
DM3_VOLTAGE_V = 200000.0

PNG_HUGE_SIZES: tuple[int, ...] = (10000, 20000)
PNG_BOMB_SIZE = 12000
TIFF_HUGE_SIZE = 65535
ZIP_BOMB_SIZE = 200 * 10**6  # bytes of zeros in the single member
ZIP_MANY_COUNT = 20000
ZIP_NESTED_LEVELS = 5
DM3_NESTING_DEPTH = 5000
SER_HUGE_ELEMENTS = 2**31
TRUNCATION_PERCENTS: tuple[int, ...] = (10, 50, 90)
EMPTY_SUFFIXES: tuple[str, ...] = ("dm3", "dm4", "ser", "emd", "tif", "png", "mrc", "jpg")

BuildResult = Path | list[Path]


def gradient_u8() -> np.ndarray:
    """The 48x64 uint8 greyscale gradient stored in the valid PNG/JPEG (JPEG is lossy)."""
    y = np.arange(IMG_HEIGHT, dtype=np.uint16)[:, None]
    x = np.arange(IMG_WIDTH, dtype=np.uint16)[None, :]
    return (2 * y + 2 * x).astype(np.uint8)


def gradient_u16() -> np.ndarray:
    """The 48x64 uint16 image stored in the valid TIFF."""
    return gradient_u8().astype(np.uint16) * 257


def dm3_pixels() -> np.ndarray:
    """The 24x32 uint16 image stored in the valid DM3 (row-major, rows = y)."""
    n = DM3_HEIGHT * DM3_WIDTH
    values = (np.arange(n, dtype=np.uint32) * 97 + 11) % 65536
    return values.astype(np.uint16).reshape(DM3_HEIGHT, DM3_WIDTH)


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def _prepare(dest: Path) -> Path:
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def _write(path: Path, data: bytes) -> Path:
    if path.is_symlink() or path.exists():
        path.unlink()  # also handles a leftover 0o000 file from ``unreadable``
    path.write_bytes(data)
    return path


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    # stored (uncompressed) deflate so the pixel data dominates the file and every
    # truncation point lands inside IDAT (a compressed gradient is only ~30 bytes)
    Image.fromarray(gradient_u8()).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gradient_u8()).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tiff_bytes() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, gradient_u16(), photometric="minisblack", compression=None)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_grey8(width: int, height: int, idat: bytes) -> bytes:
    """A PNG container (8-bit greyscale, non-interlaced) around arbitrary IDAT bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------------
# DigitalMicrograph 3 writer (just enough of the format for the test files)
# --------------------------------------------------------------------------------------
# Layout: big-endian header (version, rootlen, byteorder), then the root TagGroup.
# Group header: >B sorted, >B open, >i ntags.  Tag: >B kind (20 group / 21 data),
# >H name length, name.  Data tag: b"%%%%", >i ninfo, ninfo >i info words, then the
# payload in the byte order given by the header (we always write little-endian data).

_DM_GROUP = 20
_DM_DATA = 21

# DM tag type codes -> struct format characters (little-endian payload)
_DM_SIMPLE_FMT: dict[int, str] = {
    2: "h",
    3: "i",
    4: "H",
    5: "I",
    6: "f",
    7: "d",
    8: "?",
    9: "b",
    10: "B",
}
_DM_INT32 = 3
_DM_UINT16 = 4
_DM_UINT32 = 5
_DM_FLOAT32 = 6
_DM_FLOAT64 = 7
_DM_BOOL = 8
_DM_UINT8 = 10
_DM_STRUCT = 15
_DM_ARRAY = 20

# DM image DataType numbering (ImageData.DataType), as rosettasciio maps it
_DM_IMAGE_UINT8 = 6
_DM_IMAGE_UINT16 = 10


def _dm_group_header(ntags: int) -> bytes:
    return struct.pack(">BBi", 1, 0, ntags)


def _dm_tag_name(kind: int, name: str) -> bytes:
    raw = name.encode("latin-1")
    return struct.pack(">BH", kind, len(raw)) + raw


def _dm_group(name: str, tags: list[bytes]) -> bytes:
    """A group tag called ``name`` (may be empty) holding the already encoded ``tags``."""
    return _dm_tag_name(_DM_GROUP, name) + _dm_group_header(len(tags)) + b"".join(tags)


def _dm_data(name: str, info: list[int], payload: bytes) -> bytes:
    head = _dm_tag_name(_DM_DATA, name) + b"%%%%" + struct.pack(">i", len(info))
    return head + struct.pack(f">{len(info)}i", *info) + payload


def _dm_simple(name: str, typecode: int, value: float | int | bool) -> bytes:
    return _dm_data(name, [typecode], struct.pack("<" + _DM_SIMPLE_FMT[typecode], value))


def _dm_string(name: str, text: str) -> bytes:
    """DM-style string: an array of uint16 characters."""
    chars = [ord(c) for c in text]
    payload = struct.pack(f"<{len(chars)}H", *chars)
    return _dm_data(name, [_DM_ARRAY, _DM_UINT16, len(chars)], payload)


def _dm_struct(name: str, fields: list[tuple[int, float | int]]) -> bytes:
    info = [_DM_STRUCT, 0, len(fields)]
    fmt = "<"
    for typecode, _ in fields:
        info += [0, typecode]
        fmt += _DM_SIMPLE_FMT[typecode]
    return _dm_data(name, info, struct.pack(fmt, *(v for _, v in fields)))


def _dm_image(
    pixels: np.ndarray,
    dm_datatype: int,
    elem_type: int,
    scale: float,
    units: str,
    name: str,
    image_tags: list[bytes],
) -> bytes:
    """An unnamed ImageList entry: ImageData (+ calibrations) and ImageTags."""
    height, width = pixels.shape
    data_le = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
    calibrations = _dm_group(
        "Calibrations",
        [
            _dm_group(
                "Brightness",
                [
                    _dm_simple("Origin", _DM_FLOAT32, 0.0),
                    _dm_simple("Scale", _DM_FLOAT32, 1.0),
                    _dm_string("Units", "Counts"),
                ],
            ),
            _dm_group(
                "Dimension",
                [
                    _dm_group(
                        "",
                        [
                            _dm_simple("Origin", _DM_FLOAT32, 0.0),
                            _dm_simple("Scale", _DM_FLOAT32, scale),
                            _dm_string("Units", units),
                        ],
                    )
                    for _ in range(2)  # x then y
                ],
            ),
            _dm_simple("DisplayCalibratedUnits", _DM_BOOL, True),
        ],
    )
    image_data = _dm_group(
        "ImageData",
        [
            calibrations,
            _dm_data("Data", [_DM_ARRAY, elem_type, pixels.size], data_le),
            _dm_simple("DataType", _DM_INT32, dm_datatype),
            _dm_group(
                "Dimensions",
                [_dm_simple("", _DM_INT32, width), _dm_simple("", _DM_INT32, height)],
            ),
            _dm_simple("PixelDepth", _DM_INT32, pixels.dtype.itemsize),
        ],
    )
    return _dm_group(
        "",
        [
            image_data,
            _dm_group("ImageTags", image_tags),
            _dm_string("Name", name),
            _dm_group("UniqueID", [_dm_simple("", _DM_UINT32, v) for v in (1, 2, 3, 4)]),
        ],
    )


def _dm3_file(root_tags: list[bytes], version: int = 3) -> bytes:
    body = _dm_group_header(len(root_tags)) + b"".join(root_tags)
    return struct.pack(">iii", version, len(body), 1) + body


def _dm3_bytes(voltage_typecode: int = _DM_FLOAT64, version: int = 3) -> bytes:
    """The valid DM3 (optionally with a corrupted Voltage typecode or version)."""
    thumb = np.full((6, 8), 128, dtype=np.uint8)
    thumb[:, ::2] = 32
    voltage_payload = struct.pack("<d", DM3_VOLTAGE_V)
    image_tags = [
        _dm_group(
            "Microscope Info",
            [
                _dm_string("Name", "Synthetic TEM"),
                _dm_data("Voltage", [voltage_typecode], voltage_payload),
            ],
        )
    ]
    image_list = _dm_group(
        "ImageList",
        [
            # DM writes a thumbnail first; root "Thumbnails" says ImageIndex 0 is it
            _dm_image(thumb, _DM_IMAGE_UINT8, _DM_UINT8, 1.0, "", "thumbnail", []),
            _dm_image(
                dm3_pixels(),
                _DM_IMAGE_UINT16,
                _DM_UINT16,
                DM3_SCALE_NM,
                DM3_UNITS,
                "valid",
                image_tags,
            ),
        ],
    )
    root = [
        _dm_struct("ApplicationBounds", [(_DM_INT32, v) for v in (0, 0, 768, 1024)]),
        _dm_group("DocumentTags", []),
        image_list,
        _dm_simple("InImageMode", _DM_BOOL, True),
        _dm_group("Thumbnails", [_dm_group("", [_dm_simple("ImageIndex", _DM_INT32, 0)])]),
    ]
    return _dm3_file(root, version=version)


# --------------------------------------------------------------------------------------
# TIFF writer (classic, little-endian) for hand-built hostile IFDs
# --------------------------------------------------------------------------------------

_TIFF_SHORT = 3
_TIFF_LONG = 4


def _ifd(entries: list[tuple[int, int, int]], next_ifd: int) -> bytes:
    """Encode an IFD of single-valued SHORT/LONG entries (tag, type, value)."""
    out = struct.pack("<H", len(entries))
    for tag, typ, value in sorted(entries):
        if typ == _TIFF_SHORT:
            out += struct.pack("<HHIHH", tag, typ, 1, value, 0)
        else:
            out += struct.pack("<HHII", tag, typ, 1, value)
    return out + struct.pack("<I", next_ifd)


def _ifd_size(n_entries: int) -> int:
    return 2 + 12 * n_entries + 4


def _gray_entries(
    width: int, height: int, bits: int, strip: int, nbytes: int
) -> list[tuple[int, int, int]]:
    return [
        (256, _TIFF_LONG, width),
        (257, _TIFF_LONG, height),
        (258, _TIFF_SHORT, bits),
        (259, _TIFF_SHORT, 1),
        (262, _TIFF_SHORT, 1),
        (273, _TIFF_LONG, strip),
        (277, _TIFF_SHORT, 1),
        (278, _TIFF_LONG, height),
        (279, _TIFF_LONG, nbytes),
    ]


# --------------------------------------------------------------------------------------
# positive controls
# --------------------------------------------------------------------------------------


def valid_png(dest: Path) -> Path:
    """64x48 8-bit greyscale gradient PNG (see ``gradient_u8``)."""
    return _write(_prepare(dest) / "valid.png", _png_bytes())


def valid_jpeg(dest: Path) -> Path:
    """64x48 8-bit greyscale gradient JPEG (quality 95, lossy)."""
    return _write(_prepare(dest) / "valid.jpg", _jpeg_bytes())


def valid_tiff(dest: Path) -> Path:
    """64x48 uint16 uncompressed TIFF written by tifffile (see ``gradient_u16``)."""
    return _write(_prepare(dest) / "valid.tif", _tiff_bytes())


def valid_dm3(dest: Path) -> Path:
    """Minimal valid DM3: thumbnail + one 24x32 uint16 image, 0.25 nm/px, 200 kV."""
    return _write(_prepare(dest) / "valid.dm3", _dm3_bytes())


# --------------------------------------------------------------------------------------
# empty and mislabelled files
# --------------------------------------------------------------------------------------


def empty_files(dest: Path) -> list[Path]:
    """Zero-byte files with every supported extension."""
    d = _prepare(dest)
    return [_write(d / f"x.{suffix}", b"") for suffix in EMPTY_SUFFIXES]


def png_as_dm4(dest: Path) -> Path:
    """Valid PNG bytes under a .dm4 name."""
    return _write(_prepare(dest) / "image.dm4", _png_bytes())


def html_as_tif(dest: Path) -> Path:
    """An HTML error page (as a misconfigured download would save) named .tif."""
    html = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head><meta charset='utf-8'>"
        "<title>404 Not Found</title></head>\n<body>\n<h1>Not Found</h1>\n"
        "<p>The requested URL /data/scan_0001.tif was not found on this server.</p>\n"
        "</body>\n</html>\n"
    )
    return _write(_prepare(dest) / "page.tif", html.encode("utf-8"))


def zip_as_tif(dest: Path) -> Path:
    """A zip archive (holding a PNG and a readme) named .tif."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("scan.png", (2024, 1, 1, 0, 0, 0)), _png_bytes())
        zf.writestr(zipfile.ZipInfo("README.txt", (2024, 1, 1, 0, 0, 0)), b"hello\n")
    return _write(_prepare(dest) / "archive.tif", buf.getvalue())


def random_as_emd(dest: Path) -> Path:
    """4 KiB of seeded random bytes named .emd."""
    data = random.Random(20240601).randbytes(4096)
    return _write(_prepare(dest) / "random.emd", data)


def text_as_dm3(dest: Path) -> Path:
    """A plain-text note named .dm3."""
    text = "This is not a DigitalMicrograph file.\nsample: Au nanoparticles, 200 kV\n" * 4
    return _write(_prepare(dest) / "notes.dm3", text.encode("ascii"))


# --------------------------------------------------------------------------------------
# truncation
# --------------------------------------------------------------------------------------


def truncated(dest: Path) -> list[Path]:
    """valid.png/.jpg/.tif/.dm3 cut at 10, 50 and 90 % (``trunc50_valid.png`` ...)."""
    d = _prepare(dest)
    sources = {
        "valid.png": _png_bytes(),
        "valid.jpg": _jpeg_bytes(),
        "valid.tif": _tiff_bytes(),
        "valid.dm3": _dm3_bytes(),
    }
    out: list[Path] = []
    for name, data in sources.items():
        for pct in TRUNCATION_PERCENTS:
            out.append(_write(d / f"trunc{pct}_{name}", data[: len(data) * pct // 100]))
    return out


# --------------------------------------------------------------------------------------
# PNG: huge declared size / decompression bomb
# --------------------------------------------------------------------------------------


def png_huge_header(dest: Path) -> list[Path]:
    """Tiny PNGs whose IHDR declares 10000x10000 and 20000x20000 (8-bit grey)."""
    d = _prepare(dest)
    idat = zlib.compress(b"\x00" * 64, 9)  # one partial row; nowhere near enough data
    return [_write(d / f"huge_header_{n}x{n}.png", _png_grey8(n, n, idat)) for n in PNG_HUGE_SIZES]


def png_bomb(dest: Path) -> Path:
    """A real, complete 12000x12000 all-zero 8-bit PNG (~140 KB, 144 Mpx decoded)."""
    size = PNG_BOMB_SIZE
    rows_per_batch = 100
    batch = bytes((size + 1) * rows_per_batch)  # filter byte 0 + zero pixels per row
    comp = zlib.compressobj(9)
    parts: list[bytes] = []
    rows_left = size
    while rows_left:
        n = min(rows_per_batch, rows_left)
        parts.append(comp.compress(batch[: (size + 1) * n]))
        rows_left -= n
    parts.append(comp.flush())
    return _write(_prepare(dest) / "bomb_12000x12000.png", _png_grey8(size, size, b"".join(parts)))


# --------------------------------------------------------------------------------------
# TIFF: huge declared size / IFD cycles
# --------------------------------------------------------------------------------------


def tiff_huge_header(dest: Path) -> Path:
    """A < 1 KB TIFF declaring a 65535x65535 uint16 single strip of ~4 GiB."""
    n = TIFF_HUGE_SIZE
    strip_bytes = min(n * n * 2, 2**32 - 1)
    entries_n = 9
    strip_offset = 8 + _ifd_size(entries_n)
    ifd = _ifd(_gray_entries(n, n, 16, strip_offset, strip_bytes), 0)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)
    return _write(_prepare(dest) / "huge_header.tif", data)


def _looping_tiff(n_ifds: int, loop_to_first: bool) -> bytes:
    """``n_ifds`` 8x8 uint8 pages; the last next-IFD offset points back to IFD 1."""
    entries_n = 9
    ifd_len = _ifd_size(entries_n)
    page_len = ifd_len + 64  # IFD followed by its 8x8 strip
    first = 8
    out = b"II*\x00" + struct.pack("<I", first)
    for i in range(n_ifds):
        ifd_off = first + i * page_len
        strip_off = ifd_off + ifd_len
        nxt = ifd_off + page_len if i < n_ifds - 1 else (first if loop_to_first else 0)
        out += _ifd(_gray_entries(8, 8, 8, strip_off, 64), nxt)
        out += bytes((i * 64 + k) % 256 for k in range(64))
    return out


def tiff_ifd_loop(dest: Path) -> Path:
    """Two valid 8x8 uint8 IFDs; IFD 2's next-IFD offset points back to IFD 1."""
    return _write(_prepare(dest) / "ifd_loop.tif", _looping_tiff(2, loop_to_first=True))


def tiff_ifd_self_loop(dest: Path) -> Path:
    """One valid 8x8 uint8 IFD whose next-IFD offset points to itself."""
    return _write(_prepare(dest) / "ifd_self_loop.tif", _looping_tiff(1, loop_to_first=True))


# --------------------------------------------------------------------------------------
# DM3: hostile structure
# --------------------------------------------------------------------------------------


def dm3_deep_nesting(dest: Path) -> Path:
    """A DM3 whose root holds a chain of 5000 nested TagGroups (~50 KB)."""
    depth = DM3_NESTING_DEPTH
    link = _dm_tag_name(_DM_GROUP, "g") + _dm_group_header(1)
    innermost = _dm_tag_name(_DM_GROUP, "g") + _dm_group_header(0)
    return _write(_prepare(dest) / "deep_nesting.dm3", _dm3_file([link * (depth - 1) + innermost]))


def dm3_bad_type(dest: Path) -> Path:
    """The valid DM3 with Microscope Info/Voltage's typecode replaced by 99."""
    return _write(_prepare(dest) / "bad_type.dm3", _dm3_bytes(voltage_typecode=99))


def dm3_bad_version(dest: Path) -> Path:
    """The valid DM3 with header version 333319 instead of 3."""
    return _write(_prepare(dest) / "bad_version.dm3", _dm3_bytes(version=333319))


def dm3_truncated_after_header(dest: Path) -> Path:
    """Only the 12-byte header plus the 6-byte root group header of the valid DM3."""
    return _write(_prepare(dest) / "truncated_after_header.dm3", _dm3_bytes()[:18])


# --------------------------------------------------------------------------------------
# TIA .ser
# --------------------------------------------------------------------------------------

_SER_IMAGE_2D = 0x4122
_SER_TAG_TIME = 0x4152


def _ser_file(
    total: int, valid: int, dim_size: int, size_x: int, size_y: int, data: bytes
) -> bytes:
    """SeriesVersion 0x0210 (32-bit offsets) SER with one dimension and one element."""
    desc, units = b"Number", b""
    header = struct.pack(
        "<HHHIIIIII",
        0x4949,  # ByteOrder
        0x0197,  # SeriesID
        0x0210,  # SeriesVersion
        _SER_IMAGE_2D,  # DataTypeID
        _SER_TAG_TIME,  # TagTypeID
        total,  # TotalNumberElements
        valid,  # ValidNumberElements
        0,  # OffsetArrayOffset (patched below)
        1,  # NumberDimensions
    )
    dim = struct.pack("<IddII", dim_size, 0.0, 1.0, 0, len(desc)) + desc
    dim += struct.pack("<I", len(units)) + units
    offset_array_at = len(header) + len(dim)
    element_at = offset_array_at + 8  # one data offset + one tag offset
    element = struct.pack(
        "<ddIddIHII", 0.0, 1e-9, 0, 0.0, 1e-9, 0, 2, size_x, size_y
    )  # DataType 2 = uint16
    element += data
    tag_at = element_at + len(element)
    tag = struct.pack("<HHI", _SER_TAG_TIME, 0, 1_700_000_000)
    header = header[:22] + struct.pack("<I", offset_array_at) + header[26:]
    return header + dim + struct.pack("<II", element_at, tag_at) + element + tag


def ser_huge(dest: Path) -> Path:
    """A ~150-byte SER declaring 2**31 total and valid elements (one tiny 2x2 element)."""
    data = struct.pack("<4H", 1, 2, 3, 4)
    n = SER_HUGE_ELEMENTS
    return _write(_prepare(dest) / "huge.ser", _ser_file(n, n, n, 2, 2, data))


def ser_huge_image(dest: Path) -> Path:
    """A SER with 1 element whose header declares a 65535x65535 uint16 image, no data."""
    return _write(_prepare(dest) / "huge_image.ser", _ser_file(1, 1, 1, 65535, 65535, b""))


# --------------------------------------------------------------------------------------
# MRC
# --------------------------------------------------------------------------------------


def mrc_huge_header(dest: Path) -> Path:
    """A 1024-byte MRC2014 header declaring 65535x65535x1 int16 and no data."""
    n = 65535
    words = bytearray(1024)
    struct.pack_into("<4i", words, 0, n, n, 1, 1)  # nx, ny, nz, mode 1 (int16)
    struct.pack_into("<3i", words, 28, n, n, 1)  # mx, my, mz
    struct.pack_into("<6f", words, 40, float(n), float(n), 1.0, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", words, 64, 1, 2, 3)  # mapc, mapr, maps
    struct.pack_into("<3f", words, 76, 0.0, 0.0, 0.0)  # dmin, dmax, dmean
    struct.pack_into("<i", words, 88, 1)  # ispg
    struct.pack_into("<4si", words, 104, b"MRCO", 20140)  # exttyp, nversion
    words[208:212] = b"MAP "
    words[212:216] = bytes((0x44, 0x44, 0, 0))
    struct.pack_into("<i", words, 220, 1)  # nlabl
    label = b"emdig test: header declares 65535x65535, no data"
    words[224 : 224 + len(label)] = label
    return _write(_prepare(dest) / "huge_header.mrc", bytes(words))


# --------------------------------------------------------------------------------------
# zip archives
# --------------------------------------------------------------------------------------

_ZIP_DATE = (2024, 1, 1, 0, 0, 0)


def _zinfo(name: str, compress: int = zipfile.ZIP_STORED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _ZIP_DATE)
    info.compress_type = compress
    info.create_system = 3  # Unix, so external_attr high bits are mode bits
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def zip_slip(dest: Path) -> Path:
    """Members ``../../evil.png``, ``/abs/evil.png``, ``C:\\..\\evil.png``, ``ok/good.png``
    and ``evil\\x00.png`` (a NUL in the stored name)."""
    png = _png_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("../../evil.png", "/abs/evil.png", "C:\\..\\evil.png", "ok/good.png"):
            zf.writestr(_zinfo(name), png)
        # ZipInfo() cuts names at NUL, so set the raw name afterwards; the writer stores it
        nul = _zinfo("evil.png")
        nul.filename = nul.orig_filename = "evil\x00.png"
        zf.writestr(nul, png)
    return _write(_prepare(dest) / "zip_slip.zip", buf.getvalue())


def zip_symlink(dest: Path) -> Path:
    """A zip whose member ``link.png`` is a Unix symlink to /etc/passwd."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = _zinfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, b"/etc/passwd")
        zf.writestr(_zinfo("good.png"), _png_bytes())
    return _write(_prepare(dest) / "zip_symlink.zip", buf.getvalue())


def zip_bomb(dest: Path) -> Path:
    """One deflated member ``zeros.bin`` of 200 MB of zeros (~195 KB on disk)."""
    path = _prepare(dest) / "zip_bomb.zip"
    _write(path, b"")
    chunk = bytes(10**6)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open(_zinfo("zeros.bin", zipfile.ZIP_DEFLATED), "w", force_zip64=True) as member,
    ):
        for _ in range(ZIP_BOMB_SIZE // len(chunk)):
            member.write(chunk)
    return path


def zip_many(dest: Path) -> Path:
    """A zip with 20000 stored 1-byte entries (~1.7 MB: the one case over 200 KB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(ZIP_MANY_COUNT):
            zf.writestr(_zinfo(f"{i:05d}"), b"x")
    return _write(_prepare(dest) / "zip_many.zip", buf.getvalue())


def zip_nested(dest: Path) -> Path:
    """5 levels of zip in zip: nested.zip > level2.zip > ... > level5.zip > good.png."""
    payload_name, payload = "good.png", _png_bytes()
    for level in range(ZIP_NESTED_LEVELS, 0, -1):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_zinfo(payload_name, zipfile.ZIP_DEFLATED), payload)
        payload_name, payload = f"level{level}.zip", buf.getvalue()
    return _write(_prepare(dest) / "nested.zip", payload)


# --------------------------------------------------------------------------------------
# filesystem oddities
# --------------------------------------------------------------------------------------


def symlink_loop(dest: Path) -> Path:
    """Symlinks a.dm3 -> b.dm3 -> a.dm3 (relative); returns a.dm3."""
    d = _prepare(dest)
    a, b = d / "a.dm3", d / "b.dm3"
    for p in (a, b):
        if p.is_symlink() or p.exists():
            p.unlink()
    os.symlink("b.dm3", a)
    os.symlink("a.dm3", b)
    return a


def unreadable(dest: Path) -> Path:
    """A valid PNG with mode 0o000 (root can still read it)."""
    path = _write(_prepare(dest) / "unreadable.png", _png_bytes())
    path.chmod(0)
    return path


# --------------------------------------------------------------------------------------
# everything
# --------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path], BuildResult]] = {
    "valid_png": valid_png,
    "valid_jpeg": valid_jpeg,
    "valid_tiff": valid_tiff,
    "valid_dm3": valid_dm3,
    "empty_files": empty_files,
    "png_as_dm4": png_as_dm4,
    "html_as_tif": html_as_tif,
    "zip_as_tif": zip_as_tif,
    "random_as_emd": random_as_emd,
    "text_as_dm3": text_as_dm3,
    "truncated": truncated,
    "png_huge_header": png_huge_header,
    "png_bomb": png_bomb,
    "tiff_huge_header": tiff_huge_header,
    "tiff_ifd_loop": tiff_ifd_loop,
    "tiff_ifd_self_loop": tiff_ifd_self_loop,
    "dm3_deep_nesting": dm3_deep_nesting,
    "dm3_bad_type": dm3_bad_type,
    "dm3_bad_version": dm3_bad_version,
    "dm3_truncated_after_header": dm3_truncated_after_header,
    "ser_huge": ser_huge,
    "ser_huge_image": ser_huge_image,
    "mrc_huge_header": mrc_huge_header,
    "zip_slip": zip_slip,
    "zip_symlink": zip_symlink,
    "zip_bomb": zip_bomb,
    "zip_many": zip_many,
    "zip_nested": zip_nested,
    "symlink_loop": symlink_loop,
    "unreadable": unreadable,
}


def build_all(dest: Path) -> dict[str, Path | list[Path]]:
    """Build every case into ``dest``; returns case name -> path(s)."""
    d = _prepare(dest)
    return {name: builder(d) for name, builder in BUILDERS.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    for name, result in build_all(Path(argv[1])).items():
        paths = result if isinstance(result, list) else [result]
        for p in paths:
            size = p.lstat().st_size
            print(f"{name:28s} {size:>10d}  {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
