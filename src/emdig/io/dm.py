"""A fast Gatan DigitalMicrograph (DM3/DM4) reader for 2-D images and image stacks.

RosettaSciIO's DM parser reads every tag value element by element in Python, which makes it the
largest cost of an ingest. This reader walks the same tag tree iteratively over a memory map,
decodes arrays with numpy, and maps the image data without copying it until a frame is taken.
It returns signal dictionaries shaped like RosettaSciIO's (``data``, ``axes``, ``metadata``,
``original_metadata`` with the image as ``ImageList.TagGroup0``), so the tag tables apply
unchanged. Anything outside its scope (complex or RGB data, unusual array element types) raises
:class:`NotHandled`, and the caller falls back to RosettaSciIO.

The file must have passed :func:`emdig.io.prescan.prescan_dm` first: extents, depth and type
codes are trusted here.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["NotHandled", "read_dm"]

# DM simple type codes -> numpy dtype characters
_SIMPLE = {2: "i2", 3: "i4", 4: "u2", 5: "u4", 6: "f4", 7: "f8", 8: "?", 9: "i1", 10: "u1",
           11: "i8", 12: "u8"}  # fmt: skip
_SPECTRAL_UNITS = {"eV", "keV"}
_LIST_MAX = 64  # longer arrays stay numpy arrays (described, not listed, in the catalog)


class NotHandled(Exception):
    """The file uses a DM feature this reader leaves to RosettaSciIO."""


class _Reader:
    def __init__(self, buf: mmap.mmap, dm4: bool, little: bool) -> None:
        self.buf = buf
        self.pos = 0
        self.dm4 = dm4
        self.lfmt = ">Q" if dm4 else ">I"
        self.llen = 8 if dm4 else 4
        self.bo = "<" if little else ">"

    def take(self, fmt: str) -> tuple[Any, ...]:
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return out

    def long(self) -> int:
        return int(self.take(self.lfmt)[0])

    def array(self, code: int, count: int, name: str, parent: str) -> Any:
        dt = np.dtype(self.bo + _SIMPLE[code])
        nbytes = dt.itemsize * count
        if parent == "ImageData" and name == "Data":  # the pixels: record where they are
            out: Any = {"size": count, "endian": "little" if self.bo == "<" else "big",
                        "size_bytes": nbytes, "offset": self.pos, "dtype": dt.str}  # fmt: skip
        else:
            values = np.frombuffer(self.buf, dt, count, self.pos)
            if code == 4:  # DM stores text as arrays of UTF-16 code units
                out = "".join(map(chr, values.tolist())) if count else []
            elif count > _LIST_MAX:  # long tables (colour maps, print settings) stay arrays
                out = values.copy()
            else:
                out = values.tolist()
        self.pos += nbytes
        return out

    def value(self, info: list[int], name: str, parent: str) -> Any:
        t = info[0]
        if t in _SIMPLE and len(info) == 1:
            return self.take(self.bo + struct_char(t))[0]
        if t == 18:
            raw = bytes(self.buf[self.pos : self.pos + 2 * info[1]])
            self.pos += 2 * info[1]
            return raw.decode("utf-16-le" if self.bo == "<" else "utf-16-be", "replace")
        if t == 15:
            return self.take(self.bo + "".join(struct_char(c) for c in info[4::2]))
        if t == 20 and len(info) == 3 and info[1] in _SIMPLE:
            return self.array(info[1], info[2], name, parent)
        if t == 20 and info[1] == 15:  # array of structs, e.g. a colour table
            codes = info[5:-1:2]
            fmt = self.bo + "".join(struct_char(c) for c in codes)
            size = struct.calcsize(fmt)
            n = info[-1]
            if n > _LIST_MAX:
                dt = np.dtype([(f"f{i}", self.bo + _SIMPLE[c]) for i, c in enumerate(codes)])
                table = np.frombuffer(self.buf, dt, n, self.pos).copy()
                self.pos += size * n
                return table
            out = [struct.unpack_from(fmt, self.buf, self.pos + i * size) for i in range(n)]
            self.pos += size * n
            return out
        raise NotHandled(f"DM tag '{name}' has type {info[:4]}")


def struct_char(code: int) -> str:
    return {2: "h", 3: "i", 4: "H", 5: "I", 6: "f", 7: "d", 8: "?", 9: "b", 10: "B", 11: "q",
            12: "Q"}[code]  # fmt: skip


def _parse(buf: mmap.mmap) -> dict[str, Any]:
    version = struct.unpack_from(">i", buf, 0)[0]
    dm4 = version == 4
    little = struct.unpack_from(">i", buf, 12 if dm4 else 8)[0] == 1
    r = _Reader(buf, dm4, little)
    r.pos = 16 if dm4 else 12
    root: dict[str, Any] = {}
    group_fmt = ">BBQ" if dm4 else ">BBI"
    # each open group: (its dict, its name, tags left, unnamed data count, unnamed group count)
    stack: list[list[Any]] = [[root, "root", r.take(group_fmt)[2], 0, 0]]
    while stack:
        frame = stack[-1]
        if frame[2] == 0:
            stack.pop()
            continue
        frame[2] -= 1
        kind, nlen = r.take(">BH")
        if kind == 0:
            break
        name = bytes(buf[r.pos : r.pos + nlen]).decode("latin-1").replace(".", "")
        r.pos += nlen + (8 if dm4 else 0)
        if kind == 20:
            if not name:
                name = f"TagGroup{frame[4]}"
                frame[4] += 1
            child: dict[str, Any] = {}
            frame[0][name] = child
            stack.append([child, name, r.take(group_fmt)[2], 0, 0])
        else:
            r.pos += 4  # "%%%%"
            ninfo = r.long()
            info = [int(v) for v in r.take(f">{ninfo}{r.lfmt[1]}")]
            if not name:
                name = f"Data{frame[3]}"
                frame[3] += 1
            frame[0][name] = r.value(info, name, frame[1])
    return root


def _axes(image: dict[str, Any], shape: tuple[int, ...]) -> list[dict[str, Any]]:
    dims = list(
        (image.get("ImageData", {}).get("Calibrations", {}).get("Dimension") or {}).values()
    )
    axes = []
    for k in range(len(shape)):  # DM lists X first; numpy order is reversed
        cal = dims[k] if k < len(dims) and isinstance(dims[k], dict) else {}
        units = cal.get("Units") or ""
        axes.append({"name": ("x", "y", "z", "w")[k] if k < 4 else f"d{k}", "size": shape[-1 - k],
                     "scale": float(cal.get("Scale", 1.0)), "units": units if units else None,
                     "offset": 0.0, "navigate": False})  # fmt: skip
    axes.reverse()
    return axes


def read_dm(path: Path) -> list[dict[str, Any]]:
    """Read a DM3/DM4 file into RosettaSciIO-style signal dicts (images and stacks only)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        tree = _parse(buf)
        images = tree.get("ImageList")
        if not isinstance(images, dict):
            return []
        thumbs = {g.get("ImageIndex") for g in (tree.get("Thumbnails") or {}).values()
                  if isinstance(g, dict)}  # fmt: skip
        base = {k: v for k, v in tree.items() if k != "ImageList"}
        out = []
        for key, image in images.items():
            if not isinstance(image, dict) or int(key.replace("TagGroup", "")) in thumbs:
                continue
            data_tag = image.get("ImageData", {}).get("Data")
            dims = image.get("ImageData", {}).get("Dimensions") or {}
            shape = tuple(int(v) for v in dims.values())[::-1]
            if not isinstance(data_tag, dict) or "dtype" not in data_tag or not shape:
                raise NotHandled("image data of an unhandled type")
            dtype = np.dtype(data_tag.pop("dtype"))  # the metadata keeps RosettaSciIO's keys
            if int(np.prod(shape)) != data_tag["size"]:
                raise NotHandled("image dimensions do not match the data size")
            axes = _axes(image, shape)
            if any(a["units"] in _SPECTRAL_UNITS for a in axes) or len(shape) > 3:
                # skipped by the caller: a zero-byte stand-in with the right shape
                data: Any = np.lib.stride_tricks.as_strided(
                    np.zeros(1, np.uint8), shape, (0,) * len(shape), writeable=False
                )
            else:
                data = np.frombuffer(buf, dtype, data_tag["size"],
                                     data_tag["offset"]).reshape(shape).copy()  # fmt: skip
            if len(shape) == 3:  # a stack: frames along the first numpy axis
                axes[0]["navigate"] = True
            if len(shape) == 1 or any(a["units"] in _SPECTRAL_UNITS for a in axes):
                for a in axes:
                    a["navigate"] = a["units"] not in _SPECTRAL_UNITS
            om = {**base, "ImageList": {"TagGroup0": image}}
            md = {"General": {"title": image.get("Name") or ""}}
            out.append({"data": data, "axes": axes, "metadata": md, "original_metadata": om})
        return out
