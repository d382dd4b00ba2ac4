"""What a trained contrastive model is for: search, metadata prediction, anomalies and maps.

Everything here works on an :class:`~emdig.contrastive.index.EmbeddingIndex` made by
:func:`embed_catalog`, which stores the image and metadata embeddings of catalogued
micrographs beside the catalog (``<catalog>.d/contrastive/embeddings.parquet``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.store import Catalog
from ..errors import ModelError, QueryError
from ..micrograph import ACQUISITION_FIELDS, Micrograph
from .data import ContrastiveDataset
from .encoders import ContrastiveModel
from .encoding import field_value, metadata_record
from .index import EmbeddingIndex

__all__ = [
    "META_FIELDS",
    "anomalies",
    "anomaly_scores",
    "contrastive_dir",
    "default_model_path",
    "embed_catalog",
    "embeddings_path",
    "load_model_for",
    "mismatch_scores",
    "parse_meta_query",
    "predict",
    "probe_evidence",
    "projection",
    "projection_map",
    "search_like",
    "search_meta",
]

log = logging.getLogger(__name__)

#: Fields a metadata query may name.
META_FIELDS: tuple[str, ...] = (*ACQUISITION_FIELDS, "pixel_size_nm")
_TEXT_FIELDS = {"mode", "detector", "instrument", "acquired_at"}


def contrastive_dir(catalog_path: str | Path) -> Path:
    """``<catalog>.d/contrastive``: where models, caches and embeddings of a catalog live."""
    p = Path(catalog_path)
    return p.with_name(p.name + ".d") / "contrastive"


def default_model_path(catalog_path: str | Path) -> Path:
    """The weights ``emdig contrastive train`` writes by default."""
    return contrastive_dir(catalog_path) / "model" / "model.safetensors"


def embeddings_path(catalog_path: str | Path) -> Path:
    """The Parquet file ``emdig contrastive embed`` writes by default."""
    return contrastive_dir(catalog_path) / "embeddings.parquet"


def load_model_for(catalog_path: str | Path, model: str | Path | None = None) -> ContrastiveModel:
    """``model`` (a ``.safetensors`` path or the folder holding ``model.safetensors``), else the
    catalog's default model. A missing model is an error that says how to make one."""
    if model is None:
        path = default_model_path(catalog_path)
    else:
        path = Path(model)
        if path.is_dir():
            path = path / "model.safetensors"
    if not path.is_file():
        raise ModelError(
            "no contrastive model here; run `emdig contrastive train` first or pass --model",
            path=path,
        )
    return ContrastiveModel.load(path)


def _model_id(model: ContrastiveModel) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ embed
def embed_catalog(
    catalog: Catalog,
    model: ContrastiveModel,
    *,
    where: str | None = None,
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddingIndex:
    """Embed the images and the metadata of catalogued micrographs and save them.

    Pixels are read (and preprocessed) once into a cache beside the catalog; a re-run reuses
    it. Returns the index written to ``out`` (default :func:`embeddings_path`).
    """
    cache = contrastive_dir(catalog.path) / "cache"
    data = ContrastiveDataset.from_catalog(
        catalog, where=where, config=model.config.image, cache_dir=cache, progress=progress
    )
    image = model.embed_regions(data.regions)
    meta = model.embed_metadata(data.records)
    index = EmbeddingIndex(
        ids=np.asarray([-1 if i is None else i for i in data.ids], np.int64),
        image=image,
        meta=meta,
        model=_model_id(model),
        paths=[p or "" for p in data.paths],
    )
    index.save(out or embeddings_path(catalog.path))
    return index


def _check_fresh(index: EmbeddingIndex, model: ContrastiveModel) -> None:
    if index.model and index.model != _model_id(model):
        log.warning(
            "the embeddings were made by another model; run `emdig contrastive embed` again"
        )


# ----------------------------------------------------------------------------- search
def _hits(index: EmbeddingIndex, pos: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    return [
        {"rank": r + 1, "id": int(index.ids[p]), "path": index.paths[p], "score": float(s)}
        for r, (p, s) in enumerate(zip(pos, scores, strict=True))
    ]


def _as_micrograph(image: Micrograph | np.ndarray | str | Path) -> Micrograph:
    if isinstance(image, Micrograph):
        return image
    if isinstance(image, str | Path):
        from ..io import read

        return read(image)[0]
    return Micrograph(np.asarray(image))


def search_like(
    image: Micrograph | np.ndarray | str | Path,
    *,
    model: ContrastiveModel,
    index: EmbeddingIndex,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Catalogued images most like ``image`` (image to image, cosine of image embeddings).

    Returns ``k`` dicts with ``rank``, ``id`` (catalog micrograph id), ``path`` and ``score``.
    """
    _check_fresh(index, model)
    q = model.embed_images([_as_micrograph(image)])
    pos, sc = index.search(q, k=k, space="image")
    return _hits(index, pos[0], sc[0])


def parse_meta_query(text: str) -> dict[str, Any]:
    """``"detector=HAADF voltage_kv=300 magnification=10e6"`` -> a metadata dict.

    Numeric fields take numbers (``10e6``, ``2.5``, ``300kV`` is not accepted: units are in the
    field names). Unknown fields and bad values raise :class:`~emdig.errors.QueryError`.
    """
    out: dict[str, Any] = {}
    for part in re.split(r"[\s,;]+", text.strip()):
        if not part:
            continue
        if "=" not in part:
            raise QueryError(f"expected field=value, got {part!r}")
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in META_FIELDS:
            raise QueryError(f"unknown field {key!r}; fields are {', '.join(META_FIELDS)}")
        if key in _TEXT_FIELDS:
            out[key] = value.strip("'\"")
            continue
        try:
            num = float(value)
        except ValueError:
            raise QueryError(f"{key} takes a number, got {value!r}") from None
        if not math.isfinite(num):
            raise QueryError(f"{key} must be finite, got {value!r}")
        out[key] = num
    if not out:
        raise QueryError("empty metadata query; e.g. 'detector=HAADF voltage_kv=300'")
    return out


def search_meta(
    query: Mapping[str, Any] | str,
    *,
    model: ContrastiveModel,
    index: EmbeddingIndex,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Catalogued images whose content best fits the metadata ``query`` (metadata to image).

    Fields not named in the query are missing (the model's "missing" vectors), not zero.
    """
    _check_fresh(index, model)
    q = parse_meta_query(query) if isinstance(query, str) else dict(query)
    emb = model.embed_metadata([q])
    pos, sc = index.search(emb, k=k, space="image")
    return _hits(index, pos[0], sc[0])


# ---------------------------------------------------------------------------- predict
def _rows_by_id(catalog: Catalog, ids: Sequence[int] | np.ndarray) -> dict[int, dict[str, Any]]:
    want = {int(i) for i in ids if int(i) >= 0}
    return {int(r["id"]): r for r in catalog.select() if int(r["id"]) in want}


def predict(
    image: Micrograph | np.ndarray | str | Path,
    *,
    model: ContrastiveModel,
    index: EmbeddingIndex | None = None,
    catalog: Catalog | None = None,
    k: int = 25,
) -> dict[str, dict[str, Any]]:
    """Metadata for an image, per field, from the linear probes and from retrieval.

    Probes read each field straight off the image embedding. Retrieval ranks the catalogued
    items' metadata embeddings against the image and takes a similarity-weighted vote of the
    ``k`` best (categories) or their weighted geometric/arithmetic mean (numbers).

    Returns
    -------
    dict
        ``field -> {"probe": value, "probe_confidence": p or None, "retrieval": value,
        "retrieval_confidence": share of the vote or None, "retrieval_spread": relative
        spread}``; keys are absent where a method has nothing to say.
    """
    emb = model.embed_images([_as_micrograph(image)])
    out: dict[str, dict[str, Any]] = {}
    if len(model.probes):
        pred = model.predict(emb)
        for name, val in pred.items():
            if name.endswith("_probability"):
                continue
            v = val[0]
            entry = out.setdefault(name, {})
            entry["probe"] = v if isinstance(v, str) else float(v)
            p = pred.get(name + "_probability")
            entry["probe_confidence"] = None if p is None else float(p[0])
    if index is not None and catalog is not None and len(index):
        _check_fresh(index, model)
        pos, sc = index.search(emb, k=k, space="meta")
        rows = _rows_by_id(catalog, index.ids[pos[0]])
        scale = float(model.net.logit_scale.exp().clamp(max=100.0))
        w = np.exp(scale * (sc[0] - sc[0].max()))
        recs = [
            metadata_record(rows[int(index.ids[p])]) for p in pos[0] if int(index.ids[p]) in rows
        ]
        w = w[: len(recs)]
        for spec in model.fields:
            vals = [(r.get(spec.name), wi) for r, wi in zip(recs, w, strict=True)]
            vals = [(v, wi) for v, wi in vals if v is not None]
            if not vals:
                continue
            entry = out.setdefault(spec.name, {})
            total = sum(wi for _, wi in vals)
            if spec.kind == "categorical" or isinstance(vals[0][0], str):
                votes: dict[str, float] = {}
                for v, wi in vals:
                    votes[str(v)] = votes.get(str(v), 0.0) + wi
                best = max(votes, key=lambda s: votes[s])
                entry["retrieval"] = best
                entry["retrieval_confidence"] = float(votes[best] / total)
            else:
                x = np.asarray([float(str(v)) for v, _ in vals])
                ww = np.asarray([wi for _, wi in vals]) / total
                if spec.log and (x > 0).all():
                    lx = np.log10(x)
                    mu = float((ww * lx).sum())
                    entry["retrieval"] = 10.0**mu
                    entry["retrieval_spread"] = float(np.sqrt((ww * (lx - mu) ** 2).sum()))
                else:
                    mu = float((ww * x).sum())
                    entry["retrieval"] = mu
                    entry["retrieval_spread"] = float(np.sqrt((ww * (x - mu) ** 2).sum()))
    return out


# -------------------------------------------------------------------------- anomalies
#: Added to the score of a frame whose pixels are all equal (such frames are also sorted
#: first whatever their score).
BLANK_SCORE = 1000.0


def _is_blank(row: Mapping[str, Any]) -> bool:
    lo, hi, sd = row.get("min"), row.get("max"), row.get("std")
    return (lo is not None and hi is not None and lo == hi) or (sd is not None and sd == 0)


def _own_and_lse(
    image: np.ndarray, meta: np.ndarray, scale: float, block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: the scaled cosine with its own metadata, the log-sum-exp of its scaled
    cosines with all metadata, and the rank of its own among them (1 = best)."""
    n = len(image)
    own = np.empty(n, np.float64)
    lse = np.empty(n, np.float64)
    rank = np.empty(n, np.int64)
    for i in range(0, n, block):
        sim = scale * (image[i : i + block] @ meta.T).astype(np.float64)
        rows = np.arange(len(sim))
        own[i : i + block] = sim[rows, i + rows]  # the same products as the rest of the row
        top = sim.max(axis=1)
        lse[i : i + block] = top + np.log(np.exp(sim - top[:, None]).sum(axis=1))
        rank[i : i + block] = (sim > own[i : i + block, None]).sum(axis=1) + 1
    return own, lse, rank


def mismatch_scores(
    image: np.ndarray, meta: np.ndarray, *, scale: float = 1.0, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """How badly each image fits its own metadata, from unit embeddings ``(N, D)`` in pairs.

    Returns ``(score, rank)``. ``score`` is ``-log p(own) - log N`` in nats, ``p(own)`` being
    the softmax weight of the image's own metadata among all ``N`` at the logit ``scale``
    (the model's inverse temperature, ``exp(logit_scale)``; the default 1 scores raw
    cosines): above 0 the image fits its own record worse than a record drawn at random.
    ``rank`` is the rank of its own metadata among all (1 = best).
    """
    own, lse, rank = _own_and_lse(image, meta, scale, block)
    return lse - own - math.log(max(1, len(image))), rank


def _calibrated_mismatch(
    image: np.ndarray, meta: np.ndarray, scale: float, block: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mismatch_scores` turned into a log-likelihood ratio of "this record belongs to
    another image" against "it is the image's own".

    The alternative's distribution is observed in the archive itself: each image paired with
    another item's record (a seeded permutation; pairs whose records embed identically, as
    within one session, are left out). A one-dimensional logistic regression of own (0)
    against swapped (1) pairs on the score gives the log-odds, with equal numbers of each,
    the log-likelihood ratio. A weak model, whose own and swapped pairs overlap, so weighs
    its embeddings little; a strong one much. Returns ``(log-ratio, rank)``.
    """
    from .evaluate import logistic_fit

    n = len(image)
    own, lse, rank = _own_and_lse(image, meta, scale, block)
    log_n = math.log(max(1, n))
    score = lse - own - log_n
    if n < 4:
        return score, rank
    other = np.random.default_rng(seed).permutation(n)
    other = np.where(other == np.arange(n), (other + 1) % n, other)
    distinct = np.einsum("ij,ij->i", meta, meta[other]) < 0.9999
    swapped = (lse - scale * np.einsum("ij,ij->i", image, meta[other]) - log_n)[distinct]
    if len(swapped) < 2:
        return score, rank
    # the same images on both sides: their own records, and the swapped ones kept
    x = np.concatenate([score[distinct], swapped])[:, None]
    y = np.repeat([0, 1], len(swapped))
    mu, sd = float(x.mean()), float(x.std()) + 1e-9
    w, b = logistic_fit((x - mu) / sd, y, 2)
    # a worse fit to the own record is never evidence *for* it (a weak model may fit noise)
    slope, offset = max(0.0, float(w[0, 1] - w[0, 0]) / sd), float(b[1] - b[0])
    return slope * (score - mu) + offset, rank


#: The fewest held-out items a numeric probe's RMSE must come from to be trusted as a scale.
MIN_HELDOUT = 10

#: The least probability a categorical probe may give a stored class, so that one confident
#: probe is strong evidence but not unbounded (at most ``-log`` of this, 6.9 nats).
MIN_PROBE_PROBABILITY = 1e-3


def probe_evidence(
    model: ContrastiveModel, image: np.ndarray, records: Sequence[Mapping[str, Any]]
) -> tuple[list[str], np.ndarray]:
    """Per field, the linear probes' evidence that an item's stored value is wrong.

    Each entry is a log-likelihood ratio in nats: the stored value under "the field was
    recorded wrongly" (a value drawn at random: uniform over the classes the probe knows, or
    over four standard deviations of the field's training values) against "it describes the
    image" (the probe's prediction):

    - categorical fields (detector, mode, instrument): ``-log p(stored class) - log K``, ``p``
      the probe's softmax (at least :data:`MIN_PROBE_PROBABILITY`), ``K`` classes;
    - numeric fields: the stored minus the predicted value (log10 for log fields) in units
      of the probe's held-out RMSE, ``r``, under a heavy-tailed Student t (2 degrees of
      freedom), so a probe that is merely unsure is not proof:
      ``1.5 log(1 + r^2 / 2) + log(2 sqrt(2) RMSE / (4 std))``.

    Fields missing from a record, classes the probe never saw, categorical probes of one
    class, angles (their probes are weak and periodic) and numeric probes without an RMSE
    from at least :data:`MIN_HELDOUT` held-out items give no evidence: ``-inf``. Returns the
    field names and ``(N, F)``.
    """
    specs = {s.name: s for s in model.fields}
    emb = np.asarray(image, np.float64)
    names: list[str] = []
    cols: list[np.ndarray] = []
    for p in model.probes.info if len(records) else []:
        name = str(p["field"])
        spec = specs.get(name)
        held = p.get("heldout") or {}
        rmse = float(held.get("rmse") or 0.0)
        if (
            spec is None
            or p["kind"] == "angle"
            or (p["kind"] == "categorical" and len(p.get("classes", ())) < 2)
            or (p["kind"] == "numeric" and not (rmse > 0 and held.get("n", 0) >= MIN_HELDOUT))
        ):
            continue
        col = np.full(len(records), -np.inf)
        vals = [field_value(spec, r) for r in records]
        y = model.probes.raw(emb, name)
        if p["kind"] == "categorical":
            lookup = {str(c): j for j, c in enumerate(p["classes"])}
            cls = np.array([lookup.get(str(v), -1) if v is not None else -1 for v in vals])
            z = y - y.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            ok = np.flatnonzero(cls >= 0)
            lp = np.maximum(logp[ok, cls[ok]], math.log(MIN_PROBE_PROBABILITY))
            col[ok] = -lp - math.log(len(lookup))
        else:
            ok = np.array([i for i, v in enumerate(vals) if v is not None], np.int64)
            if len(ok):
                r = (np.asarray([vals[i] for i in ok], np.float64) - y[ok, 0]) / rmse
                spread = 4.0 * max(float(spec.std), rmse)
                col[ok] = 1.5 * np.log1p(0.5 * r * r) + math.log(2 * math.sqrt(2) * rmse / spread)
        names.append(name)
        cols.append(col)
    ev = np.stack(cols, axis=1) if cols else np.full((len(records), 0), -np.inf)
    return names, ev


def anomaly_scores(
    model: ContrastiveModel,
    image: np.ndarray,
    meta: np.ndarray,
    records: Sequence[Mapping[str, Any]] | None = None,
    *,
    block: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """How likely each item's stored metadata is wrong, in nats: ``(score, rank)``.

    The log of the summed likelihood ratios of the alternatives "one field was recorded
    wrongly" (:func:`probe_evidence`, per field, from ``records``) and "the whole record
    belongs to another image" (:func:`mismatch_scores` from the embeddings, calibrated on
    records swapped between the archive's images); with equal priors, this is the evidence
    that *something* is wrong. Without records or probes it is the embeddings' term alone.
    ``rank``: of the own metadata among all (1 = best).
    """
    scale = float(model.net.logit_scale.detach().exp().clamp(max=100.0))
    score, rank = _calibrated_mismatch(image, meta, scale, block)
    if records is None or not len(model.probes):
        return score, rank
    _, ev = probe_evidence(model, image, records)
    terms = np.concatenate([score[:, None], ev], axis=1)
    top = terms.max(axis=1)
    return top + np.log(np.exp(terms - top[:, None]).sum(axis=1)), rank


def anomalies(
    *,
    model: ContrastiveModel,
    index: EmbeddingIndex,
    catalog: Catalog | None = None,
    top: int | None = 20,
    block: int = 4096,
) -> list[dict[str, Any]]:
    """Rank catalogued images by how badly their stored metadata fits their content.

    The score (:func:`anomaly_scores`, in nats, higher = more suspicious) weighs two kinds of
    evidence: the contrastive embeddings (does the image pick its own record out of all
    stored ones?) and, with a catalog, the linear probes field by field (does the image look
    like the stored detector, magnification, dose ...?). The embeddings alone barely notice
    one wrong field among right ones; a probe does. Frames whose pixels are all equal (blank
    or dummy frames; from the catalog's pixel statistics) get :data:`BLANK_SCORE` added, so
    they rank first. The fields the probes read differently from the stored values
    (detector, mode, instrument, a magnification or pixel size off by more than 2x) are
    listed as reasons.
    """
    _check_fresh(index, model)
    n = len(index)
    if n == 0:
        return []
    rows = _rows_by_id(catalog, index.ids) if catalog is not None else {}
    recs = [metadata_record(rows[int(i)]) if int(i) in rows else {} for i in index.ids]
    score, rank = anomaly_scores(
        model, index.image, index.meta, recs if rows else None, block=block
    )
    # a frame without content (every pixel equal: a blank, dummy or failed read-out) has no
    # image to match any metadata; it goes above every content-bearing frame
    blank = np.asarray([_is_blank(rows.get(int(i), {})) for i in index.ids], bool)
    score = np.where(blank, BLANK_SCORE + score, score)
    pred = model.predict(index.image) if len(model.probes) else {}
    order = np.lexsort((-score, ~blank))  # blank frames first, then by score
    if top is not None:
        order = order[:top]
    out: list[dict[str, Any]] = []
    for i in order:
        row = rows.get(int(index.ids[i]), {})
        reasons = []
        if blank[i]:
            reasons.append(f"blank frame: every pixel is {row.get('min')}")
        for f in ("detector", "mode", "instrument"):
            if f in pred and row.get(f) is not None and str(pred[f][i]) != str(row[f]):
                conf = float(pred[f + "_probability"][i])
                reasons.append(f"{f}: stored {row[f]}, looks like {pred[f][i]} ({conf:.0%})")
        for f in ("magnification", "pixel_size_nm"):
            if f in pred and row.get(f):
                ratio = float(pred[f][i]) / float(row[f])
                if not (0.5 <= ratio <= 2.0):
                    reasons.append(f"{f}: stored {row[f]:.4g}, looks like {float(pred[f][i]):.4g}")
        out.append(
            {
                "rank": len(out) + 1,
                "id": int(index.ids[i]),
                "path": index.paths[i],
                "score": float(score[i]),
                "own_metadata_rank": int(rank[i]),
                "reasons": reasons,
            }
        )
    return out


# -------------------------------------------------------------------------------- map
def projection(vectors: np.ndarray, *, seed: int = 0, method: str = "pca") -> np.ndarray:
    """A 2-D projection ``(N, 2)`` of embeddings: ``"pca"`` (default, exact and fast)."""
    x = np.asarray(vectors, np.float64)
    if method != "pca":
        raise ValueError(f"unknown projection {method!r}; use 'pca'")
    if len(x) < 2:
        return np.zeros((len(x), 2))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    y = x @ vt[:2].T
    if y.shape[1] < 2:
        y = np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    return np.asarray(y)


def projection_map(
    index: EmbeddingIndex,
    *,
    catalog: Catalog,
    color_by: str,
    out: str | Path,
    space: str = "image",
) -> Path:
    """A PNG scatter of the embeddings in 2-D (PCA), coloured by a catalog field.

    Categorical fields get one colour per value with a legend; numeric fields a colour scale
    (logarithmic where the values span more than a decade).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if color_by not in (*META_FIELDS, "format", "height", "width", "dtype"):
        raise QueryError(f"cannot colour by {color_by!r}; use one of {', '.join(META_FIELDS)}")
    vecs = index.image if space == "image" else index.meta
    xy = projection(vecs)
    rows = _rows_by_id(catalog, index.ids)
    vals = [rows.get(int(i), {}).get(color_by) for i in index.ids]
    fig, ax = plt.subplots(figsize=(7.5, 6), dpi=120)
    numeric = all(v is None or isinstance(v, int | float) for v in vals) and any(
        v is not None for v in vals
    )
    missing = np.asarray([v is None for v in vals])
    if missing.any():
        ax.scatter(xy[missing, 0], xy[missing, 1], s=6, c="#cccccc", label="missing", linewidths=0)
    if numeric:
        v = np.asarray([np.nan if x is None else float(x) for x in vals])
        ok = ~missing
        pos = v[ok] > 0
        norm = None
        if pos.all() and ok.any() and np.nanmax(v[ok]) / max(np.nanmin(v[ok]), 1e-300) > 10:
            norm = LogNorm(vmin=np.nanmin(v[ok]), vmax=np.nanmax(v[ok]))
        sc = ax.scatter(xy[ok, 0], xy[ok, 1], s=6, c=v[ok], cmap="viridis", norm=norm, linewidths=0)
        fig.colorbar(sc, ax=ax, label=color_by)
    else:
        cats = sorted({str(x) for x in vals if x is not None})
        cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
        for j, c in enumerate(cats):
            m = np.asarray([x is not None and str(x) == c for x in vals])
            ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(j % cmap.N), label=c, linewidths=0)
        ax.legend(markerscale=3, fontsize=8, loc="best", title=color_by)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"{space} embeddings of {len(index)} images, coloured by {color_by}")
    fig.tight_layout()
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    plt.close(fig)
    return p
