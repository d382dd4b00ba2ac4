# SPDX-License-Identifier: GPL-3.0-or-later
"""Particle point tables and the annotation formats they are read from and written to.

:class:`Points` is the tidy table that passes between the particle stages: one row per particle,
``x_px`` the column and ``y_px`` the row of its centre (origin top-left, pixel centres at integer
positions), ``diameter_nm`` and ``class_nm`` when known, and ``score`` for detections.

Readers
-------
- :func:`read_points_csv`: emdig's own CSV (``image,x_px,y_px[,diameter_nm,class_nm,score]``).
- :func:`read_imagej_results`: an ImageJ "Results" table (``X,Y`` in the image's calibrated unit,
  usually µm), converted to pixels with the pixel size.
- :func:`read_imagej_roi_zip` / :func:`read_imagej_roi`: an ImageJ ROI set (``RoiSet.zip``) or a
  single ``.roi`` file of point or oval selections.
- :func:`read_annotations`: any of the above, chosen by content, never by extension.

:func:`write_imagej_roi_zip` writes a ROI set that ImageJ's ROI Manager opens, one point ROI per
particle, so detections can be checked and corrected in ImageJ and read back.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..errors import (
    ArchiveError,
    CorruptFile,
    EmdigError,
    EmptyFile,
    MissingCalibration,
    TooLarge,
    TruncatedFile,
    UnreadableFile,
    UnsupportedFormat,
)

__all__ = [
    "COLUMNS",
    "Points",
    "read_annotations",
    "read_imagej_results",
    "read_imagej_roi",
    "read_imagej_roi_zip",
    "read_points_csv",
    "synthetic_truth",
    "write_imagej_roi_zip",
]

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("image", "x_px", "y_px", "diameter_nm", "class_nm", "score")
"""The columns of a points table, in the order :meth:`Points.to_csv` writes them."""

Unit = Literal["um", "nm", "px"]

# Budgets: annotation files are small; anything near these is not an annotation file.
MAX_TABLE_BYTES = 256 * 1024**2
MAX_ROI_ENTRIES = 100_000
MAX_ROI_BYTES = 16 * 1024**2  # one .roi member, uncompressed
MAX_ROI_TOTAL_BYTES = 1024**3  # all members together, uncompressed
MAX_ROI_RATIO = 1000.0  # uncompressed / compressed, checked for members over 1 MiB
# A coordinate beyond this many pixels means the unit was misread (e.g. px taken for µm).
MAX_COORDINATE_PX = 1_000_000.0

FloatArray = npt.NDArray[np.float64]


def _floats(values: object, n: int, name: str) -> FloatArray:
    if values is None:
        return np.full(n, np.nan)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} has shape {arr.shape}; expected ({n},)")
    return arr


@dataclass(frozen=True, eq=False)
class Points:
    """A tidy table of particle positions: equal-length 1-D columns, one row per particle.

    Build one with :meth:`create` (which fills missing columns with NaN) rather than the raw
    constructor.

    Attributes
    ----------
    image
        Image name of each particle (numpy ``str`` array). Detections and truth are matched
        only within the same image name.
    x_px, y_px
        Centre: column and row in pixels, origin top-left, pixel centres at integers.
    diameter_nm
        Measured (or annotated) diameter in nm; NaN if unknown.
    class_nm
        Size class (nominal gold diameter, e.g. 6, 12, 18) in nm; NaN if unknown.
    score
        Detection confidence; NaN for ground truth.
    """

    image: npt.NDArray[np.str_]
    x_px: FloatArray
    y_px: FloatArray
    diameter_nm: FloatArray
    class_nm: FloatArray
    score: FloatArray

    def __post_init__(self) -> None:
        image = np.asarray(self.image, dtype=str)
        if image.ndim != 1:
            raise ValueError(f"image must be 1-D, got shape {image.shape}")
        object.__setattr__(self, "image", image)
        n = image.shape[0]
        for name in COLUMNS[1:]:
            object.__setattr__(self, name, _floats(getattr(self, name), n, name))

    @classmethod
    def create(
        cls,
        *,
        image: str | Sequence[str] | npt.ArrayLike,
        x_px: npt.ArrayLike,
        y_px: npt.ArrayLike,
        diameter_nm: npt.ArrayLike | None = None,
        class_nm: npt.ArrayLike | None = None,
        score: npt.ArrayLike | None = None,
    ) -> Points:
        """Build a table; a scalar ``image`` or size column applies to every row.

        Parameters
        ----------
        image
            One name for all rows, or one per row.
        x_px, y_px
            Centres in pixels, shape ``(n,)``.
        diameter_nm, class_nm, score
            Optional columns, shape ``(n,)`` or a scalar; None gives NaN.

        Examples
        --------
        >>> p = Points.create(image="S7.jpg", x_px=[10, 20], y_px=[5, 6], class_nm=6)
        >>> len(p), p.class_nm.tolist()
        (2, [6.0, 6.0])
        """
        x = np.atleast_1d(np.asarray(x_px, dtype=np.float64))
        n = x.shape[0]
        names = np.asarray(image, dtype=str)
        if names.ndim == 0:
            names = np.full(n, str(names))
        return cls(
            image=names,
            x_px=x,
            y_px=_floats(y_px, n, "y_px"),
            diameter_nm=_floats(diameter_nm, n, "diameter_nm"),
            class_nm=_floats(class_nm, n, "class_nm"),
            score=_floats(score, n, "score"),
        )

    @classmethod
    def empty(cls) -> Points:
        """A table with no rows."""
        return cls.create(image=np.array([], dtype=str), x_px=np.empty(0), y_px=np.empty(0))

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def __getitem__(self, index: npt.ArrayLike | slice) -> Points:
        """Rows by boolean mask, integer indices or slice, as a new table."""
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype != bool:
                index = np.atleast_1d(index).astype(np.intp)
        return Points(
            image=self.image[index],
            x_px=self.x_px[index],
            y_px=self.y_px[index],
            diameter_nm=self.diameter_nm[index],
            class_nm=self.class_nm[index],
            score=self.score[index],
        )

    def __repr__(self) -> str:
        return f"Points({len(self)} rows, {len(self.images())} images)"

    def images(self) -> list[str]:
        """The distinct image names, in order of first appearance."""
        _, first = np.unique(self.image, return_index=True)
        return [str(self.image[i]) for i in sorted(first.tolist())]

    def select(self, *, image: str) -> Points:
        """The rows of one image."""
        return self[self.image == image]

    @staticmethod
    def concat(parts: Sequence[Points]) -> Points:
        """Stack tables row-wise (an empty sequence gives an empty table)."""
        if not parts:
            return Points.empty()
        return Points(
            image=np.concatenate([np.asarray(p.image, dtype=str) for p in parts]),
            x_px=np.concatenate([p.x_px for p in parts]),
            y_px=np.concatenate([p.y_px for p in parts]),
            diameter_nm=np.concatenate([p.diameter_nm for p in parts]),
            class_nm=np.concatenate([p.class_nm for p in parts]),
            score=np.concatenate([p.score for p in parts]),
        )

    def to_csv(self, path: str | Path) -> None:
        """Write the table as CSV with the :data:`COLUMNS` header, atomically.

        Floats are written in their shortest exact form and NaN as an empty cell, so
        :meth:`from_csv` gives back the same values.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        cols = [self.x_px, self.y_px, self.diameter_nm, self.class_nm, self.score]
        for i in range(len(self)):
            writer.writerow([str(self.image[i]), *(_fmt(float(c[i])) for c in cols)])
        _atomic_write(Path(path), buf.getvalue().encode("utf-8"))

    @classmethod
    def from_csv(cls, path: str | Path) -> Points:
        """Read a table written by :meth:`to_csv` (same as :func:`read_points_csv`)."""
        return read_points_csv(path)


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else repr(v)


def _atomic_write(path: Path, data: bytes) -> None:
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# delimited text tables


def _read_bytes(path: Path, limit: int, *, head: int | None = None) -> bytes:
    """The file's bytes (or its first ``head`` bytes) after checking its size against ``limit``."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise TooLarge(
                f"{size} bytes is more than the {limit}-byte budget for an annotation file",
                path=path,
            )
        with path.open("rb") as f:
            data = f.read(limit + 1 if head is None else head)
    except EmdigError:
        raise
    except OSError as e:
        raise UnreadableFile(f"cannot read: {e.strerror or e}", path=path) from None
    if not data:
        raise EmptyFile("the file is empty (0 bytes)", path=path)
    if len(data) > limit:
        raise TooLarge(f"more than the {limit}-byte budget for an annotation file", path=path)
    return data


def _decode_text(data: bytes, path: Path) -> str:
    if b"\x00" in data[:65536]:
        raise UnsupportedFormat("binary content, not a CSV table", path=path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # ImageJ on Windows writes its platform encoding; latin-1 keeps every byte readable
        return data.decode("latin-1")


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (1-based line number, cells)

    def index(self, *names: str) -> int | None:
        for name in names:
            if name in self.header:
                return self.header.index(name)
        return None


def _read_table(path: Path) -> _Table:
    text = _decode_text(_read_bytes(path, MAX_TABLE_BYTES), path)
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise EmptyFile("the file has no header line (only blank lines)", path=path)
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as e:
        raise CorruptFile(f"line {reader.line_num}: not valid CSV ({e})", path=path) from None
    if header is None:
        raise EmptyFile("the file has no header line (only empty cells)", path=path)
    return _Table(header=header, rows=rows)


def _cell(cells: list[str], col: int, line: int, name: str, path: Path) -> str:
    if col >= len(cells):
        raise CorruptFile(
            f"line {line} has {len(cells)} fields, so no value for column '{name}'", path=path
        )
    return cells[col].strip()


def _number(
    cells: list[str], col: int, line: int, name: str, path: Path, *, required: bool
) -> float:
    text = _cell(cells, col, line, name, path)
    if not text:
        if required:
            raise CorruptFile(f"line {line}, column '{name}': the value is empty", path=path)
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise CorruptFile(
            f"line {line}, column '{name}': {text[:40]!r} is not a number", path=path
        ) from None
    if required and not math.isfinite(value):
        raise CorruptFile(f"line {line}, column '{name}': {text!r} is not finite", path=path)
    return value


def _column(table: _Table, col: int | None, name: str, path: Path, *, required: bool) -> FloatArray:
    if col is None:
        return np.full(len(table.rows), np.nan)
    return np.array(
        [_number(c, col, line, name, path, required=required) for line, c in table.rows],
        dtype=np.float64,
    )


def _select_image(points: Points, image: str | None, path: Path) -> Points:
    if image is None:
        return points
    out = points.select(image=image)
    if len(points) and not len(out):
        log.warning(
            "%s: no point belongs to image %r; the file names %s",
            path,
            image,
            ", ".join(points.images()[:10]),
        )
    return out


def read_points_csv(path: str | Path, *, image: str | None = None) -> Points:
    """Read emdig's points CSV.

    Parameters
    ----------
    path
        CSV (comma- or tab-separated) with the columns ``image, x_px, y_px`` and optionally
        ``diameter_nm, class_nm, score``; other columns are ignored, empty cells of the optional
        columns are NaN.
    image
        If given, keep only the rows of this image (an empty table, logged, if there are none).

    Returns
    -------
    Points

    Raises
    ------
    EmptyFile, UnsupportedFormat, CorruptFile
        No content, not a table with those columns, or a bad value (the message names the line
        and the column).
    """
    path = Path(path)
    table = _read_table(path)
    missing = [c for c in ("image", "x_px", "y_px") if c not in table.header]
    if missing:
        raise CorruptFile(
            f"missing column(s) {', '.join(missing)}; the header is {','.join(table.header)!r} "
            "and a points CSV needs image,x_px,y_px[,diameter_nm,class_nm,score]",
            path=path,
        )
    image_col = table.index("image")
    assert image_col is not None
    names = []
    for line, cells in table.rows:
        name = _cell(cells, image_col, line, "image", path)
        if not name:
            raise CorruptFile(f"line {line}, column 'image': the value is empty", path=path)
        names.append(name)
    points = Points.create(
        image=np.array(names, dtype=str),
        x_px=_column(table, table.index("x_px"), "x_px", path, required=True),
        y_px=_column(table, table.index("y_px"), "y_px", path, required=True),
        diameter_nm=_column(table, table.index("diameter_nm"), "diameter_nm", path, required=False),
        class_nm=_column(table, table.index("class_nm"), "class_nm", path, required=False),
        score=_column(table, table.index("score"), "score", path, required=False),
    )
    return _select_image(points, image, path)


def _nm_per_unit(unit: Unit, pixel_size_nm: float | None) -> float | None:
    if unit == "um":
        return 1000.0
    if unit == "nm":
        return 1.0
    if unit == "px":
        return pixel_size_nm
    raise ValueError(f"unit must be 'um', 'nm' or 'px', not {unit!r}")


def _check_pixel_size(pixel_size_nm: float | None) -> None:
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a positive number, not {pixel_size_nm!r}")


def read_imagej_results(
    path: str | Path,
    *,
    pixel_size_nm: float | None,
    image: str | None = None,
    unit: Unit = "um",
) -> Points:
    """Read an ImageJ "Results" table (Analyze > Measure, or Analyze Particles) of particles.

    ImageJ writes lengths in the image's calibrated unit, usually µm, so ``x_px = X * 1000 /
    pixel_size_nm`` (e.g. 0.5587 nm/px: 1 µm = 1790 px). No half-pixel shift is applied: the
    reference annotations were converted the same way, and 0.5 px is far below any match
    radius.

    Parameters
    ----------
    path
        CSV (``.csv``) or tab-separated (``.xls``/``.txt``) export. The centre is taken from
        ``X, Y`` (centroid) or else ``XM, YM`` (centre of mass); a leading unnamed row-number
        column and other measurements are ignored.
    pixel_size_nm
        nm per pixel of the annotated image; needed unless ``unit="px"``.
    image
        Image name of every row (the table does not store one); default: the file's stem.
    unit
        Length unit of the table: ``"um"`` (ImageJ with a µm calibration), ``"nm"``, or
        ``"px"`` (an uncalibrated image, or Gold Digger's ``X,Y[,Area]`` output).

    Returns
    -------
    Points
        ``diameter_nm`` comes from the first of these columns present: ``Diameter``, ``Area``
        (equivalent circle diameter; an area of one pixel or less is a point measurement and
        gives NaN), ``Major``/``Minor`` (their mean), ``Feret``. It is NaN when no such column
        exists or, for ``unit="px"``, without ``pixel_size_nm``.

    Raises
    ------
    MissingCalibration
        ``unit`` is ``"um"`` or ``"nm"`` and ``pixel_size_nm`` is None.
    CorruptFile
        No ``X``/``Y`` columns, a bad value (line and column named), or coordinates so large
        that the table is probably in pixels already.
    """
    path = Path(path)
    _check_pixel_size(pixel_size_nm)
    nm_per_unit = _nm_per_unit(unit, pixel_size_nm)
    table = _read_table(path)
    if unit == "px":
        px_per_unit = 1.0
    elif pixel_size_nm is None:
        raise MissingCalibration(
            f"ImageJ Results coordinates are in {unit}; pass pixel_size_nm (nm per pixel of the "
            "annotated image) to convert them to pixels, or unit='px' if they are pixels",
            path=path,
        )
    else:
        px_per_unit = float(nm_per_unit or 1.0) / pixel_size_nm
    xc, yc = table.index("X"), table.index("Y")
    xname, yname = "X", "Y"
    if xc is None or yc is None:
        xc, yc = table.index("XM"), table.index("YM")
        xname, yname = "XM", "YM"
    if xc is None or yc is None:
        raise CorruptFile(
            f"no X,Y (or XM,YM) columns; the header is {','.join(table.header)!r}. In ImageJ, "
            "tick 'Centroid' in Analyze > Set Measurements before measuring",
            path=path,
        )
    x = _column(table, xc, xname, path, required=True)
    y = _column(table, yc, yname, path, required=True)
    x_px, y_px = x * px_per_unit, y * px_per_unit
    if len(x_px) and max(np.abs(x_px).max(), np.abs(y_px).max()) > MAX_COORDINATE_PX:
        worst = max(np.abs(x).max(), np.abs(y).max())
        raise CorruptFile(
            f"a coordinate of {worst:g} {unit} is {worst * px_per_unit:.3g} px, beyond any "
            "micrograph; is the table in pixels? then pass unit='px'",
            path=path,
        )
    diameter = _imagej_diameter_nm(table, path, nm_per_unit, pixel_size_nm, unit)
    return Points.create(
        image=image if image is not None else path.stem,
        x_px=x_px,
        y_px=y_px,
        diameter_nm=diameter,
    )


def _imagej_diameter_nm(
    table: _Table, path: Path, nm_per_unit: float | None, pixel_size_nm: float | None, unit: Unit
) -> FloatArray:
    n = len(table.rows)
    if nm_per_unit is None:
        return np.full(n, np.nan)
    col = table.index("Diameter")
    if col is not None:
        return _column(table, col, "Diameter", path, required=False) * nm_per_unit
    col = table.index("Area")
    if col is not None:
        area = _column(table, col, "Area", path, required=False)
        # an ImageJ point measurement reports the area of one pixel
        one_pixel = 1.0 if unit == "px" else (float(pixel_size_nm or 0.0) / nm_per_unit) ** 2
        with np.errstate(invalid="ignore"):
            ok = area > one_pixel * 1.000001
            d = 2.0 * np.sqrt(np.where(ok, area, np.nan) / math.pi)
        return d * nm_per_unit
    major, minor = table.index("Major"), table.index("Minor")
    if major is not None and minor is not None:
        a = _column(table, major, "Major", path, required=False)
        b = _column(table, minor, "Minor", path, required=False)
        return (a + b) / 2.0 * nm_per_unit
    col = table.index("Feret")
    if col is not None:
        return _column(table, col, "Feret", path, required=False) * nm_per_unit
    return np.full(n, np.nan)


# ---------------------------------------------------------------------------------------------
# ImageJ ROI files (format as documented by ImageJ's ij.io.RoiDecoder; all numbers big-endian)

_ROI_MAGIC = b"Iout"
_ROI_VERSION = 228
_HEADER_SIZE = 64
_HEADER2_SIZE = 64
# header offsets
_VERSION, _TYPE, _TOP, _LEFT, _BOTTOM, _RIGHT, _N_COORDS = 4, 6, 8, 10, 12, 14, 16
_XD, _YD, _WD, _HD, _SIZE = 18, 22, 26, 30, 18
_SHAPE_ROI_SIZE, _SUBTYPE, _OPTIONS, _POSITION, _HEADER2 = 36, 48, 50, 56, 60
# header2 offsets
_H2_NAME_OFFSET, _H2_NAME_LENGTH, _H2_PROPS_OFFSET, _H2_PROPS_LENGTH = 16, 20, 40, 44
# options and types
_SUB_PIXEL = 128
_RECT, _OVAL, _POINT = 1, 2, 10
_ROI_TYPE_NAMES = {
    0: "polygon",
    1: "rectangle",
    2: "oval",
    3: "line",
    4: "freeline",
    5: "polyline",
    6: "no-ROI",
    7: "freehand",
    8: "traced",
    9: "angle",
    10: "point",
}


class _RoiBytes:
    """Bounds-checked big-endian reads from one .roi blob."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.where = where

    def need(self, end: int, what: str) -> None:
        if end > len(self.data):
            raise TruncatedFile(
                f"the ROI ends at byte {len(self.data)} but its {what} needs {end} bytes",
                path=self.where,
            )

    def u8(self, off: int) -> int:
        self.need(off + 1, "header")
        return self.data[off]

    def i16(self, off: int) -> int:
        # ImageJ stores coordinates up to 65535 in a short: values below -5000 are unsigned
        self.need(off + 2, "header")
        v: int = struct.unpack_from(">h", self.data, off)[0]
        return v + 65536 if v < -5000 else v

    def u16(self, off: int) -> int:
        self.need(off + 2, "header")
        v: int = struct.unpack_from(">H", self.data, off)[0]
        return v

    def i32(self, off: int) -> int:
        self.need(off + 4, "header")
        v: int = struct.unpack_from(">i", self.data, off)[0]
        return v

    def f32(self, off: int) -> float:
        self.need(off + 4, "header")
        v: float = struct.unpack_from(">f", self.data, off)[0]
        return v

    def utf16(self, off: int, length: int) -> str | None:
        if off <= 0 or length <= 0 or off + 2 * length > len(self.data):
            return None
        return self.data[off : off + 2 * length].decode("utf-16-be", errors="replace")


@dataclass(frozen=True)
class _Roi:
    x: FloatArray
    y: FloatArray
    diameter_px: FloatArray
    name: str | None
    properties: dict[str, str]


def _parse_roi(data: bytes, where: str) -> _Roi:
    b = _RoiBytes(data, where)
    if len(data) < 4 or data[:4] != _ROI_MAGIC:
        raise CorruptFile("not an ImageJ ROI (no 'Iout' signature)", path=where)
    b.need(_HEADER_SIZE, "64-byte header")
    version = b.u16(_VERSION)
    roi_type = b.u8(_TYPE)
    type_name = _ROI_TYPE_NAMES.get(roi_type, f"unknown type {roi_type}")
    if b.i32(_SHAPE_ROI_SIZE) > 0:
        type_name = "composite (shape)"
    elif roi_type in (_POINT, _OVAL):
        type_name = ""
    if type_name:
        raise UnsupportedFormat(
            f"a {type_name} ROI; only point and oval ROIs mark particles "
            "(remove other selections from the ROI set)",
            path=where,
        )
    options = b.u16(_OPTIONS)
    sub_pixel = bool(options & _SUB_PIXEL) and version >= 222
    top, left, bottom, right = b.i16(_TOP), b.i16(_LEFT), b.i16(_BOTTOM), b.i16(_RIGHT)

    if roi_type == _POINT:
        n = b.u16(_N_COORDS)
        if n == 0:
            n = b.i32(_SIZE)  # more than 65535 points
        if n < 0:
            raise CorruptFile(f"negative point count {n}", path=where)
        b.need(_HEADER_SIZE + n * (12 if sub_pixel else 4), f"{n} point coordinates")
        if sub_pixel:
            base = _HEADER_SIZE + 4 * n
            x = np.frombuffer(data, dtype=">f4", count=n, offset=base).astype(np.float64)
            y = np.frombuffer(data, dtype=">f4", count=n, offset=base + 4 * n).astype(np.float64)
        else:
            xs = np.frombuffer(data, dtype=">i2", count=n, offset=_HEADER_SIZE).astype(np.int64)
            ys = np.frombuffer(data, dtype=">i2", count=n, offset=_HEADER_SIZE + 2 * n)
            ys = ys.astype(np.int64)
            # negative relative coordinates are clamped to 0, as ImageJ does
            x = (left + np.maximum(xs, 0)).astype(np.float64)
            y = (top + np.maximum(ys, 0)).astype(np.float64)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise CorruptFile("a point coordinate is not finite", path=where)
        diameter = np.full(n, np.nan)
    else:  # oval: bounding box in ImageJ's area coordinates (pixel i spans [i, i+1))
        if version >= 223 and sub_pixel:
            x0, y0, w, h = b.f32(_XD), b.f32(_YD), b.f32(_WD), b.f32(_HD)
        else:
            x0, y0, w, h = float(left), float(top), float(right - left), float(bottom - top)
        if not all(math.isfinite(v) for v in (x0, y0, w, h)) or w < 0 or h < 0:
            raise CorruptFile(f"invalid oval bounds ({x0}, {y0}, {w}, {h})", path=where)
        x = np.array([x0 + w / 2.0 - 0.5])
        y = np.array([y0 + h / 2.0 - 0.5])
        diameter = np.array([(w + h) / 2.0])

    name: str | None = None
    properties: dict[str, str] = {}
    hdr2 = b.i32(_HEADER2)
    if hdr2 > 0 and hdr2 + _HEADER2_SIZE <= len(data):
        name = b.utf16(b.i32(hdr2 + _H2_NAME_OFFSET), b.i32(hdr2 + _H2_NAME_LENGTH))
        if version >= 224:
            props = b.utf16(b.i32(hdr2 + _H2_PROPS_OFFSET), b.i32(hdr2 + _H2_PROPS_LENGTH))
            for line in (props or "").splitlines():
                key, sep, value = line.partition(":")
                if sep and key.strip():
                    properties[key.strip()] = value.strip()
    return _Roi(x=x, y=y, diameter_px=diameter, name=name, properties=properties)


def _roi_property(roi: _Roi, key: str, where: str) -> float:
    text = roi.properties.get(key)
    if text is None or text == "" or text.lower() == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise CorruptFile(
            f"ROI property {key!r} is {text[:40]!r}, not a number", path=where
        ) from None


def _rois_to_points(
    rois: Sequence[tuple[_Roi, str]], path: Path, image: str | None, pixel_size_nm: float | None
) -> Points:
    """One table from parsed ROIs; ROIs naming their image are filtered by ``image``."""
    default_image = path.stem if image is None else image
    parts = []
    for roi, where in rois:
        n = roi.x.shape[0]
        diameter = roi.diameter_px * pixel_size_nm if pixel_size_nm else np.full(n, np.nan)
        stored = _roi_property(roi, "diameter_nm", where)
        if not math.isnan(stored):
            diameter = np.full(n, stored)
        parts.append(
            Points.create(
                image=roi.properties.get("image") or default_image,
                x_px=roi.x,
                y_px=roi.y,
                diameter_nm=diameter,
                class_nm=_roi_property(roi, "class_nm", where),
                score=_roi_property(roi, "score", where),
            )
        )
    points = Points.concat(parts)
    if any("image" in roi.properties for roi, _ in rois):
        return _select_image(points, image, path)
    return points


def read_imagej_roi(
    path: str | Path, *, image: str | None = None, pixel_size_nm: float | None = None
) -> Points:
    """Read one ImageJ ``.roi`` file holding a (multi-)point or an oval selection.

    Parameters are those of :func:`read_imagej_roi_zip`.
    """
    path = Path(path)
    _check_pixel_size(pixel_size_nm)
    roi = _parse_roi(_read_bytes(path, MAX_ROI_BYTES), str(path))
    return _rois_to_points([(roi, str(path))], path, image, pixel_size_nm)


def _iter_roi_members(path: Path) -> Iterator[tuple[bytes, str]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CorruptFile(f"ZIP structure is invalid: {e}", path=path) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ROI_ENTRIES:
            raise ArchiveError(
                f"{len(infos)} entries is more than the {MAX_ROI_ENTRIES}-entry budget of a ROI "
                "set",
                path=path,
            )
        total = sum(i.file_size for i in infos)
        if total > MAX_ROI_TOTAL_BYTES:
            raise ArchiveError(
                f"{total} uncompressed bytes is more than the {MAX_ROI_TOTAL_BYTES}-byte budget "
                "of a ROI set",
                path=path,
            )
        for info in infos:
            where = f"{path}!{info.filename}"
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue  # folders, and macOS resource forks that Finder adds to zips
            if not info.filename.lower().endswith(".roi"):
                raise UnsupportedFormat(
                    "not an ImageJ .roi member; a ROI set holds only .roi files", path=where
                )
            if info.flag_bits & 0x1:
                raise UnsupportedFormat("the member is encrypted", path=where)
            if info.file_size > MAX_ROI_BYTES:
                raise ArchiveError(
                    f"{info.file_size} bytes is more than the {MAX_ROI_BYTES}-byte budget of "
                    "one ROI",
                    path=where,
                )
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > 1024**2 and ratio > MAX_ROI_RATIO:
                raise ArchiveError(f"compression ratio {ratio:.0f} looks like a bomb", path=where)
            try:
                with zf.open(info) as f:
                    data = f.read(MAX_ROI_BYTES + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error) as e:
                raise CorruptFile(f"cannot decompress: {e}", path=where) from None
            if len(data) > MAX_ROI_BYTES:
                raise ArchiveError("the member is larger than its header declares", path=where)
            yield data, where


def read_imagej_roi_zip(
    path: str | Path, *, image: str | None = None, pixel_size_nm: float | None = None
) -> Points:
    """Read an ImageJ ROI set (``RoiSet.zip`` from the ROI Manager) of point or oval ROIs.

    The archive is read in memory, never extracted; it may hold at most 100 000 members of at
    most 16 MiB each.

    Parameters
    ----------
    path
        The ZIP archive.
    image
        Image name. ROIs written by :func:`write_imagej_roi_zip` carry their image name (ROI
        property ``image``): then ``image`` keeps only that image's points. Other ROIs get
        ``image``, or by default the archive's stem.
    pixel_size_nm
        nm per pixel, to turn an oval's diameter into ``diameter_nm``; without it the diameter
        of an oval is NaN.

    Returns
    -------
    Points
        Point ROIs give their coordinates as stored (ImageJ's point coordinates are pixel
        centres); an oval gives its centre and mean axis as the diameter. ROI properties
        ``diameter_nm``, ``class_nm`` and ``score`` fill those columns.

    Raises
    ------
    CorruptFile, TruncatedFile
        Not a ZIP, a member without the ``Iout`` signature, or a member shorter than its
        header declares (the message names ``archive!member``).
    UnsupportedFormat
        A member that is not a ``.roi`` file, or a ROI that is not a point or an oval.
    ArchiveError
        Too many members, or a member too large.
    """
    path = Path(path)
    _check_pixel_size(pixel_size_nm)
    # existence, readability and emptiness, with the usual messages
    _read_bytes(path, MAX_ROI_TOTAL_BYTES, head=4)
    rois = [(_parse_roi(data, where), where) for data, where in _iter_roi_members(path)]
    return _rois_to_points(rois, path, image, pixel_size_nm)


def _encode_point_roi(x: float, y: float, name: str, properties: str, where: str) -> bytes:
    # ImageJ's header holds integer bounds in shorts read back as -5000..60535
    if not (-5000 <= x < 60535 and -5000 <= y < 60535):
        raise ValueError(f"{where}: point ({x}, {y}) is outside ImageJ's -5000..60535 px range")
    name_units = len(name.encode("utf-16-be")) // 2
    prop_units = len(properties.encode("utf-16-be")) // 2
    n = 1
    coords = n * 4 + n * 8
    hdr2 = _HEADER_SIZE + coords
    size = hdr2 + _HEADER2_SIZE + 2 * name_units + 2 * prop_units
    buf = bytearray(size)
    buf[0:4] = _ROI_MAGIC
    left, top = math.floor(x), math.floor(y)
    struct.pack_into(">H", buf, _VERSION, _ROI_VERSION)
    buf[_TYPE] = _POINT
    for off, v in ((_TOP, top), (_LEFT, left), (_BOTTOM, top + 1), (_RIGHT, left + 1)):
        struct.pack_into(">H", buf, off, v & 0xFFFF)
    struct.pack_into(">H", buf, _N_COORDS, n)
    struct.pack_into(">H", buf, _OPTIONS, _SUB_PIXEL)
    struct.pack_into(">i", buf, _HEADER2, hdr2)
    # integer coordinates relative to (left, top), then absolute float coordinates
    struct.pack_into(">hh", buf, _HEADER_SIZE, 0, 0)
    struct.pack_into(">ff", buf, _HEADER_SIZE + 4 * n, x, y)
    name_off = hdr2 + _HEADER2_SIZE
    props_off = name_off + 2 * name_units
    struct.pack_into(">ii", buf, hdr2 + _H2_NAME_OFFSET, name_off, name_units)
    buf[name_off:props_off] = name.encode("utf-16-be")
    if prop_units:
        struct.pack_into(">ii", buf, hdr2 + _H2_PROPS_OFFSET, props_off, prop_units)
        buf[props_off:] = properties.encode("utf-16-be")
    return bytes(buf)


def write_imagej_roi_zip(points: Points, path: str | Path) -> None:
    """Write ``points`` as an ImageJ ROI set: one sub-pixel point ROI per row, atomically.

    Each ROI is named ``NNNNNN-yyyy-xxxx`` (ImageJ's style) and carries the ROI properties
    ``image`` and, where known, ``diameter_nm``, ``class_nm`` and ``score``, which
    :func:`read_imagej_roi_zip` reads back. Coordinates are stored as 32-bit floats.

    Parameters
    ----------
    points
        The table; coordinates must lie within ImageJ's -5000..60535 px.
    path
        Destination ``.zip``; replaced if it exists.

    Raises
    ------
    ValueError
        A coordinate outside ImageJ's range, or an image name containing a line break.
    """
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(len(points)):
            image = str(points.image[i])
            if "\n" in image or "\r" in image:
                raise ValueError(f"{path}: image name {image!r} contains a line break")
            x, y = float(points.x_px[i]), float(points.y_px[i])
            props = [f"image: {image}"]
            for key in ("diameter_nm", "class_nm", "score"):
                v = float(getattr(points, key)[i])
                if not math.isnan(v):
                    props.append(f"{key}: {v!r}")
            name = f"{i + 1:06d}-{round(y):04d}-{round(x):04d}"
            blob = _encode_point_roi(x, y, name, "\n".join(props) + "\n", str(path))
            zf.writestr(f"{name}.roi", blob)
    _atomic_write(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# dispatch


def read_annotations(
    path: str | Path,
    *,
    pixel_size_nm: float | None = None,
    image: str | None = None,
    unit: Unit = "um",
) -> Points:
    """Read particle annotations in any supported format, chosen by content.

    - a ZIP archive: an ImageJ ROI set (:func:`read_imagej_roi_zip`);
    - an ``Iout`` file: one ImageJ ROI (:func:`read_imagej_roi`);
    - a table whose header has ``x_px``: emdig's points CSV (:func:`read_points_csv`);
    - a table whose header has ``X``/``Y`` or ``XM``/``YM``: an ImageJ Results table
      (:func:`read_imagej_results`), which needs ``pixel_size_nm`` unless ``unit="px"``.

    Parameters
    ----------
    path
        The file.
    pixel_size_nm
        nm per pixel of the annotated image.
    image
        Image name for formats that store none; for formats that do, keep only that image.
    unit
        Length unit of an ImageJ Results table (``"um"``, ``"nm"`` or ``"px"``).

    Raises
    ------
    UnsupportedFormat
        None of the formats above.
    MissingCalibration
        An ImageJ Results table in µm or nm without ``pixel_size_nm``.
    """
    path = Path(path)
    _check_pixel_size(pixel_size_nm)
    head = _read_bytes(path, max(MAX_TABLE_BYTES, MAX_ROI_TOTAL_BYTES), head=65536)
    if head.startswith(b"PK"):
        return read_imagej_roi_zip(path, image=image, pixel_size_nm=pixel_size_nm)
    if head.startswith(_ROI_MAGIC):
        return read_imagej_roi(path, image=image, pixel_size_nm=pixel_size_nm)
    text = _decode_text(head, path)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise EmptyFile("the file has no header line (only blank lines)", path=path)
    delimiter = "\t" if "\t" in first and "," not in first else ","
    header = {c.strip() for c in next(csv.reader([first], delimiter=delimiter), [])}
    if "x_px" in header:
        return read_points_csv(path, image=image)
    if {"X", "Y"} <= header or {"XM", "YM"} <= header:
        return read_imagej_results(path, pixel_size_nm=pixel_size_nm, image=image, unit=unit)
    raise UnsupportedFormat(
        f"not a known annotation format (header {first[:80]!r}); expected an ImageJ ROI set "
        "(.zip), an ImageJ Results table with X,Y columns, or a CSV with image,x_px,y_px",
        path=path,
    )


def synthetic_truth(particles: np.ndarray, *, image: str) -> Points:
    """The ground-truth table of a synthetic image (:attr:`SynthImage.particles`)."""
    return Points.create(
        image=image,
        x_px=particles["x_px"],
        y_px=particles["y_px"],
        diameter_nm=particles["diameter_nm"],
        class_nm=particles["class_nm"],
    )
