"""Error classes. Every error emdig raises on purpose is an :class:`EmdigError`.

Each class carries a stable ``code`` (stored in the catalog for failed items) and every message
names the file, the limit or the reason, and where possible the fix.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ArchiveError",
    "CatalogError",
    "CatalogLocked",
    "CorruptFile",
    "EmdigError",
    "EmptyFile",
    "EncryptedFile",
    "FetchError",
    "MissingCalibration",
    "MissingDependency",
    "ModelError",
    "NestingTooDeep",
    "QueryError",
    "StreamTooLarge",
    "TimeLimit",
    "TooLarge",
    "TooManyPages",
    "TruncatedFile",
    "UnreadableFile",
    "UnsafeArchiveMember",
    "UnsafeContent",
    "UnsupportedFormat",
    "WorkerCrashed",
]


class EmdigError(Exception):
    """Base class of every error emdig raises on purpose.

    Parameters
    ----------
    message
        One line that says what went wrong and, where possible, how to fix it.
    path
        The file concerned, if any; it is prefixed to the message.
    """

    code: str = "error"

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def __reduce__(self) -> tuple[object, ...]:
        # keep the keyword-only path across process boundaries (pickling to/from workers)
        return (_rebuild, (type(self), self.reason, self.path))


def _rebuild(cls: type[EmdigError], reason: str, path: str | None) -> EmdigError:
    return cls(reason, path=path)


class UnreadableFile(EmdigError):
    """The file cannot be opened: missing, vanished, no permission, a symlink loop."""

    code = "io_error"


class EmptyFile(EmdigError):
    """The file has zero bytes."""

    code = "empty_file"


class TruncatedFile(EmdigError):
    """The file ends before the data its header declares."""

    code = "truncated"


class CorruptFile(EmdigError):
    """The file's structure is invalid (bad header, looping directory chain, bad tag type)."""

    code = "corrupt"


class UnsupportedFormat(EmdigError):
    """The content is not a format emdig reads (or not what its extension claims)."""

    code = "unsupported_format"


class TooLarge(EmdigError):
    """A declared size exceeds a budget in :mod:`emdig.io.limits`; checked before allocation."""

    code = "size_budget"


class TooManyPages(TooLarge):
    """A document has more pages than the page budget (checked before any page is parsed)."""

    code = "page_limit"


class StreamTooLarge(TooLarge):
    """A PDF stream inflates beyond the stream budget (checked before the PDF is parsed)."""

    code = "stream_limit"


class EncryptedFile(EmdigError):
    """The document is encrypted and cannot be opened without a password."""

    code = "encrypted"


class UnsafeContent(EmdigError):
    """XML declares entities or external references (entity bombs, XXE); it is never expanded."""

    code = "xml_entities"


class NestingTooDeep(EmdigError):
    """Metadata nested deeper than the budget (e.g. DM tag groups thousands deep)."""

    code = "nesting_depth"


class TimeLimit(EmdigError):
    """Reading took longer than the per-item time limit."""

    code = "timeout"


class WorkerCrashed(EmdigError):
    """The isolated worker process died (native crash or out of memory) while reading."""

    code = "crashed"


class ArchiveError(EmdigError):
    """An archive member is unsafe or the archive exceeds its budget."""

    code = "archive_budget"


class UnsafeArchiveMember(ArchiveError):
    """An archive member's name escapes the destination, is absolute, a link or a duplicate."""

    code = "unsafe_member_name"


class MissingCalibration(EmdigError):
    """The image has no pixel size and none was given."""

    code = "missing_calibration"


class MissingDependency(EmdigError):
    """An optional dependency is not installed; the message names the ``pip install``."""

    code = "missing_dependency"


class ModelError(EmdigError):
    """A model name is unknown, or its weights or config are invalid."""

    code = "model_error"


class FetchError(EmdigError):
    """A download failed: an HTTP error, retries used up, or an invalid response."""

    code = "fetch_error"


class CatalogError(EmdigError):
    """The catalog cannot be opened or is of an unknown schema version."""

    code = "catalog_error"


class CatalogLocked(CatalogError):
    """Another process is writing to the catalog."""

    code = "catalog_locked"


class QueryError(EmdigError):
    """A ``--where`` filter or search query could not be parsed or names an unknown column."""

    code = "bad_query"
