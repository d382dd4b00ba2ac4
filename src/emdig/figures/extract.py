"""Articles in, a dataset folder out: isolated, resumable runs through the foundation's runner.

Each article is read and analysed in a worker with time and memory limits, so a hostile PDF
costs one item. Every finished article leaves a marker under ``out/.emdig/`` keyed by the
article's content hash and the options; a re-run skips it, and the dataset files
(``figures.json``, tables, preview) are rebuilt from all markers, so nothing is lost or doubled.
Kept panels also go into the catalog as Micrographs with a literature :class:`~emdig.Source`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..batch import Outcome, Task, run_tasks
from ..catalog.records import image_record
from ..catalog.store import Catalog, FileRecord
from ..errors import EmdigError
from ..io import file_sha256
from ..io.limits import Limits
from ..micrograph import Acquisition, Micrograph, Source
from .articles import read_article
from .dataset import figure_record, panel_matches, write_dataset, write_figure_files
from .pipeline import analyse_figure

__all__ = [
    "ARTICLE_SUFFIXES",
    "ExtractOptions",
    "ExtractSummary",
    "acquisition_from_terms",
    "extract",
    "find_articles",
]

log = logging.getLogger(__name__)

ARTICLE_SUFFIXES = (".pdf", ".html", ".htm", ".xhtml", ".xml", ".nxml")
_VERSION = "figures-1"  # bump when the analysis changes, so old markers are not reused


@dataclass(frozen=True)
class ExtractOptions:
    """What to keep: panels whose caption or terms match every ``query`` term, of ``types``."""

    query: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    render_dpi: int = 200

    def key(self) -> str:
        blob = json.dumps([_VERSION, sorted(self.query), sorted(self.types), self.render_dpi])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(slots=True)
class ExtractSummary:
    """What a run did; ``failures`` are ``(path, error_code, message)``."""

    articles: int = 0
    skipped: int = 0
    figures: int = 0
    panels: int = 0
    calibrated: int = 0
    figures_without_image: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    dataset: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "articles": self.articles,
            "skipped_already_done": self.skipped,
            "figures": self.figures,
            "panels": self.panels,
            "calibrated_panels": self.calibrated,
            "figures_without_image": self.figures_without_image,
            "failures": [{"path": p, "error_code": c, "message": m} for p, c, m in self.failures],
            "preview": None if self.dataset is None else str(self.dataset),
        }


def find_articles(paths: Iterable[str | Path]) -> list[Path]:
    """Article files among ``paths``: files as given, folders searched recursively.

    In folders only files with an article suffix are taken (content is still sniffed when read).
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(
                q
                for q in p.rglob("*")
                if q.is_file() and q.suffix.lower() in ARTICLE_SUFFIXES and ".emdig" not in q.parts
            )
        else:
            found.append(p)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _stem(path: Path) -> str:
    name = path.parent.name if path.stem in ("article", "index", "fulltext") else path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "article"


def extract_job(payload: tuple[str, str, str, ExtractOptions]) -> dict[str, Any]:
    """Worker job: read one article, analyse its figures, write their files; return records."""
    path, display, out, options = payload
    p = Path(path)
    article = read_article(p, images_dir=p.parent)
    article.path = display
    stem = _stem(p)
    records: list[dict[str, Any]] = []
    no_image: list[str] = []
    for i, fig in enumerate(article.figures):
        number = fig.number or str(i + 1)
        if fig.image is None:
            no_image.append(number)
            log.info("%s: figure %s has no image; skipped", display, number)
            continue
        name = f"{stem}_fig{re.sub(r'[^A-Za-z0-9]+', '', number) or i + 1}"
        result = analyse_figure(
            fig.image, caption=fig.caption, name=name, query_terms=options.query
        )
        rec = figure_record(result, article=article, figure_number=number, image_url=fig.image_ref)
        keep = [
            i
            for i, mi in enumerate(rec["master_images"])
            if panel_matches(mi, query=options.query, types=options.types)
        ]
        if not keep:
            continue
        result.panels = [result.panels[i] for i in keep]
        rec["master_images"] = [rec["master_images"][i] for i in keep]
        write_figure_files(result, rec, out)
        records.append(rec)
    return {
        "article": {"path": display, "title": article.title, "doi": article.doi},
        "figures": records,
        "figures_without_image": no_image,
    }


_TERM_ACQ = (
    # (general term, mode, detector): the first hit wins, so specific terms come first
    ("HAADF-STEM", "STEM", "HAADF"),
    ("ADF-STEM", "STEM", "ADF"),
    ("ABF-STEM", "STEM", "ABF"),
    ("BF-STEM", "STEM", "BF"),
    ("STEM", "STEM", None),
    ("SAED", "diffraction", None),
    ("HRTEM", "TEM", None),
    ("TEM", "TEM", None),
    ("SEM", "SEM", None),
)


def acquisition_from_terms(terms: Sequence[str]) -> Acquisition:
    """What a panel's caption terms say about how it was recorded (mode and detector)."""
    upper = {t.upper() for t in terms}
    for term, mode, detector in _TERM_ACQ:
        if term.upper() in upper:
            return Acquisition(mode=mode, detector=detector)
    return Acquisition()


def _panel_file_record(out: Path, fig: dict[str, Any], mi: dict[str, Any]) -> FileRecord | None:
    from PIL import Image

    path = out / mi["panel_path"]
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            grey = np.asarray(im.convert("L"))
    except OSError as e:
        log.warning("%s: panel crop unreadable (%s); not catalogued", path, e)
        return None
    box = (
        mi["geometry"][0]["x"],
        mi["geometry"][0]["y"],
        mi["geometry"][3]["x"],
        mi["geometry"][3]["y"],
    )
    label = mi["subfigure_label"]["text"]
    m = Micrograph(
        pixels=grey,
        pixel_size_nm=mi.get("nm_per_px"),
        acquisition=acquisition_from_terms(mi["general"]),
        raw_metadata={
            "literature": {
                "doi": fig.get("doi"),
                "title": fig.get("title"),
                "licence": fig.get("license"),
                "figure": fig["figure_name"],
                "figure_number": fig.get("figure_number"),
                "label": label,
                "classification": mi["classification"],
                "calibration": mi.get("calibration"),
                "caption": mi["caption"],
                "keywords": mi["keywords"],
                "general": mi["general"],
            }
        },
        source=Source(
            path=str(path),
            sha256=hashlib.sha256(data).hexdigest(),
            format="png",
            signal=f"{fig['figure_name']} {label}",
            doi=fig.get("doi"),
            figure=fig["figure_name"],
            panel_box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
        ),
    )
    raw = json.dumps(m.raw_metadata, ensure_ascii=False)
    return FileRecord(
        path=str(path),
        sha256=m.source.sha256,
        size_bytes=len(data),
        mtime=path.stat().st_mtime,
        format="png",
        status="ok",
        images=[image_record(m, raw)],
    )


def _write_marker(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, ensure_ascii=False))
    os.replace(tmp, path)


def extract(
    paths: Sequence[str | Path],
    *,
    out: str | Path,
    options: ExtractOptions | None = None,
    catalog: Catalog | None = None,
    workers: int = 1,
    limits: Limits | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[Outcome], None] | None = None,
) -> ExtractSummary:
    """Build (or resume) a figures dataset in ``out`` from article files and folders.

    Parameters
    ----------
    paths
        PDF, HTML or JATS XML files, or folders of them (e.g. what ``figures fetch`` wrote).
    out
        The dataset folder.
    options
        Query terms and panel types to keep.
    catalog
        If given, kept panels are added as Micrographs (and the run is recorded).
    workers
        Worker processes.

    Returns
    -------
    ExtractSummary
        Counts and failures; ``dataset`` is the path of ``preview.html``.
    """
    opts = options or ExtractOptions()
    root = Path(out)
    marks = root / ".emdig" / "articles"
    marks.mkdir(parents=True, exist_ok=True)
    key = opts.key()
    summary = ExtractSummary()
    articles = find_articles(paths)
    tasks: list[Task] = []
    for p in articles:
        try:
            sha = file_sha256(p)
        except OSError as e:
            summary.failures.append((str(p), "io_error", f"{p}: cannot read: {e.strerror or e}"))
            continue
        if (marks / f"{sha}-{key}.json").exists():
            summary.skipped += 1
            continue
        tasks.append(Task(f"{sha}-{key}", (str(p), str(p), str(root), opts)))
    if on_total:
        on_total(len(tasks))
    run_id = None
    if catalog is not None:
        catalog.acquire_writer()
        run_id = catalog.start_run(
            "figures.extract", {"paths": [str(p) for p in paths], "out": str(root), **opts.__dict__}
        )

    def on_outcome(o: Outcome) -> None:
        if o.status == "ok":
            value = o.value
            summary.articles += 1
            if catalog is not None:
                with catalog.transaction():
                    for fig in value["figures"]:
                        for mi in fig["master_images"]:
                            rec = _panel_file_record(root, fig, mi)
                            if rec is not None:
                                catalog.add_file(rec, run_id)
                    catalog.record_items(run_id or 0, [(o.key, "ok", None, None, o.seconds)])
            _write_marker(marks / f"{o.key}.json", value)  # after the catalog: exactly once
        else:
            path = next((t.payload[1] for t in tasks if t.key == o.key), o.key)
            code = o.error_code or o.status
            summary.failures.append((path, code, o.message or o.status))
            if catalog is not None:
                with catalog.transaction():
                    catalog.record_items(run_id or 0, [(o.key, o.status, code, o.message, 0.0)])
        if on_progress:
            on_progress(o)

    status = "done"
    try:
        run_tasks(
            tasks,
            extract_job,
            on_outcome=on_outcome,
            workers=workers,
            limits=limits or Limits.from_env(),
        )
    except BaseException:
        status = "interrupted"
        raise
    finally:
        figures = _assemble(marks, key, summary)
        summary.dataset = write_dataset(figures, root, title=f"emdig figures: {root.name}")
        if catalog is not None and run_id is not None:
            catalog.finish_run(run_id, status, summary.to_dict())
            catalog.release_writer()
    return summary


def _assemble(marks: Path, key: str, summary: ExtractSummary) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for m in sorted(marks.glob(f"*-{key}.json")):
        try:
            value = json.loads(m.read_text())
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable marker (%s); its article will be redone next run", m, e)
            m.unlink(missing_ok=True)
            continue
        summary.figures_without_image += len(value.get("figures_without_image", []))
        for fig in value["figures"]:
            figures[fig["figure_name"]] = fig
            summary.figures += 1
            summary.panels += len(fig["master_images"])
            summary.calibrated += sum(
                mi.get("nm_per_px") is not None for mi in fig["master_images"]
            )
    return figures


def split_figure_file(
    image_path: str | Path,
    *,
    caption: str = "",
    out: str | Path,
    query_terms: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the figure steps on one figure image file and write a one-figure dataset to ``out``.

    Returns the figure's record (as written to ``figures.json``).
    """
    from ..io import read

    p = Path(image_path)
    rgb = _read_rgb(p)
    if rgb is None:  # not a plain raster: any format emdig reads, as grey
        rgb = read(p)[0].pixels
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem) or "figure"
    result = analyse_figure(rgb, caption=caption, name=name, query_terms=query_terms)
    rec = figure_record(result, figure_number=None, image_url=str(p))
    write_figure_files(result, rec, out)
    write_dataset({rec["figure_name"]: rec}, out, title=f"emdig figures: {p.name}")
    return rec


def _read_rgb(path: Path) -> np.ndarray | None:
    """PNG/JPEG/GIF/TIFF/BMP/WebP figures in colour, with the pixel budget checked first."""
    from PIL import Image, UnidentifiedImageError

    limit = Limits.from_env().max_pixels
    try:
        with Image.open(path) as im:
            if im.width * im.height > limit:
                from ..errors import TooLarge

                raise TooLarge(
                    f"{im.width}x{im.height} pixels exceed the budget of {limit:,}", path=path
                )
            if im.format not in ("PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP"):
                return None
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        return None
    except EmdigError:
        raise
    except OSError as e:
        from ..errors import CorruptFile

        raise CorruptFile(f"cannot decode the figure image: {e}", path=path) from None
