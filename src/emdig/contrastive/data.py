"""Datasets for the contrastive model: preprocessed image regions paired with their metadata.

A :class:`ContrastiveDataset` holds, per micrograph, the normalised centre region the image
encoder crops from (see :func:`~emdig.contrastive.encoders.preprocess`) and its metadata
record. It is built from micrographs in memory, from files, or from catalog rows. Reading and
preprocessing happen once: regions are cached as a ``.npy`` memory map keyed by the files'
sha256 and the preprocessing settings, so a second run (or another ``--where`` selection that
overlaps) reads nothing it has seen before.

The held-out split is **by file**: every image of a file lands on the same side, decided by a
hash of the file's sha256, so it is deterministic and stable as the archive grows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmdigError
from ..micrograph import Micrograph
from .config import ImageEncoderConfig
from .encoders import preprocess
from .encoding import metadata_record

__all__ = ["ContrastiveDataset", "heldout_mask", "preprocess_digest"]

log = logging.getLogger(__name__)

#: Bump when :func:`preprocess` changes its output, so old caches are not reused.
PREPROCESS_VERSION = 1


def preprocess_digest(config: ImageEncoderConfig) -> str:
    """A short hash of everything that determines a preprocessed region."""
    d = {
        "v": PREPROCESS_VERSION,
        "cache_size": config.cache_size,
        "low_pct": config.low_pct,
        "high_pct": config.high_pct,
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) / float(16**15)


def heldout_mask(
    groups: Sequence[str], *, fraction: float = 0.1, salt: str = "emdig-contrastive"
) -> np.ndarray:
    """Which items are held out: a group (file) is held out when the hash of ``salt + group``,
    read as a number in [0, 1), is below ``fraction``.

    With at least two groups, at least one is held out and at least one is kept (the lowest
    and the highest hash), so tiny datasets still split.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` bool, True for held-out items.
    """
    uniq = sorted(set(groups))
    h = {g: _unit_hash(salt + g) for g in uniq}
    held = {g for g in uniq if h[g] < fraction}
    if len(uniq) >= 2 and fraction > 0:
        if not held:
            held = {min(uniq, key=h.__getitem__)}
        if len(held) == len(uniq):
            held.discard(max(uniq, key=h.__getitem__))
    return np.array([g in held for g in groups], dtype=bool)


@dataclass
class ContrastiveDataset:
    """Preprocessed regions and metadata records, one per micrograph.

    Attributes
    ----------
    regions
        ``(N, S, S)`` float16 (or float32), possibly a read-only memory map.
    records
        Metadata per item (:func:`~emdig.contrastive.encoding.metadata_record`).
    keys
        A unique name per item: ``"<file sha256>:<index>"`` where known.
    groups
        The file each item comes from (its sha256, else its path): the unit of the split.
    paths
        The file path per item, when known.
    ids
        Catalog micrograph ids, when built from a catalog.
    """

    regions: np.ndarray
    records: list[dict[str, Any]]
    keys: list[str]
    groups: list[str]
    paths: list[str | None]
    ids: list[int | None]

    def __post_init__(self) -> None:
        n = len(self.regions)
        for name in ("records", "keys", "groups", "paths", "ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} items, regions {n}")

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, idx: Sequence[int] | np.ndarray) -> ContrastiveDataset:
        """The items at ``idx`` (regions are copied into memory)."""
        i = np.asarray(idx, dtype=np.int64)
        return ContrastiveDataset(
            regions=np.asarray(self.regions[i]),
            records=[self.records[k] for k in i],
            keys=[self.keys[k] for k in i],
            groups=[self.groups[k] for k in i],
            paths=[self.paths[k] for k in i],
            ids=[self.ids[k] for k in i],
        )

    def split(
        self, *, holdout: float = 0.1, salt: str = "emdig-contrastive"
    ) -> tuple[ContrastiveDataset, ContrastiveDataset]:
        """``(train, held_out)`` split by file; see :func:`heldout_mask`."""
        m = heldout_mask(self.groups, fraction=holdout, salt=salt)
        return self.subset(np.flatnonzero(~m)), self.subset(np.flatnonzero(m))

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_micrographs(
        cls, micrographs: Sequence[Micrograph], *, config: ImageEncoderConfig | None = None
    ) -> ContrastiveDataset:
        """In memory, no cache. Items without a source sha256 are their own group."""
        cfg = config or ImageEncoderConfig()
        s = cfg.cache_size
        regions = np.empty((len(micrographs), s, s), np.float16)
        keys, groups, paths = [], [], []
        for i, m in enumerate(micrographs):
            regions[i] = preprocess(m.pixels, config=cfg)
            src = m.source
            key = f"{src.sha256}:{src.index}" if src.sha256 else f"item{i}"
            keys.append(key)
            groups.append(src.sha256 or src.path or key)
            paths.append(src.path)
        records = [metadata_record(m) for m in micrographs]
        return cls(regions, records, keys, groups, paths, [None] * len(keys))

    @classmethod
    def from_files(
        cls,
        paths: Sequence[str | Path],
        *,
        config: ImageEncoderConfig | None = None,
        cache_dir: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ContrastiveDataset:
        """Every image in each file (read with :func:`emdig.read`); files that fail to read are
        skipped with a logged warning. Regions are cached under ``cache_dir`` when given."""
        from ..io import file_sha256, read

        cfg = config or ImageEncoderConfig()
        items: list[tuple[str, dict[str, Any], str, str | None, int | None]] = []
        loaders: dict[str, Callable[[], np.ndarray]] = {}
        for n, p in enumerate(paths):
            try:
                sha = file_sha256(p)
                ms = read(p, sha256=sha)
            except (EmdigError, OSError) as e:
                log.warning("skipped %s: %s", p, e)
                continue
            finally:
                if progress is not None:
                    progress(n + 1, len(paths))
            for m in ms:
                key = f"{sha}:{m.source.index}"
                items.append((key, metadata_record(m), sha, str(p), None))
                loaders[key] = _const(m.pixels)
        return cls._build(items, loaders, config=cfg, cache_dir=cache_dir, progress=None)

    @classmethod
    def from_catalog(
        cls,
        catalog: Any,
        *,
        where: str | None = None,
        config: ImageEncoderConfig | None = None,
        cache_dir: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ContrastiveDataset:
        """Catalogued micrographs matching ``where`` (a :meth:`Catalog.select` filter).

        Metadata comes from the catalog rows; pixels are read with :func:`emdig.read` only for
        items missing from the cache. Items whose file can no longer be read are skipped with a
        logged warning.

        Parameters
        ----------
        catalog
            A :class:`~emdig.catalog.Catalog` or the path of one.
        cache_dir
            Default: ``contrastive-cache`` beside the catalog file.
        """
        from ..catalog.store import Catalog

        own = not isinstance(catalog, Catalog)
        cat = Catalog(catalog, create=False) if own else catalog
        try:
            rows = cat.select(where=where)
            cache = (
                Path(cache_dir) if cache_dir is not None else cat.path.parent / "contrastive-cache"
            )
        finally:
            if own:
                cat.close()
        items: list[tuple[str, dict[str, Any], str, str | None, int | None]] = []
        loaders: dict[str, Callable[[], np.ndarray]] = {}
        for row in rows:
            group = str(row.get("sha256") or row["path"])
            key = f"{group}:{row['index']}"
            items.append((key, metadata_record(row), group, row["path"], int(row["id"])))
            loaders[key] = _row_loader(row)
        return cls._build(
            items, loaders, config=config or ImageEncoderConfig(), cache_dir=cache,
            progress=progress,
        )  # fmt: skip

    @classmethod
    def _build(
        cls,
        items: list[tuple[str, dict[str, Any], str, str | None, int | None]],
        loaders: Mapping[str, Callable[[], np.ndarray]],
        *,
        config: ImageEncoderConfig,
        cache_dir: str | Path | None,
        progress: Callable[[int, int], None] | None,
    ) -> ContrastiveDataset:
        seen: set[str] = set()
        uniq = []
        for it in items:  # the same file at two paths is one item
            if it[0] not in seen:
                seen.add(it[0])
                uniq.append(it)
        keys = [it[0] for it in uniq]
        if cache_dir is None:
            regions, ok = _compute(keys, loaders, config, progress)
        else:
            regions, ok = _cached(keys, loaders, config, Path(cache_dir), progress)
        good = [it for it in uniq if it[0] in ok]
        return cls(
            regions=regions,
            records=[it[1] for it in good],
            keys=[it[0] for it in good],
            groups=[it[2] for it in good],
            paths=[it[3] for it in good],
            ids=[it[4] for it in good],
        )


def _const(a: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: a


def _row_loader(row: Mapping[str, Any]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from ..io import read

        [m] = read(row["path"], index=int(row["index"]), sha256=row.get("sha256"),
                   format=row.get("format"))  # fmt: skip
        return m.pixels

    return load


def _compute(
    keys: Sequence[str],
    loaders: Mapping[str, Callable[[], np.ndarray]],
    config: ImageEncoderConfig,
    progress: Callable[[int, int], None] | None,
    out: np.ndarray | None = None,
    rows: Sequence[int] | None = None,
) -> tuple[np.ndarray, set[str]]:
    """Preprocess ``keys`` into ``out[rows]`` (or a new array); return it and the keys that
    worked (failures are logged and left as zeros)."""
    s = config.cache_size
    arr = out if out is not None else np.zeros((len(keys), s, s), np.float16)
    targets = list(rows) if rows is not None else list(range(len(keys)))
    ok: set[str] = set()
    for n, (key, r) in enumerate(zip(keys, targets, strict=True)):
        try:
            arr[r] = preprocess(loaders[key](), config=config)
            ok.add(key)
        except (EmdigError, OSError, ValueError) as e:
            log.warning("skipped %s: %s", key, e)
        if progress is not None:
            progress(n + 1, len(keys))
    if out is None and len(ok) < len(keys):
        keep = [i for i, k in enumerate(keys) if k in ok]
        arr = arr[keep]
    return arr, ok


def _cached(
    keys: Sequence[str],
    loaders: Mapping[str, Callable[[], np.ndarray]],
    config: ImageEncoderConfig,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, set[str]]:
    """Regions for ``keys`` from the cache, computing (and caching) what is missing.

    Layout: ``cache_dir/prep-<settings hash>/sel-<selection hash>.npy`` (float16 rows) with a
    ``.json`` listing the keys of its rows. A new selection copies the rows it shares with
    earlier selections of the same settings and reads only the rest.
    """
    d = cache_dir / f"prep-{preprocess_digest(config)}"
    sel = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
    npy, meta = d / f"sel-{sel}.npy", d / f"sel-{sel}.json"
    if npy.is_file() and meta.is_file():
        try:
            got = json.loads(meta.read_text())["keys"]
            arr = np.load(npy, mmap_mode="r")
            if len(got) == len(arr) and set(got) <= set(keys):
                log.info("contrastive cache hit: %s (%d items)", npy, len(got))
                return arr, set(got)
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable cache %s: %s", npy, e)
    d.mkdir(parents=True, exist_ok=True)
    # rows already preprocessed in earlier selections
    known: dict[str, tuple[Path, int]] = {}
    for other in sorted(d.glob("sel-*.json")):
        try:
            for i, k in enumerate(json.loads(other.read_text())["keys"]):
                known.setdefault(k, (other.with_suffix(".npy"), i))
        except (OSError, ValueError, KeyError):
            continue
    s = config.cache_size
    tmp = npy.with_name(npy.name + f".tmp{os.getpid()}")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(keys), s, s))
    ok: set[str] = set()
    sources: dict[Path, np.ndarray] = {}
    todo: list[int] = []
    for i, k in enumerate(keys):
        hit = known.get(k)
        if hit is not None and hit[0].is_file():
            try:
                src = sources.get(hit[0])
                if src is None:
                    src = sources[hit[0]] = np.load(hit[0], mmap_mode="r")
                if src.shape[1:] == (s, s):
                    arr[i] = src[hit[1]]
                    ok.add(k)
                    continue
            except (OSError, ValueError, IndexError):
                pass
        todo.append(i)
    log.info("contrastive cache: %d of %d items reused", len(ok), len(keys))
    _, done = _compute([keys[i] for i in todo], loaders, config, progress, out=arr, rows=todo)
    ok |= done
    keep = [i for i, k in enumerate(keys) if k in ok]
    if len(keep) < len(keys):  # rewrite without the failures
        arr.flush()
        final = np.lib.format.open_memmap(
            tmp.with_name(tmp.name + "b"), mode="w+", dtype=np.float16, shape=(len(keep), s, s)
        )
        for j, i in enumerate(keep):
            final[j] = arr[i]
        final.flush()
        del arr
        os.replace(tmp.with_name(tmp.name + "b"), tmp)
        del final
    else:
        arr.flush()
        del arr
    os.replace(tmp, npy)
    info = {"keys": [keys[i] for i in keep], "config": asdict(config)}
    tmp_meta = meta.with_name(meta.name + f".tmp{os.getpid()}")
    tmp_meta.write_text(json.dumps(info))
    os.replace(tmp_meta, meta)
    return np.load(npy, mmap_mode="r"), ok
