# SPDX-License-Identifier: GPL-3.0-or-later
"""Figures benchmark on ``../shared/data/literature``: panels, scale labels, nm/px, classifier,
speed.

- **Panels**: the 5 figures of Nature Commun. 9 (s41467-018-06211-3), read from the article's
  HTML page with their JPEGs beside it. A figure passes when the number of panels found and the
  set of panel labels found both equal the letters its caption names.
- **Scale labels**: every crop in ``scalebar-labels/`` read with RapidOCR; value and unit must
  equal the human transcription.
- **nm/px**: every micrograph panel of the 5 figures with a stated scale. The truth is the
  caption's length over the bar's length measured by hand (half-maximum crossings of the bar's
  row profile; ``tests/figures/data/nature_s41467-018-06211-3_bars.json``); within 5 % passes.
- **Classifier**: accuracy on a held-out set: freshly generated panels of every class (a seed
  the recipe never used) and the real micrograph crops of the articles the recipe held out.
- **Speed**: the whole figure step (image in; panels, labels, scale bars, classes, calibration
  and caption chunks out), each figure 3 times after a warm-up, on this machine's 2 cores.

Run: ``python bench/figures.py`` (about a minute); results in ``bench/results/figures.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIT = ROOT.parent / "shared" / "data" / "literature"
TRUTH = ROOT / "tests" / "figures" / "data"
ARTICLE = LIT / "figures" / "s41467-018-06211-3.html"


def log(msg: str) -> None:
    print(f"[bench/figures {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def bench_panels_and_scale(results: dict[str, Any]) -> None:
    from emdig.figures.articles import read_article
    from emdig.figures.pipeline import analyse_figure

    truth = json.loads((TRUTH / "nature_s41467-018-06211-3_truth.json").read_text())
    bars = json.loads((TRUTH / "nature_s41467-018-06211-3_bars.json").read_text())
    art = read_article(ARTICLE)
    analyse_figure(art.figures[0].image, caption=art.figures[0].caption)  # warm-up: models, OCR
    per_fig, times, nm_rows = [], [], []
    for fig in art.figures:
        assert fig.image is not None, f"figure {fig.number} has no image"
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            res = analyse_figure(fig.image, caption=fig.caption, name=f"fig{fig.number}")
            runs.append(time.perf_counter() - t0)
        times.append(statistics.median(runs))
        want = truth[str(fig.number)]["labels"]
        got = [p.label for p in res.panels]
        ok = len(res.panels) == len(want) and sorted(x for x in got if x) == sorted(want)
        per_fig.append(
            {
                "figure": fig.number,
                "caption_letters": want,
                "panels_found": len(res.panels),
                "labels_found": got,
                "match": ok,
                "classes": [p.classification for p in res.panels],
                "seconds": round(times[-1], 3),
            }
        )
        log(f"fig {fig.number}: {len(res.panels)} panels {got} vs {want} -> {ok}")
        by_label = {p.label: p for p in res.panels if p.label}
        for label, t in bars.get(str(fig.number), {}).items():
            true = t["nm"] / t["bar_px"]
            p = by_label.get(label)
            got_nm = None if p is None else p.nm_per_px
            err = None if got_nm is None else abs(got_nm - true) / true
            nm_rows.append(
                {
                    "figure": fig.number,
                    "panel": label,
                    "true_nm_per_px": round(true, 5),
                    "found_nm_per_px": None if got_nm is None else round(got_nm, 5),
                    "calibration": None if p is None else p.calibration,
                    "rel_error": None if err is None else round(err, 4),
                    "within_5pct": err is not None and err <= 0.05,
                }
            )
    results["panels"] = {
        "figures": per_fig,
        "matched": sum(f["match"] for f in per_fig),
        "of": len(per_fig),
        "target": "panel count and label set equal the caption's letters for >= 4 of 5",
    }
    results["nm_per_px"] = {
        "panels": nm_rows,
        "within_5pct": sum(r["within_5pct"] for r in nm_rows),
        "of": len(nm_rows),
    }
    results["speed"] = {
        "per_figure_median_s": round(statistics.median(times), 3),
        "per_figure_worst_s": round(max(times), 3),
        "figures": len(times),
        "target_s": 1.0,
    }


def bench_labels(results: dict[str, Any]) -> None:
    from emdig.figures.scalebar import evaluate_label_crops

    r = evaluate_label_crops(LIT / "scalebar-labels")
    results["scale_labels"] = {
        "n": r["n"],
        "correct": r["correct"],
        "accuracy": round(r["accuracy"], 4),
        "seconds": round(r["seconds"], 2),
        "failures": r["failures"],
        "target": 0.95,
    }
    log(f"scale labels: {r['correct']}/{r['n']} = {r['accuracy']:.1%}")


def bench_classifier(results: dict[str, Any]) -> None:
    from emdig.figures import classify

    r = classify.evaluate_heldout(LIT / "micrographs")
    results["classifier"] = r
    log(f"classifier held-out accuracy: {r.get('accuracy')}")


def main() -> None:
    if not LIT.is_dir():
        sys.exit(f"shared literature data not found at {LIT}")
    import torch

    torch.set_num_threads(2)
    results: dict[str, Any] = {"machine": "2 CPU cores", "when": time.strftime("%Y-%m-%d %H:%M")}
    bench_panels_and_scale(results)
    bench_labels(results)
    bench_classifier(results)
    out = ROOT / "bench" / "results" / "figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    p, n, s, lab = (
        results["panels"],
        results["nm_per_px"],
        results["speed"],
        results["scale_labels"],
    )
    c = results["classifier"]
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(
        f"| panels + labels match the caption | {p['matched']} of {p['of']} figures | >= 4 of 5 |"
    )
    print(
        f"| scale labels read (value + unit) | {lab['correct']}/{lab['n']} = "
        f"{lab['accuracy']:.1%} | >= 95 % |"
    )
    print(f"| nm/px within 5 % | {n['within_5pct']} of {n['of']} panels | all |")
    print(
        f"| classifier held-out accuracy | {c.get('accuracy', float('nan')):.1%} "
        f"({c.get('n', '?')} panels) | reported |"
    )
    print(
        f"| seconds per figure (median / worst) | {s['per_figure_median_s']} / "
        f"{s['per_figure_worst_s']} | <= 1 |"
    )


if __name__ == "__main__":
    main()
