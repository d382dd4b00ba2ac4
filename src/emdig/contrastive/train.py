"""Training the contrastive image-metadata model (CLIP-style, after arXiv:2604.24909).

Pairs are (image crop, metadata record) of the same micrograph. The two towers map them into
one space; the loss pulls each image towards its own metadata and away from the others in the
batch:

- ``"clip"``: symmetric InfoNCE (cross-entropy over the rows and over the columns of the
  similarity matrix) with a learnable temperature;
- ``"siglip"``: an independent sigmoid per pair, with a learnable temperature and bias.

Pairs whose metadata are identical in every encoded field are indistinguishable to the metadata
tower, so both losses count them as positives of each other rather than as negatives.

The held-out split is by file (:func:`~emdig.contrastive.data.heldout_mask`); normalisation
statistics and vocabularies come from the training split only. Training is deterministic for
a seed on one machine (same thread count): ``torch.manual_seed`` inside a forked RNG state (the
caller's is left alone), a numpy ``Generator`` for batches and crops, and
``torch.use_deterministic_algorithms``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..micrograph import Micrograph
from .config import ContrastiveConfig
from .data import ContrastiveDataset
from .encoders import N_STATS, ContrastiveModel, ContrastiveNet, center_crop
from .encoding import EncodedMetadata, encode_metadata, fit_fields, metadata_keys
from .evaluate import attach_heldout_scores, evaluate, fit_probes, retrieval_metrics

__all__ = ["TrainResult", "clip_loss", "metadata_neighbours", "siglip_loss", "train"]

log = logging.getLogger(__name__)


def clip_loss(logits: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE.

    Parameters
    ----------
    logits
        ``(N, N)`` scaled similarities, rows images, columns metadata.
    positives
        ``(N, N)`` bool, True where image i and metadata j belong together (default: the
        diagonal). Several positives in a row share the target probability equally.

    Returns
    -------
    torch.Tensor
        ``(cross_entropy(rows) + cross_entropy(columns)) / 2``, averaged over the batch.
    """
    n = logits.shape[0]
    pos = torch.eye(n, dtype=torch.bool, device=logits.device) if positives is None else positives
    t = pos.to(logits.dtype)
    rows = -(t / t.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    cols = -(t / t.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (rows + cols) / 2


def siglip_loss(logits: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise sigmoid loss: ``-sum_ij log sigmoid(z_ij * logits_ij) / N`` with ``z = +1`` for
    positives and ``-1`` otherwise. ``logits`` already include temperature and bias."""
    n = logits.shape[0]
    pos = torch.eye(n, dtype=torch.bool, device=logits.device) if positives is None else positives
    z = pos.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(z * logits).sum() / n


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model
        The trained model, with linear probes fitted on the training split.
    history
        One dict per epoch: ``epoch``, ``loss``, ``heldout_top1``, ``temperature``,
        ``seconds``. For an ensemble, epochs count on through the members, ``member`` (from 1)
        names the one in training, ``member_top1`` is its own held-out top-1 and
        ``heldout_top1`` that of the ensemble so far (the finished members and this one).
    metrics
        :func:`~emdig.contrastive.evaluate.evaluate` on the held-out split.
    train, held_out
        The two splits.
    weights
        The saved checkpoint, if ``out`` was given.
    """

    model: ContrastiveModel
    history: list[dict[str, float]]
    metrics: dict[str, float]
    train: ContrastiveDataset
    held_out: ContrastiveDataset
    weights: Path | None = None


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device, deterministic: bool) -> Iterator[None]:
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        if deterministic:
            # on CUDA a few kernels have no deterministic version: warn rather than fail there
            torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _global_features(
    net: ContrastiveNet, regions: np.ndarray, size: int, dev: torch.device, batch: int = 256
) -> torch.Tensor:
    out = []
    region_mode = net.config.image.global_features == "region"
    for i in range(0, len(regions), batch):
        block = np.asarray(regions[i : i + batch], np.float32)
        src = block if region_mode else np.ascontiguousarray(center_crop(block, size))
        out.append(net.image.global_features(torch.from_numpy(src)[:, None].to(dev)))
    n_feat = 2 * net.config.image.radial_bins * net.config.image.angular_bins + N_STATS
    return torch.cat(out) if out else torch.zeros(0, n_feat, device=dev)


@torch.no_grad()
def _embed(
    net: ContrastiveNet,
    regions: np.ndarray,
    feats: torch.Tensor,
    size: int,
    dev: torch.device,
    batch: int = 256,
) -> np.ndarray:
    """Eval-mode image embeddings of centre crops, with precomputed global features."""
    was = net.training
    net.eval()
    out = []
    for i in range(0, len(regions), batch):
        block = np.asarray(regions[i : i + batch], np.float32)
        x = torch.from_numpy(np.ascontiguousarray(center_crop(block, size)))[:, None].to(dev)
        out.append(net.encode_image(x, features=feats[i : i + batch]).float().cpu().numpy())
    net.train(was)
    return np.concatenate(out) if out else np.zeros((0, net.config.embed_dim), np.float32)


def _param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        # biases, norms, temperature, missing vectors and embeddings are not shrunk
        if p.ndim < 2 or name.endswith("missing") or "cat_table" in name or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _crops(block: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """``(B, size, size)`` float32 crops of regions ``(B, S, S)``: random positions with
    ``rng`` (the only augmentation: a translation), else centred."""
    s = block.shape[-1]
    if rng is None:
        return np.asarray(center_crop(block, size), np.float32)
    off = rng.integers(0, s - size + 1, size=(len(block), 2))
    ar = np.arange(size)
    ys = off[:, 0, None, None] + ar[None, :, None]
    xs = off[:, 1, None, None] + ar[None, None, :]
    return block[np.arange(len(block))[:, None, None], ys, xs].astype(np.float32)


def _turn180(
    crops: np.ndarray, enc: EncodedMetadata, rng: np.random.Generator, share: float
) -> tuple[np.ndarray, EncodedMetadata, np.ndarray]:
    """Turn a random ``share`` of the crops by 180 degrees and add pi to their angle fields
    (where present); returns the crops, the metadata and which items were turned. A share of 0
    draws nothing from ``rng``, so training without the turn is as before."""
    if share <= 0:
        return crops, enc, np.zeros(len(crops), bool)
    turned = rng.random(len(crops)) < share
    if not turned.any():
        return crops, enc, turned
    crops = crops.copy()
    crops[turned] = crops[turned, ::-1, ::-1]
    ang = enc.angle.copy()
    t = turned[:, None] & enc.angle_mask
    ang[t] = np.mod(ang[t] + np.pi, 2 * np.pi)
    return crops, replace(enc, angle=ang.astype(np.float32)), turned


def _perturb(
    enc: EncodedMetadata, rng: np.random.Generator, dropout: float, noise: float
) -> EncodedMetadata:
    """Training-time metadata augmentation: fields hidden at random, values jittered."""
    if not dropout and not noise:
        return enc

    def keep(mask: np.ndarray) -> np.ndarray:
        return mask & (rng.random(mask.shape) >= dropout) if dropout else mask

    num = enc.numeric + (noise * rng.standard_normal(enc.numeric.shape)).astype(np.float32)
    ang = enc.angle + (noise * rng.standard_normal(enc.angle.shape)).astype(np.float32)
    return EncodedMetadata(
        numeric=np.clip(num, -8.0, 8.0),
        numeric_mask=keep(enc.numeric_mask),
        angle=ang,
        angle_mask=keep(enc.angle_mask),
        categorical=enc.categorical,
        categorical_mask=keep(enc.categorical_mask),
    )


class _Readout(nn.Module):
    """Linear read-out of every encoded metadata field from image embeddings (training aid)."""

    def __init__(self, enc: EncodedMetadata, dim: int) -> None:
        super().__init__()
        self.n_num = enc.numeric.shape[1]
        self.n_ang = enc.angle.shape[1]
        self.cat_sizes = [int(enc.categorical[:, j].max(initial=0)) + 1
                          for j in range(enc.categorical.shape[1])]  # fmt: skip
        out = self.n_num + 2 * len(_READOUT_HARMONICS) * self.n_ang + sum(self.cat_sizes)
        self.linear = nn.Linear(dim, max(out, 1))

    def loss(self, emb: torch.Tensor, t: Mapping[str, torch.Tensor]) -> torch.Tensor:
        y = self.linear(emb)
        total = emb.new_zeros(())
        o = self.n_num
        if o:
            m = t["numeric_mask"].to(emb.dtype)
            total = total + ((y[:, :o] - t["numeric"]) ** 2 * m).sum() / m.sum().clamp_min(1)
        for j in range(self.n_ang):
            a = t["angle"][:, j]
            m = t["angle_mask"][:, j].to(emb.dtype)
            for h in _READOUT_HARMONICS:
                err = (y[:, o] - torch.cos(h * a)) ** 2 + (y[:, o + 1] - torch.sin(h * a)) ** 2
                total = total + (err * m).sum() / m.sum().clamp_min(1) / len(_READOUT_HARMONICS)
                o += 2
        for j, k in enumerate(self.cat_sizes):
            m = t["categorical_mask"][:, j]
            if bool(m.any()):
                total = total + F.cross_entropy(y[m, o : o + k], t["categorical"][m, j])
            o += k
        return total


_READOUT_HARMONICS = (1, 2, 4, 6)


def metadata_neighbours(enc: EncodedMetadata, k: int, *, block: int = 2048) -> np.ndarray:
    """``(N, k)`` indices of each record's ``k`` nearest other records in encoded-metadata
    space (standardised numeric values, angle cosines and sines, one-hot categories; a missing
    value counts as its own value). Records identical to the query are passed over: they are
    positives, not negatives."""
    parts = [np.where(enc.numeric_mask, enc.numeric, 0.0), enc.numeric_mask * 1.0]
    parts += [np.where(enc.angle_mask, np.cos(enc.angle), 0.0),
              np.where(enc.angle_mask, np.sin(enc.angle), 0.0)]  # fmt: skip
    for j in range(enc.categorical.shape[1]):
        codes = np.where(enc.categorical_mask[:, j], enc.categorical[:, j] + 1, 0)
        parts.append(2.0 * np.eye(int(codes.max()) + 1)[codes])  # a category change: far
    v = np.concatenate(parts, axis=1).astype(np.float32)
    n = len(v)
    k = max(0, min(k, n - 1))
    out = np.zeros((n, k), np.int64)
    sq = (v * v).sum(1)
    for i in range(0, n, block):
        d = sq[i : i + block, None] + sq[None, :] - 2.0 * v[i : i + block] @ v.T
        d[d < 1e-6] = np.inf  # itself, and records identical to it
        out[i : i + block] = np.argsort(d, axis=1, kind="stable")[:, :k]
    return out


def _batches(
    n: int,
    n_batches: int,
    rng: np.random.Generator,
    neighbours: np.ndarray | None,
    share: float,
) -> list[np.ndarray]:
    """One epoch of batches. With ``neighbours``, a ``share`` of each batch is drawn from the
    metadata neighbours of the others (images of one session that differ only in
    magnification or dwell time): the hard negatives that retrieval must tell apart."""
    perm = rng.permutation(n)
    if neighbours is None or share <= 0 or neighbours.shape[1] == 0:
        return list(np.array_split(perm, n_batches))
    size = math.ceil(n / n_batches)
    m = max(1, round(size * (1 - share)))  # anchors per batch; the rest are their neighbours
    out = []
    for anchors in np.array_split(perm[: m * n_batches], n_batches):
        pick = anchors[rng.integers(0, len(anchors), size=size - len(anchors))]
        extra = neighbours[pick, rng.integers(0, neighbours.shape[1], size=len(pick))]
        out.append(rng.permutation(np.unique(np.concatenate([anchors, extra]))))
    return out


def train(
    data: ContrastiveDataset | Sequence[Micrograph],
    *,
    config: ContrastiveConfig | None = None,
    loss: Literal["clip", "siglip"] | None = None,
    members: int | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    metadata_dropout: float = 0.05,
    metadata_noise: float = 0.05,
    readout_weight: float = 0.5,
    hard_negatives: float = 0.0,
    feature_noise: float = 0.0,
    rotate180: float = 0.0,
    holdout: float = 0.1,
    held_out: ContrastiveDataset | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    name: str = "model",
    device: str | torch.device | None = None,
    deterministic: bool = True,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a contrastive model and fit its linear probes.

    Parameters
    ----------
    data
        A dataset (e.g. :meth:`ContrastiveDataset.from_catalog`) or micrographs.
    config
        Architecture and fields; default :class:`ContrastiveConfig`. Field statistics and
        vocabularies are (re)fitted on the training split.
    loss
        ``"clip"`` or ``"siglip"``; default the config's.
    members
        Train an ensemble of this many members (seeds ``seed``, ``seed + 1``, ...), one after
        the other, each for ``epochs``; default the config's (1). Their similarities are
        averaged (:class:`~emdig.contrastive.encoders.ContrastiveNet`), which cancels part of
        what each member learns by heart; it costs ``members`` times the training and
        embedding time of one.
    epochs, batch_size, lr, weight_decay
        AdamW with one warm-up epoch, then cosine decay (per member).
    metadata_dropout
        In training, each field of each record is hidden (marked missing) with this
        probability: the model learns to work with incomplete metadata, and cannot rely on
        one exact combination of values to recognise a training image.
    metadata_noise
        Standard deviation of Gaussian jitter added in training to standardised numeric
        values (and to angles, in radians): nearby settings must give nearby embeddings.
    readout_weight
        Weight of an auxiliary loss in training: a linear read-out of the image embedding
        must give each metadata field (squared error on the standardised numeric values and
        on the cosine and sine of the angles' harmonics, cross-entropy on the categories;
        missing fields skipped). It makes the embedding carry each field along a direction,
        which is what the linear probes read; the read-out itself is discarded. 0 turns it
        off.
    hard_negatives
        Share of each batch drawn from the metadata neighbours of the rest of the batch
        (:func:`metadata_neighbours`, 8 per record): same-session images that differ only in
        magnification or dwell time, which a random batch rarely holds together but retrieval
        has to tell apart. 0 draws batches at random.
    feature_noise
        In training, Gaussian jitter (in units of each feature's spread over the training
        split) added to the fixed spectrum and texture features, which are otherwise identical
        in every epoch and so easy to memorise; the CNN's crops move, these do not.
    rotate180
        Share of training crops turned by 180 degrees, with 180 degrees added to their angle
        fields (scan rotation). A scan rotation of theta + 180 images the same specimen turned
        by 180 degrees, so the pair stays true to physics, with one exception: the scan
        artefacts (amplifier smear along the line, line jumps) now run right to left. The
        fixed spectrum and texture features are left as they are: the power spectrum,
        autocorrelations, intensity histogram and moments do not change under the turn, and
        the neighbour-difference histograms are kept as the scan would give them. 0 turns it
        off.
    holdout
        Fraction of files held out (by file hash) for evaluation.
    held_out
        An explicit evaluation set; then all of ``data`` is used for training.
    seed
        Seeds weights, batch order and crop positions.
    out
        Directory for ``<name>.safetensors`` + ``<name>.json``, written after every epoch and,
        with the probes, at the end.
    device
        Default CUDA when present, else CPU.
    deterministic
        ``torch.use_deterministic_algorithms`` during training.
    progress
        ``progress(epoch, epochs, figures)`` after each epoch; figures as in
        :attr:`TrainResult.history` (for an ensemble ``epochs`` is ``members`` x ``epochs``).
    """
    t0 = time.perf_counter()
    cfg = config or ContrastiveConfig()
    if loss is not None:
        cfg = replace(cfg, loss=loss)
    if members is not None:
        cfg = replace(cfg, members=members)
    if cfg.loss not in ("clip", "siglip"):
        raise ValueError(f"loss must be 'clip' or 'siglip', got {cfg.loss!r}")
    ds = (
        data
        if isinstance(data, ContrastiveDataset)
        else ContrastiveDataset.from_micrographs(data, config=cfg.image)
    )
    if held_out is not None:
        tr, ho = ds, held_out
    else:
        tr, ho = ds.split(holdout=holdout)
    if len(tr) < 2:
        raise ValueError(f"need at least 2 training items, got {len(tr)}")
    if tr.regions.shape[-1] != cfg.image.cache_size:
        raise ValueError(
            f"dataset regions are {tr.regions.shape[-1]} px, the config wants "
            f"{cfg.image.cache_size}: build the dataset with this config's image settings"
        )
    specs = fit_fields(cfg.metadata.fields, tr.records)
    cfg = cfg.with_fields(specs)
    dev = torch.device(device) if device is not None else (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )  # fmt: skip
    enc = encode_metadata(tr.records, specs)
    codes: dict[str, int] = {}
    key_ids = np.array([codes.setdefault(k, len(codes)) for k in metadata_keys(tr.records, specs)])
    ho_enc = encode_metadata(ho.records, specs)
    ho_keys = metadata_keys(ho.records, specs)
    n_in = cfg.image.input_size
    n_batches = max(1, math.ceil(len(tr) / batch_size))
    total = epochs * n_batches
    warm = min(n_batches, max(1, total // 10))
    history: list[dict[str, float]] = []
    weights: Path | None = None
    loss_fn = clip_loss if cfg.loss == "clip" else siglip_loss
    n_members = cfg.members
    if n_members < 1:
        raise ValueError(f"members must be at least 1, got {n_members}")
    member_cfg = replace(cfg, members=1)
    nets: list[ContrastiveNet] = []  # the finished members
    done_sim: np.ndarray | float = 0.0  # summed held-out similarities of the finished members
    tr_feats: torch.Tensor | None = None
    ho_feats: torch.Tensor | None = None
    for k in range(n_members):
        with _seeded(seed + k, dev, deterministic):
            net = ContrastiveNet(member_cfg).to(dev)
            if tr_feats is None or ho_feats is None:
                # the spectrum and statistics of each region are fixed: computed once, not per
                # epoch (nor per member: they have no weights)
                tr_feats = _global_features(net, tr.regions, n_in, dev)
                ho_feats = _global_features(net, ho.regions, n_in, dev)
            rng = np.random.default_rng(seed + k)
            readout = _Readout(enc, cfg.embed_dim).to(dev)
            groups = _param_groups(net, weight_decay)
            if readout_weight > 0:
                groups[0]["params"] = [*groups[0]["params"], *readout.parameters()]
            opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))

            def lr_at(step: int) -> float:
                if step < warm:
                    return lr * (step + 1) / warm
                return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

            neighbours = metadata_neighbours(enc, 8) if hard_negatives > 0 else None
            feat_sd = tr_feats.std(dim=0, keepdim=True) if len(tr_feats) > 1 else None
            step = 0
            for epoch in range(1, epochs + 1):
                net.train()
                losses = []
                for idx in _batches(len(tr), n_batches, rng, neighbours, hard_negatives):
                    if len(idx) < 2:
                        continue
                    for g in opt.param_groups:
                        g["lr"] = lr_at(step)
                    block = np.asarray(tr.regions[idx], np.float32)
                    crops, e_idx, turned = _turn180(
                        _crops(block, n_in, rng), enc.subset(idx), rng, rotate180
                    )
                    x = torch.from_numpy(crops)[:, None].to(dev)
                    m = _perturb(e_idx, rng, metadata_dropout, metadata_noise).tensors(dev)
                    kid = torch.from_numpy(2 * key_ids[idx] + turned).to(dev)
                    pos = kid[:, None] == kid[None, :]
                    feats = tr_feats[torch.from_numpy(idx).to(dev)]
                    if feature_noise > 0 and feat_sd is not None:
                        feats = feats + feature_noise * feat_sd * torch.randn_like(feats)
                    img = net.encode_image(x, features=feats)
                    meta = net.encode_metadata(m)
                    logits = net.logit_scale.exp() * img @ meta.T
                    if cfg.loss == "siglip":
                        logits = logits + net.logit_bias
                    batch_loss = loss_fn(logits, pos)
                    if readout_weight > 0:
                        truth = e_idx.tensors(dev)  # unperturbed
                        batch_loss = batch_loss + readout_weight * readout.loss(img, truth)
                    opt.zero_grad(set_to_none=True)
                    batch_loss.backward()
                    opt.step()
                    with torch.no_grad():
                        net.logit_scale.clamp_(0.0, math.log(100.0))
                    losses.append(float(batch_loss.detach()))
                    step += 1
                model = ContrastiveModel(net, device=dev)
                entry: dict[str, float] = {
                    "epoch": float(k * epochs + epoch),
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "temperature": float(1.0 / net.logit_scale.detach().exp()),
                    "seconds": time.perf_counter() - t0,
                }
                if n_members > 1:
                    entry["member"] = float(k + 1)
                if len(ho):
                    ho_img = _embed(net, ho.regions, ho_feats, n_in, dev)
                    sim = ho_img @ model.embed_encoded(ho_enc).T
                    if n_members > 1:
                        entry["member_top1"] = retrieval_metrics(sim, ho_keys, ks=(1,))[1]
                        own = sim
                        sim = (done_sim + own) / (k + 1)
                        if epoch == epochs:
                            done_sim = done_sim + own
                    # the held-out top-1 of the model so far: the finished members and this one
                    entry["heldout_top1"] = retrieval_metrics(sim, ho_keys, ks=(1,))[1]
                history.append(entry)
                log.info("epoch %d/%d %s", k * epochs + epoch, n_members * epochs, entry)
                if out is not None:
                    so_far = ContrastiveNet.from_members([*nets, net])
                    weights = ContrastiveModel(so_far, device=dev).save(out, name=name)
                if progress is not None:
                    progress(k * epochs + epoch, n_members * epochs, dict(entry))
        nets.append(net)
    with _seeded(seed, dev, deterministic):
        net = ContrastiveNet.from_members(nets)
        net.requires_grad_(False)  # training is over: the returned model is for inference
        model = ContrastiveModel(net, device=dev)
        train_emb = model.embed_regions(tr.regions)
        model.probes = fit_probes(train_emb, tr.records, specs)
        metrics = evaluate(model, ho) if len(ho) else {"n": 0.0}
    attach_heldout_scores(model.probes, metrics)
    net.config = replace(
        net.config,
        trained_on={
            "train_items": len(tr),
            "heldout_items": len(ho),
            "train_files": len(set(tr.groups)),
            "heldout_files": len(set(ho.groups)),
            "holdout": holdout,
            "epochs": epochs,
            "members": n_members,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "metadata_dropout": metadata_dropout,
            "metadata_noise": metadata_noise,
            "readout_weight": readout_weight,
            "hard_negatives": hard_negatives,
            "feature_noise": feature_noise,
            "rotate180": rotate180,
            "seed": seed,
            "device": str(dev),
            "seconds": round(time.perf_counter() - t0, 1),
            "heldout_metrics": {k: v for k, v in metrics.items() if not k.endswith("/n")},
        },
    )
    if out is not None:
        weights = model.save(out, name=name)
    return TrainResult(model, history, metrics, tr, ho, weights)
