"""Evaluation of a contrastive model: cross-modal retrieval and linear probes.

Retrieval: every held-out image queries all held-out metadata (and the reverse). A query
counts as a hit at k when one of the k best-scored items has metadata *identical* to the
query's in every field the model encodes: identical records get identical metadata
embeddings, so no model could tell them apart, and the first of them is as right as any other.

Probes: linear read-outs fitted on the frozen image embeddings of the training split and scored
on the held-out split: ridge regression (regularisation chosen by generalised
cross-validation, closed form) for numeric fields, scored by R^2; multinomial logistic
regression (L-BFGS in torch) for categorical fields, scored by accuracy; ridge on the cosine
and sine of the angle's harmonics for angle fields. All in numpy/torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .config import FieldSpec
from .data import ContrastiveDataset
from .encoders import ContrastiveModel, LinearProbes
from .encoding import encode_metadata, field_value, metadata_keys

__all__ = [
    "ANGLE_HARMONICS",
    "attach_heldout_scores",
    "evaluate",
    "evaluate_probes",
    "fit_probes",
    "logistic_fit",
    "r2_score",
    "retrieval_metrics",
    "ridge_fit",
]

#: Harmonics fitted for angle fields: a lattice with n-fold symmetry shows only harmonic n.
ANGLE_HARMONICS = (1, 2, 4, 6)


# ----------------------------------------------------------------------------- retrieval
def retrieval_metrics(
    similarity: np.ndarray,
    query_keys: Sequence[str],
    item_keys: Sequence[str] | None = None,
    *,
    ks: Sequence[int] = (1, 5),
) -> dict[int, float]:
    """Top-k hit rates of a ranking.

    Parameters
    ----------
    similarity
        ``(Q, N)``: higher is better.
    query_keys, item_keys
        Identity of each query and item (default: the same list); a query is answered at k
        when any of its k best items has the query's key. Ties are broken by item order.

    Returns
    -------
    dict
        ``k -> fraction of queries answered``.
    """
    s = np.asarray(similarity)
    items = list(item_keys) if item_keys is not None else list(query_keys)
    codes: dict[str, int] = {}
    q = np.array([codes.setdefault(k, len(codes)) for k in query_keys])
    it = np.array([codes.setdefault(k, len(codes)) for k in items])
    order = np.argsort(-s, axis=1, kind="stable")
    kmax = min(max(ks), s.shape[1])
    match = it[order[:, :kmax]] == q[:, None]
    return {k: float(match[:, : min(k, kmax)].any(axis=1).mean()) for k in ks}


# ----------------------------------------------------------------------------- probes
def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (mean over columns)."""
    y2 = np.asarray(y, np.float64).reshape(len(y), -1)
    p2 = np.asarray(pred, np.float64).reshape(len(y), -1)
    ss_res = ((y2 - p2) ** 2).sum(axis=0)
    ss_tot = ((y2 - y2.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return float(r2.mean())


def ridge_fit(
    x: np.ndarray, y: np.ndarray, *, alpha: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression ``y ~ x @ w + b`` in closed form (intercept not penalised).

    Parameters
    ----------
    x
        ``(N, D)`` features.
    y
        ``(N,)`` or ``(N, K)`` targets.
    alpha
        L2 penalty; None chooses it per target column by generalised cross-validation over
        ``mean(s^2) * 10^[-6 .. 2]`` (``s``: singular values of the centred features).

    Returns
    -------
    w, b, alpha
        ``(D, K)``, ``(K,)`` and the penalty used per column ``(K,)``.
    """
    xx = np.asarray(x, np.float64)
    yy = np.asarray(y, np.float64).reshape(len(xx), -1)
    xm, ym = xx.mean(axis=0), yy.mean(axis=0)
    xc, yc = xx - xm, yy - ym
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    uty = u.T @ yc  # (r, K)
    n = len(xx)
    if alpha is not None:
        alphas = np.full(yy.shape[1], float(alpha))
    else:
        grid = float(np.mean(s**2) or 1.0) * np.logspace(-6, 2, 33)
        best = np.full(yy.shape[1], np.inf)
        alphas = np.full(yy.shape[1], grid[0])
        resid0 = (yc**2).sum(axis=0) - (uty**2).sum(axis=0)  # outside the span of x
        for a in grid:
            f = s**2 / (s**2 + a)
            rss = resid0 + (((1 - f)[:, None] * uty) ** 2).sum(axis=0)
            dof = n - f.sum()
            gcv = n * rss / max(dof, 1e-9) ** 2
            better = gcv < best
            best = np.where(better, gcv, best)
            alphas = np.where(better, a, alphas)
    d = s[:, None] / (s[:, None] ** 2 + alphas[None, :])  # (r, K)
    w = vt.T @ (d * uty)
    b = ym - xm @ w
    return w, b, alphas


def logistic_fit(
    x: np.ndarray, labels: np.ndarray, n_classes: int, *, l2: float = 1e-4, steps: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS (float64, deterministic).

    Parameters
    ----------
    x
        ``(N, D)`` features.
    labels
        ``(N,)`` ints in ``[0, n_classes)``.
    l2
        Penalty on the weights (mean cross-entropy + ``l2 * |W|^2``).

    Returns
    -------
    w, b
        ``(D, C)`` and ``(C,)``: logits are ``x @ w + b``.
    """
    xt = torch.as_tensor(np.asarray(x, np.float64))
    yt = torch.as_tensor(np.asarray(labels, np.int64))
    w = torch.zeros(xt.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    counts = torch.bincount(yt, minlength=n_classes).double() + 1e-3
    b = torch.log(counts / counts.sum()).clone().requires_grad_(True)
    if n_classes < 2:
        return w.detach().numpy(), b.detach().numpy()
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def _angle_targets(deg: np.ndarray) -> np.ndarray:
    t = np.radians(deg)[:, None] * np.asarray(ANGLE_HARMONICS, np.float64)[None, :]
    return np.stack([np.cos(t), np.sin(t)], axis=2).reshape(len(deg), -1)


def _targets(spec: FieldSpec, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[Any]]:
    """Indices of the records where the field is present, and the values there."""
    vals = [field_value(spec, r) for r in records]
    idx = np.array([i for i, v in enumerate(vals) if v is not None], dtype=np.int64)
    return idx, [vals[i] for i in idx]


def fit_probes(
    embeddings: np.ndarray,
    records: Sequence[Mapping[str, Any]],
    specs: Sequence[FieldSpec],
    *,
    min_items: int = 5,
) -> LinearProbes:
    """Fit one linear probe per field on frozen image embeddings (training split).

    Fields present in fewer than ``min_items`` records, and numeric fields that never vary,
    get no probe.
    """
    probes = LinearProbes()
    emb = np.asarray(embeddings, np.float64)
    for spec in specs:
        idx, vals = _targets(spec, records)
        if len(idx) < min_items:
            continue
        x = emb[idx]
        info: dict[str, Any] = {"field": spec.name, "kind": spec.kind, "log": spec.log}
        if spec.kind == "categorical":
            classes = sorted({str(v) for v in vals})
            lookup = {c: i for i, c in enumerate(classes)}
            y = np.array([lookup[str(v)] for v in vals])
            w, b = logistic_fit(x, y, len(classes))
            info["classes"] = classes
        elif spec.kind == "angle":
            w, b, _ = ridge_fit(x, _angle_targets(np.asarray(vals, np.float64)))
            info["harmonics"] = list(ANGLE_HARMONICS)
        else:
            yv = np.asarray(vals, np.float64)
            if float(yv.std()) == 0.0:
                continue
            w, b, _ = ridge_fit(x, yv)
        probes.info.append(info)
        probes.weights[spec.name] = w
        probes.biases[spec.name] = b
    return probes


def attach_heldout_scores(probes: LinearProbes, metrics: Mapping[str, float]) -> None:
    """Store each probe's held-out scores (``probe/<field>/...`` of :func:`evaluate`) in its
    ``info["heldout"]``: ``r2``, ``rmse``, ``accuracy`` ... without the prefix."""
    for p in probes.info:
        prefix = f"probe/{p['field']}/"
        p["heldout"] = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


def evaluate_probes(
    probes: LinearProbes,
    embeddings: np.ndarray,
    records: Sequence[Mapping[str, Any]],
    specs: Sequence[FieldSpec],
) -> dict[str, float]:
    """Held-out scores of each probe, only over records where the field is present.

    Keys: ``probe/<field>/accuracy`` (categorical; a class unseen in training counts as
    wrong) with ``probe/<field>/chance`` (the majority class's share); ``probe/<field>/r2``
    and ``probe/<field>/rmse`` (numeric: on the encoded value, i.e. log10 for log fields);
    for angles ``probe/<field>/r2`` on cos/sin of the first harmonic and
    ``probe/<field>/r2@<m>`` per harmonic m; and ``probe/<field>/n``.
    """
    by_name = {s.name: s for s in specs}
    emb = np.asarray(embeddings, np.float64)
    out: dict[str, float] = {}
    for p in probes.info:
        name = str(p["field"])
        spec = by_name.get(name)
        if spec is None:
            continue
        idx, vals = _targets(spec, records)
        if len(idx) == 0:
            continue
        y = probes.raw(emb[idx], name)
        out[f"probe/{name}/n"] = float(len(idx))
        if p["kind"] == "categorical":
            pred = np.asarray(p["classes"], dtype=object)[y.argmax(axis=1)]
            truth = np.array([str(v) for v in vals], dtype=object)
            out[f"probe/{name}/accuracy"] = float((pred == truth).mean())
            _, counts = np.unique(truth, return_counts=True)
            out[f"probe/{name}/chance"] = float(counts.max() / counts.sum())
        elif p["kind"] == "angle":
            t = _angle_targets(np.asarray(vals, np.float64))
            for j, m in enumerate(p["harmonics"]):
                cols = slice(2 * j, 2 * j + 2)
                out[f"probe/{name}/r2@{m}"] = r2_score(t[:, cols], y[:, cols])
            out[f"probe/{name}/r2"] = out[f"probe/{name}/r2@{p['harmonics'][0]}"]
        else:
            yv = np.asarray(vals, np.float64)
            out[f"probe/{name}/r2"] = r2_score(yv, y[:, 0])
            out[f"probe/{name}/rmse"] = float(np.sqrt(np.mean((yv - y[:, 0]) ** 2)))
    return out


# ----------------------------------------------------------------------------- evaluate
def evaluate(
    model: ContrastiveModel,
    held_out: ContrastiveDataset,
    *,
    train: ContrastiveDataset | None = None,
    ks: Sequence[int] = (1, 5),
    train_embeddings: np.ndarray | None = None,
) -> dict[str, float]:
    """Retrieval and probe figures on a held-out split.

    Parameters
    ----------
    model
        The trained model.
    held_out
        The evaluation split (see :meth:`ContrastiveDataset.split`).
    train
        The training split: probes are fitted on its image embeddings. Without it the probes
        stored in the model are scored.
    train_embeddings
        The training split's image embeddings, if already computed.

    Returns
    -------
    dict
        ``n``, ``unique_metadata``; ``image_to_metadata_top{k}`` and
        ``metadata_to_image_top{k}`` (hit = identical metadata, see the module docstring);
        ``image_to_metadata_top1_strict`` and ``metadata_to_image_top1_strict`` (hit = the
        query's own pair only);
        ``probe/<field>/...`` (see :func:`evaluate_probes`).
    """
    specs = model.fields
    img = model.embed_regions(held_out.regions)
    meta = model.embed_encoded(encode_metadata(held_out.records, specs))
    keys = metadata_keys(held_out.records, specs)
    out: dict[str, float] = {"n": float(len(held_out)), "unique_metadata": float(len(set(keys)))}
    if len(held_out):
        sim = img @ meta.T
        for k, v in retrieval_metrics(sim, keys, ks=ks).items():
            out[f"image_to_metadata_top{k}"] = v
        for k, v in retrieval_metrics(sim.T, keys, ks=ks).items():
            out[f"metadata_to_image_top{k}"] = v
        # strict: only the query's own pair counts, even when other items share its metadata
        own = [str(i) for i in range(len(keys))]
        out["image_to_metadata_top1_strict"] = retrieval_metrics(sim, own, ks=(1,))[1]
        out["metadata_to_image_top1_strict"] = retrieval_metrics(sim.T, own, ks=(1,))[1]
    probes = model.probes
    if train is not None:
        temb = (
            train_embeddings if train_embeddings is not None else model.embed_regions(train.regions)
        )
        probes = fit_probes(temb, train.records, specs)
    if len(held_out):
        out.update(evaluate_probes(probes, img, held_out.records, specs))
    return out
