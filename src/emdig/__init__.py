"""emdig: turn electron-microscopy images into searchable, measured datasets."""

from __future__ import annotations

from .errors import EmdigError
from .io import read, sniff
from .io.limits import Limits
from .micrograph import Acquisition, Micrograph, Source

__version__ = "0.1.0"

__all__ = [
    "Acquisition",
    "EmdigError",
    "Limits",
    "Micrograph",
    "Source",
    "__version__",
    "read",
    "sniff",
]
