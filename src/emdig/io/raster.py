"""Plain PNG and JPEG through Pillow, with an allow-list of formats and budgets checked first."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import CorruptFile, TooLarge, TruncatedFile
from ..micrograph import Acquisition, Micrograph, Source
from . import prescan
from .limits import Limits

__all__ = ["read_raster"]

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}


def read_raster(
    path: Path, fmt: str, *, limits: Limits, sha256: str | None = None
) -> list[Micrograph]:
    """Read a PNG or JPEG as one greyscale micrograph (colour is converted to luminance).

    A PNG or JPEG carries no microscope calibration, so ``pixel_size_nm`` is None.
    """
    from PIL import Image, ImageFile

    prescan.prescan_pillow(path, fmt, limits)
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # never accept a cut-off image silently
    # our own budget was checked from the header; Pillow's bomb guard follows the same budget
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=[_PIL_FORMATS[fmt]]) as im:
                mode = im.mode
                info = {k: v for k, v in im.info.items() if isinstance(v, str | int | float)}
                if mode in ("RGB", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr", "1"):
                    arr = np.array(im.convert("L"))  # colour -> luminance
                else:
                    arr = np.array(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(f"decompression bomb refused: {e}", path=path) from None
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower() or "broken data stream" in msg.lower():
            raise TruncatedFile(
                f"{_PIL_FORMATS[fmt]} data is cut short ({msg})", path=path
            ) from None
        raise CorruptFile(f"{_PIL_FORMATS[fmt]} cannot be decoded: {msg}", path=path) from None
    except (SyntaxError, ValueError, EOFError) as e:  # Pillow's parse errors
        raise CorruptFile(f"{_PIL_FORMATS[fmt]} cannot be decoded: {e}", path=path) from None
    if arr.ndim != 2:
        raise CorruptFile(f"{_PIL_FORMATS[fmt]} decoded to shape {arr.shape}, not 2-D", path=path)
    raw = {"format": _PIL_FORMATS[fmt], "mode": mode, "info": info}
    src = Source(path=str(path), sha256=sha256, format=fmt, index=0)
    return [Micrograph(arr, None, Acquisition(), raw, src)]
