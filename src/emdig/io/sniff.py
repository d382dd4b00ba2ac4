"""Identify a file's format from its content, never from its extension."""

from __future__ import annotations

import errno
import os
import struct
import zipfile
from pathlib import Path

from ..errors import EmptyFile, TooLarge, UnreadableFile, UnsupportedFormat
from .limits import Limits

__all__ = ["FORMAT_NAMES", "open_checked", "sniff"]

#: Human names of the format ids :func:`sniff` returns.
FORMAT_NAMES: dict[str, str] = {
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "dm3": "Gatan DM3",
    "dm4": "Gatan DM4",
    "velox_emd": "Thermo Fisher Velox EMD",
    "berkeley_emd": "Berkeley EMD",
    "hspy": "HyperSpy HSPY",
    "tia_emi": "FEI TIA EMI",
    "tia_ser": "FEI TIA SER",
    "jeol_img": "JEOL Analysis Station IMG",
    "prz": "CEOS Panta Rhei PRZ",
    "bcf": "Bruker BCF",
    "mrc": "MRC",
    "zip": "ZIP archive",
}

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MRC_MODES = {0, 1, 2, 3, 4, 6, 12, 101}

# What non-EM content looks like, for a helpful message.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip stream"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"SIMPLE  =", "a FITS file"),
    (b"8BPS", "a Photoshop PSD file"),
    (b"RIFF", "a RIFF (WebP/AVI/WAV) file"),
    (b"\x7fELF", "an executable"),
)


def open_checked(path: str | Path) -> os.stat_result:
    """``stat`` a path and turn every OS failure into an :class:`UnreadableFile`.

    Also rejects directories and empty files, and checks that the file can be opened.
    """
    p = Path(path)
    try:
        st = p.stat()
        if not p.is_file():
            raise UnreadableFile("not a regular file", path=p)
        with open(p, "rb"):
            pass
    except UnreadableFile:
        raise
    except FileNotFoundError:
        if p.is_symlink():
            raise UnreadableFile("broken symbolic link", path=p) from None
        raise UnreadableFile("no such file (was it moved or deleted?)", path=p) from None
    except PermissionError:
        raise UnreadableFile("permission denied", path=p) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnreadableFile("symbolic link loop", path=p) from None
        raise UnreadableFile(f"cannot open: {e.strerror or e}", path=p) from None
    if st.st_size == 0:
        raise EmptyFile("file is empty (0 bytes)", path=p)
    return st


def _describe_other(head: bytes) -> str:
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    stripped = head.lstrip()[:64].lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if stripped.startswith(b"<?xml") or stripped.startswith(b"<"):
        return "an XML/markup document"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        return "plain text"
    return "unrecognised binary data"


def _looks_like_mrc(head: bytes, size: int) -> bool:
    if len(head) < 224:
        return False
    if head[208:212] == b"MAP ":
        return True
    # Older MRC files lack the MAP stamp: accept a plausible header only.
    for fmt in ("<", ">"):
        nx, ny, nz, mode = struct.unpack(fmt + "4i", head[:16])
        if 0 < nx < 1 << 20 and 0 < ny < 1 << 20 and 0 < nz < 1 << 20 and mode in _MRC_MODES:
            nsymbt = struct.unpack(fmt + "i", head[92:96])[0]
            if 0 <= nsymbt < size:
                return True
    return False


def _hdf5_flavour(path: Path) -> str:
    import h5py  # local: only HDF5 files pay for it

    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            fmt = attrs.get("file_format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode("latin-1")
            if fmt == "HyperSpy":
                return "hspy"
            if "Data" in f and "Version" in f:
                return "velox_emd"
            if "version_major" in attrs and any(k in f for k in ("data", "microscope")):
                return "berkeley_emd"
    except OSError as e:
        from ..errors import CorruptFile

        raise CorruptFile(f"HDF5 file cannot be opened: {e}", path=path) from None
    raise UnsupportedFormat(
        "an HDF5 file, but not Velox EMD, Berkeley EMD or HyperSpy HSPY", path=path
    )


def _zip_flavour(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist()[:64])
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        from ..errors import CorruptFile

        raise CorruptFile(f"ZIP structure is invalid: {e}", path=path) from None
    if {"data.npy", "meta_data.npy"} <= names:
        return "prz"
    return "zip"


def sniff(path: str | Path, *, limits: Limits | None = None) -> str:
    """Return the format id of a file, judged from its first bytes.

    Parameters
    ----------
    path
        The file.
    limits
        Budgets; only ``max_file_bytes`` is used here.

    Returns
    -------
    str
        One of the keys of :data:`FORMAT_NAMES`.

    Raises
    ------
    UnreadableFile, EmptyFile, TooLarge, UnsupportedFormat
    """
    p = Path(path)
    st = open_checked(p)
    lim = limits or Limits()
    if st.st_size > lim.max_file_bytes:
        raise TooLarge(
            f"file is {st.st_size:,} bytes, over the {lim.max_file_bytes:,}-byte budget "
            "(raise EMDIG_MAX_FILE_BYTES to read it)",
            path=p,
        )
    with open(p, "rb") as fh:
        head = fh.read(1024)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(_HDF5_MAGIC):
        return _hdf5_flavour(p)
    if head.startswith(b"AAMVHFSS"):
        return "bcf"
    if head.startswith(b"JK\x00\x02"):
        return "tia_emi"
    if head[:2] == b"II" and len(head) >= 6 and struct.unpack("<H", head[2:4])[0] == 0x0197:
        return "tia_ser"
    if head[4:12] == b"JED-2200":
        return "jeol_img"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_flavour(p)
    if len(head) >= 16:
        version = struct.unpack(">i", head[:4])[0]
        if version == 3 and struct.unpack(">i", head[8:12])[0] in (0, 1):
            return "dm3"
        if version == 4 and struct.unpack(">i", head[12:16])[0] in (0, 1):
            return "dm4"
        if p.suffix.lower() in (".dm3", ".dm4") and struct.unpack(">i", head[8:12])[0] in (0, 1):
            from ..errors import CorruptFile

            raise CorruptFile(f"DM header declares unsupported version {version}", path=p)
    if _looks_like_mrc(head, st.st_size):
        return "mrc"
    what = _describe_other(head)
    ext = p.suffix.lower()
    claim = f" although its extension is '{ext}'" if ext else ""
    raise UnsupportedFormat(f"content is {what}{claim}; not an EM image format emdig reads", path=p)
