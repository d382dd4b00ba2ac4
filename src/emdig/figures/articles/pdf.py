"""Figures and their captions from a PDF article.

pypdfium2 reads the text (characters with their boxes and fonts) and the drawing (images, paths,
forms) of each page and renders the figure regions; pdfplumber's word grouping turns characters
into words and pdfminer reads the document information dictionary. Everything runs before
parsing is budgeted: file size, %%EOF, every stream's inflated size, page count; then time.

How a figure is found:

1. Every text line that starts with a figure label ("Figure 3.", "Fig. 3 |", "FIG. 3:",
   "Figure S2", a bold "Fig. 3") at the start of a column is a caption candidate. In-text
   references ("as shown in Fig. 2", a line that starts "Fig. 2b shows") are not: the label
   must be followed by punctuation, or be set in a bold face, and not followed by lower-case text.
   Where one number has several candidates the best scored wins.
2. The caption block is that line and the lines under it in the same column, at the same font
   size and line spacing.
3. The figure is what lies in the slot above the caption (up to the nearest paragraph of body
   text, other caption or table in the same columns): embedded images, vector drawing (paths,
   shadings, forms) and the small text of labels and axes linked to them by gaps under 1.5
   caption line heights; running heads and page numbers are left out. If that slot is empty, the
   slot below, then the side of the caption, is tried.
4. A region that is a single embedded image with nothing drawn over it is extracted at its native
   resolution; any other region (composite, vector, labels over an image) is rendered with
   pypdfium2 at ``render_dpi``.

Uncaptioned images are not returned: in a PDF they are as often logos and advertisements.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import (
    CorruptFile,
    EmdigError,
    EncryptedFile,
    StreamTooLarge,
    TooLarge,
    TooManyPages,
    TruncatedFile,
    UnsupportedFormat,
)
from ...io.sniff import open_checked
from ..records import Article, ArticleFigure
from ._base import ArticleLimits, Deadline, clean_text, fix_micro, normalise_licence, split_label

__all__ = ["read_pdf"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------ budgets first
def _check_file(path: Path, limits: ArticleLimits) -> int:
    st = open_checked(path)
    if st.st_size > limits.max_bytes:
        raise TooLarge(
            f"PDF is {st.st_size} bytes, more than the budget of {limits.max_bytes} "
            "(ArticleLimits.max_bytes)",
            path=path,
        )
    with open(path, "rb") as fh:
        head = fh.read(1024)
        fh.seek(max(0, st.st_size - 2048))
        tail = fh.read()
    if b"%PDF-" not in head:
        raise UnsupportedFormat(f"not a PDF: no %PDF- header (starts {head[:8]!r})", path=path)
    if b"%%EOF" not in tail:
        raise TruncatedFile(
            "PDF is cut short: no %%EOF marker at its end (download it again)", path=path
        )
    return st.st_size


_STREAM = re.compile(rb"(?<![A-Za-z])stream(?:\r\n|\n|\r)")


def _prescan_streams(path: Path, limits: ArticleLimits, deadline: Deadline) -> None:
    """Measure every stream, raw and inflated, before any PDF parser touches the file.

    The inflated size of a Flate stream is counted chunk by chunk and never held in memory, so a
    small file that inflates to gigabytes is refused after at most ``max_stream_bytes`` of work.
    """
    cap = limits.max_stream_bytes
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for i, m in enumerate(_STREAM.finditer(mm)):
            if i % 64 == 0:
                deadline.check("checking the PDF's streams")
            start = m.end()
            end = mm.find(b"endstream", start)
            end = len(mm) if end < 0 else end
            if end - start > cap:
                raise StreamTooLarge(
                    f"PDF stream at byte {start} is {end - start} bytes, more than the budget "
                    f"of {cap} (ArticleLimits.max_stream_bytes)",
                    path=path,
                )
            b0, b1 = mm[start : start + 2] if end - start >= 2 else (0, 0)
            if b0 & 0x0F == 8 and (b0 * 256 + b1) % 31 == 0:  # a zlib header: FlateDecode
                size = _inflated_size(mm, start, end, cap)
                if size > cap:
                    raise StreamTooLarge(
                        f"PDF stream at byte {start} inflates to more than {cap} bytes "
                        "(ArticleLimits.max_stream_bytes); refused before parsing",
                        path=path,
                    )


def _inflated_size(buf: mmap.mmap, start: int, end: int, cap: int) -> int:
    d = zlib.decompressobj()
    total = 0
    pos = start
    try:
        while pos < end and not d.eof:
            data = buf[pos : min(pos + 65536, end)]
            pos += len(data)
            while data:
                total += len(d.decompress(data, 1 << 20))
                if total > cap:
                    return total
                data = d.unconsumed_tail
                if d.eof:
                    break
    except zlib.error:
        pass  # a broken stream is the parser's business, not a budget matter
    return total


def _open_pdfium(path: Path) -> Any:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        code = getattr(e, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise EncryptedFile(
                "PDF is encrypted and needs a password; save a decrypted copy first "
                "(e.g. qpdf --decrypt in.pdf out.pdf)",
                path=path,
            ) from None
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise EncryptedFile("PDF uses an unsupported security handler", path=path) from None
        raise CorruptFile(f"PDF cannot be opened: {e}", path=path) from None


# ------------------------------------------------------------------------------ page layout
@dataclass
class _Box:
    x0: float
    top: float
    x1: float
    bottom: float

    @property
    def w(self) -> float:
        return self.x1 - self.x0

    @property
    def h(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.w) * max(0.0, self.h)

    @property
    def cy(self) -> float:
        return (self.top + self.bottom) / 2

    def hover(self, x0: float, x1: float) -> float:
        """Horizontal overlap with ``[x0, x1]`` in points."""
        return max(0.0, min(self.x1, x1) - max(self.x0, x0))

    def near(self, o: _Box, pad: float) -> bool:
        return (
            self.x0 - pad <= o.x1
            and o.x0 <= self.x1 + pad
            and self.top - pad <= o.bottom
            and o.top <= self.bottom + pad
        )

    def inter(self, o: _Box) -> float:
        w = min(self.x1, o.x1) - max(self.x0, o.x0)
        h = min(self.bottom, o.bottom) - max(self.top, o.top)
        return w * h if w > 0 and h > 0 else 0.0


@dataclass
class _Seg(_Box):
    """A piece of a text line inside one column."""

    text: str = ""
    size: float = 0.0
    nwords: int = 0
    fonts: list[str] = field(default_factory=list)  # per word
    words: list[str] = field(default_factory=list)


@dataclass
class _Graphic(_Box):
    kind: str = "vector"  # "image", "vector" or "text"
    srcsize: tuple[int, int] | None = None
    locator: tuple[int, ...] = ()  # where pdfium finds the image: object indices, forms nested


@dataclass
class _Page:
    index: int
    width: float
    height: float
    segs: list[_Seg]
    graphics: list[_Graphic]
    furniture: set[int] = field(default_factory=set)  # ids of running heads, page numbers


_SYMBOL_FONT = re.compile(r"symbol|math|mt ?extra|greek|psmp|\bsym|universal", re.I)


def _base_font(name: str) -> str:
    return name.split("+", 1)[-1]


def _is_bold(name: str) -> bool:
    base = _base_font(name)
    return bool(re.search(r"bold|black|heavy|semibold|demi", base, re.I)) or bool(
        re.search(r"[-.,_](B|Bd|BD|SB|Bol)$|-B[A-Z]", base)
    )


def _fix_mu_chars(chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A symbol-font "l" before a unit letter is a mu whose ToUnicode map is wrong."""
    out = list(chars)
    for i, c in enumerate(chars[:-1]):
        if c.get("text") != "l":
            continue
        nxt = chars[i + 1]
        if nxt.get("text") not in ("m", "M", "g", "L", "l", "s"):
            continue
        font, nfont = c.get("fontname", ""), nxt.get("fontname", "")
        prev = "".join(str(p.get("text", "")) for p in chars[max(0, i - 2) : i])
        if _base_font(font) != _base_font(nfont) and (
            _SYMBOL_FONT.search(font) or re.search(r"\d\s?$", prev)
        ):
            out[i] = dict(c, text="\u00b5")
    return out


class _Display:
    """Maps PDF user space to the displayed page: origin top-left, y down, crop box, rotation."""

    def __init__(self, pdf_page: Any) -> None:
        self.cx0, self.cy0, self.cx1, self.cy1 = (float(v) for v in pdf_page.get_cropbox())
        self.rot = int(pdf_page.get_rotation()) % 360
        self.width = float(pdf_page.get_width())
        self.height = float(pdf_page.get_height())

    def box(self, left: float, bottom: float, right: float, top: float) -> _Box:
        if self.rot == 90:
            x0, x1, y0, y1 = bottom - self.cy0, top - self.cy0, left - self.cx0, right - self.cx0
        elif self.rot == 180:
            x0, x1, y0, y1 = self.cx1 - right, self.cx1 - left, bottom - self.cy0, top - self.cy0
        elif self.rot == 270:
            x0, x1, y0, y1 = self.cy1 - top, self.cy1 - bottom, self.cx1 - right, self.cx1 - left
        else:
            x0, x1, y0, y1 = left - self.cx0, right - self.cx0, self.cy1 - top, self.cy1 - bottom
        return _Box(x0, y0, x1, y1)


# pdfium page object types (shadings, 4, count as drawing)
_TEXT, _PATH, _IMAGE, _FORM = 1, 2, 3, 5
_MAX_OBJECTS = 500_000  # per page; beyond it the rest of the page is one coarse box


def _read_page(pdf_page: Any, index: int, deadline: Deadline) -> _Page:
    """The text (as line segments) and the drawing (images, paths, forms) of one page.

    Everything comes from pdfium, whose cost grows with the page's content but stays in C:
    a page of 20 000 plotted markers takes a fraction of a second.
    """
    from pdfplumber.utils.text import WordExtractor

    disp = _Display(pdf_page)
    chars = _fix_mu_chars(_page_chars(pdf_page, disp))
    deadline.check(f"reading the text of page {index + 1}")
    words = WordExtractor(
        x_tolerance_ratio=0.15, y_tolerance=2, extra_attrs=["fontname", "size"]
    ).extract_words(chars)
    upright = [w for w in words if w.get("upright", True)]
    graphics: list[_Graphic] = [
        _Graphic(w["x0"], w["top"], w["x1"], w["bottom"], kind="text")
        for w in words
        if not w.get("upright", True)
    ]
    graphics += _page_graphics(pdf_page, disp, deadline, index)
    return _Page(index, disp.width, disp.height, _segments(upright), graphics)


def _page_chars(pdf_page: Any, disp: _Display) -> list[dict[str, Any]]:
    import ctypes

    import pypdfium2.raw as pdfium_c

    textpage = pdf_page.get_textpage()
    try:
        n = textpage.count_chars()
        buf = ctypes.create_string_buffer(256)
        flags = ctypes.c_int()
        left, bottom, right, top = (ctypes.c_double() for _ in range(4))
        rect = pdfium_c.FS_RECTF()
        chars: list[dict[str, Any]] = []
        fonts: dict[int, str] = {}
        raw = textpage.raw
        for i in range(n):
            if pdfium_c.FPDFText_IsGenerated(raw, i) == 1:
                continue  # spaces and line breaks pdfium inferred; we do our own layout
            if pdfium_c.FPDFText_HasUnicodeMapError(raw, i) == 1:
                text = "\ufffd"
            else:
                code = pdfium_c.FPDFText_GetUnicode(raw, i)
                if code == 0 or 0xD800 <= code <= 0xDFFF:
                    continue
                # pdfium reports a hyphen at a line end as U+0002
                text = "-" if code == 2 else chr(code)
            if not pdfium_c.FPDFText_GetLooseCharBox(raw, i, rect):
                if not pdfium_c.FPDFText_GetCharBox(raw, i, left, right, bottom, top):
                    continue
                box = disp.box(left.value, bottom.value, right.value, top.value)
            else:
                box = disp.box(rect.left, rect.bottom, rect.right, rect.top)
            obj = pdfium_c.FPDFText_GetTextObject(raw, i)
            key = ctypes.cast(obj, ctypes.c_void_p).value or 0
            font = fonts.get(key)
            if font is None:
                pdfium_c.FPDFText_GetFontInfo(raw, i, buf, len(buf), ctypes.byref(flags))
                font = fonts[key] = buf.value.decode("utf-8", "replace")
            # upright as displayed: pdfium's angle is clockwise in user space, and the page's
            # /Rotate turns it further clockwise
            turn = (pdfium_c.FPDFText_GetCharAngle(raw, i) + disp.rot * np.pi / 180) % (2 * np.pi)
            upright = min(turn, 2 * np.pi - turn) < 0.05
            size = box.h if upright else box.w
            chars.append(
                {"text": text, "x0": box.x0, "x1": box.x1, "top": box.top, "bottom": box.bottom,
                 "doctop": box.top, "upright": upright, "size": round(size, 2), "fontname": font}
            )  # fmt: skip
        return chars
    finally:
        textpage.close()


def _page_graphics(pdf_page: Any, disp: _Display, deadline: Deadline, index: int) -> list[_Graphic]:
    import ctypes

    import pypdfium2.raw as pdfium_c

    page_area = disp.width * disp.height
    fl, fb, fr, ft = (ctypes.c_float() for _ in range(4))
    red, green, blue, alpha = (ctypes.c_uint() for _ in range(4))
    fillmode, stroke = ctypes.c_int(), ctypes.c_int()
    pw, ph = ctypes.c_uint(), ctypes.c_uint()
    mat = pdfium_c.FS_MATRIX()
    out: list[_Graphic] = []
    seen = 0
    # (handle, locator, matrix from the object's space to page space or None for page space)
    stack: list[tuple[Any, tuple[int, ...], tuple[float, ...] | None]] = []
    n = pdfium_c.FPDFPage_CountObjects(pdf_page.raw)
    for i in reversed(range(n)):
        stack.append((pdfium_c.FPDFPage_GetObject(pdf_page.raw, i), (i,), None))
    coarse: _Box | None = None
    while stack:
        h, loc, m = stack.pop()
        seen += 1
        if seen % 5000 == 0:
            deadline.check(f"reading the drawing of page {index + 1}")
        kind = pdfium_c.FPDFPageObj_GetType(h)
        if kind == _TEXT or not pdfium_c.FPDFPageObj_GetBounds(h, fl, fb, fr, ft):
            continue
        x0, y0, x1, y1 = fl.value, fb.value, fr.value, ft.value
        if kind == _PATH and _degenerate(h):
            continue  # a path of one point: draws nothing, yet pdfium bounds it by its width
        clip = _clip_bounds(h)
        if clip is not None:
            x0, y0 = max(x0, clip[0]), max(y0, clip[1])
            x1, y1 = min(x1, clip[2]), min(y1, clip[3])
            if x1 <= x0 or y1 <= y0:
                continue  # clipped away entirely
        if m is not None:
            x0, y0, x1, y1 = _transform_bounds(m, x0, y0, x1, y1)
        box = disp.box(x0, y0, x1, y1)
        box = _Box(max(0.0, box.x0), max(0.0, box.top), min(disp.width, box.x1),
                   min(disp.height, box.bottom))  # fmt: skip
        if box.w < 0 or box.h < 0:
            continue  # off the page
        if seen > _MAX_OBJECTS:
            coarse = box if coarse is None else _union([coarse, box])
            continue
        if kind == _FORM:
            count = pdfium_c.FPDFFormObj_CountObjects(h)
            if box.area > 0.5 * page_area and count > 0:
                # a form wrapping much of the page: look at what is inside it
                pdfium_c.FPDFPageObj_GetMatrix(h, mat)
                fm = (mat.a, mat.b, mat.c, mat.d, mat.e, mat.f)
                inner = fm if m is None else _compose(fm, m)
                for k in reversed(range(count)):
                    stack.append((pdfium_c.FPDFFormObj_GetObject(h, k), (*loc, k), inner))
                continue
        if box.area > 0.8 * page_area:
            continue  # a page background
        if kind == _IMAGE:
            pdfium_c.FPDFImageObj_GetImagePixelSize(h, pw, ph)
            if box.w >= 2 and box.h >= 2:
                out.append(_Graphic(box.x0, box.top, box.x1, box.bottom, kind="image",
                                    srcsize=(pw.value, ph.value), locator=loc))  # fmt: skip
            continue
        if kind == _PATH:
            ok = pdfium_c.FPDFPath_GetDrawMode(h, ctypes.byref(fillmode), ctypes.byref(stroke))
            if ok and fillmode.value and not stroke.value:
                pdfium_c.FPDFPageObj_GetFillColor(h, red, green, blue, alpha)
                if min(red.value, green.value, blue.value) >= 250 or alpha.value == 0:
                    continue  # white or invisible fills are masks and backgrounds, not drawing
            if not ok or (not fillmode.value and not stroke.value):
                continue  # clipping paths and other invisible paths
            if stroke.value and not fillmode.value:
                pdfium_c.FPDFPageObj_GetStrokeColor(h, red, green, blue, alpha)
                if min(red.value, green.value, blue.value) >= 250 or alpha.value == 0:
                    continue  # white lines on white paper
        out.append(_Graphic(box.x0, box.top, box.x1, box.bottom))
    if coarse is not None:
        log.warning(
            "page %d has more than %d objects; the rest is one box", index + 1, _MAX_OBJECTS
        )
        out.append(_Graphic(coarse.x0, coarse.top, coarse.x1, coarse.bottom))
    return _coalesce(out)


def _coalesce(items: list[_Graphic], *, most: int = 3000, cell: float = 6.0) -> list[_Graphic]:
    """Merge vector pieces that share a ``cell``-point grid cell, when a page has very many.

    A scatter plot of 20 000 markers becomes a few hundred boxes; figure regions come out the
    same because merged pieces are closer to each other than the gap that links drawing.
    """
    vec = [g for g in items if g.kind == "vector"]
    if len(vec) <= most:
        return items
    boxes = np.array([(g.x0, g.top, g.x1, g.bottom) for g in vec], dtype=np.float64)
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2 // cell).astype(np.int64)
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2 // cell).astype(np.int64)
    key = cx * 1_000_003 + cy
    order = np.argsort(key, kind="stable")
    key, boxes = key[order], boxes[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    x0 = np.minimum.reduceat(boxes[:, 0], starts)
    t0 = np.minimum.reduceat(boxes[:, 1], starts)
    x1 = np.maximum.reduceat(boxes[:, 2], starts)
    b1 = np.maximum.reduceat(boxes[:, 3], starts)
    merged = [_Graphic(float(a), float(b), float(c), float(d))
              for a, b, c, d in zip(x0, t0, x1, b1, strict=True)]  # fmt: skip
    return [g for g in items if g.kind != "vector"] + merged


def _degenerate(h: Any) -> bool:
    import ctypes

    import pypdfium2.raw as pdfium_c

    n = pdfium_c.FPDFPath_CountSegments(h)
    if n > 6:
        return False
    x, y = ctypes.c_float(), ctypes.c_float()
    pts = set()
    for k in range(max(0, n)):
        seg = pdfium_c.FPDFPath_GetPathSegment(h, k)
        if seg and pdfium_c.FPDFPathSegment_GetPoint(seg, x, y):
            pts.add((round(x.value, 3), round(y.value, 3)))
    return len(pts) <= 1


def _clip_bounds(h: Any) -> tuple[float, float, float, float] | None:
    """The bounding box of an object's clip path (simple clip paths only), or None."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    clip = pdfium_c.FPDFPageObj_GetClipPath(h)
    if not clip:
        return None
    x, y = ctypes.c_float(), ctypes.c_float()
    box: tuple[float, float, float, float] | None = None
    n_paths = pdfium_c.FPDFClipPath_CountPaths(clip)
    if n_paths < 1 or n_paths > 8:
        return None
    for p in range(n_paths):
        n = pdfium_c.FPDFClipPath_CountPathSegments(clip, p)
        if n < 1 or n > 64:
            return None  # a complex clip: not worth the calls
        xs, ys = [], []
        for k in range(n):
            seg = pdfium_c.FPDFClipPath_GetPathSegment(clip, p, k)
            if seg and pdfium_c.FPDFPathSegment_GetPoint(seg, x, y):
                xs.append(x.value)
                ys.append(y.value)
        if not xs:
            return None
        b = (min(xs), min(ys), max(xs), max(ys))
        # nested clips intersect
        box = b if box is None else (max(box[0], b[0]), max(box[1], b[1]),
                                     min(box[2], b[2]), min(box[3], b[3]))  # fmt: skip
    return box


def _compose(inner: tuple[float, ...], outer: tuple[float, ...]) -> tuple[float, ...]:
    """The matrix applying ``inner`` then ``outer`` (PDF ``[a b c d e f]`` row vectors)."""
    a1, b1, c1, d1, e1, f1 = inner
    a2, b2, c2, d2, e2, f2 = outer
    return (
        a1 * a2 + b1 * c2,
        a1 * b2 + b1 * d2,
        c1 * a2 + d1 * c2,
        c1 * b2 + d1 * d2,
        e1 * a2 + f1 * c2 + e2,
        e1 * b2 + f1 * d2 + f2,
    )


def _transform_bounds(
    m: tuple[float, ...], x0: float, y0: float, x1: float, y1: float
) -> tuple[float, float, float, float]:
    a, b, c, d, e, f = m
    xs, ys = [], []
    for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
        xs.append(a * x + c * y + e)
        ys.append(b * x + d * y + f)
    return min(xs), min(ys), max(xs), max(ys)


def _segments(words: list[dict[str, Any]]) -> list[_Seg]:
    """Group words into lines, and split lines at column gutters into segments."""
    lines: list[list[dict[str, Any]]] = []
    bands: list[tuple[float, float]] = []
    for w in sorted(words, key=lambda w: (w["top"], w["x0"])):
        h = w["bottom"] - w["top"]
        for k in range(len(lines) - 1, max(-1, len(lines) - 6), -1):
            t, b = bands[k]
            ov = min(b, w["bottom"]) - max(t, w["top"])
            if ov >= 0.5 * min(h, b - t):
                lines[k].append(w)
                break
        else:
            lines.append([w])
            bands.append((w["top"], w["bottom"]))
    segs: list[_Seg] = []
    for line in lines:
        line.sort(key=lambda w: w["x0"])
        size = float(np.median([w["size"] for w in line]))
        piece: list[dict[str, Any]] = [line[0]]
        for w in line[1:]:
            if w["x0"] - piece[-1]["x1"] > max(1.0 * size, 4.0):
                segs.append(_make_seg(piece))
                piece = [w]
            else:
                piece.append(w)
        segs.append(_make_seg(piece))
    segs.sort(key=lambda s: (s.top, s.x0))
    return segs


def _make_seg(words: list[dict[str, Any]]) -> _Seg:
    size = float(np.median([w["size"] for w in words]))
    parts = [words[0]["text"]]
    for a, b in itertools.pairwise(words):
        parts.append(("" if b["x0"] - a["x1"] < 0.12 * size else " ") + b["text"])
    return _Seg(
        min(w["x0"] for w in words),
        min(w["top"] for w in words),
        max(w["x1"] for w in words),
        max(w["bottom"] for w in words),
        text="".join(parts),
        size=size,
        nwords=len(words),
        fonts=[w.get("fontname", "") for w in words],
        words=[w["text"] for w in words],
    )


def _mark_furniture(pages: list[_Page]) -> None:
    """Running heads and feet: text in the page margins repeated on other pages, page numbers."""
    seen: dict[tuple[int, str], set[int]] = {}
    for p in pages:
        for seg in p.segs:
            if p.height * 0.1 < seg.top and seg.bottom < p.height * 0.9:
                continue
            key = (round(seg.top / 3), re.sub(r"\d+", "#", seg.text.strip()))
            seen.setdefault(key, set()).add(p.index)
    for p in pages:
        for seg in p.segs:
            if p.height * 0.1 < seg.top and seg.bottom < p.height * 0.9:
                continue
            key = (round(seg.top / 3), re.sub(r"\d+", "#", seg.text.strip()))
            if len(seen[key]) >= 2 or re.fullmatch(r"\s*\d{1,5}\s*", seg.text):
                p.furniture.add(id(seg))


# ------------------------------------------------------------------------------ captions
_CAPTION_START = re.compile(
    r"^(?P<label>(?:(?:Supplementary|Supporting|Extended\s+Data)\s+)?"
    r"(?:Figure|Fig\.?|FIGURE|FIG\.?)\s*S?\d{1,3})(?P<rest>.*)$",
    re.S,
)
_TABLE_START = re.compile(r"^(?:Table|TABLE|Scheme|SCHEME)\s*S?\d{1,3}\b")


@dataclass
class _Caption:
    page: int
    segs: list[_Seg]
    number: str
    text: str
    score: int

    @property
    def box(self) -> _Box:
        return _Box(
            min(s.x0 for s in self.segs),
            min(s.top for s in self.segs),
            max(s.x1 for s in self.segs),
            max(s.bottom for s in self.segs),
        )


def _caption_score(seg: _Seg, body_size: float) -> int | None:
    m = _CAPTION_START.match(seg.text)
    if not m:
        return None
    rest = m.group("rest")
    if re.match(r"[A-Za-z\d]", rest):
        return None  # "Fig. 2b shows": a panel reference, never a caption
    score = 0
    if re.match(r"\s*[.:|\u2014\u2013]", rest):
        score += 2
    label_words = len(m.group("label").split())
    label_fonts = seg.fonts[:label_words]
    rest_fonts = seg.fonts[label_words:]
    if label_fonts and all(_is_bold(f) for f in label_fonts):
        score += 2 if not (rest_fonts and all(_is_bold(f) for f in rest_fonts)) else 1
    after = rest.lstrip(" .:|\u2014\u2013-")
    if after[:1].isupper() or after[:1] in ("(", "["):
        score += 1
    elif after[:1].islower():
        score -= 2
    if seg.size < 0.97 * body_size:
        score += 1
    return score if score >= 2 else None


def _caption_block(seg: _Seg, segs: list[_Seg], used: set[int]) -> list[_Seg]:
    block = [seg]
    size = seg.size
    x0, x1 = seg.x0, seg.x1
    last = seg
    while True:
        cands = [
            s
            for s in segs
            if id(s) not in used
            and s not in block
            and s.top >= last.top + 0.5 * last.h
            and s.top - last.bottom <= 0.9 * size
            and abs(s.size - size) <= 0.2 * size
            and (abs(s.x0 - x0) <= 1.5 * size or s.hover(x0, x1) >= 0.6 * s.w)
            and not _CAPTION_START.match(s.text)
            and not _TABLE_START.match(s.text)
        ]
        if not cands:
            return block
        top = min(s.top for s in cands)
        row = [s for s in cands if s.top - top < 0.5 * size]
        block.extend(sorted(row, key=lambda s: s.x0))
        x1 = max(x1, *(s.x1 for s in row))
        last = max(row, key=lambda s: s.bottom)


_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+(?:-[A-Za-z\u00c0-\u024f]+)*")


def _vocabulary(pages: list[_Page]) -> set[str]:
    """Every word of the document, lower case, hyphenated compounds included."""
    return {w.lower() for p in pages for s in p.segs for w in _WORD.findall(s.text)}


def _join_lines(segs: Sequence[_Seg], vocab: set[str] | None = None) -> str:
    """Join caption lines; a hyphen at a line end is dropped unless the document spells the
    compound with a hyphen elsewhere ("cross-section" stays, "micro-scopy" is mended)."""
    out = ""
    for s in segs:
        t = s.text.strip()
        if not out:
            out = t
            continue
        m = re.search(r"([A-Za-z\u00c0-\u024f]+)-$", out)
        n = re.match(r"[a-z\u00df-\u024f]+", t)
        if m and n:
            left, right = m.group(1).lower(), n.group(0)
            keep = vocab is not None and f"{left}-{right}" in vocab
            out = out + t if keep else out[:-1] + t
        else:
            out += " " + t
    return out


def _find_captions(pages: list[_Page], body_size: float) -> list[_Caption]:
    found: list[_Caption] = []
    vocab = _vocabulary(pages)
    for p in pages:
        used: set[int] = set()
        for seg in p.segs:
            if id(seg) in used:
                continue
            score = _caption_score(seg, body_size)
            if score is None:
                continue
            block = _caption_block(seg, p.segs, used)
            used.update(id(s) for s in block)
            text = clean_text(fix_micro(_join_lines(block, vocab)))
            number, caption = split_label(text)
            if number is None:
                continue
            found.append(_Caption(p.index, block, number, caption, score))
    return found


# ------------------------------------------------------------------------------ figure regions
def _is_body(seg: _Seg, body_size: float, images: list[_Graphic]) -> bool:
    if seg.nwords < 5 or seg.size < 0.88 * body_size or seg.w < 60:
        return False
    return not any(g.inter(seg) > 0.5 * seg.area for g in images)


def _region(cap: _Caption, page: _Page, captions: list[_Caption], body_size: float) -> _Box | None:
    cb = cap.box
    images = [g for g in page.graphics if g.kind == "image"]
    cap_ids = {id(s) for c in captions if c.page == page.index for s in c.segs}
    blockers: list[_Box] = [
        s
        for s in page.segs
        if id(s) not in cap_ids
        and (
            _is_body(s, body_size, images) or _TABLE_START.match(s.text) or id(s) in page.furniture
        )
    ]
    blockers += [c.box for c in captions if c.page == page.index and c is not cap]
    texts = [
        _Graphic(s.x0, s.top, s.x1, s.bottom, kind="text")
        for s in page.segs
        if id(s) not in cap_ids
        and id(s) not in page.furniture
        and not _is_body(s, body_size, images)
    ]
    elems = page.graphics + texts
    pad = 1.5 * max(cap.segs[0].size, 4.0)

    def in_span(b: _Box, share: float = 0.5) -> bool:
        # relative to the narrower of the two: a short caption under a wide figure, or a
        # full-width paragraph over a short caption, still overlap
        return b.hover(cb.x0, cb.x1) >= share * max(min(b.w, cb.w), 1e-6)

    def grow(seeds: list[_Graphic], lo: float, hi: float) -> _Box | None:
        # drawing that runs into body text is not this figure's (a stray rule, a clip path)
        seeds = [g for g in seeds if not any(b.inter(g) > 0 for b in blockers)]
        if not any(g.kind != "text" for g in seeds):
            return None  # text alone is never a figure
        pool = [e for e in elems if lo - pad <= e.cy <= hi + pad]
        chosen = _grow(seeds, pool, blockers, pad)
        box = _union(chosen)
        box = _Box(max(0, box.x0 - 1), max(0, box.top - 1), min(page.width, box.x1 + 1),
                   min(page.height, box.bottom + 1))  # fmt: skip
        return box if box.w >= 20 and box.h >= 20 else None

    # above: up to the nearest blocker over the caption's columns
    above = [b for b in blockers if b.bottom <= cb.top + 1 and in_span(b, 0.3)]
    lo = max((b.bottom for b in above), default=0.0)
    seeds = [
        e
        for e in page.graphics
        if lo <= e.cy < cb.top and in_span(e) and e.bottom <= cb.top + 2 and e.kind != "text"
    ]
    got = grow(seeds, lo, cb.top)
    if got is not None:
        return got
    # below: down to the nearest blocker
    below = [b for b in blockers if b.top >= cb.bottom - 1 and in_span(b, 0.3)]
    hi = min((b.top for b in below), default=page.height)
    seeds = [
        e
        for e in page.graphics
        if cb.bottom < e.cy <= hi and in_span(e) and e.top >= cb.bottom - 2 and e.kind != "text"
    ]
    got = grow(seeds, cb.bottom, hi)
    if got is not None:
        return got
    # beside: drawing level with the caption, left or right of it
    seeds = [
        e
        for e in elems
        if e.kind != "text"
        and e.bottom > cb.top
        and e.top < cb.bottom
        and e.hover(cb.x0, cb.x1) == 0
    ]
    if seeds:
        return grow(seeds, min(e.top for e in seeds), max(e.bottom for e in seeds))
    return None


def _grow(
    seeds: list[_Graphic], pool: list[_Graphic], blockers: list[_Box], pad: float
) -> list[_Graphic]:
    """Seeds plus every pool element linked to them by a chain of gaps of at most ``pad``.

    Elements that touch a blocker (body text, another caption) never join.
    """
    if not pool:
        return seeds
    boxes = np.array([(e.x0, e.top, e.x1, e.bottom) for e in pool], dtype=np.float64)
    free = np.ones(len(pool), dtype=bool)
    if blockers:
        bl = np.array([(b.x0, b.top, b.x1, b.bottom) for b in blockers], dtype=np.float64)
        for chunk in range(0, len(pool), 2048):
            bx = boxes[chunk : chunk + 2048, None, :]
            hit = (
                (np.minimum(bx[..., 2], bl[None, :, 2]) > np.maximum(bx[..., 0], bl[None, :, 0]))
                & (np.minimum(bx[..., 3], bl[None, :, 3]) > np.maximum(bx[..., 1], bl[None, :, 1]))
            ).any(axis=1)
            free[chunk : chunk + 2048] &= ~hit
    ids = {id(e): i for i, e in enumerate(pool)}
    for e in seeds:
        if id(e) in ids:
            free[ids[id(e)]] = False
    frontier = np.array([(e.x0, e.top, e.x1, e.bottom) for e in seeds], dtype=np.float64)
    chosen = list(seeds)
    while len(frontier) and free.any():
        idx = np.flatnonzero(free)
        cand = boxes[idx]
        near = np.zeros(len(idx), dtype=bool)
        for chunk in range(0, len(frontier), 512):
            f = frontier[chunk : chunk + 512]
            near |= (
                (cand[:, None, 0] - pad <= f[None, :, 2])
                & (f[None, :, 0] <= cand[:, None, 2] + pad)
                & (cand[:, None, 1] - pad <= f[None, :, 3])
                & (f[None, :, 1] <= cand[:, None, 3] + pad)
            ).any(axis=1)
        new = idx[near]
        free[new] = False
        chosen.extend(pool[i] for i in new)
        frontier = boxes[new]
    return chosen


def _union(items: Sequence[_Box]) -> _Box:
    return _Box(
        min(b.x0 for b in items),
        min(b.top for b in items),
        max(b.x1 for b in items),
        max(b.bottom for b in items),
    )


# ------------------------------------------------------------------------------ pixels
def _native_image(pdf_page: Any, page: _Page, region: _Box, max_pixels: int) -> np.ndarray | None:
    """The embedded image's own pixels, when the region is exactly one image with nothing on it."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    imgs = [g for g in page.graphics if g.kind == "image" and g.inter(region) > 0]
    if len(imgs) != 1 or imgs[0].area < 0.85 * region.area or len(imgs[0].locator) != 1:
        return None
    img = imgs[0]
    for g in page.graphics:
        if g is not img and g.inter(img) > 0:
            return None  # labels, scale bars or arrows drawn over it: render instead
    for s in page.segs:
        if s.inter(img) > 0:
            return None
    w, h = img.srcsize or (0, 0)
    if w * h > max_pixels or w < 8 or h < 8:
        return None
    raw = pdfium_c.FPDFPage_GetObject(pdf_page.raw, img.locator[0])
    obj = pdfium.PdfObject(raw, page=pdf_page, pdf=pdf_page.pdf)
    if not isinstance(obj, pdfium.PdfImage):
        return None
    m = obj.get_matrix()
    if abs(m.b) > 1e-6 or abs(m.c) > 1e-6 or _page_rotation(pdf_page) != 0:
        return None  # rotated or sheared on the page: render to get what is printed
    bitmap = obj.get_bitmap(render=False)
    arr = np.asarray(bitmap.to_pil().convert("RGB"), dtype=np.uint8)
    # image space puts the first sample row at the top; a negative scale mirrors it
    if m.d < 0:
        arr = arr[::-1]
    if m.a < 0:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def _page_rotation(pdf_page: Any) -> int:
    return int(pdf_page.get_rotation()) % 360


def _render(pdf_page: Any, page: _Page, region: _Box, dpi: float, max_pixels: int) -> np.ndarray:
    scale = dpi / 72.0
    npx = region.w * scale * region.h * scale
    if npx > max_pixels:
        scale *= (max_pixels / npx) ** 0.5
        log.info("figure region rendered at %.0f dpi to stay within the pixel budget", scale * 72)
    # the layout is in displayed-page coordinates, which is what pdfium renders and crops
    crop = (region.x0, page.height - region.bottom, page.width - region.x1, region.top)
    bitmap = pdf_page.render(
        scale=scale,
        crop=tuple(max(0.0, c) for c in crop),
        may_draw_forms=False,
        draw_annots=False,
        rev_byteorder=True,
    )
    return np.asarray(bitmap.to_pil().convert("RGB"), dtype=np.uint8).copy()


# ------------------------------------------------------------------------------ metadata
_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"'<>]+)")


def _unmojibake(s: str) -> str:
    """Undo UTF-8 read as Windows-1252 ("receptorâ€“lacking"), common in PDF titles."""
    if not re.search("[\u00c2-\u00f4][\u0080-\u00bf\u2013-\u203a\u0152-\u0178\u02c6\u02dc]", s):
        return s
    try:
        return s.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return s


def _meta_str(meta: dict[str, Any], key: str) -> str | None:
    v = meta.get(key)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        return None
    v = clean_text(_unmojibake(v))
    return v or None


def _metadata(
    meta: dict[str, Any], first_text: str, pages: list[_Page]
) -> tuple[str | None, str | None, str | None, list[str], str | None]:
    title = _meta_str(meta, "Title")
    if title and (
        len(title) < 8
        or re.search(r"^(untitled|microsoft word|document\d*)|\.(docx?|tex|pdf|dvi)$", title, re.I)
    ):
        title = None
    if title is None and pages:
        title = _largest_text(pages[0])
    doi = None
    for key in ("doi", "DOI", "prism:doi", "Subject", "Title", "Keywords"):
        v = _meta_str(meta, key)
        m = _DOI.search(v or "")
        if m:
            doi = m.group(1)
            break
    if doi is None:
        m = _DOI.search(first_text)
        doi = m.group(1) if m else None
    if doi:
        doi = doi.rstrip(".,;:)]}")
    licence = None
    m = re.search(r"creativecommons\.org/(?:\s?[\w.-]+/?){1,3}", first_text, re.I)
    if m:
        licence = normalise_licence(re.sub(r"\s", "", m.group(0)))
    else:
        m2 = re.search(
            r"(?:CC[- ]BY(?:[- ](?:NC|ND|SA)){0,2}(?:[- ]\d\.\d)?|CC0|"
            r"Creative Commons Attribution[^.;]{0,80})",
            first_text,
        )
        if m2:
            licence = normalise_licence(m2.group(0))
    author = _meta_str(meta, "Author")
    authors = [a.strip() for a in re.split(r";|\band\b", author)] if author else []
    subject = _meta_str(meta, "Subject") or ""
    m3 = re.match(r"^([^,;]{3,120}),\s*\d+\s*\(\d{4}\)", subject)
    journal = m3.group(1).strip() if m3 else None
    return title, doi, licence, [a for a in authors if a], journal


def _largest_text(page: _Page) -> str | None:
    segs = [s for s in page.segs if s.top < page.height * 0.5 and s.nwords >= 2]
    if not segs:
        return None
    big = max(s.size for s in segs)
    lines = [s for s in segs if s.size >= 0.95 * big]
    return clean_text(_join_lines(lines)) or None


# ------------------------------------------------------------------------------ the reader
def read_pdf(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    limits: ArticleLimits | None = None,
    render_dpi: float = 200,
    progress: Progress | None = None,
) -> Article:
    """Read a PDF article: metadata and every captioned figure.

    Parameters
    ----------
    path
        The PDF.
    images_dir
        Unused for PDFs (the figures are inside); accepted so every reader has one signature.
    limits
        Budgets (pages, stream bytes, file bytes, seconds, figure pixels).
    render_dpi
        Resolution at which composite and vector figure regions are rendered (dots per inch).
    progress
        Called as ``progress(pages_done, pages_total)``.

    Returns
    -------
    Article
        Figures in page order. Each has ``number`` ("1", "S2"), ``caption`` (as printed, without
        its "Figure N." label; whitespace normalised, "µ" repaired), ``image`` (RGB ``uint8``,
        shape ``(h, w, 3)``) and ``image_ref`` (``"page N"``, 1-based).

    Raises
    ------
    EncryptedFile, TooManyPages, StreamTooLarge, TooLarge, TruncatedFile, CorruptFile,
    UnsupportedFormat, TimeLimit
    """
    del images_dir
    path = Path(path)
    limits = limits or ArticleLimits()
    if not 10 <= render_dpi <= 1200:
        raise ValueError(f"render_dpi must be between 10 and 1200, not {render_dpi}")
    deadline = Deadline(limits.max_seconds, path)
    _check_file(path, limits)
    _prescan_streams(path, limits, deadline)
    doc = _open_pdfium(path)
    try:
        n_pages = len(doc)
        if n_pages > limits.max_pages:
            raise TooManyPages(
                f"PDF has {n_pages} pages, more than the budget of {limits.max_pages} "
                "(ArticleLimits.max_pages)",
                path=path,
            )
        pages = _layouts(path, doc, deadline, progress)
        meta = _info(path, doc)
        _mark_furniture(pages)
        all_sizes = [s.size for p in pages for s in p.segs for _ in range(s.nwords)]
        body_size = float(np.median(all_sizes)) if all_sizes else 10.0
        captions = _best_captions(_find_captions(pages, body_size))
        first_text = " ".join(s.text for p in pages[:2] for s in p.segs)
        title, doi, licence, authors, journal = _metadata(meta, first_text, pages)
        figures: list[ArticleFigure] = []
        by_index = {p.index: p for p in pages}
        for cap in captions:
            deadline.check(f"rendering figure {cap.number}")
            page = by_index[cap.page]
            region = _region(cap, page, captions, body_size)
            image = None
            if region is not None:
                pdf_page = doc[cap.page]
                try:
                    image = _native_image(pdf_page, page, region, limits.max_figure_pixels)
                    if image is None:
                        image = _render(
                            pdf_page, page, region, render_dpi, limits.max_figure_pixels
                        )
                finally:
                    pdf_page.close()
            else:
                log.warning("%s: no drawing found for figure %s", path, cap.number)
            figures.append(ArticleFigure(cap.number, cap.text, image, f"page {cap.page + 1}"))
    finally:
        doc.close()
    return Article(
        title=title,
        doi=doi,
        licence=licence,
        path=str(path),
        authors=authors,
        journal=journal,
        figures=figures,
    )


def _layouts(path: Path, doc: Any, deadline: Deadline, progress: Progress | None) -> list[_Page]:
    pages: list[_Page] = []
    n_pages = len(doc)
    failed = 0
    for i in range(n_pages):
        deadline.check(f"reading page {i + 1} of {n_pages}")
        try:
            pdf_page = doc[i]
        except Exception as e:  # pdfium refuses a damaged page
            failed += 1
            log.warning("%s: page %d cannot be read (%s); skipped", path, i + 1, e)
            continue
        try:
            pages.append(_read_page(pdf_page, i, deadline))
        except EmdigError:
            raise
        except Exception as e:  # pdfium's errors on a damaged page: lose that page only
            failed += 1
            log.warning("%s: page %d cannot be read (%s); skipped", path, i + 1, e)
        finally:
            pdf_page.close()
        if progress is not None:
            progress(i + 1, n_pages)
    if n_pages and failed == n_pages:
        raise CorruptFile("no page of the PDF can be read", path=path)
    return pages


def _info(path: Path, doc: Any) -> dict[str, Any]:
    """The document information dictionary, custom keys (like "doi") included."""
    import pdfplumber

    try:
        with pdfplumber.open(path) as pdf:
            return dict(pdf.metadata or {})
    except Exception as e:  # pdfminer cannot read what pdfium could: standard keys only
        log.info("%s: metadata from pdfium only (%s)", path, type(e).__name__)
        try:
            return dict(doc.get_metadata_dict())
        except Exception:
            return {}


def _best_captions(found: list[_Caption]) -> list[_Caption]:
    """One caption per figure number: the best scored, then the first; in number order."""
    best: dict[str, _Caption] = {}
    for c in found:
        if c.number not in best or c.score > best[c.number].score:
            best[c.number] = c

    def order(c: _Caption) -> tuple[str, int, int]:
        m = re.match(r"([A-Z]*)(\d+)", c.number)
        return (m.group(1), int(m.group(2)), c.page) if m else ("~", 0, c.page)

    return sorted(best.values(), key=order)
