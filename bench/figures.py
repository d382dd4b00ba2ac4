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

import numpy as np

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
    """Fresh synthetic panels (a seed the recipe never used) and the real micrograph crops of
    the articles the recipe held out (listed in the model's JSON)."""
    sys.path.insert(0, str(ROOT / "recipes"))
    from panel_classifier import article_of, real_classes

    from emdig.figures.classify import PanelClassifier
    from emdig.figures.records import PANEL_CLASSES
    from emdig.figures.synth_panels import make_panels

    clf = PanelClassifier()
    cfg = json.loads((ROOT / "src" / "emdig" / "models" / "panel-classifier.json").read_text())
    held = set(cfg["trained_on"]["held_out_articles"])
    panels, labels = make_panels(50, seed=2026_11_21)
    t0 = time.perf_counter()
    got = [c for c, _ in clf.classify(panels)]
    per_panel_ms = 1000 * (time.perf_counter() - t0) / len(panels)
    want = [PANEL_CLASSES[y] if isinstance(y, int | np.integer) else y for y in labels]
    synth = {
        c: round(float(np.mean([g == c for g, w in zip(got, want, strict=True) if w == c])), 4)
        for c in PANEL_CLASSES
    }
    from PIL import Image

    names = real_classes(LIT / "micrographs")
    real_got, real_want = [], []
    for p in sorted((LIT / "micrographs").glob("*.jpg")):
        if article_of(p) not in held or p.name not in names:
            continue
        with Image.open(p) as im:
            real_got.append(clf.classify([np.asarray(im.convert("RGB"))])[0][0])
        real_want.append(PANEL_CLASSES[names[p.name]])
    real_acc = float(np.mean([g == w for g, w in zip(real_got, real_want, strict=True)]))
    synth_acc = float(np.mean([g == w for g, w in zip(got, want, strict=True)]))
    results["classifier"] = {
        "synthetic_heldout_accuracy": round(synth_acc, 4),
        "synthetic_per_class": synth,
        "synthetic_n": len(got),
        "real_heldout_accuracy": round(real_acc, 4),
        "real_heldout_n": len(real_got),
        "real_heldout_articles": len(held),
        "ms_per_panel_batched": round(per_panel_ms, 2),
    }
    log(f"classifier: synthetic {synth_acc:.1%} ({len(got)}), real {real_acc:.1%}")


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
        f"| classifier, fresh synthetic panels | {c['synthetic_heldout_accuracy']:.1%} "
        f"({c['synthetic_n']}) | reported |"
    )
    print(
        f"| classifier, real crops of held-out articles | {c['real_heldout_accuracy']:.1%} "
        f"({c['real_heldout_n']}) | reported |"
    )
    print(
        f"| seconds per figure (median / worst) | {s['per_figure_median_s']} / "
        f"{s['per_figure_worst_s']} | <= 1 |"
    )


if __name__ == "__main__":
    main()
