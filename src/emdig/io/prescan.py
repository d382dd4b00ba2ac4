"""Cheap structural checks run before a parser sees a file.

Each pre-scan reads only headers and directory structures, never pixel data, and raises an
:class:`~emdig.errors.EmdigError` when a declared size breaks a budget, a structure loops or
nests too deep, or the file ends before the data it declares. Parsers are only trusted with
files that pass.
"""

from __future__ import annotations

import mmap
import struct
import warnings
from pathlib import Path

from ..errors import CorruptFile, NestingTooDeep, TooLarge, TruncatedFile, UnsupportedFormat
from .limits import Limits

__all__ = [
    "check_image_size",
    "prescan_dm",
    "prescan_hdf5",
    "prescan_mrc",
    "prescan_pillow",
    "prescan_ser",
    "prescan_tiff",
]


def check_image_size(
    path: Path, width: int, height: int, frames: int, limits: Limits, *, what: str = "image"
) -> None:
    """Raise :class:`TooLarge` when declared dimensions break the pixel or frame budget."""
    if width <= 0 or height <= 0:
        raise CorruptFile(f"{what} declares impossible dimensions {width}x{height}", path=path)
    if width * height > limits.max_pixels:
        raise TooLarge(
            f"{what} declares {width}x{height} = {width * height:,} pixels, over the "
            f"{limits.max_pixels:,}-pixel budget (checked before decoding; raise "
            "EMDIG_MAX_PIXELS to allow it)",
            path=path,
        )
    if frames > limits.max_frames:
        raise TooLarge(
            f"{what} declares {frames:,} frames, over the {limits.max_frames:,}-frame budget",
            path=path,
        )
    if width * height * max(frames, 1) > limits.max_total_pixels:
        raise TooLarge(
            f"{what} declares {frames}x{height}x{width} pixels in all, over the "
            f"{limits.max_total_pixels:,}-pixel budget per file",
            path=path,
        )


# --------------------------------------------------------------------------------- Pillow
def prescan_pillow(path: Path, fmt: str, limits: Limits) -> None:
    """Check a PNG or JPEG header's dimensions before any pixel is decoded."""
    if fmt == "png":
        with open(path, "rb") as fh:
            head = fh.read(33)
        if len(head) < 33 or head[12:16] != b"IHDR":
            raise TruncatedFile("PNG ends inside its header (no complete IHDR chunk)", path=path)
        width, height = struct.unpack(">II", head[16:24])
        check_image_size(path, width, height, 1, limits, what="PNG header")
        return
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["JPEG"]) as im:  # lazy: reads the header only
                width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(f"decompression bomb refused: {e}", path=path) from None
    except Exception as e:  # Pillow raises many types for broken headers
        raise CorruptFile(f"JPEG header is invalid: {e}", path=path) from None
    check_image_size(path, width, height, 1, limits, what="JPEG header")


# ----------------------------------------------------------------------------------- TIFF
_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_TIFF_TYPE_SIZE.update({16: 8, 17: 8, 18: 8})
_TIFF_UINT = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}


def prescan_tiff(path: Path, limits: Limits) -> int:
    """Walk a TIFF's directory chain without decoding; return the number of pages.

    Detects loops in the chain, directories outside the file, and pages whose declared size
    breaks the budget.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) < 8:
            raise TruncatedFile("TIFF ends inside its 8-byte header", path=path)
        bo = "<" if head[:2] == b"II" else ">"
        magic = struct.unpack(bo + "H", head[2:4])[0]
        big = magic == 43
        if big:
            if len(head) < 16:
                raise TruncatedFile("BigTIFF ends inside its header", path=path)
            offset = struct.unpack(bo + "Q", head[8:16])[0]
        else:
            offset = struct.unpack(bo + "I", head[4:8])[0]
        count_fmt, count_len = ("Q", 8) if big else ("H", 2)
        entry_len = 20 if big else 12
        seen: set[int] = set()
        pages = 0
        max_pixels_page = (0, 0)
        while offset:
            if offset in seen:
                raise CorruptFile(
                    f"TIFF directory chain loops back to offset {offset} after {pages} pages",
                    path=path,
                )
            seen.add(offset)
            if offset + count_len > size:
                raise TruncatedFile(
                    f"TIFF directory #{pages} at offset {offset} lies beyond the end of the "
                    f"file ({size} bytes)",
                    path=path,
                )
            pages += 1
            if pages > limits.max_ifds:
                raise TooLarge(f"TIFF has more than {limits.max_ifds:,} directories", path=path)
            fh.seek(offset)
            n = struct.unpack(bo + count_fmt, fh.read(count_len))[0]
            end = offset + count_len + n * entry_len + (8 if big else 4)
            if n > 4096 or end > size:
                raise TruncatedFile(
                    f"TIFF directory #{pages - 1} at offset {offset} declares {n} entries "
                    "that run past the end of the file",
                    path=path,
                )
            raw = fh.read(n * entry_len)
            tags: dict[int, int] = {}
            for i in range(n):
                e = raw[i * entry_len : (i + 1) * entry_len]
                if big:
                    tag, typ, cnt = struct.unpack(bo + "HHQ", e[:12])
                    val = e[12:20]
                else:
                    tag, typ, cnt = struct.unpack(bo + "HHI", e[:8])
                    val = e[8:12]
                if tag in (256, 257, 277, 259) and typ in _TIFF_UINT and cnt >= 1:
                    width = _TIFF_TYPE_SIZE[typ]
                    tags[tag] = struct.unpack(bo + _TIFF_UINT[typ], val[:width])[0]
            w, h = tags.get(256, 0), tags.get(257, 0)
            spp = max(1, min(tags.get(277, 1), 16))
            if w * h * spp > max_pixels_page[0] * max_pixels_page[1]:
                max_pixels_page = (w * spp, h)
            nxt = fh.read(8 if big else 4)
            offset = struct.unpack(bo + ("Q" if big else "I"), nxt)[0]
        if pages == 0:
            raise CorruptFile("TIFF has no image directory", path=path)
        w, h = max_pixels_page
        if w and h:
            check_image_size(path, w, h, 1, limits, what="TIFF directory")
        return pages


# ------------------------------------------------------------------------------------- DM
_DM_SIZE = {2: 2, 3: 4, 4: 2, 5: 4, 6: 4, 7: 8, 8: 1, 9: 1, 10: 1, 11: 8, 12: 8}


def _dm_data_size(info: list[int], path: Path, where: str, offset: int) -> int:
    def bad() -> CorruptFile:
        return CorruptFile(
            f"DM tag '{where}' at offset {offset} has an unknown data type {info[:6]}", path=path
        )

    if not info:
        raise bad()
    t = info[0]
    if t in _DM_SIZE and len(info) == 1:
        return _DM_SIZE[t]
    if t == 18 and len(info) == 2:  # string of UTF-16 characters
        return 2 * info[1]
    if t == 15:  # struct: [15, namelen, nfields, (fieldnamelen, type)*]
        if len(info) < 3 or len(info) != 3 + 2 * info[2]:
            raise bad()
        types = info[4::2]
        if any(ft not in _DM_SIZE for ft in types):
            raise bad()
        return sum(_DM_SIZE[ft] for ft in types)
    if t == 20 and len(info) >= 3:  # array: [20, elemtype, count] or [20, 15, ..., count]
        count = info[-1]
        elem = info[1:-1]
        if len(elem) == 1 and elem[0] in _DM_SIZE:
            return _DM_SIZE[elem[0]] * count
        if elem and elem[0] == 15:
            return _dm_data_size(elem, path, where, offset) * count
        if len(elem) == 2 and elem[0] == 18:  # array of strings: [20, 18, length, count]
            return 2 * elem[1] * count
        if len(elem) == 3 and elem[0] == 20 and elem[1] in _DM_SIZE:  # array of arrays
            return _DM_SIZE[elem[1]] * elem[2] * count
        raise bad()
    raise bad()


def prescan_dm(path: Path, limits: Limits) -> None:
    """Walk a DM3/DM4 tag tree iteratively: nesting depth, tag count, types and extents."""
    size = path.stat().st_size
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos = 0

        def take(fmt: str, what: str) -> tuple[int, ...]:
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                raise TruncatedFile(f"DM file ends inside {what} at offset {pos}", path=path)
            out = struct.unpack_from(fmt, buf, pos)
            pos += n
            return out

        (version,) = take(">i", "the header")
        if version not in (3, 4):
            raise CorruptFile(f"DM header declares unsupported version {version}", path=path)
        dm4 = version == 4
        take(">Qi" if dm4 else ">ii", "the header")  # root length (unreliable), byte order
        lfmt = ">Q" if dm4 else ">I"
        group_fmt = ">BBQ" if dm4 else ">BBI"

        stack = [take(group_fmt, "a tag group header")[2]]  # tags left in each open group
        n_tags = 0
        while stack:
            if stack[-1] == 0:
                stack.pop()
                continue
            stack[-1] -= 1
            n_tags += 1
            if n_tags > limits.max_tags:
                raise TooLarge(f"DM file has more than {limits.max_tags:,} tags", path=path)
            start = pos
            kind, nlen = take(">BH", "a tag")
            if kind == 0:  # some writers end the root with a zero tag
                break
            if pos + nlen > size:
                raise TruncatedFile(f"DM file ends inside a tag name at offset {pos}", path=path)
            name = bytes(buf[pos : pos + nlen]).decode("latin-1")
            pos += nlen + (8 if dm4 else 0)  # DM4 adds the tag's byte size
            if kind == 20:
                if len(stack) >= limits.max_nesting:
                    raise NestingTooDeep(
                        f"DM tag groups nest deeper than {limits.max_nesting} levels "
                        f"(at offset {start})",
                        path=path,
                    )
                stack.append(take(group_fmt, "a tag group header")[2])
            elif kind == 21:
                if buf[pos : pos + 4] != b"%%%%":
                    raise CorruptFile(f"DM tag '{name}' at offset {start} is malformed", path=path)
                pos += 4
                (ninfo,) = take(lfmt, "a tag type")
                if ninfo > 1024:
                    raise CorruptFile(
                        f"DM tag '{name}' at offset {start} declares {ninfo} type words",
                        path=path,
                    )
                info = list(take(f">{ninfo}{lfmt[1]}", "a tag type"))
                nbytes = _dm_data_size(info, path, name, start)
                if pos + nbytes > size:
                    raise TruncatedFile(
                        f"DM tag '{name}' at offset {start} declares {nbytes:,} bytes of data "
                        f"past the end of the file ({size:,} bytes)",
                        path=path,
                    )
                pos += nbytes
            else:
                raise CorruptFile(
                    f"DM file has an invalid tag kind {kind} at offset {start}", path=path
                )


# ------------------------------------------------------------------------------------ SER
_SER_DTYPE_SIZE = {1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 16, 11: 8, 12: 8}


def prescan_ser(path: Path, limits: Limits) -> None:
    """Check a TIA SER header: element counts, offsets and image sizes against the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(30)
        if len(head) < 30:
            raise TruncatedFile("SER file ends inside its header", path=path)
        _, _series_id, version, type_id, _, total, valid = struct.unpack("<HHHIIII", head[:22])
        wide = version >= 0x220
        off_fmt, off_len = ("<Q", 8) if wide else ("<I", 4)
        array_offset = struct.unpack(off_fmt, head[22 : 22 + off_len])[0]
        if valid > total:
            raise CorruptFile(
                f"SER header declares {valid:,} valid elements but only {total:,} in all",
                path=path,
            )
        if array_offset + total * off_len > size:
            raise TooLarge(
                f"SER header declares {total:,} elements whose offset table does not fit in "
                f"the {size:,}-byte file",
                path=path,
            )
        if valid == 0:
            return
        if type_id == 0x4122:  # 2-D images
            if valid > limits.max_frames:
                raise TooLarge(
                    f"SER declares {valid:,} images, over the {limits.max_frames:,}-frame budget",
                    path=path,
                )
            fh.seek(array_offset)
            first = struct.unpack(off_fmt, fh.read(off_len))[0]
            fh.seek(first)
            el = fh.read(50)
            if len(el) < 50:
                raise TruncatedFile(f"SER image header at offset {first} is cut off", path=path)
            dtype, nx, ny = struct.unpack("<HII", el[40:50])
            check_image_size(path, nx, ny, valid, limits, what="SER image")
            nbytes = nx * ny * _SER_DTYPE_SIZE.get(dtype, 8)
            if first + 50 + nbytes > size:
                raise TruncatedFile(
                    f"SER image at offset {first} declares {nx}x{ny} pixels ({nbytes:,} bytes) "
                    f"past the end of the file ({size:,} bytes)",
                    path=path,
                )


# ------------------------------------------------------------------------------------ MRC
_MRC_ITEMSIZE = {0: 1.0, 1: 2.0, 2: 4.0, 3: 4.0, 4: 8.0, 6: 2.0, 12: 2.0, 101: 0.5}


def prescan_mrc(path: Path, limits: Limits) -> None:
    """Check an MRC header's dimensions, mode and extent against the budget and the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        raise TruncatedFile("MRC file ends inside its 1024-byte header", path=path)
    bo = ">" if head[212] == 0x11 else "<"
    nx, ny, nz, mode = struct.unpack(bo + "4i", head[:16])
    nsymbt = struct.unpack(bo + "i", head[92:96])[0]
    if mode not in _MRC_ITEMSIZE:
        raise CorruptFile(f"MRC header declares unknown mode {mode}", path=path)
    check_image_size(path, nx, ny, nz, limits, what="MRC header")
    need = 1024 + nsymbt + int(nx * ny * nz * _MRC_ITEMSIZE[mode])
    if need > size:
        raise TruncatedFile(
            f"MRC header declares {nz}x{ny}x{nx} pixels ({need:,} bytes) but the file has "
            f"{size:,} bytes",
            path=path,
        )


# ----------------------------------------------------------------------------------- HDF5
def prescan_hdf5(path: Path, limits: Limits) -> None:
    """Walk an HDF5 tree without reading data: depth, external links, dataset sizes."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CorruptFile(f"HDF5 file cannot be opened: {e}", path=path) from None
    with f:
        stack: list[tuple[h5py.Group, int]] = [(f, 0)]
        n = 0
        while stack:
            group, depth = stack.pop()
            if depth > limits.max_nesting:
                raise NestingTooDeep(
                    f"HDF5 groups nest deeper than {limits.max_nesting} levels", path=path
                )
            for name in group:
                n += 1
                if n > limits.max_tags:
                    raise TooLarge(
                        f"HDF5 file has more than {limits.max_tags:,} objects", path=path
                    )
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise UnsupportedFormat(
                        f"HDF5 object '{group.name}/{name}' is an external link to "
                        f"'{link.filename}'; external links are never followed",
                        path=path,
                    )
                if isinstance(link, h5py.SoftLink):
                    continue
                try:
                    obj = group[name]
                except (KeyError, OSError) as e:
                    raise CorruptFile(
                        f"HDF5 object '{name}' is unreadable: {e}", path=path
                    ) from None
                if isinstance(obj, h5py.Group):
                    stack.append((obj, depth + 1))
                elif isinstance(obj, h5py.Dataset) and obj.ndim >= 2:
                    if "SpectrumStream" in (obj.name or ""):
                        continue  # Velox EDS streams are never loaded (images only)
                    total = 1
                    for d in obj.shape:
                        total *= int(d)
                    if total > limits.max_total_pixels:
                        raise TooLarge(
                            f"HDF5 dataset '{obj.name}' has shape {obj.shape} "
                            f"({total:,} values), over the {limits.max_total_pixels:,} budget",
                            path=path,
                        )
