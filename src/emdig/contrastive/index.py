"""Embeddings stored beside the catalog, and nearest-neighbour search over them.

Embeddings are L2-normalised, so cosine similarity is a dot product. Search is exact (one
matrix product in numpy) up to :data:`EXACT_LIMIT` items; above that an HNSW index (usearch)
answers, built once and saved next to the Parquet file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import CatalogError

__all__ = ["EXACT_LIMIT", "EmbeddingIndex", "top_k"]

log = logging.getLogger(__name__)

#: Up to this many items search is exact; above it an approximate index is used.
EXACT_LIMIT = 100_000

Space = Literal["image", "meta"]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` largest entries of each row, best first.

    ``scores`` is ``(Q, N)``; returns two ``(Q, min(k, N))`` arrays.
    """
    s = np.atleast_2d(scores)
    k = max(0, min(k, s.shape[1]))
    if k == 0:
        return np.zeros((s.shape[0], 0), np.int64), np.zeros((s.shape[0], 0), s.dtype)
    part = (
        np.argpartition(-s, k - 1, axis=1)[:, :k]
        if k < s.shape[1]
        else np.tile(np.arange(s.shape[1]), (s.shape[0], 1))
    )
    vals = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


@dataclass
class EmbeddingIndex:
    """Image and metadata embeddings of catalogued micrographs.

    Attributes
    ----------
    ids
        Catalog micrograph ids, ``(N,)``.
    image, meta
        ``(N, D)`` float32, L2-normalised rows: the image and the metadata embeddings.
    model
        The model's identity (its weights' sha256), so stale embeddings are noticed.
    paths
        The file of each item, for display.
    """

    ids: np.ndarray
    image: np.ndarray
    meta: np.ndarray
    model: str
    paths: list[str]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    # ----------------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Write a Parquet file (atomically): one row per item, vectors as float32 lists."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        d = self.image.shape[1] if self.image.ndim == 2 else 0
        table = pa.table(
            {
                "id": pa.array(self.ids.astype(np.int64)),
                "path": pa.array(self.paths, pa.string()),
                "image": pa.FixedSizeListArray.from_arrays(
                    pa.array(self.image.astype(np.float32).ravel()), d
                ),
                "meta": pa.FixedSizeListArray.from_arrays(
                    pa.array(self.meta.astype(np.float32).ravel()), d
                ),
            },
            metadata={"emdig_model": self.model},
        )
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, p)
        ann = p.with_suffix(".usearch")
        ann.unlink(missing_ok=True)  # any approximate index is stale now
        return p

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """Read what :meth:`save` wrote."""
        import pyarrow.parquet as pq

        p = Path(path)
        if not p.is_file():
            raise CatalogError("no embeddings yet; run `emdig contrastive embed` first", path=p)
        try:
            t = pq.read_table(p)
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise CatalogError(f"unreadable embeddings file ({e})", path=p) from None
        n = t.num_rows

        def vecs(col: str) -> np.ndarray:
            flat = t.column(col).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            return np.asarray(flat, np.float32).reshape(n, -1)

        md = t.schema.metadata or {}
        return cls(
            ids=t.column("id").to_numpy().astype(np.int64),
            image=vecs("image"),
            meta=vecs("meta"),
            model=md.get(b"emdig_model", b"").decode(),
            paths=[str(x) for x in t.column("path").to_pylist()],
        )

    # ------------------------------------------------------------------------ search
    def search(
        self, queries: np.ndarray, *, k: int = 10, space: Space = "image", exact: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items to each query vector in ``space``.

        Returns ``(positions, scores)``, each ``(Q, k)``: positions into this index (use
        ``ids[positions]`` for catalog ids) and cosine similarities, best first.
        """
        q = np.atleast_2d(np.asarray(queries, np.float32))
        base = self.image if space == "image" else self.meta
        if exact is None:
            exact = len(self) <= EXACT_LIMIT
        if exact:
            return top_k(q @ base.T, k)
        return self._ann_search(q, base, k, space)

    def _ann_search(
        self, q: np.ndarray, base: np.ndarray, k: int, space: Space
    ) -> tuple[np.ndarray, np.ndarray]:
        from usearch.index import Index

        attr = f"_ann_{space}"
        index = getattr(self, attr, None)
        if index is None:
            index = Index(ndim=base.shape[1], metric="ip", dtype="f32")
            index.add(np.arange(len(base), dtype=np.uint64), base, log=False)
            setattr(self, attr, index)
        k = min(k, len(base))
        res = index.search(q, k)
        keys = np.asarray(res.keys, np.int64).reshape(len(q), -1)
        dist = np.asarray(res.distances, np.float32).reshape(len(q), -1)
        return keys, 1.0 - dist  # usearch's "ip" distance is 1 - dot product
