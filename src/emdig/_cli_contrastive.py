"""``emdig contrastive ...`` and ``emdig search``: the image-metadata model of a catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._cli_common import (
    CatalogOpt,
    JsonOpt,
    WhereOpt,
    _fail,
    _open_catalog,
    out,
    progress_bar,
)
from .errors import EmdigError

contrastive_app = typer.Typer(
    help="Contrastive image-metadata model: simulate, train, embed, evaluate, predict, "
    "anomalies, map.",
    no_args_is_help=True,
)

ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model", "-m", help="Model .safetensors (or its folder); default: the catalog's."
    ),
]


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@contrastive_app.command("simulate")
def contrastive_simulate(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 7330,
    output: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")] = Path(
        "stem-archive"
    ),
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1)] = 2,
) -> None:
    """Write a synthetic STEM archive (HSPY files with full metadata) for demos and tests."""
    from .contrastive.simulate import simulate_archive

    progress = progress_bar("simulate", info=True)
    task = progress.add_task("simulate", total=n, info="")
    with progress:
        paths = simulate_archive(
            output,
            n=n,
            seed=seed,
            size=size,
            workers=workers,
            progress=lambda i, total: progress.update(task, completed=i, total=total),
        )
    out.print(f"wrote {len(paths)} images to [bold]{output}[/] (manifest.csv holds the truth)")
    out.print(f"next: [bold]emdig ingest {output}[/], then [bold]emdig contrastive train[/]")


@contrastive_app.command("train")
def contrastive_train(
    where: WhereOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1)] = 30,
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Model folder (default <catalog>.d/contrastive/model)."),
    ] = None,
    loss: Annotated[str, typer.Option(help="clip (symmetric InfoNCE) or siglip.")] = "clip",
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    members: Annotated[
        int,
        typer.Option(
            min=1,
            help="Ensemble of this many models (seeds seed, seed+1, ...), each for --epochs: "
            "better retrieval for that many times the training and embedding time.",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic).")] = 0,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: cuda when present).")
    ] = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the image-metadata model on the catalog (held-out split by file)."""
    from .contrastive.data import ContrastiveDataset
    from .contrastive.tasks import contrastive_dir
    from .contrastive.train import train

    if loss not in ("clip", "siglip"):
        raise typer.BadParameter("--loss takes clip or siglip")
    progress = progress_bar("train", info=True)
    try:
        with _open_catalog(catalog, create=False) as cat, progress:
            cdir = contrastive_dir(cat.path)
            read_task = progress.add_task("read", total=None, info="reading images")
            data = ContrastiveDataset.from_catalog(
                cat,
                where=where,
                cache_dir=cdir / "cache",
                progress=lambda i, n: progress.update(read_task, completed=i, total=n),
            )
            if len(data) < 4:
                raise typer.BadParameter(
                    f"the catalog holds {len(data)} usable images; at least 4 are needed"
                )
            task = progress.add_task("train", total=epochs * members, info="")

            def on_epoch(epoch: int, total: int, figs: dict[str, float]) -> None:
                info = f"loss {figs.get('loss', float('nan')):.3f}"
                if figs.get("member") is not None:
                    info = f"member {figs['member']:.0f}/{members}  " + info
                if figs.get("heldout_top1") is not None:
                    info += f"  held-out top-1 {figs['heldout_top1']:.1%}"
                progress.update(task, completed=epoch, total=total, info=info)

            res = train(
                data,
                loss=loss,  # type: ignore[arg-type]
                members=members,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                out=output or cdir / "model",
                device=device,
                progress=on_epoch,
            )
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps({"weights": str(res.weights), "metrics": res.metrics}))
        return
    _metrics_table(res.metrics, title=f"held-out ({len(res.held_out)} images)")
    out.print(f"model: [bold]{res.weights}[/]; next: [bold]emdig contrastive embed[/]")


def _metrics_table(m: dict[str, float], *, title: str) -> None:
    t = Table(title=title, header_style="bold")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in m.items():
        pct = "top" in k or k.endswith("accuracy")
        t.add_row(k, f"{v:.1%}" if pct and isinstance(v, float) else _fmt(v))
    out.print(t)


@contrastive_app.command("evaluate")
def contrastive_evaluate(
    where: WhereOpt = None,
    model: ModelOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrieval (top-1/top-5, both directions) and probe scores on the held-out split."""
    from .contrastive.data import ContrastiveDataset
    from .contrastive.evaluate import evaluate
    from .contrastive.tasks import contrastive_dir, load_model_for

    try:
        with _open_catalog(catalog, create=False) as cat:
            m = load_model_for(cat.path, model)
            data = ContrastiveDataset.from_catalog(
                cat,
                where=where,
                config=m.config.image,
                cache_dir=contrastive_dir(cat.path) / "cache",
            )
            holdout = float(m.config.trained_on.get("holdout", 0.1))
            train_split, held = data.split(holdout=holdout)
            metrics = evaluate(m, held, train=train_split)
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        _metrics_table(metrics, title=f"held-out ({len(held)} images)")


@contrastive_app.command("embed")
def contrastive_embed(
    where: WhereOpt = None,
    model: ModelOpt = None,
    catalog: CatalogOpt = None,
) -> None:
    """Store image and metadata embeddings of the catalog (Parquet beside it)."""
    from .contrastive.tasks import embed_catalog, embeddings_path, load_model_for

    progress = progress_bar("embed", info=True)
    task = progress.add_task("embed", total=None, info="")
    try:
        with _open_catalog(catalog, create=False) as cat, progress:
            m = load_model_for(cat.path, model)
            index = embed_catalog(
                cat,
                m,
                where=where,
                progress=lambda i, n: progress.update(task, completed=i, total=n),
            )
            path = embeddings_path(cat.path)
    except EmdigError as e:
        raise _fail(e) from None
    out.print(f"embedded {len(index)} images into [bold]{path}[/]")


def _index_and_model(catalog: Path | None, model: Path | None) -> tuple[Any, Any, Any]:
    from .contrastive.index import EmbeddingIndex
    from .contrastive.tasks import embeddings_path, load_model_for

    cat = _open_catalog(catalog, create=False)
    try:
        m = load_model_for(cat.path, model)
        index = EmbeddingIndex.load(embeddings_path(cat.path))
    except BaseException:
        cat.close()
        raise
    return cat, m, index


def _hits_table(hits: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title, header_style="bold")
    for c in ("rank", "id", "score", "path"):
        t.add_column(c, justify="right" if c != "path" else "left")
    for h in hits:
        t.add_row(str(h["rank"]), str(h["id"]), f"{h['score']:.3f}", h["path"])
    return t


@contrastive_app.command("predict")
def contrastive_predict(
    image: Annotated[Path, typer.Argument(help="An image file (any format emdig reads).")],
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours in the retrieval vote.")] = 25,
    model: ModelOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict the acquisition metadata of an image: probes and retrieval, with confidences."""
    from .contrastive.tasks import predict

    try:
        cat, m, index = _index_and_model(catalog, model)
        with cat:
            pred = predict(image, model=m, index=index, catalog=cat, k=k)
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(pred, default=str))
        return
    t = Table(title=f"predicted metadata of {image.name}", header_style="bold")
    for c in ("field", "probe", "confidence", "retrieval", "vote share / spread"):
        t.add_column(c)
    for f, entry in pred.items():
        conf = entry.get("retrieval_confidence")
        spread = entry.get("retrieval_spread")
        pc = entry.get("probe_confidence")
        t.add_row(
            f,
            _fmt(entry.get("probe")),
            "–" if pc is None else f"{pc:.0%}",
            _fmt(entry.get("retrieval")),
            f"{conf:.0%}" if conf is not None else ("–" if spread is None else f"±{spread:.3g}"),
        )
    out.print(t)


@contrastive_app.command("anomalies")
def contrastive_anomalies(
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="How many to list.")] = 20,
    model: ModelOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank images whose stored metadata disagrees with their content (most suspicious first)."""
    from .contrastive.tasks import anomalies

    try:
        cat, m, index = _index_and_model(catalog, model)
        with cat:
            ranked = anomalies(model=m, index=index, catalog=cat, top=top)
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(ranked))
        return
    t = Table(title=f"most suspicious {len(ranked)} of {len(index)} images", header_style="bold")
    for c in ("rank", "id", "score", "path", "reasons"):
        t.add_column(c)
    for r in ranked:
        t.add_row(
            str(r["rank"]), str(r["id"]), f"{r['score']:.2f}", r["path"], "; ".join(r["reasons"])
        )
    out.print(t)


@contrastive_app.command("map")
def contrastive_map(
    color_by: Annotated[str, typer.Option("--color-by", help="Field to colour by.")] = "detector",
    output: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path(
        "contrastive-map.png"
    ),
    space: Annotated[str, typer.Option(help="image or meta embeddings.")] = "image",
    model: ModelOpt = None,
    catalog: CatalogOpt = None,
) -> None:
    """A 2-D projection (PCA) of the embeddings as a PNG, coloured by a field."""
    from .contrastive.tasks import projection_map

    if space not in ("image", "meta"):
        raise typer.BadParameter("--space takes image or meta")
    try:
        cat, _m, index = _index_and_model(catalog, model)
        with cat:
            p = projection_map(index, catalog=cat, color_by=color_by, out=output, space=space)
    except EmdigError as e:
        raise _fail(e) from None
    out.print(f"map: [bold]{p}[/]")


def search_cmd(
    like: Annotated[
        Path | None, typer.Option("--like", help="Find images like this image file.")
    ] = None,
    meta: Annotated[
        str | None,
        typer.Option(
            "--meta", help="Find images fitting metadata, e.g. 'detector=HAADF voltage_kv=300'."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many results.")] = 10,
    model: ModelOpt = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the catalog by example image (--like) or by metadata (--meta)."""
    from .contrastive.tasks import search_like, search_meta

    if (like is None) == (meta is None):
        raise typer.BadParameter("give exactly one of --like IMAGE or --meta 'field=value ...'")
    try:
        cat, m, index = _index_and_model(catalog, model)
        with cat:
            if like is not None:
                hits = search_like(like, model=m, index=index, k=k)
                title = f"images like {like.name}"
            else:
                hits = search_meta(meta or "", model=m, index=index, k=k)
                title = f"images fitting {meta}"
    except EmdigError as e:
        raise _fail(e) from None
    if as_json:
        out.print_json(json.dumps(hits))
    else:
        out.print(_hits_table(hits, title))
