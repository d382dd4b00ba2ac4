"""Safe unpacking of ZIP archives: no path escapes, no links, budgets on bytes, entries, ratio."""

from __future__ import annotations

import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ArchiveError, CorruptFile, EmdigError, UnsafeArchiveMember

__all__ = ["ArchiveLimits", "extract_zip"]


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Budgets for one archive (nested archives count against their own)."""

    max_bytes: int = 8 * 1024**3
    max_entries: int = 10_000
    max_ratio: float = 200.0  # uncompressed / compressed, for members over 1 MiB
    max_depth: int = 3
    max_name: int = 1024


_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_name(name: str, limits: ArchiveLimits) -> str | None:
    """The member's relative POSIX path if safe, else None."""
    if not name or "\x00" in name or len(name) > limits.max_name:
        return None
    if "\\" in name or name.startswith("/") or _DRIVE.match(name):
        return None
    parts = PurePosixPath(name).parts
    if any(p in ("..", "") for p in parts) or any(len(p.encode()) > 255 for p in parts):
        return None
    return "/".join(p for p in parts if p != ".")


def extract_zip(
    path: Path, dest: Path, *, limits: ArchiveLimits | None = None
) -> tuple[list[tuple[Path, str]], list[EmdigError]]:
    """Extract the safe members of a ZIP archive into ``dest``.

    Parameters
    ----------
    path
        The archive.
    dest
        Destination folder; created. A finished extraction leaves ``.complete`` there and is
        reused on the next call (resumable ingests do not unpack twice).
    limits
        Budgets. Exceeding the entry or byte budget rejects the whole archive; an unsafe or
        bomb-like member is rejected alone.

    Returns
    -------
    (files, problems)
        ``files``: ``(extracted path, member name)`` pairs; ``problems``: one error per
        rejected member, each naming ``archive!member``.

    Raises
    ------
    ArchiveError
        Too many entries or too many bytes in all.
    CorruptFile
        Not a readable ZIP.
    """
    lim = limits or ArchiveLimits()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CorruptFile(f"ZIP structure is invalid: {e}", path=path) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > lim.max_entries:
            raise ArchiveError(
                f"archive has {len(infos):,} entries, over the {lim.max_entries:,}-entry budget",
                path=path,
            )
        total = sum(i.file_size for i in infos)
        if total > lim.max_bytes:
            raise ArchiveError(
                f"archive declares {total:,} bytes uncompressed, over the "
                f"{lim.max_bytes:,}-byte budget",
                path=path,
            )
        done_marker = dest / ".complete"
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        files: list[tuple[Path, str]] = []
        problems: list[EmdigError] = []
        seen: set[str] = set()
        for info in infos:
            where = f"{path}!{info.filename}"
            if info.is_dir():
                continue
            rel = _safe_name(info.filename, lim)
            mode = info.external_attr >> 16
            if rel is None:
                problems.append(
                    UnsafeArchiveMember(
                        "member name is absolute, escapes the archive folder or is malformed; "
                        "not extracted",
                        path=where,
                    )
                )
                continue
            if stat.S_ISLNK(mode):
                problems.append(
                    UnsafeArchiveMember("member is a symbolic link; not extracted", path=where)
                )
                continue
            if rel.lower() in seen:
                problems.append(
                    UnsafeArchiveMember("duplicate member name; not extracted", path=where)
                )
                continue
            seen.add(rel.lower())
            if info.file_size > 1 << 20 and info.file_size > lim.max_ratio * max(
                info.compress_size, 1
            ):
                problems.append(
                    ArchiveError(
                        f"member expands {info.file_size / max(info.compress_size, 1):,.0f}-fold "
                        f"({info.file_size:,} bytes), over the {lim.max_ratio:g}x ratio budget: "
                        "a decompression bomb; not extracted",
                        path=where,
                    )
                )
                continue
            target = dest / rel
            if not target.resolve().is_relative_to(root):
                problems.append(
                    UnsafeArchiveMember("member escapes the archive folder", path=where)
                )
                continue
            if not done_marker.exists() or not target.exists():
                try:
                    _extract_member(zf, info, target)
                except EmdigError as e:
                    problems.append(e)
                    continue
            files.append((target, rel))
        done_marker.touch()
    return files, problems


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
    written = 0
    try:
        with zf.open(info) as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                written += len(block)
                if written > info.file_size:  # the header lied about the size
                    raise ArchiveError(
                        "member is larger than its header declares; not extracted",
                        path=f"{zf.filename}!{info.filename}",
                    )
                out.write(block)
        os.replace(tmp, target)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CorruptFile(
            f"member cannot be extracted: {e}", path=f"{zf.filename}!{info.filename}"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
