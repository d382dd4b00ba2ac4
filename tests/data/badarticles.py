"""Generated articles for the article-reader tests: good ones with known figures, bad ones.

Good PDFs are drawn with matplotlib's PDF backend (real text with TrueType fonts, ``imshow``
embeds the raster losslessly, plots are vector paths), so every figure's number, caption,
pixels and place on the page are known. Bad PDFs are written by hand, byte by byte.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAGE_W, PAGE_H = 612.0, 792.0  # US letter, points

FILLER = [
    "The",
    "electron",
    "micrographs",
    "were",
    "recorded",
    "at",
    "two",
    "magnifications",
    "and",
    "the",
    "particles",
    "were",
    "counted",
    "by",
    "hand",
    "in",
    "every",
    "field",
    "of",
    "view",
    "before",
    "any",
    "automatic",
    "analysis",
    "was",
    "attempted",
    "here",
]


def _lines(n: int, width: int, seed: int) -> list[str]:
    """``n`` lines of filler prose, each about ``width`` characters (>= 5 words)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words: list[str] = []
        while len(" ".join(words)) < width:
            words.append(FILLER[int(rng.integers(len(FILLER)))])
        out.append(" ".join(words))
    return out


def checkerboard(h: int, w: int, square: int, *, seed: int = 0) -> np.ndarray:
    """An RGB uint8 checkerboard with a random grey level per square (a non-trivial image)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(20, 235, size=(h // square + 1, w // square + 1), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    g = levels[yy // square, xx // square]
    g[(yy // square + xx // square) % 2 == 0] //= 3
    return np.repeat(g[:, :, None], 3, axis=2)


@dataclass
class TruthFigure:
    number: str
    caption: str  # as it should come back: without "Figure N."
    page: int  # 0-based
    box_pt: tuple[float, float, float, float]  # x0, top, x1, bottom of the drawing, points
    raster: np.ndarray | None = None  # the embedded image, when the figure is one raster


@dataclass
class TruthArticle:
    title: str
    doi: str
    licence: str
    figures: list[TruthFigure] = field(default_factory=list)


def _axes_box(rect: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, y, w, h = rect
    return (x * PAGE_W, (1 - y - h) * PAGE_H, (x + w) * PAGE_W, (1 - y) * PAGE_H)


def matplotlib_article(path: Path) -> TruthArticle:
    """A three-page article: one-column pages with a raster and a vector figure, then a
    two-column page with one figure per column and body text around them.

    Traps: an in-text "as shown in Fig. 1." mid-line, a line that starts "Fig. 2 shows ..." (an
    in-text reference at a line start), a caption over two lines, "5 µm" in a caption.
    """
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    truth = TruthArticle(
        title="Counting gold particles on generated checkerboards",
        doi="10.5555/emdig.test.0001",
        licence="CC BY 4.0",
    )
    meta = {"Title": truth.title, "Subject": f"Test Journal, 1 (2024) 1-3. doi:{truth.doi}"}
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path, metadata=meta) as pdf:
        # ---- page 1: title, body, Figure 1 (one raster), body
        fig = Figure(figsize=(PAGE_W / 72, PAGE_H / 72))
        fig.text(0.08, 0.95, truth.title, fontsize=16, weight="bold")
        y = 0.92
        body = _lines(6, 95, 1)
        body[2] = "The counts agree with the manual ones, as shown in Fig. 1. The method " + body[2]
        body[5] = "This is an open access article under the CC BY 4.0 licence for everyone."
        for line in body:
            fig.text(0.08, y, line, fontsize=10)
            y -= 0.016
        raster = checkerboard(96, 128, 8, seed=1)
        rect = (0.25, 0.50, 0.5, 0.28)
        ax = fig.add_axes(rect)
        ax.imshow(raster, interpolation="none", aspect="auto")
        ax.axis("off")
        cap1 = (
            "A checkerboard of squares with random grey levels, standing in for a micrograph of "
            "gold particles. Scale bar, 5 \u00b5m."
        )
        cut = cap1.rindex(" ", 0, 86)
        fig.text(0.08, 0.475, "Figure 1. " + cap1[:cut], fontsize=9)
        fig.text(0.08, 0.462, cap1[cut:].strip(), fontsize=9)
        truth.figures.append(TruthFigure("1", cap1, 0, _axes_box(rect), raster))
        y = 0.42
        for i, line in enumerate(_lines(10, 95, 2)):
            if i == 3:
                line = "Fig. 2 shows the sine wave that was drawn with vectors and " + line[:40]
            fig.text(0.08, y, line, fontsize=10)
            y -= 0.016
        fig.savefig(pdf, format="pdf")
        # ---- page 2: body, Figure 2 (vector plot), body
        fig = Figure(figsize=(PAGE_W / 72, PAGE_H / 72))
        y = 0.95
        for line in _lines(8, 95, 3):
            fig.text(0.08, y, line, fontsize=10)
            y -= 0.016
        rect = (0.2, 0.42, 0.6, 0.3)
        ax = fig.add_axes(rect)
        t = np.linspace(0, 4 * np.pi, 200)
        ax.plot(t, np.sin(t), color="black", linewidth=2)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("signal")
        cap2 = "A sine wave drawn as vectors, with its axes and tick labels."
        fig.text(0.08, 0.34, "Figure 2. " + cap2, fontsize=9)
        # the drawing with its tick and axis labels: about 50 pt left, 35 pt under the axes
        x0, top, x1, bottom = _axes_box(rect)
        truth.figures.append(TruthFigure("2", cap2, 1, (x0, top, x1, bottom)))
        y = 0.30
        for line in _lines(8, 95, 4):
            fig.text(0.08, y, line, fontsize=10)
            y -= 0.016
        fig.savefig(pdf, format="pdf")
        # ---- page 3: two columns, Figure 3 (raster, left), Figure 4 (vector, right)
        fig = Figure(figsize=(PAGE_W / 72, PAGE_H / 72))
        for col, xs in enumerate((0.08, 0.53)):
            y = 0.95
            for line in _lines(10, 44, 5 + col):
                fig.text(xs, y, line, fontsize=10)
                y -= 0.016
            y = 0.36
            for line in _lines(12, 44, 7 + col):
                fig.text(xs, y, line, fontsize=10)
                y -= 0.016
        raster3 = checkerboard(80, 80, 10, seed=3)
        rect3 = (0.1, 0.47, 0.33, 0.3)
        ax = fig.add_axes(rect3)
        ax.imshow(raster3, interpolation="none", aspect="auto")
        ax.axis("off")
        cap3 = "Left column figure: a coarse checkerboard."
        fig.text(0.08, 0.43, "Figure 3. " + cap3, fontsize=9)
        truth.figures.append(TruthFigure("3", cap3, 2, _axes_box(rect3), raster3))
        rect4 = (0.62, 0.50, 0.3, 0.27)
        ax = fig.add_axes(rect4)
        ax.bar([1, 2, 3], [3, 1, 2], color="gray")
        ax.set_ylabel("count")
        cap4 = "Right column figure: bars."
        fig.text(0.53, 0.43, "Fig. 4: " + cap4, fontsize=9)
        truth.figures.append(TruthFigure("4", cap4, 2, _axes_box(rect4)))
        fig.savefig(pdf, format="pdf")
    return truth


def busy_pdf(path: Path, n_points: int = 20_000) -> None:
    """One page: a caption *above* its line plot, body text, then a scatter plot of
    ``n_points`` markers (one PDF form each) with its caption under it."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        fig = Figure(figsize=(PAGE_W / 72, PAGE_H / 72))
        y = 0.95
        for line in _lines(5, 95, 11):
            fig.text(0.08, y, line, fontsize=10)
            y -= 0.016
        fig.text(0.08, 0.84, "Figure 1. Caption above its figure.", fontsize=9)
        ax = fig.add_axes((0.2, 0.55, 0.6, 0.27))
        ax.plot([0, 1], [1, 0])
        y = 0.5
        for line in _lines(5, 95, 12):
            fig.text(0.08, y, line, fontsize=10)
            y -= 0.016
        ax = fig.add_axes((0.2, 0.1, 0.6, 0.25))
        rng = np.random.default_rng(0)
        ax.scatter(rng.random(n_points), rng.random(n_points), s=1)
        fig.text(0.08, 0.05, "Figure 2. Many points.", fontsize=9)
        fig.savefig(pdf, format="pdf")


def rotated_pdf(path: Path) -> None:
    """A landscape page made the usual way: /Rotate 90 and content drawn turned by 90 degrees,
    so that text reads horizontally on screen. The grey box is 300 x 150 pt as displayed."""
    write_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Rotate 90 /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(
                b"q 0 1 -1 0 612 0 cm 0.4 g 72 400 300 150 re f BT /F1 10 Tf 72 380 Td "
                b"(Figure 1. A grey box drawn as a vector path.) Tj ET Q\n"
            ),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ],
    )


def pdf_pages(path: Path, n: int) -> None:
    """A valid matplotlib PDF of ``n`` pages, each with one caption and one drawing."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with PdfPages(path) as pdf:
        for i in range(n):
            fig = Figure(figsize=(4, 4))
            ax = fig.add_axes((0.2, 0.3, 0.6, 0.6))
            ax.plot([0, 1], [0, i])
            fig.text(0.05, 0.1, f"Figure {i + 1}. Page {i + 1}.", fontsize=9)
            fig.savefig(pdf, format="pdf")


# ------------------------------------------------------------------------------ hand-made PDFs
def write_pdf(path: Path, objects: list[bytes], *, trailer_extra: bytes = b"") -> None:
    """Write objects 1..n as a PDF with a correct cross-reference table; object 1 is the root."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        trailer_extra,
        xref,
    )
    path.write_bytes(bytes(out))


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


CAPTIONED_CONTENT = (
    b"0.4 g 72 400 300 250 re f\n"  # the "figure": a filled grey box
    b"BT /F1 10 Tf 72 380 Td (Figure 1. A grey box drawn as a vector path.) Tj ET\n"
)


def simple_pdf(path: Path, content: bytes = CAPTIONED_CONTENT) -> None:
    """One page with a grey box and its caption "Figure 1. A grey box ..."."""
    write_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ],
    )


def many_pages_pdf(path: Path, n: int) -> None:
    """A PDF whose page tree holds ``n`` (empty) pages."""
    kids = b" ".join(b"%d 0 R" % (i + 3) for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n),
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>"] * n
    write_pdf(path, objects)


def stream_bomb_pdf(path: Path, inflated: int) -> None:
    """A one-page PDF whose content stream is ``inflated`` bytes of spaces, Flate-compressed."""
    comp = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    parts = [comp.compress(chunk) for _ in range(inflated // len(chunk))]
    parts.append(comp.compress(b" " * (inflated % len(chunk))))
    parts.append(comp.flush())
    data = b"".join(parts)
    write_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            _stream(data, b"/Filter /FlateDecode "),
        ],
    )


_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for b in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(b ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def encrypted_pdf(path: Path, *, user_password: bytes, owner_password: bytes = b"owner") -> None:
    """``simple_pdf`` encrypted with the standard security handler (RC4 40-bit, revision 2).

    With an empty user password the file opens without a password (restrictions only).
    """

    def padded(pw: bytes) -> bytes:
        return (pw + _PAD)[:32]

    o_key = hashlib.md5(padded(owner_password)).digest()[:5]
    o = _rc4(o_key, padded(user_password))
    p = -44
    file_id = hashlib.md5(b"emdig test").digest()
    key = hashlib.md5(padded(user_password) + o + struct.pack("<i", p) + file_id).digest()[:5]
    u = _rc4(key, _PAD)

    def enc(num: int, data: bytes) -> bytes:
        k = hashlib.md5(key + struct.pack("<I", num)[:3] + b"\x00\x00").digest()[:10]
        return _rc4(k, data)

    write_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(enc(4, CAPTIONED_CONTENT)),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
            % (o.hex().encode(), u.hex().encode(), p),
        ],
        trailer_extra=b"/Encrypt 6 0 R /ID [<%s> <%s>] " % ((file_id.hex().encode(),) * 2),
    )


# ------------------------------------------------------------------------------ XML
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<article><front><article-meta><title-group><article-title>&lol9;</article-title>
</title-group></article-meta></front></article>
"""


def quadratic_blowup() -> bytes:
    big = "x" * 100_000
    refs = "&big;" * 20_000
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE article [<!ENTITY big "{big}">]>\n'
        f"<article><front><article-meta><title-group><article-title>{refs}</article-title>"
        "</title-group></article-meta></front></article>"
    ).encode()


def xxe_file(secret: Path) -> bytes:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE article [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        "<article><front><article-meta><title-group><article-title>&xxe;</article-title>"
        "</title-group></article-meta></front></article>"
    ).encode()


def external_dtd(port: int, *, use_entity: bool) -> bytes:
    ent = "&remote;" if use_entity else "A title"
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE article SYSTEM "http://127.0.0.1:{port}/x.dtd">\n'
        f"<article><front><article-meta><title-group><article-title>{ent}</article-title>"
        "</title-group></article-meta></front></article>"
    ).encode()


def parameter_entity(secret: Path, port: int) -> bytes:
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE article [\n'
        f'<!ENTITY % file SYSTEM "{secret.as_uri()}">\n'
        f'<!ENTITY % dtd SYSTEM "http://127.0.0.1:{port}/evil.dtd">\n'
        "%dtd;\n]>\n"
        "<article><front><article-meta><title-group><article-title>&send;</article-title>"
        "</title-group></article-meta></front></article>"
    ).encode()


def jats_article(*, hrefs: list[str]) -> bytes:
    figs = "".join(
        f'<fig id="f{i}"><label>Figure {i}.</label><caption><title>Title {i}</title>'
        f"<p>Panel <bold>a</bold> shows {i} particles; scale bar, {i} &#x03bc;m.</p></caption>"
        f'<graphic xlink:href="{h}"/></fig>'
        for i, h in enumerate(hrefs, start=1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange '
        'DTD v1.1 20151215//EN" "JATS-archivearticle1.dtd">\n'
        '<article xmlns:xlink="http://www.w3.org/1999/xlink"><front>'
        "<journal-meta><journal-title-group><journal-title>Test Journal</journal-title>"
        "</journal-title-group></journal-meta><article-meta>"
        '<article-id pub-id-type="doi">10.5555/jats.1</article-id>'
        "<title-group><article-title>Gold <italic>in situ</italic></article-title></title-group>"
        '<contrib-group><contrib contrib-type="author"><name><surname>Curie</surname>'
        "<given-names>Marie</given-names></name></contrib></contrib-group>"
        '<permissions><license xlink:href="https://creativecommons.org/licenses/by-nc/4.0/">'
        "<license-p>CC BY-NC</license-p></license></permissions>"
        "<abstract><p>We count gold.</p></abstract></article-meta></front>"
        f"<body><sec><p>Text.</p>{figs}<fig id='x'><graphic xlink:href='none'/></fig></sec></body>"
        "</article>"
    ).encode()


# ------------------------------------------------------------------------------ images
def png_bytes(rgb: np.ndarray) -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels with hardly any data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


XSS_HTML = """<!DOCTYPE html>
<html><head><title>Hostile page</title>
<meta name="citation_title" content="A hostile page">
<script>document.title = "pwned"; alert("SCRIPT-IN-HEAD")</script>
<style>figcaption::after { content: "STYLE-TEXT" }</style>
</head><body onload="alert('BODY-ONLOAD')">
<figure id="f1">
  <img src="fig1.png" onerror="alert('IMG-ONERROR')" width="300" height="200">
  <figcaption>Figure 1. Gold particles<script>alert("SCRIPT-IN-CAPTION")</script> on carbon,
  <a href="javascript:alert('JS-URL')">see here</a>.<svg onload="alert('SVG-ONLOAD')">
  <path d="M0 0"/><script>alert("SVG-SCRIPT")</script><text>SVG-TEXT</text></svg>
  <iframe src="javascript:alert('IFRAME')">IFRAME-TEXT</iframe> Scale bar, 50&nbsp;nm.</figcaption>
</figure>
<figure id="f2"><img src="javascript:alert('JS-SRC')" width="300" height="200">
  <figcaption>Figure 2. Javascript source.</figcaption></figure>
<figure id="f3"><img src="data:image/svg+xml;base64,PHN2Zy8+" width="300" height="200">
  <figcaption>Figure 3. A data URL.</figcaption></figure>
<figure id="f4"><img src="file:///etc/passwd" width="300" height="200">
  <figcaption>Figure 4. A file URL.</figcaption></figure>
<figure id="f5"><img src="../../../../../../etc/hostname" width="300" height="200">
  <figcaption>Figure 5. Climbing out.</figcaption></figure>
</body></html>
"""

PAYLOAD_MARKERS = (
    "SCRIPT-IN-HEAD",
    "STYLE-TEXT",
    "BODY-ONLOAD",
    "IMG-ONERROR",
    "SCRIPT-IN-CAPTION",
    "JS-URL",
    "SVG-ONLOAD",
    "SVG-SCRIPT",
    "SVG-TEXT",
    "IFRAME",
    "alert",
    "javascript",
    "<",
)


def nature_like_html(*, src: str) -> str:
    """A page shaped like nature.com's: label in <figcaption>, text in a description div."""
    return f"""<!DOCTYPE html><html lang="en"><head>
<meta name="citation_title" content="Silver &amp; gold nanoplates">
<meta name="citation_doi" content="10.1038/s41467-000-00000-0">
<meta name="citation_author" content="Ada Lovelace">
<meta name="citation_author" content="Alan Turing">
<meta name="citation_journal_title" content="Nature Communications">
<link rel="canonical" href="https://www.nature.com/articles/s41467-000-00000-0">
</head><body><article>
<p>In the text, Fig. 1 is cited.</p>
<figure><figcaption><b class="c-article-section__figure-caption" id="Fig1">Fig. 1</b></figcaption>
<div class="c-article-section__figure-content"><div class="c-article-section__figure-item">
<a href="/articles/s41467-000-00000-0/figures/1"><picture>
<source srcset="{src}?as=webp" type="image/webp"/>
<img alt="figure1" src="{src}" width="685" height="400"/></picture></a></div>
<div class="c-article-section__figure-description" id="figure-1-desc"><p>Nanoplates.
<b>a</b>, <b>b</b> TEM of Ag<sub>2</sub>MnO<sub>4</sub>. Scale bars, 5 \u03bcm (<b>a</b>)</p>
</div></div><div class="u-hide-print"><a href="/x"><span>Full size image</span></a></div>
</figure>
<figure><img src="plain.png" width="200" height="100"></figure>
<p>To view a copy of this license, visit
<a href="http://creativecommons.org/licenses/by/4.0/" rel="license">here</a>.</p>
</article></body></html>
"""
