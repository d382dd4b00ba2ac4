"""The image encoder, its preprocessing, and the joint model with its linear probes.

Preprocessing (:func:`preprocess`). The network sees one fixed input size (default 128 x 128)
cut from the image **at its native pixel scale**: a centre region (default 256 x 256) is taken,
never a resize of the whole field of view. A resize would erase exactly what the metadata
explains: the lattice period in pixels (pixel size, magnification), the noise per pixel (dose)
and the blur in pixels (probe size). Images smaller than the region are mirror-padded. Each
region is normalised by its own robust percentiles (1st -> 0, 99th -> 1), which removes
detector gain and offset but keeps contrast polarity (bright atoms in HAADF, dark in BF/ABF)
and the noise level relative to the signal.

Augmentation (in training) is a random position of the crop within the region, i.e. a
translation, and nothing else:

- no rescaling: the scale is the magnification and pixel size;
- no rotation, not even by 90 degrees: the orientation of the lattice and of the scan lines is
  the scan rotation (and a 90-degree turn swaps the fast and slow scan axes);
- no mirror flips: a flip turns a rotation by theta into one by -theta (the handedness of the
  scan rotation) and reverses the scan direction. Flipping both axes (a 180-degree turn) would
  keep handedness, and a 2-D lattice looks the same after it, but it changes the scan rotation
  by 180 degrees, which the metadata distinguishes; so it is not used by default
  (``train(rotate180=...)`` turns crops by 180 degrees *and* adds 180 degrees to their scan
  rotation; on the 7,330-image bench it gave 74.4 % held-out top-1 against 75.6-76.2 % without);
- no contrast inversion (it is the difference between BF/ABF and HAADF), no added noise (the
  noise is the dose), no blur (it is the probe and voltage); brightness and offset jitter would
  be removed by the percentile normalisation anyway.

Image encoder (:class:`ImageEncoder`): three branches, concatenated and mixed by an MLP.

1. A small CNN on the crop. Its first layer sees every pixel (after a lossless 2 x 2
   space-to-depth: noise, blur, atom-column shape), then stride-2 stages; every stage
   contributes its spatial mean and standard deviation per channel, so fine-scale statistics
   reach the output directly.
2. The log power spectrum of the Hann-windowed region on a polar grid (radius log-spaced,
   angle 0-180 degrees), as the mean and the maximum within each cell: lattice peaks give the
   period (pixel size) and orientation (scan rotation), their anisotropy the tilt
   foreshortening, the high-frequency floor the noise (dose), its fall-off the probe blur, and
   the difference between the scan axes the amplifier and scan-line artefacts (dwell time).
3. Texture statistics of the region: the intensity histogram (contrast polarity, and at low
   dose the steps of single detected electrons), histograms of neighbour differences along and
   across the scan lines, autocorrelations along and across them, and moments.

Branches 2 and 3 are fixed transforms of the whole cached region (``global_features =
"region"``), the CNN learns from the crop.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError
from ..micrograph import Micrograph
from .config import ContrastiveConfig, FieldSpec, ImageEncoderConfig
from .encoding import (
    EncodedMetadata,
    MetadataEncoder,
    MetadataLike,
    encode_metadata,
    metadata_record,
)

__all__ = [
    "ContrastiveModel",
    "ContrastiveNet",
    "ImageEncoder",
    "LinearProbes",
    "center_crop",
    "load_model",
    "preprocess",
    "preprocess_batch",
    "texture_statistics",
]

# histogram edges, in units of the region's 1st-99th percentile range: the intensity histogram
# shows contrast polarity and, at low dose, the steps of single detected electrons; the histograms
# of neighbour differences along and across the scan lines show the noise level and how the
# detector amplifier smears it along a line (dwell time)
# (each histogram: uniform bins between its edges, plus one bin below and one above the range;
# the difference bins are centred on multiples of 0.05, so the many exact zeros of quantised
# images fall mid-bin, never on an edge)
_INTENSITY_EDGES = (-0.2, 1.2, 48)  # (first edge, last edge, bins between them)
_DIFF_EDGES = (-0.575, 0.575, 23)
_LAGS = (1, 2, 3, 5, 8)
N_STATS = (_INTENSITY_EDGES[2] + 2) + 2 * (_DIFF_EDGES[2] + 2) + 2 * len(_LAGS) + 3


# ----------------------------------------------------------------------------- preprocessing
def preprocess(pixels: np.ndarray, *, config: ImageEncoderConfig) -> np.ndarray:
    """Centre region of an image at native scale, normalised by its own percentiles.

    Parameters
    ----------
    pixels
        2-D image, any real dtype.
    config
        Gives ``cache_size`` (the region side, px) and the percentiles.

    Returns
    -------
    numpy.ndarray
        ``(cache_size, cache_size)`` float32: the region's ``low_pct`` percentile at 0 and its
        ``high_pct`` percentile at 1, clipped to [-1, 2] (hot pixels). Non-finite pixels take
        the region's median; a flat region becomes all zeros.
    """
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    s = config.cache_size
    h, w = a.shape
    y0, x0 = max(0, (h - s) // 2), max(0, (w - s) // 2)
    r = a[y0 : y0 + s, x0 : x0 + s]
    if np.iscomplexobj(r):
        r = np.abs(r)
    r = r.astype(np.float32)
    if r.shape != (s, s):
        # symmetric padding, repeated if the image is tiny (np.pad's symmetric mode needs it)
        while r.shape[0] < s or r.shape[1] < s:
            py, px = min(s - r.shape[0], r.shape[0]), min(s - r.shape[1], r.shape[1])
            r = np.pad(r, ((py // 2, py - py // 2), (px // 2, px - px // 2)), mode="symmetric")
    finite = np.isfinite(r)
    if not finite.all():
        fill = float(np.median(r[finite])) if finite.any() else 0.0
        r = np.where(finite, r, np.float32(fill))
    lo, hi = _percentiles(r, (config.low_pct, config.high_pct))
    if not hi > lo:
        return np.zeros((s, s), np.float32)
    out = (r - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, -1.0, 2.0, out=out)
    return out


def _percentiles(a: np.ndarray, pcts: Sequence[float]) -> list[float]:
    """``np.percentile(a, pcts)`` (linear interpolation) from one full sort, which numpy's
    vectorised sort does several times faster than the selection ``np.percentile`` uses."""
    v = np.sort(a, axis=None)
    last = v.size - 1
    out = []
    for q in pcts:
        pos = q / 100.0 * last
        i = min(math.floor(pos), last)
        j = min(i + 1, last)
        out.append(float(v[i]) + (float(v[j]) - float(v[i])) * (pos - i))
    return out


def preprocess_batch(
    images: Sequence[Micrograph | np.ndarray] | np.ndarray, *, config: ImageEncoderConfig
) -> np.ndarray:
    """:func:`preprocess` for many images: ``(N, cache_size, cache_size)`` float32."""
    s = config.cache_size
    out = np.empty((len(images), s, s), np.float32)
    for i, im in enumerate(images):
        px = im.pixels if isinstance(im, Micrograph) else im
        out[i] = preprocess(px, config=config)
    return out


def center_crop(regions: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` of preprocessed regions ``(N, S, S)``."""
    s = regions.shape[-1]
    o = (s - size) // 2
    return regions[..., o : o + size, o : o + size]


# ------------------------------------------------------------------------------ image tower
class _Histogram:
    """Uniform bins ``[lower, upper)`` from ``first`` to ``last`` plus a bin below and a bin
    above the range (``n + 2`` counts), by OpenCV: the values scaled to their bin index and
    saturated into ``uint8`` (below the range -> 0), then a 256-bin count."""

    def __init__(self, edges: tuple[float, float, int]) -> None:
        first, last, n = edges
        assert n + 2 <= 256
        step = (last - first) / n
        self.n = n
        self.scale = 1.0 / step
        # round(v * scale + offset) == floor((v - (first - step)) / step)
        self.offset = (step - first) * self.scale - 0.5

    def log_frequencies(self, values: np.ndarray, work: np.ndarray) -> np.ndarray:
        """Log-frequencies ``(n + 2,)`` of finite ``values`` (float32, 2-D); ``work``: a
        ``uint8`` buffer of their shape. A value exactly on an edge goes to the bin OpenCV's
        round-half-to-even picks."""
        u8 = cv2.addWeighted(
            values, self.scale, values, 0.0, self.offset, dst=work, dtype=cv2.CV_8U
        )
        assert u8.shape == values.shape
        c = cv2.calcHist([u8], [0], None, [256], [0, 256]).ravel()
        counts = c[: self.n + 2].astype(np.float64)
        counts[-1] += c[self.n + 2 :].sum()  # everything above the range
        out: np.ndarray = np.log(counts / values.size + 1e-4)
        return out


_INTENSITY_HIST = _Histogram(_INTENSITY_EDGES)
_DIFF_HIST = _Histogram(_DIFF_EDGES)


def texture_statistics(regions: np.ndarray) -> np.ndarray:
    """Texture statistics of finite normalised regions ``(N, H, W)`` (both sides above the
    longest lag, 8 px): ``(N, N_STATS)`` float32.

    Per region: the log-frequencies of the intensity histogram and of the histograms of
    vertical and horizontal neighbour differences, the normalised autocorrelation along and
    across the scan lines at a few lags (mean product over the overlap, over the variance),
    and the mean, standard deviation and skewness.

    A fixed transform, computed image by image on the CPU for training and inference alike:
    OpenCV histograms and BLAS dot products on buffers reused across images (a fresh array of
    a region's size per operation would cost more in page faults than in arithmetic).
    """
    r = np.asarray(regions, np.float32)
    n, h, w = r.shape
    if min(h, w) <= max(_LAGS):
        raise ValueError(f"regions of {h} x {w} px: texture statistics need more than {max(_LAGS)}")
    out = np.empty((n, N_STATS), np.float32)
    if n == 0:
        return out
    xc = np.empty((h, w), np.float32)
    tmp = np.empty((h, w), np.float32)
    dv = np.empty((h - 1, w), np.float32)
    dh = np.empty((h, w - 1), np.float32)
    u8 = np.empty((h, w), np.uint8)
    flat = xc.reshape(-1)
    size = h * w
    for i, im in enumerate(r):
        np.subtract(im[1:, :], im[:-1, :], out=dv)
        np.subtract(im[:, 1:], im[:, :-1], out=dh)
        parts = [
            _INTENSITY_HIST.log_frequencies(im, u8),
            _DIFF_HIST.log_frequencies(dv, u8[:-1, :]),
            _DIFF_HIST.log_frequencies(dh, u8[:, :-1]),
        ]
        mu = float(im.mean(dtype=np.float64))
        np.subtract(im, np.float32(mu), out=xc)
        var = float(np.dot(flat, flat)) / size + 1e-8
        corr = []
        for lag in _LAGS:
            # along the scan lines: the flat dot product at offset lag, less the pairs that
            # wrap from the end of one line to the start of the next
            wrap = float(np.einsum("ij,ij->", xc[:-1, w - lag :], xc[1:, :lag]))
            along = (float(np.dot(flat[lag:], flat[:-lag])) - wrap) / (h * (w - lag))
            across = float(np.dot(flat[lag * w :], flat[: -lag * w])) / ((h - lag) * w)
            corr += [along / var, across / var]
        np.multiply(xc, xc, out=tmp)
        sd = math.sqrt(var)
        skew = float(np.dot(tmp.reshape(-1), flat)) / size / sd**3
        parts.append(np.asarray([*corr, mu, sd, min(20.0, max(-20.0, skew))]))
        out[i] = np.concatenate(parts)
    return out


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _polar_pairs(n: int, radial: int, angular: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cell, bin)`` index pairs mapping rfft2 cells of an ``n x n`` image onto a polar grid.

    Every cell with radius in the grid goes to its bin, and every bin also receives the cell
    nearest its centre, so small-radius bins (fewer cells than angles) are never empty.
    """
    ky = np.fft.fftfreq(n, 1.0 / n)[:, None] * np.ones((1, n // 2 + 1))
    kx = np.arange(n // 2 + 1)[None, :] * np.ones((n, 1))
    r = np.hypot(ky, kx)
    theta = np.mod(np.degrees(np.arctan2(ky, kx)), 180.0)
    edges = np.geomspace(1.5, n / 2 * math.sqrt(2) + 0.5, radial + 1)
    rb = np.searchsorted(edges, r, side="right") - 1
    ab = np.minimum((theta / (180.0 / angular)).astype(np.int64), angular - 1)
    ok = (rb >= 0) & (rb < radial)
    cells = np.flatnonzero(ok)
    bins = (rb * angular + ab).ravel()[cells]
    rc = np.sqrt(edges[:-1] * edges[1:])
    ac = np.radians((np.arange(angular) + 0.5) * 180.0 / angular)
    cy = np.rint(np.outer(rc, np.sin(ac))).astype(np.int64)
    cx = np.rint(np.outer(rc, np.cos(ac))).astype(np.int64)
    # a 180-degree-equivalent point with kx >= 0 (the rfft half plane)
    neg = cx < 0
    cy[neg], cx[neg] = -cy[neg], -cx[neg]
    centre_cells = (np.mod(cy, n) * (n // 2 + 1) + cx).ravel()
    all_cells = np.concatenate([cells, centre_cells])
    all_bins = np.concatenate([bins, np.arange(radial * angular)])
    return all_cells.astype(np.int64), all_bins.astype(np.int64)


class ImageEncoder(nn.Module):
    """Normalised crops ``(N, 1, input_size, input_size)`` -> features ``(N, embed_dim)``."""

    cells: torch.Tensor
    bins: torch.Tensor
    counts: torch.Tensor
    window: torch.Tensor

    def __init__(self, config: ImageEncoderConfig, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        w = list(config.widths)
        u = config.unshuffle
        # space-to-depth first: every pixel still reaches the first layer (noise, blur and
        # atom shape are kept), at a quarter of the cost of a full-resolution convolution
        stages: list[nn.Module] = [_conv_bn(u * u, w[0], 1)]
        for i in range(1, len(w)):
            res = config.input_size // u >> i
            layers = [_conv_bn(w[i - 1], w[i], 2)]
            if res <= 16:  # extra depth where it is cheap
                layers.append(_conv_bn(w[i], w[i], 1))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        n = config.cache_size if config.global_features == "region" else config.input_size
        cells, bins = _polar_pairs(n, config.radial_bins, config.angular_bins)
        self.register_buffer("cells", torch.from_numpy(cells), persistent=False)
        self.register_buffer("bins", torch.from_numpy(bins), persistent=False)
        counts = np.bincount(bins, minlength=config.radial_bins * config.angular_bins)
        self.register_buffer(
            "counts", torch.from_numpy(counts.astype(np.float32)), persistent=False
        )
        hann = torch.hann_window(n, periodic=False, dtype=torch.float32)
        self.register_buffer("window", hann[:, None] * hann[None, :], persistent=False)
        n_spec = 2 * config.radial_bins * config.angular_bins
        self.spec_norm = nn.BatchNorm1d(n_spec)
        self.spec = nn.Sequential(
            nn.Linear(n_spec, config.spectral_hidden),
            nn.GELU(),
            nn.Linear(config.spectral_hidden, config.spectral_hidden),
            nn.GELU(),
        )
        self.stats_norm = nn.BatchNorm1d(N_STATS)
        self.stats = nn.Sequential(
            nn.Linear(N_STATS, config.stats_hidden),
            nn.GELU(),
            nn.Linear(config.stats_hidden, config.stats_hidden),
            nn.GELU(),
        )
        n_cnn = 2 * sum(w)
        n_all = n_cnn + config.spectral_hidden + config.stats_hidden
        self.fuse_norm = nn.BatchNorm1d(n_all)
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(n_all, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, embed_dim),
        )

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Polar log power spectrum ``(N, 2 * radial_bins * angular_bins)``: mean, then max."""
        c = self.config
        n = x.shape[0]
        xs = x[:, 0]
        xs = (xs - xs.mean(dim=(1, 2), keepdim=True)) * self.window
        p = torch.fft.rfft2(xs).abs().square().flatten(1) / float(xs.shape[-1] ** 2)
        logp = torch.log(p + 1e-6)[:, self.cells]
        nb = c.radial_bins * c.angular_bins
        idx = self.bins.expand(n, -1)
        mean = torch.zeros(n, nb, device=x.device, dtype=x.dtype).scatter_add_(1, idx, logp)
        mean = mean / self.counts
        mx = torch.full((n, nb), -30.0, device=x.device, dtype=x.dtype)
        mx = mx.scatter_reduce(1, idx, logp, reduce="amax", include_self=True)
        return torch.cat([mean, mx], dim=1)

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`texture_statistics` of ``(N, 1, H, W)`` regions, on ``x``'s device."""
        stats = texture_statistics(x.detach()[:, 0].float().cpu().numpy())
        return torch.from_numpy(stats).to(device=x.device, dtype=x.dtype)

    @torch.no_grad()
    def global_features(self, region: torch.Tensor) -> torch.Tensor:
        """The fixed (not learned) inputs of branches 2 and 3: polar spectrum and texture
        statistics of ``(N, 1, S, S)`` normalised regions, ``(N, n_spectrum + N_STATS)``. They
        do not change during training, so a trainer may compute them once."""
        return torch.cat([self.spectrum(region), self.statistics(region)], dim=1)

    def features_of(self, x: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        """:meth:`global_features` of the regions when ``global_features`` is ``"region"``
        and they are given, else of the crops ``x``."""
        use_region = self.config.global_features == "region" and region is not None
        return self.global_features(region if use_region and region is not None else x)

    def forward(
        self,
        x: torch.Tensor,
        region: torch.Tensor | None = None,
        *,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``: crops ``(N, 1, input_size, input_size)``; ``region``: the whole normalised
        regions ``(N, 1, cache_size, cache_size)`` they were cut from (for the spectrum and
        statistics when ``global_features`` is ``"region"``); or ``features``, those already
        computed by :meth:`global_features`."""
        if features is None:
            features = self.features_of(x, region)
        pooled = []
        h = F.pixel_unshuffle(x, self.config.unshuffle) if self.config.unshuffle > 1 else x
        h = h.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout on CPU
        for stage in self.stages:
            h = stage(h)
            m = h.mean(dim=(2, 3))
            m2 = (h * h).mean(dim=(2, 3))
            pooled += [m, (m2 - m * m).clamp_min(1e-8).sqrt()]
        n_spec = 2 * self.config.radial_bins * self.config.angular_bins
        s = self.spec(self.spec_norm(features[:, :n_spec]))
        t = self.stats(self.stats_norm(features[:, n_spec:]))
        feats = torch.cat([*pooled, s, t], dim=1)
        out: torch.Tensor = self.head(self.fuse_norm(feats))
        return out


# ------------------------------------------------------------------------------ joint model
class ContrastiveNet(nn.Module):
    """Both towers plus the learnable temperature (and SigLIP bias).

    ``logit_scale`` is ``log(1 / temperature)``; similarity logits are
    ``exp(logit_scale) * <image, metadata> + logit_bias`` (the bias is used by SigLIP only).

    With ``config.members`` k > 1 the net is an ensemble of k independently trained pairs of
    towers (``towers``; :meth:`from_members`). Its embeddings are the members' unit embeddings
    side by side, divided by sqrt(k): still unit vectors, of ``k * embed_dim`` values, whose dot
    products are the mean of the members' cosine similarities. So search, probes and the index
    use an ensemble as they use one model.
    """

    def __init__(self, config: ContrastiveConfig) -> None:
        super().__init__()
        if config.members < 1:
            raise ValueError(f"members must be at least 1, got {config.members}")
        self.config = config
        siglip = config.loss == "siglip"
        if config.members > 1:
            one = replace(config, members=1, trained_on={}, probes=[])
            self.towers = nn.ModuleList(ContrastiveNet(one) for _ in range(config.members))
        else:
            self.image = ImageEncoder(config.image, config.embed_dim)
            self.metadata = MetadataEncoder(config.metadata, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0 if siglip else 1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0 if siglip else 0.0))

    @classmethod
    def from_members(cls, members: Sequence[ContrastiveNet]) -> ContrastiveNet:
        """An ensemble of trained single nets of one config (fields fitted alike). Its
        temperature and bias are the members' means."""
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len(members) == 1:
            return members[0]
        base = replace(members[0].config, trained_on={}, probes=[])
        for m in members[1:]:
            if m.config.members != 1 or replace(m.config, trained_on={}, probes=[]) != base:
                raise ValueError("ensemble members must be single nets of one config")
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten: the
            net = cls(replace(members[0].config, members=len(members)))  # caller's RNG stays
        with torch.no_grad():
            for tower, m in zip(net._members(), members, strict=True):
                tower.load_state_dict(m.state_dict())
            net.logit_scale.copy_(torch.stack([m.logit_scale.exp() for m in members]).mean().log())
            net.logit_bias.copy_(torch.stack([m.logit_bias for m in members]).mean())
        return net.to(members[0].logit_scale.device)

    def _members(self) -> list[ContrastiveNet]:
        return [t for t in self.towers if isinstance(t, ContrastiveNet)]

    def encode_image(
        self,
        x: torch.Tensor,
        region: torch.Tensor | None = None,
        *,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(N, 1, H, W)`` normalised crops (and their regions or precomputed global
        features, see :meth:`ImageEncoder.forward`) -> ``(N, D)`` unit vectors."""
        if self.config.members > 1:
            towers = self._members()
            if features is None:  # the fixed transforms are the same for every member
                first: ImageEncoder = towers[0].image
                features = first.features_of(x, region)
            parts = [t.encode_image(x, features=features) for t in towers]
            return torch.cat(parts, dim=-1) / math.sqrt(len(parts))
        return F.normalize(self.image(x, region, features=features), dim=-1)

    def encode_metadata(self, enc: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Tensors of :meth:`EncodedMetadata.tensors` -> ``(N, D)`` unit vectors."""
        if self.config.members > 1:
            parts = [t.encode_metadata(enc) for t in self._members()]
            return torch.cat(parts, dim=-1) / math.sqrt(len(parts))
        return F.normalize(self.metadata(**enc), dim=-1)


# ------------------------------------------------------------------------------ probes
@dataclass
class LinearProbes:
    """Linear read-outs from image embeddings to metadata fields.

    Each probe is ``y = emb @ weight + bias`` with ``weight (D, k)``. Kinds:

    - ``"numeric"``: ``k = 1``, the field's value as encoded (``log10`` for log fields);
    - ``"angle"``: ``k = 2 * len(harmonics)``, ``cos(m theta), sin(m theta)`` for each
      harmonic m;
    - ``"categorical"``: ``k`` = number of classes, multinomial logits.

    ``info`` holds one JSON-able dict per probe: ``field``, ``kind``, ``log``, ``classes``,
    ``harmonics`` and held-out scores.
    """

    info: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.info)

    @property
    def fields(self) -> list[str]:
        return [str(p["field"]) for p in self.info]

    def raw(self, emb: np.ndarray, name: str) -> np.ndarray:
        """``(N, k)`` raw probe outputs for one field."""
        e = np.asarray(emb, np.float64)
        out: np.ndarray = e @ self.weights[name] + self.biases[name]
        return out

    def predict(self, emb: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted field values from image embeddings ``(N, D)``.

        Returns ``field -> (N,)`` arrays in the field's own units (log fields are returned
        as the value, not its log; angles in degrees from the first harmonic, in [0, 360));
        categories as an object array of class names, with ``field + "_probability"`` the
        winning class's softmax probability.
        """
        out: dict[str, np.ndarray] = {}
        for p in self.info:
            name = str(p["field"])
            y = self.raw(emb, name)
            if p["kind"] == "numeric":
                v = y[:, 0]
                out[name] = 10.0**v if p.get("log") else v
            elif p["kind"] == "angle":
                m = int(p["harmonics"][0])
                out[name] = np.mod(np.degrees(np.arctan2(y[:, 1], y[:, 0])) / m, 360.0 / m)
            else:
                z = y - y.max(axis=1, keepdims=True)
                pr = np.exp(z)
                pr /= pr.sum(axis=1, keepdims=True)
                k = pr.argmax(axis=1)
                out[name] = np.asarray(p["classes"], dtype=object)[k]
                out[name + "_probability"] = pr[np.arange(len(k)), k]
        return out

    def state(self) -> dict[str, torch.Tensor]:
        d: dict[str, torch.Tensor] = {}
        for name, wt in self.weights.items():
            d[f"probe.{name}.weight"] = torch.from_numpy(np.ascontiguousarray(wt, np.float32))
            d[f"probe.{name}.bias"] = torch.from_numpy(
                np.ascontiguousarray(self.biases[name], np.float32)
            )
        return d

    @classmethod
    def from_state(cls, info: list[dict[str, Any]], state: Mapping[str, torch.Tensor]) -> Any:
        w = {str(p["field"]): state[f"probe.{p['field']}.weight"].double().numpy() for p in info}
        b = {str(p["field"]): state[f"probe.{p['field']}.bias"].double().numpy() for p in info}
        return cls(info=list(info), weights=w, biases=b)


# ------------------------------------------------------------------------------ loaded model
def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ContrastiveModel:
    """A trained model ready to embed images and metadata into the joint space.

    Parameters
    ----------
    net
        The network (put into eval mode).
    probes
        Linear probes fitted on the training split, if any.
    device
        Default: CUDA when present, else CPU.

    Examples
    --------
    >>> model = ContrastiveModel.load("runs/contrastive/model.safetensors")  # doctest: +SKIP
    >>> img = model.embed_images(micrographs)  # (N, D), unit rows  # doctest: +SKIP
    >>> meta = model.embed_metadata(micrographs)  # same order  # doctest: +SKIP
    >>> (img * meta).sum(1)  # cosine similarity of each pair  # doctest: +SKIP
    """

    def __init__(
        self,
        net: ContrastiveNet,
        *,
        probes: LinearProbes | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = _device(device)
        self.net = net.to(self.device).eval()
        self.probes = probes if probes is not None else LinearProbes()

    @property
    def config(self) -> ContrastiveConfig:
        return self.net.config

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        return self.net.config.metadata.fields

    @property
    def embed_dim(self) -> int:
        """Length of the embeddings: ``embed_dim`` times the number of ensemble members."""
        return self.net.config.embed_dim * self.net.config.members

    # -- images
    @torch.no_grad()
    def embed_regions(self, regions: np.ndarray, *, batch_size: int = 128) -> np.ndarray:
        """Embed preprocessed regions ``(N, S, S)`` (see :func:`preprocess`) by their centre
        crop: ``(N, D)`` float32, unit rows."""
        n = self.config.image.input_size
        out = np.empty((len(regions), self.embed_dim), np.float32)
        for i in range(0, len(regions), batch_size):
            reg = np.asarray(regions[i : i + batch_size], np.float32)
            x = torch.from_numpy(np.ascontiguousarray(center_crop(reg, n)))[:, None]
            r = torch.from_numpy(reg)[:, None]
            emb = self.net.encode_image(x.to(self.device), r.to(self.device))
            out[i : i + len(reg)] = emb.float().cpu().numpy()
        return out

    def embed_images(
        self,
        images: Sequence[Micrograph | np.ndarray] | np.ndarray,
        *,
        batch_size: int = 128,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed images (micrographs or 2-D arrays; a 3-D array is a stack).

        Returns
        -------
        numpy.ndarray
            ``(N, D)`` float32, L2-normalised rows.
        """
        n = len(images)
        out = np.empty((n, self.embed_dim), np.float32)
        for i in range(0, n, batch_size):
            chunk = images[i : i + batch_size]
            regions = preprocess_batch(chunk, config=self.config.image)
            out[i : i + len(regions)] = self.embed_regions(regions, batch_size=batch_size)
            if progress is not None:
                progress(min(n, i + batch_size), n)
        return out

    # -- metadata
    def encode(
        self,
        items: Sequence[MetadataLike],
        *,
        pixel_size_nm: Sequence[float | None] | None = None,
    ) -> EncodedMetadata:
        """Metadata -> network inputs (fields, normalisation and vocabularies of this model)."""
        if pixel_size_nm is not None and len(pixel_size_nm) != len(items):
            raise ValueError(f"{len(pixel_size_nm)} pixel sizes for {len(items)} items")
        px = pixel_size_nm if pixel_size_nm is not None else [None] * len(items)
        recs = [metadata_record(it, pixel_size_nm=p) for it, p in zip(items, px, strict=True)]
        return encode_metadata(recs, self.fields)

    @torch.no_grad()
    def embed_encoded(self, enc: EncodedMetadata, *, batch_size: int = 4096) -> np.ndarray:
        out = np.empty((len(enc), self.embed_dim), np.float32)
        for i in range(0, len(enc), batch_size):
            part = enc.subset(np.arange(i, min(len(enc), i + batch_size)))
            out[i : i + len(part)] = (
                self.net.encode_metadata(part.tensors(self.device)).float().cpu().numpy()
            )
        return out

    def embed_metadata(
        self,
        items: Sequence[MetadataLike],
        *,
        pixel_size_nm: Sequence[float | None] | None = None,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Embed metadata records: :class:`Micrograph`, :class:`Acquisition`, or dicts with
        acquisition field names and ``pixel_size_nm`` (e.g. catalog rows). Missing keys are
        missing fields. ``pixel_size_nm`` (one per item, None to keep the item's own) supplies
        the pixel size, which an ``Acquisition`` does not carry.

        Returns
        -------
        numpy.ndarray
            ``(N, D)`` float32, L2-normalised rows.
        """
        enc = self.encode(items, pixel_size_nm=pixel_size_nm)
        return self.embed_encoded(enc, batch_size=batch_size)

    # -- predictions
    def predict(self, image_embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """Metadata predicted from image embeddings by the stored linear probes (see
        :meth:`LinearProbes.predict`). Raises :class:`ModelError` without probes."""
        if not len(self.probes):
            raise ModelError("this contrastive model has no linear probes; train it again")
        return self.probes.predict(image_embeddings)

    def logits(self, image_embeddings: np.ndarray, metadata_embeddings: np.ndarray) -> np.ndarray:
        """The training-time logits ``(N_images, N_metadata)``: scaled cosine plus bias."""
        s = float(self.net.logit_scale.detach().exp().clamp(max=100.0))
        b = float(self.net.logit_bias.detach()) if self.config.loss == "siglip" else 0.0
        out: np.ndarray = s * (image_embeddings @ metadata_embeddings.T) + b
        return out

    # -- storage
    def save(self, directory: str | Path, *, name: str = "model") -> Path:
        """Write ``name.safetensors`` (network and probe weights) and ``name.json`` (the whole
        config: architecture, fields with statistics and vocabularies, probe descriptions)
        atomically; return the weights path."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = replace(self.config, probes=list(self.probes.info))
        self.net.config = cfg
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        state.update(self.probes.state())
        weights = d / f"{name}.safetensors"
        tmp = weights.with_name(weights.name + f".tmp{os.getpid()}")
        save_file(state, str(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, weights)
        cfg_path = d / f"{name}.json"
        tmp_cfg = cfg_path.with_name(cfg_path.name + f".tmp{os.getpid()}")
        tmp_cfg.write_text(cfg.to_json())
        os.replace(tmp_cfg, cfg_path)
        return weights

    @classmethod
    def load(
        cls,
        weights: str | Path,
        *,
        sha256: str | None = None,
        device: str | torch.device | None = None,
    ) -> ContrastiveModel:
        """Load ``X.safetensors`` with its ``X.json`` config (see :func:`load_model`)."""
        return load_model(weights, sha256=sha256, device=device)


def load_model(
    weights: str | Path,
    *,
    sha256: str | None = None,
    device: str | torch.device | None = None,
) -> ContrastiveModel:
    """Load a contrastive model from ``X.safetensors`` and its ``X.json`` config.

    Raises
    ------
    ModelError
        Missing files, a hash mismatch, a config that is not a contrastive model or does not
        describe the weights, or a file that is not valid safetensors.
    """
    import hashlib

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    w = Path(weights)
    cfg_path = w.with_suffix(".json")
    if not w.is_file():
        raise ModelError("model weights not found", path=w)
    if not cfg_path.is_file():
        raise ModelError(f"model config {cfg_path.name} not found beside the weights", path=w)
    if sha256 is not None and hashlib.sha256(w.read_bytes()).hexdigest() != sha256:
        raise ModelError("model weights do not match their registered sha256", path=w)
    config = ContrastiveConfig.from_json(cfg_path.read_text(), source=str(cfg_path))
    net = ContrastiveNet(config)
    try:
        state = load_file(str(w))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"not valid safetensors: {e}", path=w) from None
    probe_state = {k: v for k, v in state.items() if k.startswith("probe.")}
    net_state = {k: v for k, v in state.items() if not k.startswith("probe.")}
    try:
        net.load_state_dict(net_state, strict=True)
        probes = LinearProbes.from_state(config.probes, probe_state)
    except (RuntimeError, KeyError) as e:
        msg = " ".join(str(e).split())[:300]
        raise ModelError(f"weights do not fit the config: {msg}", path=w) from None
    net.requires_grad_(False)  # a loaded model is for inference
    return ContrastiveModel(net, probes=probes, device=device)
