"""A self-contained HTML overview of a catalog: counts, failures and a thumbnail grid."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .store import Catalog

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em 1.2em;min-width:9em}
.card b{font-size:1.6em;display:block}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;font-size:.9em}
th{background:#f0f0f0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;font-size:.78em}
.tile img{width:100%;image-rendering:pixelated;background:#000;aspect-ratio:1;object-fit:contain}
.tile .p{color:#555;word-break:break-all}.fail{color:#a00}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(title: str, counts: dict[str, int]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{n}</td></tr>" for k, n in counts.items())
    return f"<table><tr><th>{html.escape(title)}</th><th>images</th></tr>{rows}</table>"


def write_report(
    catalog: Catalog,
    out: str | Path,
    *,
    limit: int = 200,
    title: str = "emdig catalog",
    sections: Sequence[str] = (),
) -> Path:
    """Write ``out`` (HTML, images inlined) and return its path.

    ``sections`` are extra HTML fragments (e.g. a capability's results) placed after the counts.
    """
    st = catalog.stats()
    rows = catalog.select(limit=limit)
    tiles = []
    for r in rows:
        png = catalog.thumbnail(r["id"])
        src = "data:image/png;base64," + base64.b64encode(png).decode() if png else ""
        px = "uncalibrated" if r["pixel_size_nm"] is None else f"{r['pixel_size_nm']:.4g} nm/px"
        meta = " · ".join(
            _fmt(x)
            for x in (
                r["mode"],
                r["detector"],
                None if r["voltage_kv"] is None else f"{r['voltage_kv']:g} kV",
            )
            if x is not None
        )
        tiles.append(
            f'<div class="tile"><img alt="" src="{src}"><div><b>#{r["id"]}</b> {meta}</div>'
            f"<div>{r['height']}×{r['width']} {html.escape(r['dtype'])}, {px}</div>"
            f'<div class="p">{html.escape(r["path"])}'
            f"{'' if not r['signal'] else ' [' + html.escape(str(r['signal'])) + ']'}</div></div>"
        )
    fails = catalog.failures()
    fail_rows = "".join(
        f"<tr><td>{html.escape(f['path'])}</td>"
        f"<td class='fail'>{html.escape(f['error_code'] or '')}</td>"
        f"<td>{html.escape(f['error_message'] or '')}</td></tr>"
        for f in fails
    )
    fail_table = (
        "<p>None.</p>"
        if not fails
        else f"<table><tr><th>file</th><th>code</th><th>reason</th></tr>{fail_rows}</table>"
    )
    files = st["files"]
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1><p class="sub">{html.escape(str(catalog.path))}</p>
<div class="cards">
<div class="card"><b>{files.get("ok", 0)}</b>files read</div>
<div class="card"><b>{st["micrographs"]}</b>micrographs</div>
<div class="card"><b>{st["calibrated"]}</b>with pixel size</div>
<div class="card"><b>{files.get("failed", 0)}</b>files failed</div>
</div>
<div class="cards">{_table("mode", st["by_mode"])}{_table("detector", st["by_detector"])}
{_table("voltage (kV)", st["by_voltage_kv"])}{_table("format", st["by_format"])}</div>
{"".join(sections)}
<h2>Failures</h2>
{fail_table}
<h2>Micrographs{f" (first {limit})" if st["micrographs"] > limit else ""}</h2>
<div class="grid">{"".join(tiles)}</div>
</body></html>"""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path
