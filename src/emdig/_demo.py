"""The figures and contrastive parts of ``emdig demo``, on generated data.

Each function prints what it did through the given console and returns HTML sections for the
demo report.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .catalog.store import Catalog

__all__ = ["demo_contrastive", "demo_figures", "write_demo_article"]


def write_demo_article(folder: Path, *, seed: int = 3) -> Path:
    """Write a small article page with two generated compound figures beside it, as a browser
    saves a page. Micrograph panels get a white scale bar; the captions give their lengths.
    ``truth.json`` beside it holds each bar's drawn length in pixels."""
    from PIL import Image, ImageDraw

    from .figures.synth import make_compound_figure

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    figs = []
    bar_px: dict[str, dict[str, int]] = {}
    for k in (1, 2):
        img, truth = make_compound_figure(
            rng, n_panels=4, layout="grid", plots=0.0, label_style="a", width=760
        )
        im = Image.fromarray(img)
        draw = ImageDraw.Draw(im)
        letters = []
        for box, letter, kind in zip(truth.panels, truth.labels, truth.kinds, strict=True):
            if letter is None:
                continue
            letters.append(letter)
            if kind != "micrograph":
                continue
            x0, _, x1, y1 = box
            length = max(20, (x1 - x0) // 4)
            bar_px.setdefault(f"demo_fig{k}", {})[letter] = length
            bx, by = x1 - length - 12, y1 - 14
            draw.rectangle((bx - 3, by - 3, bx + length + 3, by + 8), fill=(0, 0, 0))
            draw.rectangle((bx, by, bx + length - 1, by + 4), fill=(255, 255, 255))
        name = f"demo_fig{k}.png"
        im.save(folder / name)
        chunks = " ".join(
            f"({c}) HAADF-STEM image of gold nanoparticles on carbon, region {i + 1}."
            for i, c in enumerate(letters)
        )
        caption = f"Nanoparticle survey {k}. {chunks} Scale bars, {20 * k} nm."
        figs.append((k, name, caption))
    (folder / "truth.json").write_text(json.dumps({"bar_px": bar_px}))
    body = "\n".join(
        f'<figure><img src="https://example.org/media/{html.escape(n)}?v=1" alt="">'
        f"<figcaption><b>Fig. {k}</b> {html.escape(c)}</figcaption></figure>"
        for k, n, c in figs
    )
    page = folder / "demo-article.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>A generated demo article</title>"
        '<meta name="citation_title" content="Gold nanoparticles, a generated demo article">'
        '<meta name="citation_doi" content="10.0000/emdig.demo">'
        '<meta name="dc.rights" content="CC BY 4.0">'
        "<script>alert('never run')</script></head><body>"
        f"<h1>Gold nanoparticles</h1>{body}</body></html>"
    )
    return page


def demo_figures(output: Path, cat: Catalog, *, echo: Any = print) -> list[str]:
    """Extract a panel dataset from a generated article; return the report section."""
    from .figures.extract import extract

    page = write_demo_article(output / "article")
    res = extract([page], out=output / "figures", catalog=cat)
    echo(
        f"figures: {res.figures} figures, {res.panels} panels, {res.calibrated} calibrated "
        f"(nm/px from the caption's scale bars); preview {res.dataset}"
    )
    data = json.loads((output / "figures" / "figures.json").read_text())
    rows = []
    for name, fig in data.items():
        for mi in fig["master_images"]:
            nm = mi.get("nm_per_px")
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(mi['subfigure_label']['text'])}"
                f"</td><td>{html.escape(mi['classification'])}</td>"
                f"<td>{'–' if nm is None else f'{nm:.3g}'}</td>"
                f"<td>{html.escape(str(mi.get('calibration') or '–'))}</td></tr>"
            )
    rel = os.path.relpath(output / "figures" / "preview.html", output)
    boxes = output / "figures" / "boxes"
    imgs = "".join(
        "<img style='max-width:48%;margin:4px' alt='' "
        f"src='{html.escape(os.path.relpath(boxes / (n + '.png'), output))}'>"
        for n in data
    )
    return [
        "<h2>Literature figures</h2>"
        f"<p>A generated article page, read offline with its images beside it, split into "
        f"panels with labels, classes, scale bars and caption chunks. "
        f"<a href='{html.escape(rel)}'>Full preview</a>.</p>{imgs}"
        "<table><tr><th>figure</th><th>panel</th><th>class</th><th>nm/px</th><th>from</th></tr>"
        + "".join(rows)
        + "</table>"
    ]


def plant_mislabelled(archive: Path, *, seed: int) -> dict[str, str]:
    """Two more simulated images in ``archive`` whose files carry wrong metadata: the
    detector swapped (BF for HAADF and so on) and the magnification 10x too high (with the
    pixel size that follows from it), as a mistyped or stale setting would leave them.
    Returns file name -> what is wrong."""
    from dataclasses import replace

    import numpy as np

    from .contrastive.simulate import sample_params, simulate_image, write_image

    p_det, p_mag = sample_params(np.random.default_rng(seed + 1), 2)
    swap = {"HAADF": "BF", "ADF": "ABF", "BF": "HAADF", "ABF": "ADF"}
    det = swap.get(p_det.detector, "BF")
    wrong = {
        "mislabelled_detector.hspy": (
            p_det,
            replace(p_det, detector=det),
            f"{p_det.detector} image stored as {det}",
        ),
        "mislabelled_magnification.hspy": (
            p_mag,
            replace(
                p_mag,
                magnification=p_mag.magnification * 10,
                pixel_size_nm=p_mag.pixel_size_nm / 10,
            ),
            "magnification stored 10x too high",
        ),
    }
    for name, (true, stored, _) in wrong.items():
        write_image(archive / name, simulate_image(true, size=256), stored)
    return {name: what for name, (_, _, what) in wrong.items()}


def demo_contrastive(
    output: Path, cat: Catalog, *, n: int = 400, epochs: int = 16, echo: Any = print
) -> list[str]:
    """Simulate a small STEM archive, ingest it, train the contrastive model, embed, and run
    search, prediction and anomaly ranking; return the report section."""
    from .contrastive.data import ContrastiveDataset
    from .contrastive.simulate import simulate_archive
    from .contrastive.tasks import (
        anomalies,
        contrastive_dir,
        embed_catalog,
        projection_map,
        search_meta,
    )
    from .contrastive.train import train
    from .ingest import ingest

    archive = output / "stem-archive"
    simulate_archive(archive, n=n, seed=11, size=256, workers=2)
    planted = plant_mislabelled(archive, seed=11)
    ingest([archive], catalog=cat)
    where = "path like '%stem-archive%'"
    cdir = contrastive_dir(cat.path)
    data = ContrastiveDataset.from_catalog(cat, where=where, cache_dir=cdir / "cache")
    res = train(data, epochs=epochs, seed=0, out=cdir / "model")
    m = res.metrics
    echo(
        f"contrastive: trained on {len(res.train)} images, held-out {len(res.held_out)}: "
        f"top-1 image->metadata {m.get('image_to_metadata_top1', 0):.1%}, "
        f"top-5 {m.get('image_to_metadata_top5', 0):.1%}"
    )
    index = embed_catalog(cat, res.model, where=where)
    hits = search_meta("detector=BF voltage_kv=300", model=res.model, index=index, k=5)
    echo("search detector=BF voltage_kv=300: " + ", ".join(Path(h["path"]).name for h in hits))
    ranked = anomalies(model=res.model, index=index, catalog=cat, top=None)
    place = {Path(r["path"]).name: r["rank"] for r in ranked}
    found = "; ".join(f"{name} ({what}) ranks {place.get(name)}" for name, what in planted.items())
    echo(f"anomalies among {len(ranked)} images: {found}")
    ranked = ranked[:8]
    png = projection_map(
        index, catalog=cat, color_by="detector", out=output / "contrastive-map.png"
    )
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3g}</td></tr>" for k, v in m.items())
    hit_rows = "".join(
        f"<tr><td>{h['rank']}</td><td>{html.escape(Path(h['path']).name)}</td>"
        f"<td>{h['score']:.3f}</td></tr>"
        for h in hits
    )
    anom_rows = "".join(
        f"<tr><td>{r['rank']}</td><td>{html.escape(Path(r['path']).name)}</td>"
        f"<td>{r['score']:.2f}</td><td>{html.escape('; '.join(r['reasons']))}</td></tr>"
        for r in ranked
    )
    return [
        "<h2>Contrastive image-metadata model</h2>"
        f"<p>{n} simulated STEM images (HSPY with full metadata), ingested, trained for "
        f"{epochs} epochs (a demo; the default recipe trains longer), embedded.</p>"
        f"<img alt='' style='max-width:60%' src='{html.escape(png.name)}'>"
        "<h3>Held-out figures</h3><table>" + rows + "</table>"
        "<h3>search --meta 'detector=BF voltage_kv=300'</h3>"
        "<table><tr><th>rank</th><th>file</th><th>score</th></tr>" + hit_rows + "</table>"
        "<h3>anomalies</h3>"
        f"<p>Files planted with wrong metadata (the image simulated with the true settings):"
        f" {html.escape(found)}, among {len(place)} images. Score: evidence in nats that the"
        " stored metadata is wrong.</p>"
        "<table><tr><th>rank</th><th>file</th><th>score</th>"
        "<th>reasons</th></tr>" + anom_rows + "</table>"
    ]
