# SPDX-License-Identifier: GPL-3.0-or-later
"""Baselines for the particles benchmark: Gold Digger's inference cost and a tuned ``blob_log``.

Two reference points that ``bench/particles.py`` compares emdig's particle detector against.

1. **Gold Digger inference time** (:func:`time_golddigger`). Gold Digger (Jerez et al. 2021,
   MPFI) runs a pix2pix ``unet_256`` generator over non-overlapping 256x256 RGB tiles. Its
   trained weights are not public, so :class:`GoldDiggerUNet256` is the same architecture with
   random weights, written here from the published description; only the *compute* is
   measured, not the accuracy. The timed path is: floor-crop the image to whole tiles, cut the
   tiles, scale to [-1, 1], run the generator (``torch.no_grad``, model in **train mode** as
   Gold Digger's ``test.py`` runs without ``--eval``, so batch norm uses batch statistics and
   dropout is active), map back to uint8 and stitch. Not timed: Gold Digger's PNG writes and
   reads per tile, its Python start-up, and its OpenCV post-processing (green mask, contours,
   flood fill), so the number is a lower bound on its CPU wall time. Gold Digger also discards
   the right/bottom remainder of the image (up to 255 px each way), so it analyses fewer pixels
   than the image has: see ``analysed_fraction`` in the result.

2. **scikit-image ``blob_log``** (:func:`blob_log_detect`, :func:`tune_blob_log`): the classical
   Laplacian-of-Gaussian blob detector on the inverted, percentile-normalised micrograph (gold
   is dark). Its threshold, sigma range and overlap are grid-searched on the real MPFI
   immunogold images against the human annotations, scored with
   :func:`emdig.particles.evaluate.evaluate` (``classes_nm=(6, 12)``, ``region="hull"``;
   predictions classed 18 nm are dropped first, since the 18 nm label is not annotated). The
   search runs on crops around each image's annotated region (the hull plus its 50 px margin
   plus twice the largest LoG kernel radius, stretched with the whole image's grey levels, so
   detections inside the scored region are the same as on the whole image). Two numbers are
   reported, because an in-sample best over a grid flatters the baseline: the **in-sample**
   best (tuned and scored on all three images) and the **leave-one-image-out** score (tuned
   on two images, scored on the third).
   Final scores and wall times are measured on the whole images.

Run ``python bench/particles_baselines.py`` for a self-check that prints both.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage as ndi
from skimage.feature import blob_log
from torch import nn

from emdig.particles.annotations import Points, read_points_csv
from emdig.particles.evaluate import evaluate

__all__ = [
    "DATA_DIR",
    "DEFAULT_BLOB_PARAMS",
    "DEFAULT_GRID",
    "PIXEL_SIZE_NM",
    "GoldDiggerUNet256",
    "blob_log_detect",
    "info_strip_start",
    "load_immunogold",
    "score_blob_log",
    "time_golddigger",
    "tune_blob_log",
]

DATA_DIR = Path("/work/shared/data/immunogold")
PIXEL_SIZE_NM = 0.5587
CLASSES_NM: tuple[float, ...] = (6.0, 12.0, 18.0)
"""Nominal gold sizes a detection is classed into (18 nm exists but is not annotated)."""
SCORED_CLASSES_NM: tuple[float, ...] = (6.0, 12.0)
HULL_MARGIN_PX = 50.0
TILE = 256
SQRT2 = math.sqrt(2.0)

# ---------------------------------------------------------------------------------------------
# 1. Gold Digger's generator and inference path


class _UNetLevel(nn.Module):
    """One level of the pix2pix U-Net: down-sample, the inner levels, up-sample, concatenate.

    ``outer_nc`` is the channel count this level receives and returns to its parent (before
    the parent concatenates it with its own input), ``inner_nc`` the count after this level's
    down-sampling convolution.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        *,
        inner: nn.Module | None,
        input_nc: int | None = None,
        outermost: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        in_nc = outer_nc if input_nc is None else input_nc
        innermost = inner is None
        # Every convolution followed by batch norm has no bias (the norm's shift replaces it);
        # only the outermost transposed convolution, followed by Tanh, keeps one.
        down: list[nn.Module] = []
        if not outermost:
            down.append(nn.LeakyReLU(0.2, inplace=True))
        down.append(nn.Conv2d(in_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False))
        if not (outermost or innermost):
            down.append(nn.BatchNorm2d(inner_nc))
        up_in = inner_nc if innermost else inner_nc * 2  # the inner level concatenates
        up: list[nn.Module] = [nn.ReLU(inplace=True)]
        if outermost:
            up += [
                nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1),
                nn.Tanh(),
            ]
        else:
            up += [
                nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(outer_nc),
            ]
            if dropout:
                up.append(nn.Dropout(0.5))
        self.down = nn.Sequential(*down)
        self.inner = inner if inner is not None else nn.Identity()
        self.up = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.inner(self.down(x)))
        return y if self.outermost else torch.cat([x, y], dim=1)


class GoldDiggerUNet256(nn.Module):
    """Gold Digger's pix2pix generator: ``unet_256``, ngf 64, batch norm, dropout on.

    Eight stride-2 4x4 convolutions take a 256x256 tile to 1x1 (channels 64, 128, 256, 512,
    512, 512, 512, 512); eight stride-2 4x4 transposed convolutions take it back, each level's
    output concatenated with its input (the skip connection). Encoder blocks are
    LeakyReLU(0.2) + Conv + BatchNorm, without the activation on the outermost block and
    without the norm on the outermost and innermost; decoder blocks are ReLU + ConvTranspose +
    BatchNorm, plus Dropout(0.5) on the three innermost blocks after the bottleneck; the
    outermost decoder ends in Tanh. 3 channels in, 3 out, ~54.4 M parameters.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64) -> None:
        super().__init__()
        level = _UNetLevel(ngf * 8, ngf * 8, inner=None)  # innermost: 2x2 -> 1x1
        for _ in range(3):
            level = _UNetLevel(ngf * 8, ngf * 8, inner=level, dropout=True)
        level = _UNetLevel(ngf * 4, ngf * 8, inner=level)
        level = _UNetLevel(ngf * 2, ngf * 4, inner=level)
        level = _UNetLevel(ngf, ngf * 2, inner=level)
        self.model = _UNetLevel(
            out_channels, ngf, inner=level, input_nc=in_channels, outermost=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(x)
        return out

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _golddigger_pass(
    model: nn.Module, image: npt.NDArray[np.uint8], batch_size: int
) -> npt.NDArray[np.uint8]:
    """Gold Digger's path: floor-crop, cut into tiles, run the generator, stitch (no file I/O)."""
    h, w = (image.shape[0] // TILE) * TILE, (image.shape[1] // TILE) * TILE
    rows, cols = h // TILE, w // TILE
    cropped = image[:h, :w, :3]
    # (rows, cols, 256, 256, 3) view, as skimage.util.view_as_blocks gives
    tiles = cropped.reshape(rows, TILE, cols, TILE, 3).transpose(0, 2, 1, 3, 4)
    tiles = tiles.reshape(rows * cols, TILE, TILE, 3)
    out = np.empty_like(tiles)
    with torch.no_grad():
        for start in range(0, len(tiles), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size]))
            x = chunk.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # Normalize(0.5, 0.5)
            y = model(x)
            y8 = ((y.permute(0, 2, 3, 1) + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
            out[start : start + len(chunk)] = y8.numpy()
    stitched = out.reshape(rows, cols, TILE, TILE, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(stitched.reshape(h, w, 3))


def time_golddigger(
    image_hw: tuple[int, int] = (2115, 2048),
    *,
    threads: int = 2,
    repeats: int = 1,
    batch_size: int = 8,
    train_mode: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Wall time of Gold Digger's generator pass over one image of ``image_hw`` pixels.

    The image is random uint8 greyscale replicated to 3 channels (Gold Digger needs RGB); the
    generator has random weights, which does not change the compute. One untimed warm-up tile
    precedes the timed passes; ``seconds`` is the fastest of ``repeats`` full passes.

    Parameters
    ----------
    image_hw
        Image height and width in pixels (the MPFI micrographs are 2115 x 2048 with the info
        strip).
    threads
        ``torch.set_num_threads`` for the measurement (restored afterwards).
    repeats
        Number of timed passes.
    batch_size
        Tiles per forward call. Gold Digger's ``test.py`` uses 1; batching changes CPU
        throughput only a little and, in train mode, the batch-norm statistics (irrelevant
        for timing).
    train_mode
        True (default) runs the model in train mode as Gold Digger does (no ``--eval``).

    Returns
    -------
    dict
        ``seconds`` (best pass), ``seconds_all``, ``tiles``, ``params``, ``tiles_per_second``,
        ``analysed_hw`` (after the floor crop), ``analysed_fraction`` (of the image's
        pixels), ``threads``, ``batch_size``, ``train_mode``.
    """
    h, w = image_hw
    if h < TILE or w < TILE:
        raise ValueError(f"image_hw {image_hw} is smaller than one {TILE}x{TILE} tile")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = GoldDiggerUNet256()
        model.train(train_mode)
        rng = np.random.default_rng(seed)
        grey = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        image = np.repeat(grey[:, :, None], 3, axis=2)
        _golddigger_pass(model, image[:TILE, :TILE], 1)  # warm-up, untimed
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            stitched = _golddigger_pass(model, image, batch_size)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    tiles = (h // TILE) * (w // TILE)
    return {
        "seconds": min(times),
        "seconds_all": times,
        "tiles": tiles,
        "params": model.n_parameters(),
        "tiles_per_second": tiles / min(times),
        "analysed_hw": [int(stitched.shape[0]), int(stitched.shape[1])],
        "analysed_fraction": stitched.shape[0] * stitched.shape[1] / (h * w),
        "threads": threads,
        "batch_size": batch_size,
        "train_mode": train_mode,
    }


# ---------------------------------------------------------------------------------------------
# 2. scikit-image blob_log

DEFAULT_BLOB_PARAMS: dict[str, Any] = {
    "threshold": 0.18,
    "min_diameter_nm": 4.0,
    "max_diameter_nm": 21.0,
    "num_sigma": 8,
    "overlap": 0.5,
    "log_scale": True,
    "percentiles": (0.5, 99.5),
}
"""Defaults of :func:`blob_log_detect`; a ``params`` dict overrides any of them."""

DEFAULT_GRID: dict[str, Sequence[Any]] = {
    # on the scale-normalised LoG of the [0, 1] image; F1 peaks sharply, hence the fine steps
    "threshold": (0.10, 0.14, 0.16, 0.18, 0.20, 0.22, 0.25, 0.30),
    # (min_diameter_nm, max_diameter_nm, num_sigma), log-spaced sigmas: up to 15 nm (6 + 12 nm
    # particles), or up to 21 nm so that 18 nm particles are sized as such and dropped
    "sigma_range": ((3.0, 15.0, 8), (4.0, 21.0, 8), (5.0, 21.0, 8)),
    "overlap": (0.3, 0.6),
}
"""The search grid of :func:`tune_blob_log`: 8 x 3 x 2 = 48 settings."""


def info_strip_start(image: npt.NDArray[Any], *, dark_level: float = 20.0) -> int:
    """First row of the black information strip at the bottom (the height if there is none).

    The strip is the run of rows, counted up from the last one, in which most pixels are at or
    below ``dark_level`` (near-black); the white scale bar and text inside it are a minority.
    """
    dark = (np.asarray(image) <= dark_level).mean(axis=1) > 0.5
    n = dark.shape[0]
    start = n
    while start > 0 and dark[start - 1]:
        start -= 1
    return start


def _levels(image: npt.NDArray[Any], percentiles: Sequence[float]) -> tuple[float, float]:
    """The grey levels at the two percentiles."""
    lo, hi = np.percentile(image, [float(percentiles[0]), float(percentiles[1])])
    return float(lo), float(hi)


def _normalise(
    image: npt.NDArray[Any],
    percentiles: Sequence[float],
    levels: tuple[float, float] | None = None,
) -> npt.NDArray[np.float64]:
    """Inverted and percentile-stretched to [0, 1]: dark gold becomes bright."""
    img = np.asarray(image, dtype=np.float64)
    lo, hi = _levels(img, percentiles) if levels is None else levels
    span = max(hi - lo, 1e-12)
    out: npt.NDArray[np.float64] = np.clip((hi - img) / span, 0.0, 1.0)
    return out


def _log_response(
    norm: npt.NDArray[np.float64],
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    sigmas: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The scale-normalised LoG (``-sigma**2 * LoG``) at each blob, as ``blob_log`` computes it.

    Evaluated on a patch around each blob; the image is padded by symmetric reflection
    (scipy's ``reflect`` mode) so border values match the whole-image filter exactly.
    """
    if not len(rows):
        return np.empty(0)
    reach = int(4.0 * float(sigmas.max()) + 0.5) + 2  # scipy's kernel radius, truncate=4
    padded = np.pad(norm, reach, mode="symmetric")
    out = np.empty(len(rows))
    for k, (r, c, s) in enumerate(zip(rows, cols, sigmas, strict=True)):
        half = int(4.0 * s + 0.5) + 1
        patch = padded[
            r + reach - half : r + reach + half + 1, c + reach - half : c + reach + half + 1
        ]
        out[k] = -float(ndi.gaussian_laplace(patch, s)[half, half]) * s * s
    return out


def _class_of(diameter_nm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Nearest of :data:`CLASSES_NM` by log-ratio."""
    classes = np.asarray(CLASSES_NM)
    if not len(diameter_nm):
        return np.empty(0)
    k = np.abs(np.log(diameter_nm[:, None] / classes[None])).argmin(axis=1)
    return np.asarray(classes[k], dtype=np.float64)


def blob_log_detect(
    image: npt.NDArray[Any],
    *,
    pixel_size_nm: float,
    params: Mapping[str, Any] | None = None,
    image_name: str = "image",
    offset_xy: tuple[int, int] = (0, 0),
    levels: tuple[float, float] | None = None,
    with_score: bool = True,
) -> Points:
    """Detect dark gold particles with scikit-image ``blob_log``.

    The black information strip at the bottom (see :func:`info_strip_start`) is cut off; the
    rest is inverted and stretched between the given percentiles to [0, 1], and ``blob_log``
    runs over sigmas from ``min_diameter_nm`` to ``max_diameter_nm`` (``r = sqrt(2) sigma``,
    so ``sigma = d / (2 sqrt(2) * pixel_size_nm)``).

    Parameters
    ----------
    image
        2-D greyscale micrograph (any numeric dtype), gold dark.
    pixel_size_nm
        nm per pixel.
    params
        Overrides of :data:`DEFAULT_BLOB_PARAMS`: ``threshold`` (on the scale-normalised LoG of
        the [0, 1] image), ``min_diameter_nm``, ``max_diameter_nm``, ``num_sigma``, ``overlap``,
        ``log_scale``, ``percentiles``.
    image_name
        Value of the ``image`` column.
    offset_xy
        Added to the coordinates (for a crop of a larger image).
    levels
        Grey levels ``(lo, hi)`` to stretch between instead of the image's own percentiles
        (for a crop: the whole image's percentiles, so the crop sees the same values).
    with_score
        Compute ``score`` (the LoG response at the blob); NaN when False (faster).

    Returns
    -------
    Points
        ``x_px, y_px`` (column, row), ``diameter_nm = 2 sqrt(2) sigma * pixel_size_nm``,
        ``class_nm`` nearest of 6/12/18 nm by log-ratio, ``score`` the LoG response.
    """
    p = {**DEFAULT_BLOB_PARAMS, **(params or {})}
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {img.shape}")
    img = img[: info_strip_start(img)]
    if img.shape[0] < 3:
        return Points.empty()
    norm = _normalise(img, p["percentiles"], levels)
    to_sigma = 1.0 / (2.0 * SQRT2 * pixel_size_nm)
    blobs = blob_log(
        norm,
        min_sigma=float(p["min_diameter_nm"]) * to_sigma,
        max_sigma=float(p["max_diameter_nm"]) * to_sigma,
        num_sigma=int(p["num_sigma"]),
        threshold=float(p["threshold"]),
        overlap=float(p["overlap"]),
        log_scale=bool(p["log_scale"]),
    )
    rows = blobs[:, 0].astype(np.intp)
    cols = blobs[:, 1].astype(np.intp)
    sigma = blobs[:, 2].astype(np.float64)
    diameter = 2.0 * SQRT2 * sigma * pixel_size_nm
    score = _log_response(norm, rows, cols, sigma) if with_score else None
    return Points.create(
        image=image_name,
        x_px=cols + offset_xy[0],
        y_px=rows + offset_xy[1],
        diameter_nm=diameter,
        class_nm=_class_of(diameter),
        score=score,
    )


def _scored(pred: Points) -> Points:
    """Only the predictions classed 6 or 12 nm (the annotated classes)."""
    return pred[np.isin(pred.class_nm, SCORED_CLASSES_NM)]


def _mean_f1(report: Mapping[str, Any], images: Iterable[str]) -> float:
    f1s = [report["per_image"].get(im, {}).get("f1") or 0.0 for im in images]
    return float(np.mean(f1s)) if f1s else math.nan


def _grid_settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    settings = []
    for (dmin, dmax, ns), overlap, thr in itertools.product(
        grid["sigma_range"], grid["overlap"], grid["threshold"]
    ):
        settings.append(
            {
                "threshold": float(thr),
                "min_diameter_nm": float(dmin),
                "max_diameter_nm": float(dmax),
                "num_sigma": int(ns),
                "overlap": float(overlap),
            }
        )
    return settings


def _crop_box(image: npt.NDArray[Any], truth: Points, pad_px: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the annotations, padded, inside the image above the strip."""
    h = info_strip_start(image)
    w = image.shape[1]
    x0 = max(0, math.floor(truth.x_px.min()) - pad_px)
    y0 = max(0, math.floor(truth.y_px.min()) - pad_px)
    x1 = min(w, math.ceil(truth.x_px.max()) + pad_px + 1)
    y1 = min(h, math.ceil(truth.y_px.max()) + pad_px + 1)
    return x0, y0, x1, y1


_Crops = dict[str, tuple[npt.NDArray[Any], tuple[int, int], tuple[float, float]]]
_CROPS: _Crops = {}
"""The search crops of the current worker process (set by :func:`_init_worker`)."""


def _init_worker(crops: _Crops) -> None:
    _CROPS.clear()
    _CROPS.update(crops)


def _detect_crops(job: tuple[Mapping[str, Any], float]) -> Points:
    """All crops' detections for one setting (runs in a worker process)."""
    params, pixel_size_nm = job
    return Points.concat(
        [
            blob_log_detect(
                img,
                pixel_size_nm=pixel_size_nm,
                params=params,
                image_name=name,
                offset_xy=offset,
                levels=levels,
                with_score=False,
            )
            for name, (img, offset, levels) in _CROPS.items()
        ]
    )


def tune_blob_log(
    images: Mapping[str, npt.NDArray[Any]],
    truth: Points,
    *,
    pixel_size_nm: float,
    grid: Mapping[str, Sequence[Any]] | None = None,
    crop: bool = True,
    n_jobs: int = 2,
    verbose: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Grid-search ``blob_log`` settings for the best mean per-image detection F1.

    Each setting is scored with ``evaluate(pred, truth, classes_nm=(6, 12), region="hull")``
    after dropping predictions classed 18 nm; the objective is the mean over images of the
    per-image detection F1 (class ignored). With ``crop`` the detector runs on a crop around
    each image's annotations, padded by the hull margin plus 2x the largest LoG kernel radius
    and stretched with the whole image's grey levels, so that the scored region sees the same
    detections as the whole image would. The ``percentiles`` of :data:`DEFAULT_BLOB_PARAMS`
    are used (not searched).

    Parameters
    ----------
    images
        Image name (as in ``truth.image``) to 2-D greyscale array.
    truth
        The annotations.
    pixel_size_nm
        nm per pixel.
    grid
        ``threshold``, ``sigma_range`` (tuples ``(min_diameter_nm, max_diameter_nm,
        num_sigma)``) and ``overlap`` sequences; default :data:`DEFAULT_GRID`.
    crop
        Search on crops around the annotated regions (much faster).
    n_jobs
        Worker processes for the search (settings run in parallel; 1 runs in this process).
    verbose
        Print progress.

    Returns
    -------
    best, loo
        ``best``: the in-sample best ``params``, its ``mean_f1`` and ``per_image_f1`` (on the
        crops), ``n_settings`` and ``seconds`` of the search. ``loo``: per held-out image, the
        ``params`` chosen on the other images, their ``train_mean_f1``, and the held-out
        ``f1`` (on the crop); plus ``mean_f1`` over the held-out images. The ``table`` key of
        ``best`` has every setting's per-image F1, for other selections.
    """
    t_start = time.perf_counter()
    grid = DEFAULT_GRID if grid is None else grid
    settings = _grid_settings(grid)
    names = [n for n in truth.images() if n in images]
    if len(names) < 2:
        raise ValueError("need annotated images for at least two of the given images")
    max_dmax = max(float(s[1]) for s in grid["sigma_range"])
    max_sigma = max_dmax / (2.0 * SQRT2 * pixel_size_nm)
    pad = int(HULL_MARGIN_PX + 2 * math.ceil(4.0 * max_sigma) + 8)
    crops: _Crops = {}
    for name in names:
        img = np.asarray(images[name])
        levels = _levels(img[: info_strip_start(img)], DEFAULT_BLOB_PARAMS["percentiles"])
        if crop:
            x0, y0, x1, y1 = _crop_box(img, truth.select(image=name), pad)
            crops[name] = (img[y0:y1, x0:x1], (x0, y0), levels)
        else:
            crops[name] = (img, (0, 0), levels)

    f1 = np.zeros((len(settings), len(names)))
    n_jobs = max(1, min(int(n_jobs), len(settings)))
    jobs = [(params, pixel_size_nm) for params in settings]
    if n_jobs == 1:
        _init_worker(crops)
        results: Iterable[Points] = map(_detect_crops, jobs)
        pool = None
    else:
        # spawn, not fork: the parent may hold torch/OpenMP thread pools that fork breaks
        pool = ProcessPoolExecutor(
            max_workers=n_jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(crops,),
        )
        results = pool.map(_detect_crops, jobs)
    try:
        for i, pred in enumerate(results):
            report = evaluate(
                _scored(pred),
                truth,
                pixel_size_nm=pixel_size_nm,
                classes_nm=SCORED_CLASSES_NM,
                region="hull",
                margin_px=HULL_MARGIN_PX,
            )
            f1[i] = [report["per_image"].get(n, {}).get("f1") or 0.0 for n in names]
            if verbose and (i + 1) % 12 == 0:
                elapsed = time.perf_counter() - t_start
                print(f"  ... {i + 1}/{len(settings)} settings, {elapsed:.0f} s")
    finally:
        if pool is not None:
            pool.shutdown()
        _CROPS.clear()

    mean = f1.mean(axis=1)
    ib = int(np.argmax(mean))  # the first of equal bests, in grid order
    best = {
        "params": {**DEFAULT_BLOB_PARAMS, **settings[ib]},
        "mean_f1": float(mean[ib]),
        "per_image_f1": dict(zip(names, f1[ib].tolist(), strict=True)),
        "n_settings": len(settings),
        "seconds": time.perf_counter() - t_start,
        "table": [
            {"params": s, "per_image_f1": dict(zip(names, row.tolist(), strict=True))}
            for s, row in zip(settings, f1, strict=True)
        ],
    }
    loo: dict[str, Any] = {"folds": {}}
    for j, held in enumerate(names):
        train = [k for k in range(len(names)) if k != j]
        train_mean = f1[:, train].mean(axis=1)
        k = int(np.argmax(train_mean))
        loo["folds"][held] = {
            "params": {**DEFAULT_BLOB_PARAMS, **settings[k]},
            "train_mean_f1": float(train_mean[k]),
            "f1": float(f1[k, j]),
        }
    loo["mean_f1"] = float(np.mean([fold["f1"] for fold in loo["folds"].values()]))
    return best, loo


def score_blob_log(
    images: Mapping[str, npt.NDArray[Any]],
    truth: Points,
    params_by_image: Mapping[str, Mapping[str, Any]],
    *,
    pixel_size_nm: float,
) -> dict[str, dict[str, Any]]:
    """Run ``blob_log_detect`` on whole images (each with its own params) and score each.

    Returns, per image: ``report`` (the :func:`evaluate` dict for that image alone, 18 nm
    predictions dropped, hull region), ``seconds`` (wall time of the detection, scores
    included), ``n_detections`` (all classes, whole image), ``points`` (all detections),
    ``truth`` (that image's annotations) and ``params``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, params in params_by_image.items():
        t0 = time.perf_counter()
        pred = blob_log_detect(
            images[name], pixel_size_nm=pixel_size_nm, params=params, image_name=name
        )
        seconds = time.perf_counter() - t0
        report = evaluate(
            _scored(pred),
            truth.select(image=name),
            pixel_size_nm=pixel_size_nm,
            classes_nm=SCORED_CLASSES_NM,
            region="hull",
            margin_px=HULL_MARGIN_PX,
        )
        out[name] = {
            "report": report,
            "seconds": seconds,
            "n_detections": len(pred),
            "points": pred,
            "truth": truth.select(image=name),
            "params": dict(params),
        }
    return out


def load_immunogold(
    data_dir: Path = DATA_DIR,
) -> tuple[dict[str, npt.NDArray[np.uint8]], Points]:
    """The three MPFI images (2-D uint8, by file name) and their annotations."""
    from PIL import Image

    truth = read_points_csv(data_dir / "annotations.csv")
    images: dict[str, npt.NDArray[np.uint8]] = {}
    for name in truth.images():
        with Image.open(data_dir / "images" / name) as im:
            images[name] = np.asarray(im.convert("L"), dtype=np.uint8)
    return images, truth


# ---------------------------------------------------------------------------------------------
# self-check


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _params_text(p: Mapping[str, Any]) -> str:
    return (
        f"threshold={p['threshold']:g} d={p['min_diameter_nm']:g}-{p['max_diameter_nm']:g} nm "
        f"num_sigma={p['num_sigma']} overlap={p['overlap']:g}"
    )


def _print_table(title: str, results: Mapping[str, Mapping[str, Any]]) -> None:
    print(title)
    head = (
        f"  {'image':<8}{'n6':>4}{'n12':>4}{'pred':>6}{'P':>7}{'R':>7}{'F1det':>7}"
        f"{'F1_6':>7}{'F1_12':>7}{'|dd|nm':>8}{'dets':>6}{'sec':>6}"
    )
    print(head)
    for name, r in results.items():
        rep = r["report"]
        det, pc = rep["detection"], rep["per_class"]
        print(
            f"  {name:<8}{pc['6']['n_truth']:>4}{pc['12']['n_truth']:>4}"
            f"{rep['counts']['n_pred']:>6}{_fmt(det['precision']):>7}{_fmt(det['recall']):>7}"
            f"{_fmt(det['f1']):>7}{_fmt(pc['6']['f1']):>7}{_fmt(pc['12']['f1']):>7}"
            f"{_fmt(rep['diameter_error_nm']['median_abs'], '.2f'):>8}"
            f"{r['n_detections']:>6}{r['seconds']:>6.1f}"
        )
    pooled = evaluate(
        _scored(Points.concat([r["points"] for r in results.values()])),
        Points.concat([r["truth"] for r in results.values()]),
        pixel_size_nm=PIXEL_SIZE_NM,
        classes_nm=SCORED_CLASSES_NM,
        region="hull",
        margin_px=HULL_MARGIN_PX,
    )
    det, pc = pooled["detection"], pooled["per_class"]
    mean_f1 = np.mean([r["report"]["detection"]["f1"] or 0.0 for r in results.values()])
    print(
        f"  {'pooled':<8}{pc['6']['n_truth']:>4}{pc['12']['n_truth']:>4}"
        f"{pooled['counts']['n_pred']:>6}{_fmt(det['precision']):>7}{_fmt(det['recall']):>7}"
        f"{_fmt(det['f1']):>7}{_fmt(pc['6']['f1']):>7}{_fmt(pc['12']['f1']):>7}"
        f"{_fmt(pooled['diameter_error_nm']['median_abs'], '.2f'):>8}"
        f"   mean per-image F1det {mean_f1:.3f}"
    )


def main() -> None:
    """Print Gold Digger's timing and the tuned blob_log scores (in-sample and LOO)."""
    t_all = time.perf_counter()
    print("== Gold Digger unet_256 generator, random weights, 2115x2048 image, 2 threads ==")
    gd = time_golddigger((2115, 2048), threads=2, repeats=1, batch_size=8, train_mode=True)
    print(
        f"  params {gd['params']:,} ({gd['params'] / 1e6:.2f} M); {gd['tiles']} tiles of 256^2, "
        f"batch {gd['batch_size']}, train mode (as Gold Digger, no --eval)"
    )
    print(
        f"  {gd['seconds']:.1f} s per image ({gd['tiles_per_second']:.2f} tiles/s); analyses "
        f"{gd['analysed_hw'][0]}x{gd['analysed_hw'][1]} = {100 * gd['analysed_fraction']:.1f}% "
        "of the pixels (drops the right/bottom remainder; here that is the info strip)"
    )
    gd1 = time_golddigger((2115, 2048), threads=2, repeats=1, batch_size=1, train_mode=True)
    print(
        f"  batch 1 (Gold Digger's test.py): {gd1['seconds']:.1f} s per image "
        f"({gd1['tiles_per_second']:.2f} tiles/s); generator only, no tile PNG I/O or OpenCV"
    )

    images, truth = load_immunogold()
    names = truth.images()
    strips = {n: info_strip_start(images[n]) for n in names}
    print(f"\n== blob_log on {', '.join(names)} at {PIXEL_SIZE_NM} nm/px ==")
    print(f"  info strip starts at rows {strips}")
    grid = DEFAULT_GRID
    best, loo = tune_blob_log(images, truth, pixel_size_nm=PIXEL_SIZE_NM, grid=grid)
    print(
        f"  grid search: {best['n_settings']} settings on crops around the annotations, "
        f"{best['seconds']:.0f} s"
    )
    print(f"  in-sample best: {_params_text(best['params'])}")
    print(
        "  crop mean F1det "
        f"{best['mean_f1']:.3f} ("
        + ", ".join(f"{k} {v:.3f}" for k, v in best["per_image_f1"].items())
        + ")"
    )

    ins = score_blob_log(
        images, truth, dict.fromkeys(names, best["params"]), pixel_size_nm=PIXEL_SIZE_NM
    )
    _print_table("\n  In-sample (tuned on all 3, whole images; hull region, 6+12 nm):", ins)

    print("\n  Leave-one-image-out (tuned on the other 2):")
    for n, fold in loo["folds"].items():
        print(
            f"    {n:<8} {_params_text(fold['params'])}  "
            f"train F1 {fold['train_mean_f1']:.3f}, held-out crop F1 {fold['f1']:.3f}"
        )
    # a fold that chose the in-sample best reuses that run (same detections)
    rerun = {n: f["params"] for n, f in loo["folds"].items() if f["params"] != best["params"]}
    fresh = score_blob_log(images, truth, rerun, pixel_size_nm=PIXEL_SIZE_NM)
    held = {n: fresh[n] if n in fresh else ins[n] for n in names}
    _print_table("\n  LOO held-out scores (whole images):", held)
    print(
        "\n  n6/n12 annotated particles; pred = detections classed 6/12 nm inside the hull region;"
        "\n  P/R/F1det detection ignoring class; F1_6/F1_12 class must agree; |dd|nm median"
        "\n  absolute diameter error of matched pairs; dets = all detections in the whole image"
        "\n  (incl. 18 nm, outside the region); sec = blob_log_detect wall time (1 process)."
    )
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
