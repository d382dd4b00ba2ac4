"""Instrument formats: RosettaSciIO-backed readers and MRC through mrcfile, via the tag tables."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    CorruptFile,
    EmdigError,
    MissingDependency,
    NestingTooDeep,
    TooLarge,
    TruncatedFile,
)
from ..micrograph import Acquisition, Micrograph, Source
from . import prescan
from .limits import Limits
from .sniff import FORMAT_NAMES
from .tags import TABLES, apply_table, flatten

__all__ = ["INSTRUMENT_FORMATS", "metadata_json", "read_instrument", "to_json_safe"]

log = logging.getLogger(__name__)

# format id -> (rsciio module, extension the module dispatches on, extra kwargs)
_RSCIIO: dict[str, tuple[str, str, dict[str, Any]]] = {
    "dm3": ("digitalmicrograph", ".dm3", {}),
    "dm4": ("digitalmicrograph", ".dm4", {}),
    "velox_emd": ("emd", ".emd", {"select_type": "images"}),
    "berkeley_emd": ("emd", ".emd", {}),
    "hspy": ("hspy", ".hspy", {}),
    "tia_emi": ("tia", ".emi", {}),
    "tia_ser": ("tia", ".ser", {}),
    "jeol_img": ("jeol", ".img", {}),
    "prz": ("pantarhei", ".prz", {}),
    "bcf": ("bruker", ".bcf", {"select_type": "image"}),  # never decode the EDS cube
    "tiff": ("tiff", ".tif", {}),
}
INSTRUMENT_FORMATS = frozenset(_RSCIIO) | {"mrc"}

_TABLE_FOR = {
    "dm3": "dm",
    "dm4": "dm",
    "velox_emd": "velox",
    "berkeley_emd": "berkeley_emd",
    "tia_emi": "tia",
    "tia_ser": "tia",
    "jeol_img": "jeol_img",
    "prz": "prz",
    "bcf": "bcf",
    "hspy": "hspy",
}

# length units -> nm; reciprocal units (diffraction) give no real-space pixel size
_UNIT_NM = {
    "m": 1e9,
    "mm": 1e6,
    "µm": 1e3,
    "μm": 1e3,
    "um": 1e3,
    "nm": 1.0,
    "n_m": 1.0,
    "pm": 1e-3,
    "å": 0.1,
    "a": 0.1,
    "angstrom": 0.1,
}


def to_json_safe(obj: Any, *, max_items: int = 64, depth: int = 0) -> Any:
    """Metadata -> JSON-safe nested dicts. Large arrays become a short description."""
    if depth > 64:
        return "<nested too deep>"
    if isinstance(obj, Mapping):
        return {
            str(k): to_json_safe(v, max_items=max_items, depth=depth + 1) for k, v in obj.items()
        }
    if isinstance(obj, np.ndarray):
        if obj.size > max_items:
            return f"<array shape={list(obj.shape)} dtype={obj.dtype}>"
        return to_json_safe(obj.tolist(), max_items=max_items, depth=depth + 1)
    if isinstance(obj, list | tuple):
        if len(obj) > max_items:
            return f"<list of {len(obj)} items>"
        return [to_json_safe(v, max_items=max_items, depth=depth + 1) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bytes):
        return obj.decode("latin-1", "replace").rstrip("\x00")
    if isinstance(obj, complex):
        return [obj.real, obj.imag]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return (
            obj.tolist() if obj.size <= 64 else f"<array shape={list(obj.shape)} dtype={obj.dtype}>"
        )
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode("latin-1", "replace").rstrip("\x00")
    if isinstance(obj, complex):
        return [obj.real, obj.imag]
    return str(obj)


def metadata_json(raw: Mapping[str, Any]) -> str:
    """Serialize a vendor metadata tree to JSON (numpy values unwrapped, big arrays described).

    Uses the C encoder directly; falls back to :func:`to_json_safe` for trees it cannot encode
    (non-string keys, cycles).
    """
    try:
        return json.dumps(raw, default=_json_default)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(to_json_safe(raw), default=str)


def _pixel_size_nm(axis: Mapping[str, Any]) -> float | None:
    units = axis.get("units")
    scale = axis.get("scale")
    if not isinstance(units, str) or scale is None:
        return None
    u = units.strip().lower().replace(" ", "")
    factor = _UNIT_NM.get(u) or _UNIT_NM.get(units.strip())
    if factor is None:
        return None
    try:
        value = abs(float(scale)) * factor
    except (TypeError, ValueError):
        return None
    return value if value > 0 and np.isfinite(value) else None


def _imagej_unit(om: Mapping[str, Any]) -> str | None:
    """ImageJ keeps the length unit in its ImageDescription (``unit=nm``); rsciio drops it."""
    desc = om.get("ImageDescription")
    if not isinstance(desc, str) or not desc.startswith("ImageJ="):
        return None
    m = re.search(r"^unit=(.+)$", desc, re.MULTILINE)
    if not m:
        return None
    unit = m.group(1).strip().replace("\\u00B5", "µ")
    return {"micron": "µm", "microns": "µm", "um": "µm"}.get(unit, unit)


def _tiff_table(flat: Mapping[str, Any]) -> str | None:
    keys = " ".join(list(flat)[:4000])
    if "fei_metadata." in keys:
        return "fei_tiff"
    if "CZ_SEM." in keys:
        return "zeiss_tiff"
    if "TVIPS." in keys:
        return "tvips_tiff"
    if "ImageDescription.ElectronGun" in keys or "ImageDescription.ImageFormingSystem" in keys:
        return "jeol_tiff"
    return None


def _velox_detector_entry(om: Mapping[str, Any]) -> dict[str, Any]:
    name = (om.get("BinaryResult") or {}).get("Detector")
    for entry in (om.get("Detectors") or {}).values():
        if isinstance(entry, Mapping) and entry.get("DetectorName") == name:
            return flatten(entry, "@det")
    return {}


def _acquisition(fmt: str, om: Mapping[str, Any], md: Mapping[str, Any]) -> Acquisition:
    flat = flatten(om)
    general = md.get("General", {}) if isinstance(md, Mapping) else {}
    for key in ("title", "date", "time", "time_zone"):
        if general.get(key) not in (None, ""):
            flat[f"@{key}"] = general[key]
    flat.update(flatten(md, "@md"))
    table = _TABLE_FOR.get(fmt)
    if fmt == "tiff":
        table = _tiff_table(flat)
    if fmt == "velox_emd":
        flat.update(_velox_detector_entry(om))
    tables = ([TABLES[table]] if table else []) + [TABLES["hyperspy"]]
    fields = apply_table(flat, tables)
    return _finish(fields)


def _finish(fields: dict[str, Any]) -> Acquisition:
    if fields.get("mode") == "diffraction":
        fields.pop("magnification", None)  # in diffraction a "magnification" is a camera length
    if fields.get("collection_outer_mrad") is None:
        fields.pop("collection_inner_mrad", None)  # (0, 0) is a placeholder, not a range
    return Acquisition(**fields)


def _luminance(data: np.ndarray) -> np.ndarray:
    if data.dtype.names:  # RGB(A) as a structured dtype (rsciio's TIFF reader)
        names = [n for n in ("R", "G", "B") if n in data.dtype.names]
        if len(names) == 3:
            out = 0.299 * data["R"] + 0.587 * data["G"] + 0.114 * data["B"]
            return out.astype(data[names[0]].dtype)
        return np.asarray(data[data.dtype.names[0]])
    return data


def _frames(
    sig: Mapping[str, Any], path: Path, limits: Limits
) -> Iterator[tuple[np.ndarray, Mapping[str, Any]]]:
    """Yield (2-D frame, x-axis dict) per frame; skip spectra, 4-D and complex data."""
    data = sig["data"]
    axes = list(sig.get("axes") or [])
    title = (sig.get("metadata") or {}).get("General", {}).get("title", "")
    shape = tuple(getattr(data, "shape", ()))
    if len(axes) != len(shape):
        axes = [{} for _ in shape]
    sig_axes = [i for i, a in enumerate(axes) if not a.get("navigate", False)]
    if len(shape) == 2 and len(sig_axes) != 2:
        sig_axes = [0, 1]
    if len(sig_axes) != 2:
        log.info(
            "%s: skipping signal %r with shape %s: not a 2-D image (spectrum or profile)",
            path,
            title,
            shape,
        )
        return
    nav = [i for i in range(len(shape)) if i not in sig_axes]
    if len(nav) > 1:
        log.info(
            "%s: skipping signal %r with shape %s: 4-D data (e.g. 4D-STEM) is not a micrograph",
            path,
            title,
            shape,
        )
        return
    dtype = getattr(data, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.complexfloating):
        log.info("%s: skipping signal %r: complex-valued image", path, title)
        return
    h, w = shape[sig_axes[0]], shape[sig_axes[1]]
    n = shape[nav[0]] if nav else 1
    prescan.check_image_size(path, w, h, n, limits, what=f"image {title!r}")
    x_axis = axes[sig_axes[1]]
    arr = np.asarray(data)
    if nav:
        arr = np.moveaxis(arr, nav[0], 0)
        for k in range(n):
            yield np.ascontiguousarray(_luminance(arr[k])), x_axis
    else:
        yield np.ascontiguousarray(_luminance(arr)), x_axis


@contextlib.contextmanager
def _with_extension(path: Path, ext: str) -> Iterator[Path]:
    """Readers that dispatch on the extension get a symlink with the right one if needed."""
    if path.suffix.lower() == ext:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="emdig-") as tmp:
        link = Path(tmp) / (path.stem + ext)
        os.symlink(path.resolve(), link)
        yield link


def _map_parser_error(e: BaseException, path: Path, fmt: str) -> EmdigError:
    name = FORMAT_NAMES.get(fmt, fmt)
    if isinstance(e, EmdigError):
        return e
    if isinstance(e, MemoryError):
        return TooLarge(f"{name} reader ran out of memory", path=path)
    if isinstance(e, RecursionError):
        return NestingTooDeep(f"{name} metadata nests too deep for the parser", path=path)
    if isinstance(e, ImportError):
        return MissingDependency(
            f"{name} needs an optional package ({e.name or e}): pip install 'emdig[all]'",
            path=path,
        )
    msg = " ".join(str(e).split())[:200] or type(e).__name__
    if re.search(
        r"truncat|end of file|EOF|not enough|too short|smaller than|beyond"
        r"|failed to read \d+ bytes",
        msg,
        re.I,
    ):
        return TruncatedFile(f"{name} data is cut short ({type(e).__name__}: {msg})", path=path)
    return CorruptFile(f"{name} parser failed: {type(e).__name__}: {msg}", path=path)


def _prescan(path: Path, fmt: str, limits: Limits) -> None:
    if fmt in ("dm3", "dm4"):
        prescan.prescan_dm(path, limits)
    elif fmt == "tiff":
        prescan.prescan_tiff(path, limits)
    elif fmt == "tia_ser":
        prescan.prescan_ser(path, limits)
    elif fmt == "tia_emi":
        for ser in sorted(path.parent.glob(f"{glob_escape(path.stem)}_*.ser")):
            prescan.prescan_ser(ser, limits)
    elif fmt in ("velox_emd", "berkeley_emd", "hspy"):
        prescan.prescan_hdf5(path, limits)
    elif fmt == "mrc":
        prescan.prescan_mrc(path, limits)


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def _read_rsciio(path: Path, fmt: str) -> list[dict[str, Any]]:
    import importlib

    if fmt in ("dm3", "dm4"):
        from .dm import NotHandled, read_dm

        try:
            return read_dm(path)
        except NotHandled as e:  # leave the unusual cases to RosettaSciIO
            log.debug("%s: fast DM reader declined (%s); using RosettaSciIO", path, e)

    module, ext, kwargs = _RSCIIO[fmt]
    try:
        reader = importlib.import_module(f"rsciio.{module}").file_reader
    except ImportError as e:
        raise MissingDependency(
            f"reading {FORMAT_NAMES[fmt]} needs rosettasciio: "
            "pip install 'rosettasciio[hdf5,tiff]'",
            path=path,
        ) from e
    with _with_extension(path, ext) as p, np.errstate(all="ignore"):
        result = reader(str(p), **kwargs)
    return list(result)


def _read_mrc(
    path: Path, limits: Limits
) -> list[tuple[np.ndarray, float | None, dict[str, Any], Acquisition, int]]:
    try:
        import mrcfile
    except ImportError as e:
        raise MissingDependency("reading MRC needs mrcfile: pip install mrcfile", path=path) from e
    out = []
    with mrcfile.mmap(str(path), mode="r", permissive=True) as m:
        if m.data is None:
            raise CorruptFile("MRC file has no readable data block", path=path)
        data = np.asarray(m.data)
        vx = float(m.voxel_size.x)
        px = vx / 10.0 if vx > 0 and np.isfinite(vx) else None  # Å -> nm
        header = {name: to_json_safe(m.header[name]) for name in m.header.dtype.names}
        ext = None
        if int(m.header.nsymbt) > 0:
            try:
                ext = m.indexed_extended_header
            except Exception as e:  # malformed extended header: keep the image, drop its metadata
                log.warning("%s: unreadable MRC extended header: %s", path, e)
        frames = data[None] if data.ndim == 2 else data
        if frames.ndim != 3:
            raise CorruptFile(f"MRC data has unsupported shape {data.shape}", path=path)
        prescan.check_image_size(path, frames.shape[2], frames.shape[1], frames.shape[0], limits)
        for k in range(frames.shape[0]):
            row: dict[str, Any] = {}
            if ext is not None and getattr(ext, "dtype", None) is not None and ext.dtype.names:
                rec = ext[min(k, len(ext) - 1)]
                row = {n: to_json_safe(rec[n]) for n in ext.dtype.names}
            acq = _finish(apply_table(row, [TABLES["mrc_fei2"]])) if row else Acquisition()
            raw = {"header": header, "extended_header": row}
            pixel = px
            if pixel is None and row.get("Pixel size X"):
                pixel = float(row["Pixel size X"]) * 1e9
            out.append((np.ascontiguousarray(frames[k]), pixel, raw, acq, k))
    return out


def read_instrument(
    path: Path, fmt: str, *, limits: Limits, sha256: str | None = None
) -> list[Micrograph]:
    """Read every 2-D image of an instrument file. See :func:`emdig.read`."""
    _prescan(path, fmt, limits)
    micrographs: list[Micrograph] = []
    try:
        if fmt == "mrc":
            for pixels, px, raw, acq, k in _read_mrc(path, limits):
                src = Source(path=str(path), sha256=sha256, format=fmt, index=k)
                micrographs.append(Micrograph(pixels, px, acq, raw, src))
            return micrographs
        signals = _read_rsciio(path, fmt)
        index = 0
        for sig in signals:
            md = sig.get("metadata") or {}
            om = sig.get("original_metadata") or {}
            acq = _acquisition(fmt, om, md)
            title = md.get("General", {}).get("title") or None
            raw_base = om  # verbatim; serialized for storage by metadata_json
            unit = _imagej_unit(om) if fmt == "tiff" else None
            for pixels, x_axis in _frames(sig, path, limits):
                if unit and not x_axis.get("units"):
                    x_axis = {**x_axis, "units": unit}
                raw = raw_base  # shared by the frames of a stack: they have one header
                src = Source(
                    path=str(path),
                    sha256=sha256,
                    format=fmt,
                    index=index,
                    signal=None if title is None else str(title),
                )
                micrographs.append(Micrograph(pixels, _pixel_size_nm(x_axis), acq, raw, src))
                index += 1
    except EmdigError:
        raise
    except Exception as e:  # parsers raise anything; the message names the file and the reason
        raise _map_parser_error(e, path, fmt) from e
    return micrographs
