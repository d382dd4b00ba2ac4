"""The ``emdig`` command line: thin shells over the library, with progress bars and tables."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import __version__
from ._cli_common import (
    EXIT_ERROR,
    EXIT_FAILED_ITEMS,
    CatalogOpt,
    JsonOpt,
    SearchOpt,
    WhereOpt,
    _fail,
    _on_sigterm,
    _open_catalog,
    _Terminated,
    err,
    out,
    progress_bar,
)
from ._cli_contrastive import contrastive_app, search_cmd
from ._cli_figures import figures_app
from ._demo import demo_contrastive, demo_figures
from .batch import run_isolated
from .catalog.report import write_report
from .catalog.store import COLUMNS, Catalog, default_catalog_path
from .errors import EmdigError, MissingCalibration
from .ingest import IngestSummary, describe_file, ingest
from .io.limits import Limits

app = typer.Typer(
    help="emdig: turn electron-microscopy images into searchable, measured datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(
    help="Query the catalog: list, show, stats, report.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(figures_app, name="figures")
app.add_typer(contrastive_app, name="contrastive")
app.command("search")(search_cmd)


def _version(value: bool) -> None:
    if value:
        out.print(f"emdig {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# ------------------------------------------------------------------------------ ingest
def _summary_table(s: IngestSummary) -> Table:
    t = Table(title=f"Ingest run {s.run_id}", show_header=True, header_style="bold")
    t.add_column("outcome")
    t.add_column("files", justify="right")
    t.add_row("read", f"{s.read} ({s.images} images)")
    t.add_row("skipped, already present", str(s.skipped + s.duplicates))
    if s.previously_failed:
        t.add_row("skipped, failed before (--retry-failed)", str(s.previously_failed))
    if s.companions:
        t.add_row("TIA .ser read with their .emi", str(s.companions))
    if s.ignored:
        t.add_row("ignored (sidecar/hidden files)", str(s.ignored))
    for code, n in sorted(s.failed.items()):
        t.add_row(f"[red]failed: {code}[/]", str(n))
    t.caption = f"{s.seconds:.1f} s"
    return t


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders or ZIP archives.")],
    catalog: CatalogOpt = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=1, help="Worker processes (default: one per core)."),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask", metavar="ADDRESS", help="Run on a Dask scheduler, e.g. tcp://host:8786."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed to read one file.")] = 60.0,
    memory_gb: Annotated[float, typer.Option("--memory-gb", help="Memory limit per worker.")] = 6.0,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Read files that failed before again.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Read files into the catalog, each in an isolated worker; re-run to resume.

    Exit status: 0 all read, 3 some files failed, 130 interrupted.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    limits = replace(Limits.from_env(), seconds=timeout, memory_bytes=int(memory_gb * 1024**3))
    quiet = as_json or (not err.is_terminal and os.environ.get("CI") is not None)
    try:
        cat = _open_catalog(catalog, create=True)
    except EmdigError as e:
        raise _fail(e) from None
    progress = Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task("ingest", total=None, info="walking folders…")

    def on_progress(_o: object, s: IngestSummary) -> None:
        progress.update(task, advance=1, info=f"{s.read} read, {s.n_failed} failed")

    try:
        with progress, cat:
            summary = ingest(
                paths,
                catalog=cat,
                workers=workers,
                dask_address=dask,
                limits=limits,
                retry_failed=retry_failed,
                on_total=lambda n: progress.update(task, total=n, info=""),
                on_progress=on_progress,
            )
    except EmdigError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err.print(
            "[yellow]interrupted[/]: finished files are saved; run the same command to resume"
        )
        raise typer.Exit(130) from None
    except _Terminated:
        err.print("[yellow]terminated[/]: finished files are saved; run the same command to resume")
        raise typer.Exit(143) from None
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    else:
        out.print(_summary_table(summary))
        for _path, code, message in summary.failures[:20]:
            out.print(f"[red]{code}[/] {message}", highlight=False, soft_wrap=True)
        if len(summary.failures) > 20:
            out.print(f"… and {len(summary.failures) - 20} more: emdig catalog stats")
    raise typer.Exit(EXIT_FAILED_ITEMS if summary.n_failed else 0)


# -------------------------------------------------------------------------------- info
@app.command("info")
def info_cmd(
    file: Annotated[Path, typer.Argument(help="Any file emdig reads.")],
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds allowed to read the file.")] = 60.0,
) -> None:
    """Print a file's normalized metadata, calibration and image statistics."""
    limits = replace(Limits.from_env(), seconds=timeout)
    o = run_isolated(describe_file, (str(file), limits), key=str(file), limits=limits)
    if o.status != "ok":
        msg = o.message or o.status
        if o.status in ("timeout", "crashed"):
            msg = f"{file}: {msg}"
        if as_json:
            out.print_json(
                json.dumps({"path": str(file), "error_code": o.error_code, "error": msg})
            )
        else:
            err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)
    d: dict[str, Any] = o.value
    if as_json:
        out.print_json(json.dumps(d))
        return
    out.print(
        f"[bold]{d['path']}[/]  {d['format']}, {d['size_bytes']:,} bytes, "
        f"sha256 {d['sha256'][:16]}…, {len(d['images'])} image(s)",
        highlight=False,
    )
    if not d["images"]:
        out.print("no 2-D images (spectra, profiles and 4-D data are skipped)")
    for im in d["images"]:
        t = Table(
            title=f"image {im['index']}" + (f" · {im['signal']}" if im["signal"] else ""),
            show_header=False,
            title_justify="left",
        )
        t.add_column(style="bold")
        t.add_column()
        t.add_row("shape", f"{im['shape'][0]} × {im['shape'][1]} {im['dtype']}")
        px = im["pixel_size_nm"]
        t.add_row("pixel size", "uncalibrated" if px is None else f"{px:.6g} nm")
        if im["field_of_view_nm"]:
            t.add_row(
                "field of view", " × ".join(f"{v:.4g}" for v in im["field_of_view_nm"]) + " nm"
            )
        for k, v in im["acquisition"].items():
            if v is not None:
                t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
        s = im["stats"]
        if s:
            t.add_row(
                "pixels",
                f"min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}  std {s['std']:.6g}",
            )
        out.print(t)


# ----------------------------------------------------------------------------- catalog
_LIST_COLUMNS = (
    "id",
    "file",
    "signal",
    "mode",
    "detector",
    "voltage_kv",
    "magnification",
    "pixel_size_nm",
    "height",
    "width",
)


@catalog_app.command("list")
def catalog_list(
    catalog: CatalogOpt = None,
    where: WhereOpt = None,
    search: SearchOpt = None,
    order: Annotated[str | None, typer.Option("--order", help="e.g. 'voltage_kv desc'.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most rows.")] = 50,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
) -> None:
    """List micrographs, filtered by --where and --search.

    Columns for --where and --order:"""
    try:
        with _open_catalog(catalog, create=False) as cat:
            rows = cat.select(where=where, search=search, order=order, limit=limit)
            total = cat.count(where=where, search=search)
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if as_csv:
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else list(_LIST_COLUMNS))
        w.writeheader()
        w.writerows(rows)
        return
    t = Table(caption=f"{len(rows)} of {total} micrographs", header_style="bold")
    for r in rows:  # the table shows the file name; --csv and --json give the full path
        r["file"] = r["path"].rsplit("/", 1)[-1]
    for c in _LIST_COLUMNS:
        t.add_column(c, overflow="fold", justify="left" if c in ("file", "signal") else "right")
    for r in rows:
        t.add_row(
            *(
                ("–" if r[c] is None else f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]))
                for c in _LIST_COLUMNS
            )
        )
    out.print(t)


catalog_list.__doc__ = (
    (catalog_list.__doc__ or "").rstrip() + " " + ", ".join(sorted(COLUMNS)) + "."
)


@catalog_app.command("show")
def catalog_show(
    micrograph_id: Annotated[int, typer.Argument(metavar="ID", help="Micrograph id (from list).")],
    catalog: CatalogOpt = None,
    raw: Annotated[bool, typer.Option("--raw", help="Include the raw metadata tree.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one micrograph: normalized metadata, calibration, statistics, source."""
    try:
        with _open_catalog(catalog, create=False) as cat:
            d = cat.get(micrograph_id)
    except EmdigError as e:
        raise _fail(e) from None
    if d is None:
        err.print(f"[bold red]error:[/] no micrograph with id {micrograph_id}")
        raise typer.Exit(EXIT_ERROR)
    if not raw:
        d.pop("raw_metadata")
    if as_json:
        out.print_json(json.dumps(d))
        return
    t = Table(title=f"micrograph {micrograph_id}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in d.items():
        if k in ("raw_metadata", "source") or v is None:
            continue
        t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    out.print(t)
    if raw:
        out.print_json(json.dumps(d["raw_metadata"]))


@catalog_app.command("stats")
def catalog_stats(
    catalog: CatalogOpt = None,
    where: WhereOpt = None,
    search: SearchOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Counts of files and micrographs by format, mode, detector and voltage; failures by reason."""
    try:
        with _open_catalog(catalog, create=False) as cat:
            st = cat.stats(where=where, search=search)
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(st))
        return
    out.print(
        f"[bold]{st['micrographs']}[/] micrographs ({st['calibrated']} with a pixel size) "
        f"from {st['files'].get('ok', 0)} files; {st['files'].get('failed', 0)} files failed"
    )
    for key, title in (
        ("by_format", "format"),
        ("by_mode", "mode"),
        ("by_detector", "detector"),
        ("by_voltage_kv", "voltage (kV)"),
        ("errors", "failed files by reason"),
    ):
        if not st[key]:
            continue
        t = Table(title=title, title_justify="left", show_header=False)
        t.add_column()
        t.add_column(justify="right")
        for k, n in st[key].items():
            t.add_row(k, str(n))
        out.print(t)


@catalog_app.command("report")
def catalog_report(
    catalog: CatalogOpt = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "emdig-report.html"
    ),
    limit: Annotated[int, typer.Option(help="Most thumbnails shown.")] = 200,
) -> None:
    """Write an HTML overview of the catalog: counts, failures and thumbnails."""
    try:
        with _open_catalog(catalog, create=False) as cat:
            path = write_report(cat, output, limit=limit)
    except EmdigError as e:
        raise _fail(e) from None
    out.print(f"report written to [bold]{path}[/]")


# --------------------------------------------------------------------------- particles
particles_app = typer.Typer(
    help="Immunogold particles: detect, train, evaluate, synth.", no_args_is_help=True
)
app.add_typer(particles_app, name="particles")


def _classes(text: str) -> tuple[float, ...]:
    try:
        values = tuple(sorted(float(v) for v in text.split(",") if v.strip()))
    except ValueError:
        raise typer.BadParameter(
            f"--classes takes sizes in nm like 6,12,18, not {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise typer.BadParameter("--classes needs at least one positive size in nm")
    return values


@particles_app.command("detect")
def particles_detect(
    images: Annotated[list[Path], typer.Argument(help="Image files (any format emdig reads).")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("particles"),
    mask: Annotated[
        Path | None,
        typer.Option(
            help="Region of interest: binary image (white = inside), polygon CSV or ImageJ ROI."
        ),
    ] = None,
    pixel_size_nm: Annotated[
        float | None,
        typer.Option(
            "--pixel-size-nm", min=1e-6, help="nm per pixel, for files without calibration."
        ),
    ] = None,
    classes: Annotated[str, typer.Option(help="Nominal sizes in nm.")] = "6,12,18",
    nominal_classes: Annotated[
        bool,
        typer.Option(
            "--nominal-classes",
            help="Class by the nearest nominal size; default: by the sizes fitted to each image.",
        ),
    ] = False,
    model: Annotated[
        str, typer.Option(help="Registry name or .safetensors path.")
    ] = "particles-default",
    threshold: Annotated[
        float | None,
        typer.Option(min=0.01, max=0.99, help="Peak probability (default: the model's)."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Also write 'golddigger' CSVs.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1)] = 1,
    catalog: CatalogOpt = None,
) -> None:
    """Detect, size (nm) and class gold particles; write CSV, overlay, histogram and summary."""
    from .particles.pipeline import DetectOptions, detect_files

    if fmt not in (None, "golddigger"):
        raise typer.BadParameter("--format takes only 'golddigger'")
    opts = DetectOptions(
        model=model,
        classes_nm=_classes(classes),
        pixel_size_nm=pixel_size_nm,
        mask=str(mask) if mask else None,
        threshold=threshold,
        adaptive_classes=not nominal_classes,
        golddigger=fmt == "golddigger",
    )
    progress = progress_bar("detect")
    task = progress.add_task("detect", total=None)
    try:
        with progress, _open_catalog(catalog, create=True) as cat:
            s = detect_files(
                images,
                out=output,
                options=opts,
                catalog=cat,
                workers=workers,
                on_total=lambda n: progress.update(task, total=n),
                on_progress=lambda _o: progress.advance(task),
            )
    except EmdigError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished images are saved; run again to resume")
        raise typer.Exit(130) from None
    t = Table(
        title=f"particles ({s.analysed} analysed, {s.skipped} files already done)",
        header_style="bold",
    )
    cls = opts.classes_nm
    for c in ("image", *(f"{c:g} nm" for c in cls), "µm²", *(f"{c:g} nm/µm²" for c in cls)):
        t.add_column(c, justify="left" if c == "image" else "right")
    for r in s.rows:
        t.add_row(
            str(r["image"]),
            *(str(r[f"n_{c:g}nm"]) for c in cls),
            f"{r['region_um2']:.3g}",
            *(f"{r[f'density_{c:g}nm_per_um2'] or 0:.3g}" for c in cls),
        )
    out.print(t)
    for _path, code, message in s.failures:
        err.print(f"[red]{code}[/] {message}", highlight=False, soft_wrap=True)
    out.print(f"outputs in [bold]{output}[/] (summary.csv, per-image CSV, overlay, histogram)")
    raise typer.Exit(EXIT_FAILED_ITEMS if s.failures else 0)


@particles_app.command("train")
def particles_train(
    output: Annotated[Path, typer.Option("--out", "-o", help="Folder for the checkpoints.")],
    annotations: Annotated[
        Path | None, typer.Option(help="Point CSV, ImageJ results (µm) or ROI zip.")
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option("--image", "-i", help="Annotated image (repeat); names must match."),
    ] = None,
    pixel_size_nm: Annotated[
        float | None,
        typer.Option("--pixel-size-nm", help="For images or annotations without calibration."),
    ] = None,
    synthetic: Annotated[int, typer.Option(help="Synthetic images to add.")] = 48,
    init: Annotated[
        str, typer.Option(help="Fine-tune from this model ('none' to start fresh).")
    ] = "particles-default",
    steps: Annotated[int, typer.Option(min=1)] = 1000,
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Synthetic images held out for validation.")
    ] = 0.15,
    seed: Annotated[int, typer.Option()] = 0,
    verifier: Annotated[
        bool,
        typer.Option(
            help="Train the full-resolution verifier that rejects look-alikes (after the heat map)."
        ),
    ] = True,
    verifier_steps: Annotated[int, typer.Option(min=1)] = 1000,
) -> None:
    """Train or fine-tune a particle model on synthetic and/or annotated images.

    The heat-map network is trained first; then (unless --no-verifier) the verifier, on the
    heat map's own candidates in the same annotated and synthetic images.
    """
    from .io import read
    from .models.registry import resolve_model
    from .particles.annotations import read_annotations
    from .particles.evaluate import evaluate
    from .particles.model import ModelConfig, load_model
    from .particles.train import samples_from_annotations, synthetic_samples, train

    try:
        base = None
        if init != "none":
            weights, sha = resolve_model(init, task="particles")
            base = load_model(weights, sha256=sha)
        config = base.config if base is not None else ModelConfig()
        samples = []
        imgs: dict[str, tuple[Any, float]] = {}
        if annotations is not None:
            pts = read_annotations(annotations, pixel_size_nm=pixel_size_nm)
            for p in images or []:
                found = read(p)
                if not found:
                    raise EmdigError("contains no 2-D image", path=p)
                m = found[0]
                px = m.pixel_size_nm or pixel_size_nm
                if px is None:
                    raise MissingCalibration("has no pixel size; pass --pixel-size-nm", path=p)
                imgs[p.name] = (m.pixels, px)
            samples += samples_from_annotations(pts, imgs, config=config)
            if not samples:
                raise typer.BadParameter("no annotated point matches an --image file name")
        n_val = round(synthetic * val_fraction) if synthetic else 0
        samples += synthetic_samples(synthetic - n_val, seed=seed, config=config)
        val = synthetic_samples(n_val, seed=seed + 7919, config=config) if n_val else []
    except EmdigError as e:
        raise _fail(e) from None

    def validate(model: Any) -> dict[str, float]:
        from .particles.detect import detect

        preds, truths = [], []
        for k, s in enumerate(val):
            from .particles.annotations import Points

            r = detect(s.image, pixel_size_nm=config.pixel_size_nm, model=model, name=f"v{k}")
            preds.append(r.points)
            truths.append(
                Points.create(image=f"v{k}", x_px=s.x, y_px=s.y, diameter_nm=s.diameter_nm)
            )
        if not preds:
            return {}
        e = evaluate(
            Points.concat(preds), Points.concat(truths), pixel_size_nm=config.pixel_size_nm
        )
        return {"val_f1": e["detection"]["f1"] or 0.0}

    progress = progress_bar("train", info=True)
    task = progress.add_task("train", total=steps, info="")

    def on_step(step: int, total: int, losses: dict[str, float]) -> None:
        progress.update(task, completed=step, info=f"loss {losses['loss']:.3f}")

    with progress:
        model, history = train(
            samples,
            config=config,
            init=base,
            steps=steps,
            seed=seed,
            out=output,
            validate=validate if val else None,
            every=max(1, steps // 4),
            progress=on_step,
            lr=5e-4 if base is not None else 2e-3,
        )
        if verifier:
            from .particles.model import add_verifier, save_model
            from .particles.verify import annotated_items, synthetic_items, train_verifier

            model = add_verifier(model)
            items = annotated_items(pts, imgs) if imgs else []
            items += synthetic_items(synthetic - n_val, seed=seed) if synthetic else []
            vtask = progress.add_task("verifier", total=verifier_steps, info="")

            def on_vstep(step: int, total: int, losses: dict[str, float]) -> None:
                progress.update(vtask, completed=step, info=f"loss {losses['loss']:.3f}")

            try:
                train_verifier(model, items, steps=verifier_steps, seed=seed, progress=on_vstep)
            except ValueError as e:
                raise _fail(EmdigError(f"{e}; pass --no-verifier", path=output)) from None
            save_model(model, output)
    last = history[-1]
    out.print(
        f"saved [bold]{output / 'model.safetensors'}[/] (+ model.json); last: "
        + ", ".join(f"{k} {v:.3f}" for k, v in last.items() if isinstance(v, float))
    )


@particles_app.command("evaluate")
def particles_evaluate(
    pred: Annotated[Path, typer.Argument(help="Detections: CSV, ImageJ results or ROI zip.")],
    truth: Annotated[Path, typer.Option("--truth", help="Ground truth, same formats.")],
    pixel_size_nm: Annotated[float | None, typer.Option("--pixel-size-nm")] = None,
    classes: Annotated[str, typer.Option(help="Classes scored, nm.")] = "6,12,18",
    region: Annotated[
        str | None,
        typer.Option(help="'hull': only predictions within the dilated convex hull of the truth."),
    ] = None,
    margin_px: Annotated[float, typer.Option(help="Hull dilation, px.")] = 50.0,
    radius_px: Annotated[
        float | None, typer.Option(help="Match radius [default: half the class diameter].")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Precision, recall and F1 per class, class confusion and diameter error."""
    from .particles.annotations import read_annotations
    from .particles.evaluate import evaluate

    if region not in (None, "hull"):
        raise typer.BadParameter("--region takes only 'hull'")
    try:
        p = read_annotations(pred, pixel_size_nm=pixel_size_nm)
        t = read_annotations(truth, pixel_size_nm=pixel_size_nm)
        px = pixel_size_nm or 1.0
        e = evaluate(
            p,
            t,
            pixel_size_nm=px,
            classes_nm=_classes(classes),
            radius_px=radius_px,
            region=region,
            margin_px=margin_px,
        )
    except EmdigError as ex:
        raise _fail(ex) from None
    if as_json:
        out.print_json(json.dumps(e))
        return
    tb = Table(title="particle detection vs truth", header_style="bold")
    for c in ("class", "precision", "recall", "F1", "tp", "fp", "fn"):
        tb.add_column(c, justify="right")

    def fmt(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for name, d in [
        ("any (detection)", e["detection"]),
        ("with class", e["classified"]),
        *((f"{k} nm", v) for k, v in e["per_class"].items()),
    ]:
        tb.add_row(name, *(fmt(d.get(k)) for k in ("precision", "recall", "f1", "tp", "fp", "fn")))
    out.print(tb)
    de = e["diameter_error_nm"]
    out.print(
        f"diameter error over {de['n']} matched: median |error| {fmt(de['median_abs'])} nm, "
        f"mean signed {fmt(de['mean_signed'])} nm"
    )


@particles_app.command("synth")
def particles_synth(
    n: Annotated[int, typer.Option("--n", min=1, help="Images to write.")] = 8,
    output: Annotated[Path, typer.Option("--out", "-o")] = Path("synthetic-fril"),
    size: Annotated[int, typer.Option(help="Image side, px.")] = 1024,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write synthetic FRIL images (TIFF with pixel size) and their ground truth CSV."""
    import tifffile

    from .particles.annotations import Points, synthetic_truth
    from .particles.synth import SynthConfig, synth_batch

    output.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, s in enumerate(synth_batch(SynthConfig(shape=(size, size)), n, seed=seed)):
        name = f"synth_{k:03d}.tif"
        px = 1.0 / s.pixel_size_nm  # ImageJ calibration: pixels per nm
        tifffile.imwrite(
            output / name, s.image, imagej=True, resolution=(px, px), metadata={"unit": "nm"}
        )
        # detection tables name images by file stem
        parts.append(synthetic_truth(s.particles, image=Path(name).stem))
    Points.concat(parts).to_csv(output / "truth.csv")
    out.print(f"wrote {n} images and truth.csv to [bold]{output}[/]")


# -------------------------------------------------------------------------------- demo
def _demo_particles(output: Path, cat: Catalog) -> list[str]:
    """Synthetic FRIL images through the shipped particle model; an HTML section for the report."""
    from .models.registry import MODELS
    from .particles.pipeline import DetectOptions, detect_files
    from .particles.report import html_section

    if "particles-default" not in MODELS:
        out.print("no shipped particle model in this installation: particles demo skipped")
        return []
    images = output / "fril"
    particles_synth(n=2, output=images, size=1024, seed=7)
    res = detect_files(
        sorted(images.glob("*.tif")), out=output / "particles", options=DetectOptions(), catalog=cat
    )
    for r in res.rows:
        out.print(
            f"particles in {r['image']}: "
            + ", ".join(
                f"{r[k]} x {k[2:-2]} nm" for k in r if k.startswith("n_") and k != "n_total"
            )
        )
    truth = images / "truth.csv"
    from .particles.annotations import Points, read_points_csv
    from .particles.evaluate import evaluate

    pred = Points.concat(
        [read_points_csv(p) for p in sorted((output / "particles").glob("synth_*.csv"))]
    )
    e = evaluate(pred, read_points_csv(truth), pixel_size_nm=0.5587)
    f1, dd = e["detection"]["f1"] or 0.0, e["diameter_error_nm"]["median_abs"]
    out.print(
        f"against the synthetic ground truth: F1 {f1:.3f}"
        + ("" if dd is None else f", median diameter error {dd:.2f} nm")
    )
    return [
        html_section(
            res.rows,
            output / "particles",
            relative_to=output,
            classes_nm=DetectOptions().classes_nm,
        )
    ]


@app.command("demo")
def demo_cmd(
    output: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the sample data and report.")
    ] = Path("emdig-demo"),
    catalog: CatalogOpt = None,
) -> None:
    """Generate a sample archive, ingest it, print a summary and write an HTML report."""
    from .sample import make_sample_archive

    files = make_sample_archive(output / "sample")
    out.print(f"wrote a sample archive of {len(files)} files to [bold]{output / 'sample'}[/]")
    cat_path = catalog or default_catalog_path()
    with Catalog(cat_path) as cat:
        summary = ingest([output / "sample"], catalog=cat)
        out.print(_summary_table(summary))
        for _path, code, message in summary.failures:
            out.print(f"[red]{code}[/] {message}", highlight=False, soft_wrap=True)
        st = cat.stats()
        out.print(
            f"catalog [bold]{cat_path}[/]: {st['micrographs']} micrographs; by detector "
            + ", ".join(f"{k} {n}" for k, n in st["by_detector"].items())
        )
        hits = cat.count(where="voltage_kv >= 200 and detector = 'HAADF'")
        out.print(f"query voltage_kv >= 200 and detector = 'HAADF': {hits} micrographs")
        sections = _demo_particles(output, cat)
        sections += demo_figures(output, cat, echo=out.print)
        sections += demo_contrastive(output, cat, echo=out.print)
        report = write_report(
            cat, output / "report.html", title="emdig demo catalog", sections=sections
        )
    out.print(f"HTML report: [bold]{report.resolve()}[/]")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - outside a command
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
