"""Read any supported file into :class:`~emdig.micrograph.Micrograph` records.

One contract for every format: ``read(path, *, index=None) -> list[Micrograph]``. The format is
sniffed from the content. Budgets from :mod:`emdig.io.limits` are checked before decoding.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..errors import EmdigError, UnsupportedFormat
from ..micrograph import Micrograph
from .instrument import INSTRUMENT_FORMATS, read_instrument
from .limits import Limits
from .raster import read_raster
from .sniff import FORMAT_NAMES, sniff

__all__ = ["FORMAT_NAMES", "Limits", "file_sha256", "read", "sniff"]

log = logging.getLogger(__name__)

# rsciio warns on import when numba is absent; that is a speed note, not a user problem
logging.getLogger("rsciio").setLevel(logging.ERROR)
# tifffile logs what it tolerates (odd ImageJ tags, circular IFDs) at WARNING; our pre-scan and
# error mapping report what matters
logging.getLogger("tifffile").setLevel(logging.CRITICAL)


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read(
    path: str | Path,
    *,
    index: int | None = None,
    limits: Limits | None = None,
    sha256: str | None = None,
    format: str | None = None,
) -> list[Micrograph]:
    """Read every 2-D image in a file.

    Parameters
    ----------
    path
        An instrument file (DM3/DM4, Velox or Berkeley EMD, HSPY, TIA EMI/SER, FEI/Zeiss/JEOL/
        TVIPS TIFF, JEOL IMG, PRZ, BCF, MRC) or a plain PNG, JPEG or TIFF. The content decides
        the format, not the extension.
    index
        If given, return only the image with this ``source.index``.
    limits
        Budgets; defaults from the environment (see :class:`Limits`).
    sha256
        The file's hash if already known (saves a pass over the file).
    format
        The format id :func:`sniff` returned for this file, if already known.

    Returns
    -------
    list of Micrograph
        One per 2-D image (each frame of a stack is one). Spectra, 4-D and complex data are
        skipped with a logged reason, so the list may be empty.

    Raises
    ------
    EmdigError
        ``UnreadableFile``, ``EmptyFile``, ``UnsupportedFormat``, ``TruncatedFile``,
        ``CorruptFile``, ``TooLarge``, ``NestingTooDeep``; the message names the file.

    Examples
    --------
    >>> import emdig
    >>> [m] = emdig.read("scan.dm3")  # doctest: +SKIP
    >>> m.pixel_size_nm, m.acquisition.detector  # doctest: +SKIP
    (0.0178, 'HAADF')
    """
    p = Path(path)
    lim = limits if limits is not None else Limits.from_env()
    fmt = format or sniff(p, limits=lim)
    digest = sha256 or file_sha256(p)
    if fmt == "zip":
        raise UnsupportedFormat(
            "content is a ZIP archive; `emdig ingest` unpacks archives, `read` takes one file",
            path=p,
        )
    if fmt in ("png", "jpeg"):
        result = read_raster(p, fmt, limits=lim, sha256=digest)
    elif fmt in INSTRUMENT_FORMATS:
        result = read_instrument(p, fmt, limits=lim, sha256=digest)
    else:  # pragma: no cover - sniff only returns known ids
        raise UnsupportedFormat(f"no reader for format {fmt!r}", path=p)
    if index is not None:
        chosen = [m for m in result if m.source.index == index]
        if not chosen:
            raise EmdigError(f"has {len(result)} image(s); index {index} does not exist", path=p)
        return chosen
    log.debug("%s: %s, %d image(s)", p, FORMAT_NAMES[fmt], len(result))
    return result
