"""``emdig figures ...``: fetch open-access articles, extract a panel dataset, split one figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._cli_common import (
    EXIT_FAILED_ITEMS,
    CatalogOpt,
    JsonOpt,
    _fail,
    _open_catalog,
    err,
    out,
    progress_bar,
)
from .errors import EmdigError

figures_app = typer.Typer(
    help="Literature figures: fetch articles, extract calibrated, labelled panels.",
    no_args_is_help=True,
)


def _terms(query: str | None) -> tuple[str, ...]:
    """Query terms: comma-separated if there is a comma, else whitespace-separated."""
    if not query:
        return ()
    parts = query.split(",") if "," in query else query.split()
    return tuple(p.strip() for p in parts if p.strip())


@figures_app.command("fetch")
def figures_fetch(
    query: Annotated[str, typer.Option("--query", "-q", help="Europe PMC search query.")],
    max_results: Annotated[int, typer.Option("--max", "-n", min=1, help="Articles at most.")] = 20,
    output: Annotated[
        Path, typer.Option("--out", "-o", help="Cache folder: one sub-folder per article.")
    ] = Path("emdig-articles"),
    as_json: JsonOpt = False,
) -> None:
    """Download open-access full texts (JATS XML) and their figure images from Europe PMC.

    Resumable: articles already complete in the cache are not fetched again.
    """
    from .figures.sources import EuropePMC

    progress = progress_bar("fetch")
    task = progress.add_task("fetch", total=max_results)
    try:
        with progress:
            res = EuropePMC(output).fetch(
                query,
                max_results=max_results,
                progress=lambda i, n: progress.update(task, completed=i, total=n),
            )
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        summary = {
            "done": [str(p) for p in res.done],
            "skipped": [str(p) for p in res.skipped],
            "failed": [{"folder": str(p), "reason": why} for p, why in res.failed],
            "cache": str(output),
        }
        out.print_json(json.dumps(summary))
    else:
        out.print(
            f"{len(res.done)} articles fetched, {len(res.skipped)} already in the cache, "
            f"{len(res.failed)} failed; in [bold]{output}[/]"
        )
        for folder, why in res.failed:
            err.print(f"[red]failed[/] {folder}: {why}", highlight=False, soft_wrap=True)
        out.print(f"next: [bold]emdig figures extract {output} --query {query!r}[/]")
    raise typer.Exit(EXIT_FAILED_ITEMS if res.failed else 0)


@figures_app.command("extract")
def figures_extract(
    articles: Annotated[
        list[Path], typer.Argument(help="PDF, HTML or JATS XML files, or folders of them.")
    ],
    query: Annotated[
        str | None,
        typer.Option("--query", "-q", help="Keep panels whose caption names every term."),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="Keep panels of this class (repeatable): microscopy, diffraction, graph, "
            "illustration, photo, unclear.",
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder.")] = Path(
        "emdig-figures"
    ),
    workers: Annotated[int, typer.Option("--workers", "-j", min=1)] = 1,
    no_catalog: Annotated[
        bool, typer.Option("--no-catalog", help="Do not add the panels to the catalog.")
    ] = False,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a calibrated, labelled panel dataset from articles (resumable)."""
    from .figures.extract import ExtractOptions, extract
    from .figures.records import PANEL_CLASSES

    bad = [t for t in types or [] if t not in PANEL_CLASSES]
    if bad:
        raise typer.BadParameter(f"unknown panel type {bad[0]!r}; choose from {PANEL_CLASSES}")
    opts = ExtractOptions(query=_terms(query), types=tuple(types or ()))
    progress = progress_bar("extract")
    task = progress.add_task("extract", total=None)
    try:
        with progress:
            cat = None if no_catalog else _open_catalog(catalog, create=True)
            try:
                s = extract(
                    articles,
                    out=output,
                    options=opts,
                    catalog=cat,
                    workers=workers,
                    on_total=lambda n: progress.update(task, total=n),
                    on_progress=lambda _o: progress.advance(task),
                )
            finally:
                if cat is not None:
                    cat.close()
    except EmdigError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished articles are saved; run again to resume")
        raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(s.to_dict()))
    else:
        t = Table(title="figures", header_style="bold")
        for c in ("articles", "already done", "figures", "panels", "calibrated", "failed"):
            t.add_column(c, justify="right")
        t.add_row(
            str(s.articles),
            str(s.skipped),
            str(s.figures),
            str(s.panels),
            str(s.calibrated),
            str(len(s.failures)),
        )
        out.print(t)
        for _p, code, message in s.failures:
            err.print(f"[red]{code}[/] {message}", highlight=False, soft_wrap=True)
        out.print(f"dataset in [bold]{output}[/]; preview: [bold]{s.dataset}[/]")
    raise typer.Exit(EXIT_FAILED_ITEMS if s.failures else 0)


@figures_app.command("split")
def figures_split(
    figure: Annotated[Path, typer.Argument(help="One figure image (PNG, JPEG, TIFF ...).")],
    caption: Annotated[str | None, typer.Option(help="The figure's caption text.")] = None,
    caption_file: Annotated[
        Path | None, typer.Option("--caption-file", help="A text file holding the caption.")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Terms to tag.")] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "emdig-split"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Split one figure into panels: labels, classes, scale bars, nm/px and caption chunks."""
    from .figures.extract import split_figure_file

    if caption and caption_file:
        raise typer.BadParameter("give --caption or --caption-file, not both")
    text = caption or ""
    if caption_file:
        try:
            text = caption_file.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            err.print(f"[bold red]error:[/] {caption_file}: cannot read: {e.strerror or e}")
            raise typer.Exit(2) from None
    try:
        rec = split_figure_file(figure, caption=text.strip(), out=output, query_terms=_terms(query))
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(rec))
        return
    t = Table(title=f"{figure.name}: {len(rec['master_images'])} panels", header_style="bold")
    for c in ("label", "class", "box (x0,y0,x1,y1)", "nm/px", "from", "caption"):
        t.add_column(c)
    for mi in rec["master_images"]:
        g = mi["geometry"]
        nm = mi.get("nm_per_px")
        cap = " ".join(mi["caption"])
        t.add_row(
            mi["subfigure_label"]["text"],
            f"{mi['classification']} {mi['confidence']:.2f}",
            f"{g[0]['x']},{g[0]['y']},{g[3]['x']},{g[3]['y']}",
            "–" if nm is None else f"{nm:.4g}",
            mi.get("calibration") or "–",
            cap[:60] + ("…" if len(cap) > 60 else ""),
        )
    out.print(t)
    out.print(f"figures.json and preview.html in [bold]{output}[/]")
