"""Budgets checked before any decoding or allocation.

The defaults suit single micrographs on a 24 GB workstation. They can be changed per call
(``read(path, limits=Limits(max_pixels=...))``) or for a whole process through environment
variables ``EMDIG_MAX_PIXELS``, ``EMDIG_MAX_FILE_BYTES``, ``EMDIG_MAX_FRAMES``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]

# Pillow's own warning threshold (89.5 Mpx). We reject at it rather than warn, so its whole
# "warning band" up to the hard 2x limit is covered by our check.
_PILLOW_WARNING_PIXELS = 89_478_485


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(float(raw))
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-file budgets.

    Attributes
    ----------
    max_pixels
        Most pixels in one 2-D image (height x width).
    max_total_pixels
        Most pixels in all images of one file together (frames of a stack included).
    max_file_bytes
        Largest file read at all.
    max_frames
        Most 2-D frames taken from one stack.
    max_nesting
        Deepest nesting of metadata groups (DM tag groups, HDF5 groups, XML elements).
    max_tags
        Most metadata tags in one file.
    max_ifds
        Most TIFF directories (pages) in one file.
    seconds
        Wall-clock limit for reading one file in a batch worker.
    memory_bytes
        Address-space limit of a batch worker process.
    """

    max_pixels: int = _PILLOW_WARNING_PIXELS
    max_total_pixels: int = 4 * _PILLOW_WARNING_PIXELS
    max_file_bytes: int = 8 * 1024**3
    max_frames: int = 4096
    max_nesting: int = 64
    max_tags: int = 200_000
    max_ifds: int = 10_000
    seconds: float = 60.0
    memory_bytes: int = 6 * 1024**3

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, overridden by ``EMDIG_MAX_*`` environment variables where set."""
        d = cls()
        return cls(
            max_pixels=_env_int("EMDIG_MAX_PIXELS", d.max_pixels),
            max_total_pixels=_env_int("EMDIG_MAX_TOTAL_PIXELS", d.max_total_pixels),
            max_file_bytes=_env_int("EMDIG_MAX_FILE_BYTES", d.max_file_bytes),
            max_frames=_env_int("EMDIG_MAX_FRAMES", d.max_frames),
        )


DEFAULT_LIMITS = Limits()
