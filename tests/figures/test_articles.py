"""Article readers: PDF, HTML and JATS, on generated articles with known figures, hostile inputs
and (marked ``shared_data``) the real articles in ../shared/data/literature."""

from __future__ import annotations

import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from emdig.errors import (
    CorruptFile,
    EmptyFile,
    EncryptedFile,
    NestingTooDeep,
    StreamTooLarge,
    TimeLimit,
    TooManyPages,
    TruncatedFile,
    UnsafeContent,
    UnsupportedFormat,
)
from emdig.figures.articles import (
    ArticleLimits,
    read_article,
    read_html,
    read_pdf,
    sniff_article,
)
from emdig.figures.articles._base import clean_text, fix_micro, normalise_licence, split_label
from emdig.figures.articles.pdf import _fix_mu_chars

from data.badarticles import (
    BILLION_LAUGHS,
    PAYLOAD_MARKERS,
    XSS_HTML,
    TruthArticle,
    busy_pdf,
    checkerboard,
    encrypted_pdf,
    external_dtd,
    jats_article,
    many_pages_pdf,
    matplotlib_article,
    nature_like_html,
    parameter_entity,
    pdf_pages,
    png_bomb,
    png_bytes,
    quadratic_blowup,
    rotated_pdf,
    simple_pdf,
    stream_bomb_pdf,
    xxe_file,
)

LIT = SHARED / "literature"
DPI = 200


# ------------------------------------------------------------------------------ text helpers
@pytest.mark.parametrize(
    ("text", "number", "rest"),
    [
        ("Figure 2. TEM of gold.", "2", "TEM of gold."),
        ("Fig. 12 | Panels", "12", "Panels"),
        ("FIG. 3: Upper case", "3", "Upper case"),
        ("Figure S4. Supporting", "S4", "Supporting"),
        ("Supplementary Figure 5 Extra", "S5", "Extra"),
        ("Extended Data Fig. 1 | More", "ED1", "More"),
        ("Figure 7\u2014Dash", "7", "Dash"),
        ("No label here", None, "No label here"),
        ("Figures are nice", None, "Figures are nice"),
    ],
)
def test_split_label(text: str, number: str | None, rest: str) -> None:
    assert split_label(text) == (number, rest)


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        ("Scale bar = 5 lm.", "Scale bar = 5 \u00b5m."),
        ("at 0.5 lm z-separation", "at 0.5 \u00b5m z-separation"),
        ("10lm", "10\u00b5m"),
        ("5 \u03bc m", "5 \u00b5m"),
        ("a film of 5 lmol", "a film of 5 \u00b5mol"),
        ("the film and helm", "the film and helm"),  # no number before it: untouched
        ("CGRP(cid:2) boutons", "CGRP\ufffd boutons"),
    ],
)
def test_fix_micro(raw: str, fixed: str) -> None:
    assert fix_micro(raw) == fixed


def test_clean_text_unifies_micro_and_spaces() -> None:
    # Greek mu before a unit becomes the micro sign; Greek mu elsewhere stays
    assert (
        clean_text("  5\u00a0\u03bcm \n and \u03bc-opioid\u200b ") == "5 \u00b5m and \u03bc-opioid"
    )
    assert clean_text("2 \u212b") == "2 \u00c5"


def test_symbol_font_l_before_unit_is_mu() -> None:
    def ch(t: str, font: str) -> dict[str, object]:
        return {"text": t, "fontname": font}

    body, sym = "ABCDEF+AdvGulliv-R", "ABCDEG+AdvPSMP13"
    chars = [ch("5", body), ch(" ", body), ch("l", sym), ch("m", body)]
    assert "".join(str(c["text"]) for c in _fix_mu_chars(chars)) == "5 \u00b5m"
    plain = [ch("5", body), ch(" ", body), ch("l", body), ch("m", body)]
    assert "".join(str(c["text"]) for c in _fix_mu_chars(plain)) == "5 lm"
    # a symbol font's "l" before a unit letter is a mu even without a number before it
    word = [ch("(", body), ch("l", sym), ch("m", body), ch(")", body)]
    assert "".join(str(c["text"]) for c in _fix_mu_chars(word)) == "(\u00b5m)"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("http://creativecommons.org/licenses/by/4.0/", "CC BY 4.0"),
        ("https://creativecommons.org/licenses/by-nc-nd/3.0/legalcode", "CC BY-NC-ND 3.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0 1.0"),
        ("This is an open access article under the CC BY-NC license", "CC BY-NC"),
        ("Creative Commons Attribution 4.0 International License", "CC BY 4.0"),
        ("Creative Commons Attribution-NonCommercial 3.0 License", "CC BY-NC 3.0"),
        (
            "\u00a9 2020 Publisher. All rights reserved.",
            "\u00a9 2020 Publisher. All rights reserved.",
        ),
        ("", None),
    ],
)
def test_normalise_licence(text: str, name: str | None) -> None:
    assert normalise_licence(text) == name


# ------------------------------------------------------------------------------ generated PDF
@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TruthArticle]:
    path = tmp_path_factory.mktemp("pdf") / "article.pdf"
    return path, matplotlib_article(path)


@pytest.fixture(scope="module")
def generated_read(generated: tuple[Path, TruthArticle]) -> object:
    return read_article(generated[0], render_dpi=DPI)


def test_pdf_figures_numbers_and_captions(generated, generated_read) -> None:
    _, truth = generated
    art = generated_read
    assert [f.number for f in art.figures] == [t.number for t in truth.figures]
    for got, want in zip(art.figures, truth.figures, strict=True):
        assert got.caption == want.caption  # the label is removed, the two lines are joined
        assert got.image_ref == f"page {want.page + 1}"  # "Fig. 2 shows" on page 1 was no caption


def test_pdf_metadata(generated, generated_read) -> None:
    _, truth = generated
    art = generated_read
    assert art.title == truth.title
    assert art.doi == truth.doi
    assert art.licence == truth.licence
    assert art.journal == "Test Journal"


def test_pdf_single_raster_comes_back_pixel_exact(generated, generated_read) -> None:
    _, truth = generated
    for want in truth.figures:
        if want.raster is None:
            continue
        got = next(f for f in generated_read.figures if f.number == want.number)
        assert got.image is not None and got.image.dtype == np.uint8
        np.testing.assert_array_equal(got.image, want.raster)


def test_pdf_vector_figures_are_rendered_with_their_labels_only(generated, generated_read) -> None:
    _, truth = generated
    for number, max_extra_pt in (("2", 80.0), ("4", 60.0)):
        want = next(t for t in truth.figures if t.number == number)
        got = next(f for f in generated_read.figures if f.number == number)
        assert got.image is not None and got.image.ndim == 3 and got.image.shape[2] == 3
        h_px, w_px = got.image.shape[:2]
        x0, top, x1, bottom = want.box_pt
        # at least the axes, at most the axes plus their tick and axis labels
        assert (x1 - x0) * DPI / 72 - 2 <= w_px <= (x1 - x0 + max_extra_pt) * DPI / 72
        assert (bottom - top) * DPI / 72 - 2 <= h_px <= (bottom - top + max_extra_pt) * DPI / 72
        dark = (got.image.mean(axis=2) < 100).mean()
        assert 0.002 < dark < 0.5  # the drawing is there; the region is not all ink
    # the right-column figure stays in its column
    fig4 = next(f for f in generated_read.figures if f.number == "4")
    assert fig4.image is not None and fig4.image.shape[1] * 72 / DPI < 0.47 * 612


def test_pdf_render_dpi_scales_rendered_regions(generated, generated_read) -> None:
    half = read_pdf(generated[0], render_dpi=DPI / 2)
    a = next(f for f in generated_read.figures if f.number == "2").image
    b = next(f for f in half.figures if f.number == "2").image
    assert a is not None and b is not None
    assert abs(b.shape[1] - a.shape[1] / 2) <= 2 and abs(b.shape[0] - a.shape[0] / 2) <= 2


def test_read_article_ignores_the_extension(generated, tmp_path: Path) -> None:
    disguised = tmp_path / "page.html"
    shutil.copy(generated[0], disguised)
    assert sniff_article(disguised) == "pdf"
    assert [f.number for f in read_article(disguised).figures] == ["1", "2", "3", "4"]


def test_pdf_page_budget_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "six.pdf"
    pdf_pages(path, 6)
    with pytest.raises(TooManyPages) as e:
        read_pdf(path, limits=ArticleLimits(max_pages=5))
    assert e.value.code == "page_limit" and "6 pages" in str(e.value)
    art = read_pdf(path, limits=ArticleLimits(max_pages=6))
    assert [f.number for f in art.figures] == ["1", "2", "3", "4", "5", "6"]
    assert [f.caption for f in art.figures] == [f"Page {i}." for i in range(1, 7)]


def test_pdf_caption_above_and_a_page_of_20000_markers(tmp_path: Path) -> None:
    path = tmp_path / "busy.pdf"
    busy_pdf(path)
    art = read_pdf(path)
    assert [(f.number, f.caption) for f in art.figures] == [
        ("1", "Caption above its figure."),
        ("2", "Many points."),
    ]
    sizes = [(0.6 * 612, 0.27 * 792), (0.6 * 612, 0.25 * 792)]
    for f, (w_pt, h_pt) in zip(art.figures, sizes, strict=True):
        assert f.image is not None
        h, w = f.image.shape[:2]
        # the axes plus their tick labels, and nothing of the body text between the figures
        assert w_pt * DPI / 72 <= w <= (w_pt + 60) * DPI / 72
        assert h_pt * DPI / 72 <= h <= (h_pt + 40) * DPI / 72


def test_pdf_rotated_page(tmp_path: Path) -> None:
    path = tmp_path / "landscape.pdf"
    rotated_pdf(path)
    (fig,) = read_pdf(path).figures
    assert fig.caption == "A grey box drawn as a vector path."
    assert fig.image is not None
    h, w = fig.image.shape[:2]
    assert abs(w - 300 * DPI / 72) < 8 and abs(h - 150 * DPI / 72) < 8  # landscape, as shown
    assert abs(float(np.median(fig.image)) - 0.4 * 255) < 3


# ------------------------------------------------------------------------------ bad PDFs
def test_pdf_with_100k_pages_rejected(tmp_path: Path) -> None:
    path = tmp_path / "many.pdf"
    many_pages_pdf(path, 100_000)
    with pytest.raises(TooManyPages) as e:
        read_article(path)
    assert e.value.code == "page_limit" and "100000 pages" in str(e.value)


def test_pdf_stream_bomb_rejected_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"
    stream_bomb_pdf(path, 100 * 1024**2)  # 100 MB of content stream in ~100 kB
    assert path.stat().st_size < 200_000
    with pytest.raises(StreamTooLarge) as e:
        read_article(path)
    assert e.value.code == "stream_limit" and str(path) in str(e.value)


def test_pdf_stream_budget_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "two_mb.pdf"
    stream_bomb_pdf(path, 2 * 1024**2)
    with pytest.raises(StreamTooLarge):
        read_pdf(path, limits=ArticleLimits(max_stream_bytes=1024**2))
    assert read_pdf(path, limits=ArticleLimits(max_stream_bytes=3 * 1024**2)).figures == []


def test_encrypted_pdf_needing_a_password_rejected(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    encrypted_pdf(path, user_password=b"secret")
    with pytest.raises(EncryptedFile) as e:
        read_article(path)
    assert e.value.code == "encrypted" and "password" in str(e.value)


def test_encrypted_pdf_without_user_password_is_read(tmp_path: Path) -> None:
    # restrictions-only encryption: the text must be decrypted to find the caption
    path = tmp_path / "restricted.pdf"
    encrypted_pdf(path, user_password=b"")
    art = read_article(path)
    assert [(f.number, f.caption) for f in art.figures] == [
        ("1", "A grey box drawn as a vector path.")
    ]
    img = art.figures[0].image
    assert img is not None
    # the box is 300 x 250 pt, filled with 40 % grey
    assert abs(img.shape[1] - 300 * DPI / 72) < 8 and abs(img.shape[0] - 250 * DPI / 72) < 8
    assert abs(float(np.median(img)) - 0.4 * 255) < 3


def test_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pdf"
    rng = np.random.default_rng(0)
    path.write_bytes(
        b"%PDF-1.7\n" + rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes() + b"\n%%EOF\n"
    )
    with pytest.raises(CorruptFile) as e:
        read_article(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_truncated_pdf(generated, tmp_path: Path) -> None:
    data = generated[0].read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(TruncatedFile) as e:
        read_article(path)
    assert "cut short" in str(e.value)


def test_pdf_time_budget(generated) -> None:
    with pytest.raises(TimeLimit):
        read_pdf(generated[0], limits=ArticleLimits(max_seconds=0.0))


def test_not_an_article(tmp_path: Path) -> None:
    png = tmp_path / "x.pdf"
    png.write_bytes(png_bytes(checkerboard(8, 8, 2)))
    with pytest.raises(UnsupportedFormat, match="PNG"):
        read_article(png)
    txt = tmp_path / "notes.xml"
    txt.write_text("just some words\n")
    with pytest.raises(UnsupportedFormat):
        read_article(txt)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFile):
        read_article(empty)
    with pytest.raises(UnsupportedFormat):
        read_pdf(txt)


def test_pdf_figure_without_caption_is_not_returned(tmp_path: Path) -> None:
    path = tmp_path / "nocap.pdf"
    simple_pdf(path, b"0.4 g 72 400 300 250 re f\nBT /F1 10 Tf 72 380 Td (A grey box.) Tj ET\n")
    assert read_pdf(path).figures == []


# ------------------------------------------------------------------------------ HTML
def _nature_page(d: Path, src: str) -> Path:
    page = d / "page.html"
    page.write_text(nature_like_html(src=src), encoding="utf-8")
    return page


def test_html_nature_like_page(tmp_path: Path) -> None:
    fig1 = checkerboard(60, 90, 6, seed=7)
    plain = checkerboard(40, 50, 5, seed=8)
    (tmp_path / "page_fig1.png").write_bytes(png_bytes(fig1))
    (tmp_path / "plain.png").write_bytes(png_bytes(plain))
    src = "//media.springernature.com/lw685/springer-static/image/art/41467_2018_6211_Fig1_HTML.png"
    art = read_article(_nature_page(tmp_path, src))
    assert art.title == "Silver & gold nanoplates"
    assert art.doi == "10.1038/s41467-000-00000-0"
    assert art.authors == ["Ada Lovelace", "Alan Turing"]
    assert art.licence == "CC BY 4.0"
    assert art.journal == "Nature Communications"
    assert art.url == "https://www.nature.com/articles/s41467-000-00000-0"
    assert [f.number for f in art.figures] == ["1", None]
    f1, f2 = art.figures
    # the name in the URL is not on disk: found by figure number as page_fig1.png
    assert f1.caption == "Nanoplates. a, b TEM of Ag2MnO4. Scale bars, 5 \u00b5m (a)"
    assert f1.image_ref == str(tmp_path / "page_fig1.png")
    np.testing.assert_array_equal(f1.image, fig1)
    assert f2.caption == "" and f2.image is not None
    np.testing.assert_array_equal(f2.image, plain)


def test_html_saved_by_browser_and_images_dir(tmp_path: Path) -> None:
    img = checkerboard(30, 40, 5, seed=9)
    (tmp_path / "page_files").mkdir()
    (tmp_path / "page_files" / "41467_Fig1_HTML.png").write_bytes(png_bytes(img))
    page = _nature_page(tmp_path, "./page_files/41467_Fig1_HTML.png?as=png&w=685")
    art = read_html(page)
    np.testing.assert_array_equal(art.figures[0].image, img)
    # not beside the page at all: only in images_dir
    other = tmp_path / "elsewhere"
    other.mkdir()
    page2 = _nature_page(other, "https://example.org/img/fig-one.png")
    assert read_html(page2).figures[0].image is None
    assert read_html(page2).figures[0].image_ref == "https://example.org/img/fig-one.png"
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "fig-one.png").write_bytes(png_bytes(img))
    np.testing.assert_array_equal(read_html(page2, images_dir=shots).figures[0].image, img)


def test_html_image_pixel_budget(tmp_path: Path) -> None:
    (tmp_path / "page_fig1.png").write_bytes(png_bomb(60_000, 60_000))
    art = read_html(_nature_page(tmp_path, "x/Fig1.png"))
    assert art.figures[0].image is None  # refused from its header, nothing decoded
    assert art.figures[0].caption.startswith("Nanoplates.")
    (tmp_path / "page_fig1.png").write_bytes(png_bytes(checkerboard(100, 100, 10)))
    small = ArticleLimits(max_figure_pixels=99 * 100)
    assert read_html(_nature_page(tmp_path, "x/Fig1.png"), limits=small).figures[0].image is None
    assert read_html(_nature_page(tmp_path, "x/Fig1.png")).figures[0].image is not None


def test_html_hostile_page_is_inert(tmp_path: Path) -> None:
    img = checkerboard(20, 30, 5)
    (tmp_path / "fig1.png").write_bytes(png_bytes(img))
    (tmp_path / "hostname").write_text("not an image")
    page = tmp_path / "hostile.html"
    page.write_text(XSS_HTML, encoding="utf-8")
    art = read_article(page)
    assert art.title == "A hostile page"
    assert [f.number for f in art.figures] == ["1", "2", "3", "4", "5"]
    assert art.figures[0].caption == "Gold particles on carbon, see here. Scale bar, 50 nm."
    np.testing.assert_array_equal(art.figures[0].image, img)
    for f in art.figures:
        for marker in PAYLOAD_MARKERS:
            assert marker not in f.caption
    for f in art.figures[1:4]:  # javascript:, data: and file: sources are never followed
        assert f.image is None and f.image_ref is None
    assert art.figures[4].image is None  # ../../etc/hostname: only its base name is looked up
    assert "pwned" not in (art.title or "")


# ------------------------------------------------------------------------------ JATS
def test_jats_figures_metadata_and_images(tmp_path: Path) -> None:
    imgs = {"g1.png": checkerboard(20, 30, 5, seed=1), "g2.png": checkerboard(25, 25, 5, seed=2)}
    shots = tmp_path / "images"
    shots.mkdir()
    for name, arr in imgs.items():
        (shots / name).write_bytes(png_bytes(arr))
    xml = tmp_path / "article.xml"
    xml.write_bytes(jats_article(hrefs=["g1", "figures/g2.tif", "g3"]))
    art = read_article(xml, images_dir=shots)
    assert art.title == "Gold in situ"
    assert art.doi == "10.5555/jats.1"
    assert art.licence == "CC BY-NC 4.0"
    assert art.authors == ["Marie Curie"]
    assert art.abstract == "We count gold."
    assert art.journal == "Test Journal"
    assert [f.number for f in art.figures] == ["1", "2", "3", None]
    assert art.figures[0].caption == "Title 1. Panel a shows 1 particles; scale bar, 1 \u00b5m."
    np.testing.assert_array_equal(art.figures[0].image, imgs["g1.png"])
    np.testing.assert_array_equal(art.figures[1].image, imgs["g2.png"])  # .tif named, .png found
    assert art.figures[2].image is None and art.figures[2].image_ref == "g3"
    assert art.figures[3].caption == "" and art.figures[3].image is None


@pytest.mark.parametrize(
    "payload", [BILLION_LAUGHS, quadratic_blowup()], ids=["laughs", "quadratic"]
)
def test_xml_entity_bombs_rejected_quickly(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "bomb.xml"
    path.write_bytes(payload)
    t0 = time.perf_counter()
    with pytest.raises(UnsafeContent) as e:
        read_article(path)
    assert time.perf_counter() - t0 < 5.0  # nothing was expanded (generous bound)
    assert e.value.code == "xml_entities"


def test_xxe_never_reads_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711")
    path = tmp_path / "xxe.xml"
    path.write_bytes(xxe_file(secret))
    with pytest.raises(UnsafeContent) as e:
        read_article(path)
    assert "TOPSECRET" not in str(e.value)


@pytest.fixture()
def listener() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.3)
    yield srv
    srv.close()


def _connected(srv: socket.socket) -> bool:
    try:
        conn, _ = srv.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def test_external_dtd_is_never_fetched(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    path = tmp_path / "dtd.xml"
    path.write_bytes(external_dtd(port, use_entity=False))
    assert read_article(path).title == "A title"  # like PMC files that name their DTD
    path.write_bytes(external_dtd(port, use_entity=True))
    with pytest.raises(UnsafeContent) as e:
        read_article(path)
    assert "remote" in str(e.value)
    assert not _connected(listener)


def test_parameter_entities_never_load(tmp_path: Path, listener: socket.socket) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711")
    path = tmp_path / "pe.xml"
    path.write_bytes(parameter_entity(secret, listener.getsockname()[1]))
    with pytest.raises(UnsafeContent) as e:
        read_article(path)
    assert "TOPSECRET" not in str(e.value)
    assert not _connected(listener)


def test_xml_nesting_and_corruption(tmp_path: Path) -> None:
    deep = tmp_path / "deep.xml"
    deep.write_text(
        "<?xml version='1.0'?><article>" + "<sec>" * 5000 + "</sec>" * 5000 + "</article>"
    )
    with pytest.raises(NestingTooDeep):
        read_article(deep)
    broken = tmp_path / "broken.xml"
    broken.write_text("<?xml version='1.0'?><article><front></article>")
    with pytest.raises(CorruptFile, match="not well formed"):
        read_article(broken)
    other = tmp_path / "other.xml"
    other.write_text("<?xml version='1.0'?><catalog><book/></catalog>")
    with pytest.raises(UnsupportedFormat, match="no JATS <article>"):
        read_article(other)


# ------------------------------------------------------------------------------ shared articles
def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared literature data not found at {path}")
    return path


def _nontrivial(img: np.ndarray | None, min_side: int = 200) -> bool:
    return (
        img is not None
        and img.dtype == np.uint8
        and img.ndim == 3
        and min(img.shape[:2]) >= min_side
        and float(img.std()) > 10
    )


@pytest.mark.shared_data
def test_shared_open_access_pdf() -> None:
    art = read_article(_need(LIT / "pdf" / "open-access-article.pdf"))
    starts = {
        "1": "NMC cathodes imaged using different techniques.",
        "2": "The cross-section preparation workflow using Helios Hydra PFIB-SEM.",
        "3": "Kintsugi method results. (a) SEM-BSE cross-section image",
        "4": "Images of cathode cross-section prepared using kintsugi method.",
        "5": "High resolution image of crack network in single NMC particle.",
    }
    assert [f.number for f in art.figures] == list(starts)
    for f in art.figures:
        assert f.caption.startswith(starts[f.number or ""]), f.caption[:80]
        assert _nontrivial(f.image), f.number
    assert art.figures[0].caption.endswith("All scale bars are 20 \u00b5m.")
    assert "(a) Typical virtual cross-section of the cathode" in art.figures[0].caption
    assert art.figures[4].caption.endswith("Scale bar is 5 \u00b5m.")
    assert art.title is not None and art.title.startswith("Methods\u2014Kintsugi Imaging")
    assert art.doi == "10.1149/1945-7111/ac7a68"
    assert art.licence == "CC BY 4.0"


@pytest.mark.shared_data
def test_shared_pain_pdf_with_the_lm_trap() -> None:
    import pdfplumber

    path = _need(LIT / "pdf" / "pain-2014-baseer.pdf")
    art = read_article(path)
    starts = {
        "1": "Expression of neuropeptides and VGLUT2 by CTb-labelled primary afferents",
        "2": "Example of a Fluorogold injection site.",
        "3": "A NK1r-lacking lamina I spinoparabrachial neuron",
        "4": "A NK1r+ lamina I spinoparabrachial neuron",
        "5": "Density of contacts from nonpeptidergic CTb-labelled boutons",
        "6": "Sholl analysis of the contact densities",
        "7": "Combined confocal and electron microscopy.",
    }
    assert [f.number for f in art.figures] == list(starts)
    for f in art.figures:
        assert f.caption.startswith(starts[f.number or ""]), f.caption[:80]
        assert _nontrivial(f.image), f.number
        assert not re.search(r"\d\s?lm\b", f.caption)  # the font trap is repaired everywhere
    assert art.figures[0].caption.endswith(
        "Scale bars: (a) = 100 \u00b5m, (b\u2013e) = 10 \u00b5m."
    )
    assert art.figures[6].caption.endswith("(g) = 0.5 \u00b5m [also applies to (c-f)].")
    # Figure 2 is one embedded image with nothing drawn over it: its native pixels come back
    with pdfplumber.open(path) as pdf:
        (img,) = pdf.pages[4].images
    assert art.figures[1].image is not None
    assert art.figures[1].image.shape[:2] == (img["srcsize"][1], img["srcsize"][0])
    assert art.doi == "10.1016/j.pain.2014.08.023"
    assert art.title is not None and "NK1 receptor\u2013lacking" in art.title  # mojibake undone
    assert art.licence == "CC BY 3.0"


@pytest.mark.shared_data
def test_shared_nature_html() -> None:
    from PIL import Image

    page = _need(LIT / "figures" / "s41467-018-06211-3.html")
    art = read_article(page)
    assert [f.number for f in art.figures] == ["1", "2", "3", "4", "5"]
    for f in art.figures:
        jpg = page.parent / f"s41467-018-06211-3_fig{f.number}.jpg"
        assert f.image_ref == str(jpg)
        with Image.open(jpg) as im:
            assert f.image is not None and f.image.shape == (im.height, im.width, 3)
    cap1 = art.figures[0].caption
    assert cap1.startswith("Formation of the stripe pattern and dislocation. a, b Schematic")
    assert "Scale bars, 5 \u00b5m (c), 500 nm (d)" in cap1 and "Full size image" not in cap1
    assert "Ag2MnO4" in art.figures[1].caption
    assert art.title is not None and art.title.startswith("Seed-mediated atomic-scale")
    assert art.doi == "10.1038/s41467-018-06211-3"
    assert art.licence == "CC BY 4.0"
    assert len(art.authors) == 6 and art.journal == "Nature Communications"


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "n_figs", "doi", "licence", "first"),
    [
        ("elife00005.xml", 14, "10.7554/eLife.00005", "CC BY 3.0", "Reconstitution of the human"),
        ("PMC3384601.xml", 7, "10.1371/journal.pone.0039741", "CC BY", "Generation and production"),
        (
            "springer-nrl-2021-review.xml",
            28,
            "10.1186/s11671-021-03631-x",
            "CC BY 4.0",
            "Shows how lithium is stored in graphite.",
        ),
    ],
)
def test_shared_jats(name: str, n_figs: int, doi: str, licence: str, first: str) -> None:
    art = read_article(_need(LIT / "jats" / name))
    assert len(art.figures) == n_figs
    assert art.doi == doi and art.licence == licence
    assert art.figures[0].number == "1" and art.figures[0].caption.startswith(first)
    assert all(f.image is None and f.image_ref for f in art.figures)  # the set has no images
    assert all(f.caption for f in art.figures)
    numbers = [f.number for f in art.figures]
    assert len(set(numbers)) == len(numbers)
    if name.startswith("elife"):
        assert "9-S1" in numbers and not any("DOI:" in f.caption for f in art.figures)
