"""Panel labels: reading, matching to panels, and the whole split-and-label step."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import SHARED
from emdig.figures.labels import (
    LabelReader,
    PanelLabel,
    assign_labels,
    default_reader,
    find_labels,
    label_panels,
    parse_label,
)
from emdig.figures.panels import split_panels
from emdig.figures.synth import make_compound_figure

FIGURES = SHARED / "literature" / "figures"
ARTICLE = "s41467-018-06211-3"


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@pytest.fixture(scope="module")
def reader() -> LabelReader:
    return default_reader()


def test_parse_label() -> None:
    assert [parse_label(t) for t in ("a", "B", "(c)", "d)", " e ", "[f]", "g.")] == list("abcdefg")
    assert [parse_label(t) for t in ("ab", "1", "", "a)b", "5 nm", "(ab)")] == [None] * 6


def test_assign_labels_prefers_the_top_left_corner() -> None:
    panels = [(10, 20, 200, 200), (220, 20, 400, 200), (10, 230, 400, 400)]
    labels = [
        PanelLabel("c", (2, 214, 10, 226), 0.9, None),  # in the gutter above-left of panel 3
        PanelLabel("a", (14, 24, 22, 34), 0.9, None),  # inside panel 1's corner
        PanelLabel("b", (222, 4, 230, 16), 0.9, None),  # above panel 2
    ]
    assert assign_labels(panels, labels) == ["a", "b", "c"]
    # a label in the middle of a panel labels nothing
    assert assign_labels(panels, [PanelLabel("d", (300, 300, 310, 310), 0.9, None)]) == [None] * 3


def test_reader_reads_rendered_letters(reader: LabelReader) -> None:
    from PIL import Image, ImageDraw

    from emdig.figures.synth import _font

    crops = []
    for text in ("a", "B", "(c)", "d)"):
        im = Image.new("RGB", (48, 48), "white")
        ImageDraw.Draw(im).text((8, 8), text, fill="black", font=_font(22, True))
        crops.append(np.asarray(im))
    read = reader(crops)
    assert [parse_label(t) for t, _ in read] == ["a", "b", "c", "d"]
    assert all(s > 0.5 for _, s in read)


def test_find_labels_on_a_synthetic_figure(reader: LabelReader) -> None:
    fig, t = make_compound_figure(
        np.random.default_rng(7), n_panels=4, layout="grid", label_inside=False, bold=True
    )
    panels = split_panels(fig)
    found = find_labels(fig, panels, ocr=reader)
    assert [f.letter for f in found] == ["a", "b", "c", "d"]
    for f in found:
        i = t.labels.index(f.letter)
        assert f.box is not None and iou(f.box, t.label_boxes[i]) > 0.5
        assert f.panel_index is not None and iou(panels[f.panel_index], t.panels[i]) > 0.8


def _score(seeds: range, reader: LabelReader, **kw: object) -> tuple[float, float]:
    """Panel recall at IoU 0.8 and the share of truth panels given their right letter."""
    hit = right = total = 0
    for seed in seeds:
        fig, t = make_compound_figure(np.random.default_rng(seed), **kw)  # type: ignore[arg-type]
        res = label_panels(fig, ocr=reader)
        for box, letter in zip(t.panels, t.labels, strict=True):
            best = max(range(len(res.panels)), key=lambda j: iou(res.panels[j], box), default=-1)
            if best >= 0 and iou(res.panels[best], box) >= 0.8:
                hit += 1
                right += res.labels[best] == letter
            total += 1
    return hit / total, right / total


def test_label_panels_on_synthetic_figures(reader: LabelReader) -> None:
    recall, accuracy = _score(range(100, 106), reader)
    assert recall >= 0.9 and accuracy >= 0.9
    # an image and its maps under one letter come back as one panel
    recall, accuracy = _score(range(200, 204), reader, grouped=True, n_panels=4)
    assert recall >= 0.85 and accuracy >= 0.85
    # touching images, letters over them: the letters cut what the edges did not
    recall, accuracy = _score(range(300, 306), reader, touching=True)
    assert recall >= 0.85 and accuracy >= 0.85


def _caption_letters(html: str, number: int) -> list[str]:
    """The caption's panel letters: its bold single letters, as the run a .. last."""
    m = re.search(rf'id="figure-{number}-desc">(.*?)</div>', html, re.S)
    assert m is not None
    bold = set(re.findall(r"<b>([a-z])</b>", m.group(1)))
    return [chr(c) for c in range(ord("a"), ord(max(bold)) + 1)]


@pytest.mark.shared_data
def test_nature_comms_figures_match_their_captions(reader: LabelReader) -> None:
    page = FIGURES / f"{ARTICLE}.html"
    if not page.is_file():
        pytest.skip(f"literature figures not found at {FIGURES}")
    from PIL import Image

    html = page.read_text(encoding="utf-8")
    exact_with = exact_without = 0
    for n in range(1, 6):
        letters = _caption_letters(html, n)
        with Image.open(FIGURES / f"{ARTICLE}_fig{n}.jpg") as im:
            fig = np.asarray(im.convert("RGB"))
        for expected in (letters, None):
            res = label_panels(fig, expected=expected, ocr=reader)
            got = sorted(x for x in res.labels if x)
            ok = len(res.panels) == len(letters) and got == letters
            if expected is None:
                exact_without += ok
            else:
                exact_with += ok
            assert set(got) <= set(letters)
    assert exact_with >= 4
    assert exact_without >= 4


def test_fake_reader_and_bad_ocr() -> None:
    fig, _ = make_compound_figure(np.random.default_rng(9), n_panels=2, label_inside=False)
    panels = split_panels(fig)
    assert find_labels(fig, panels, ocr=lambda crops: [("", 0.0)] * len(crops)) == []
    with pytest.raises(TypeError, match="ocr"):
        find_labels(fig, panels, ocr=42)
