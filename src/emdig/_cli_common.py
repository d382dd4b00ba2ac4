"""What the command-line modules share: consoles, exit codes, common options and helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .catalog.store import Catalog, default_catalog_path
from .errors import EmdigError

__all__ = [
    "EXIT_ERROR",
    "EXIT_FAILED_ITEMS",
    "CatalogOpt",
    "JsonOpt",
    "SearchOpt",
    "WhereOpt",
    "err",
    "out",
    "progress_bar",
]

out = Console()
err = Console(stderr=True)

EXIT_FAILED_ITEMS = 3
EXIT_ERROR = 2

CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        "-c",
        envvar="EMDIG_CATALOG",
        show_envvar=True,
        help="Catalog database (default ./emdig.db).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
WhereOpt = Annotated[
    str | None,
    typer.Option(
        "--where", "-w", help="Filter, e.g. \"voltage_kv >= 200 and detector = 'HAADF'\"."
    ),
]
SearchOpt = Annotated[str | None, typer.Option("--search", "-s", help="Free-text search.")]


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _open_catalog(path: Path | None, *, create: bool) -> Catalog:
    return Catalog(path or default_catalog_path(), create=create)


def _fail(e: EmdigError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def progress_bar(label: str, *, info: bool = False, disable: bool | None = None) -> Progress:
    """A progress bar on stderr: ``label``, bar, n/total, elapsed time; with ``info`` also a
    free-text field (``task.fields["info"]``) and the time remaining. Hidden when stderr is
    not a terminal, unless ``disable`` says otherwise."""
    cols = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
    if info:
        cols.append(TextColumn("{task.fields[info]}"))
    cols.append(TimeElapsedColumn())
    if info:
        cols.append(TimeRemainingColumn())
    return Progress(*cols, console=err, disable=not err.is_terminal if disable is None else disable)
