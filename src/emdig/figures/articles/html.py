"""Figures and their captions from an article's HTML page (Nature family, generic ``<figure>``).

The page is parsed with the standard library's :mod:`html.parser` into a small element tree.
Nothing on the page ever runs: ``<script>``, ``<style>``, ``<template>``, ``<svg>``,
``<iframe>``, ``<object>`` and ``<embed>`` are dropped with their content, event-handler
attributes are never read, and only relative or ``http(s)`` image URLs are considered, and only by
their file name: an image is looked up by its base name in the page's own folder, its
``<stem>_files/`` folder (what a browser's "save page, complete" writes) and ``images_dir``,
never by a path the page chooses. Captions are plain text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from ...errors import EmdigError, TooLarge, UnsupportedFormat
from ...io.sniff import open_checked
from ..records import Article, ArticleFigure
from ._base import ArticleLimits, Deadline, clean_text, load_image, normalise_licence, split_label

__all__ = ["read_html"]

log = logging.getLogger(__name__)

# dropped with everything inside them: active content and things that are not article text
_DROP = frozenset(
    {"script", "style", "template", "svg", "iframe", "object", "embed", "canvas", "noembed",
     "frameset", "frame", "applet", "button", "select", "textarea", "head-script"}
)  # fmt: skip
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr", "keygen"}
)  # fmt: skip
_BLOCK = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "figcaption", "figure", "section", "article", "h1", "h2",
     "h3", "h4", "h5", "h6", "table", "tr", "td", "th", "dd", "dt", "dl", "blockquote", "header",
     "footer", "caption", "aside", "nav", "main", "hr"}
)  # fmt: skip
# the attributes we ever read; everything else (on*, style, ...) is not even kept
_KEEP_ATTRS = frozenset(
    {"src", "srcset", "data-src", "data-original", "data-lg-src", "data-full-src", "href", "alt",
     "id", "class", "name", "property", "content", "rel", "itemprop", "hidden", "aria-hidden",
     "width", "height", "type", "data-test"}
)  # fmt: skip
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp", ".bmp")


@dataclass
class _El:
    tag: str
    attrs: dict[str, str]
    children: list[_El | str] = field(default_factory=list)
    parent: _El | None = None

    def iter(self) -> Iterator[_El]:
        """This element and its descendants, depth first, without recursion."""
        stack: list[_El] = [self]
        while stack:
            el = stack.pop()
            yield el
            stack.extend(c for c in reversed(el.children) if isinstance(c, _El))

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def hidden(self) -> bool:
        return "hidden" in self.attrs


class _TreeBuilder(HTMLParser):
    def __init__(self, max_nesting: int) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _El("#root", {})
        self.cur = self.root
        self.depth = 0
        self.max_nesting = max_nesting
        self.drop_tag: str | None = None  # the dropped element we are inside, if any
        self.drop_depth = 0  # how many of ``drop_tag`` are open
        self.overflow = 0  # elements deeper than the budget, flattened into their parent
        self.overflow_tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if self.drop_tag is not None:
            if tag == self.drop_tag:
                self.drop_depth += 1
            return
        if tag in _DROP:
            self.drop_tag, self.drop_depth = tag, 1
            return
        if tag == "p" and self.cur.tag == "p":
            self._close("p")  # a <p> closes an open <p>
        if self.depth >= self.max_nesting:
            self.overflow += 1
            if tag not in _VOID:
                self.overflow_tags.append(tag)
            return
        kept = {k.lower(): (v or "") for k, v in attrs if k.lower() in _KEEP_ATTRS}
        el = _El(tag, kept, parent=self.cur)
        self.cur.children.append(el)
        if tag not in _VOID:
            self.cur = el
            self.depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        low = tag.lower()
        if self.drop_tag is not None or low in _DROP:
            return  # inside dropped content, or an empty dropped element
        self.handle_starttag(tag, attrs)
        if low not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if self.drop_tag is not None:
            if tag == self.drop_tag:
                self.drop_depth -= 1
                if self.drop_depth == 0:
                    self.drop_tag = None
            return
        if self.overflow_tags and self.overflow_tags[-1] == tag:
            self.overflow_tags.pop()
            return
        self._close(tag)

    def _close(self, tag: str) -> None:
        el: _El | None = self.cur
        n = 0
        while el is not None and el.tag != tag:
            el = el.parent
            n += 1
        if el is None or el.parent is None:
            return  # a stray end tag
        self.cur = el.parent
        self.depth -= n + 1

    def handle_data(self, data: str) -> None:
        if self.drop_tag is None:
            self.cur.children.append(data)


def _text(el: _El) -> str:
    """Visible text of an element, blocks separated by spaces, inline runs joined as printed."""
    out: list[str] = []
    stack: list[_El | str] = [el]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
            continue
        if node.hidden():
            continue
        block = node.tag in _BLOCK
        if block:
            out.append(" ")
        if block:
            stack.append(" ")
        stack.extend(reversed(node.children))
    return clean_text("".join(out))


def _parse(path: Path, limits: ArticleLimits) -> _El:
    raw = path.read_bytes()
    text = _decode(raw)
    builder = _TreeBuilder(limits.max_nesting)
    builder.feed(text)
    builder.close()
    if builder.overflow:
        log.warning(
            "%s: %d elements nested deeper than %d were flattened",
            path,
            builder.overflow,
            limits.max_nesting,
        )
    return builder.root


def _decode(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", "replace")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", "replace")
    m = re.search(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_-]+)", raw[:4096], re.I)
    enc = m.group(1).decode("ascii").lower() if m else "utf-8"
    try:
        return raw.decode(enc, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


# ------------------------------------------------------------------------------ metadata
def _metas(root: _El) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for el in root.iter():
        if el.tag == "meta":
            key = (el.attrs.get("name") or el.attrs.get("property") or "").lower()
            if key and "content" in el.attrs:
                out.setdefault(key, []).append(el.attrs["content"])
    return out


def _first(metas: dict[str, list[str]], *keys: str) -> str | None:
    for k in keys:
        for v in metas.get(k, []):
            v = clean_text(v)
            if v:
                return v
    return None


def _doi(value: str | None) -> str | None:
    if not value:
        return None
    m = re.search(r"10\.\d{4,9}/[^\s\"'<>]+", value)
    return m.group(0).rstrip(".,;)") if m else None


def _licence(root: _El, metas: dict[str, list[str]]) -> str | None:
    for el in root.iter():
        if el.tag in ("a", "link") and (
            "license" in el.attrs.get("rel", "").lower().split()
            or el.attrs.get("itemprop", "").lower() == "license"
        ):
            lic = normalise_licence(el.attrs.get("href") or _text(el))
            if lic:
                return lic
    v = _first(metas, "dc.rights", "dcterms.license", "citation_license", "dc.license")
    if v and re.search(r"creativecommons|CC[ -]BY|CC0|Creative Commons", v, re.I):
        return normalise_licence(v)
    for el in root.iter():
        if el.tag == "a" and "creativecommons.org/" in el.attrs.get("href", ""):
            return normalise_licence(el.attrs["href"])
    kind = _first(metas, "wt.z_cc_license_type")
    if kind and kind.lower().startswith("cc_"):
        return "CC " + kind[3:].upper().replace("_", "-")
    return v


# ------------------------------------------------------------------------------ figures
def _is_figure(el: _El) -> bool:
    if el.tag == "figure":
        return True
    # PMC's classic pages and other JATS renderings
    return el.tag == "div" and bool(el.classes() & {"fig", "figure"})


def _caption_parts(fig: _El) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    for el in fig.iter():
        if id(el) in seen or el is fig:
            continue
        cls = " ".join(el.classes()).lower() + " " + el.attrs.get("id", "").lower()
        if el.tag == "figcaption" or re.search(r"caption|legend|figure-description", cls):
            if _is_figure(el):
                continue
            parts.append(_text(el))
            seen.update(id(d) for d in el.iter())
    return clean_text(" ".join(parts))


def _image_urls(img: _El) -> list[str]:
    urls: list[str] = []
    for key in ("data-lg-src", "data-full-src", "src", "data-src", "data-original"):
        v = img.attrs.get(key, "").strip()
        if v:
            urls.append(v)
    for key in ("srcset",):
        for part in img.attrs.get(key, "").split(","):
            bits = part.strip().split()
            if bits:
                urls.append(bits[0])
    return urls


def _safe_url(url: str) -> bool:
    scheme = urlsplit(url).scheme.lower()
    return scheme in ("", "http", "https")


def _pick_img(fig: _El) -> tuple[_El | None, list[str]]:
    for el in fig.iter():
        if el.tag != "img":
            continue
        w, h = el.attrs.get("width", ""), el.attrs.get("height", "")
        if w.isdigit() and h.isdigit() and (int(w) < 32 or int(h) < 32):
            continue  # icons
        urls = [u for u in _image_urls(el) if _safe_url(u)]
        # <picture><source srcset> before the <img>, links to the full-size file around it
        par = el.parent
        while par is not None and par is not fig:
            if par.tag == "picture":
                for s in par.iter():
                    if s.tag == "source":
                        urls += [u for u in _image_urls(s) if _safe_url(u)]
            if par.tag == "a":
                href = par.attrs.get("href", "")
                if _safe_url(href) and urlsplit(href).path.lower().endswith(_IMAGE_EXT):
                    urls.insert(0, href)
            par = par.parent
        if urls or el.attrs.get("src"):
            return el, urls
    return None, []


def _search_dirs(path: Path, images_dir: Path | None) -> list[Path]:
    dirs = []
    if images_dir is not None:
        dirs.append(images_dir)
    dirs.append(path.parent)
    for cand in (path.parent / f"{path.stem}_files", path.parent / f"{path.stem}-Dateien"):
        if cand.is_dir():
            dirs.append(cand)
    return dirs


def _listing(d: Path) -> dict[str, Path]:
    try:
        return {p.name.lower(): p for p in d.iterdir() if p.is_file()}
    except OSError:
        return {}


def _resolve(
    urls: list[str],
    number: str | None,
    stem: str,
    dirs: list[Path],
    listings: dict[Path, dict[str, Path]],
) -> Path | None:
    """A local file for an image URL, by file name only (never by the URL's path).

    In order: the URL's base name, the same name with another image extension, then the
    figure's number as ``<page stem>_fig<N>.<ext>``, ``<page stem>-figure<N>.<ext>`` or
    ``fig<N>.<ext>``. Each is tried in ``images_dir``, the page's folder and its ``_files``
    folder before the next.
    """
    exact: list[str] = []
    other_ext: list[str] = []
    for u in urls:
        name = unquote(urlsplit(u).path).replace("\\", "/").rsplit("/", 1)[-1]
        if name and name not in (".", ".."):
            exact.append(name.lower())
            base = name.rsplit(".", 1)[0].lower()
            other_ext += [base + ext for ext in _IMAGE_EXT]
    by_number: list[str] = []
    if number:
        for prefix in (stem.lower(), ""):
            for word in ("fig", "figure"):
                for sep in ("_", "-", ""):
                    base = f"{prefix}{sep if prefix else ''}{word}{number.lower()}"
                    by_number += [base + ext for ext in _IMAGE_EXT]
    for group in (exact, other_ext, by_number):
        for d in dirs:
            if d not in listings:
                listings[d] = _listing(d)
            listing = listings[d]
            for n in group:
                p = listing.get(n)
                if p is not None and _inside(p, d):
                    return p
    return None


def _inside(p: Path, d: Path) -> bool:
    try:
        return p.resolve().is_relative_to(d.resolve())
    except OSError:
        return False


# ------------------------------------------------------------------------------ the reader
def read_html(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    limits: ArticleLimits | None = None,
    render_dpi: float = 200,
) -> Article:
    """Read an article's HTML page: metadata and every ``<figure>``.

    Parameters
    ----------
    path
        The saved HTML page.
    images_dir
        Another folder to look for the figure images in (by file name).
    limits
        Budgets (bytes, nesting, seconds, figure pixels).
    render_dpi
        Unused for HTML; accepted so every reader has one signature.

    Returns
    -------
    Article
        Figures in page order: ``number`` ("1", "S2") from the caption's label, ``caption`` as
        printed without the "Fig. N" label, ``image`` (RGB ``uint8``) when the image file is found
        beside the page, else None, and ``image_ref`` (the local file, else the image URL).
        A figure without a caption has caption ``""``.
    """
    del render_dpi
    path = Path(path)
    limits = limits or ArticleLimits()
    deadline = Deadline(limits.max_seconds, path)
    st = open_checked(path)
    if st.st_size > limits.max_bytes:
        raise TooLarge(
            f"HTML is {st.st_size} bytes, more than the budget of {limits.max_bytes} "
            "(ArticleLimits.max_bytes)",
            path=path,
        )
    root = _parse(path, limits)
    deadline.check("parsing the HTML")
    if not any(el.tag in ("html", "body", "head", "figure", "p", "div") for el in root.iter()):
        raise UnsupportedFormat("no HTML elements found", path=path)
    metas = _metas(root)
    title = _first(metas, "citation_title", "dc.title", "og:title", "twitter:title")
    if title is None:
        t = next((el for el in root.iter() if el.tag == "title"), None)
        title = _text(t) if t is not None else None
    doi = _doi(_first(metas, "citation_doi", "doi", "dc.identifier", "prism.doi", "dc.doi"))
    url = _first(metas, "citation_fulltext_html_url", "og:url", "prism.url")
    if url is None:
        link = next(
            (e for e in root.iter() if e.tag == "link" and e.attrs.get("rel") == "canonical"), None
        )
        url = link.attrs.get("href") if link is not None else None
    authors = [clean_text(a) for a in metas.get("citation_author", metas.get("dc.creator", []))]
    abstract = _first(metas, "citation_abstract", "dc.description", "description")
    journal = _first(metas, "citation_journal_title", "prism.publicationname", "og:site_name")

    dirs = _search_dirs(path, Path(images_dir) if images_dir is not None else None)
    listings: dict[Path, dict[str, Path]] = {}
    figures: list[ArticleFigure] = []
    figs = [el for el in root.iter() if _is_figure(el)]
    outer = [f for f in figs if not _has_figure_ancestor(f)]
    for fig in outer:
        deadline.check("reading figures")
        img, urls = _pick_img(fig)
        if img is None:
            continue  # a <figure> around a table, a video or a quote
        number, caption = split_label(_caption_parts(fig))
        local = _resolve(urls, number, path.stem, dirs, listings)
        image = None
        if local is not None:
            try:
                image = load_image(local, max_pixels=limits.max_figure_pixels)
            except EmdigError as e:
                log.warning("figure %s: image not used: %s", number, e)
            ref: str | None = str(local)
        else:
            ref = urljoin(url, urls[0]) if url and urls else (urls[0] if urls else None)
        figures.append(ArticleFigure(number, caption, image, ref))
    return Article(
        title=title,
        doi=doi,
        licence=_licence(root, metas),
        url=url,
        path=str(path),
        authors=[a for a in authors if a],
        abstract=abstract,
        journal=journal,
        figures=figures,
    )


def _has_figure_ancestor(el: _El) -> bool:
    p = el.parent
    while p is not None:
        if _is_figure(p):
            return True
        p = p.parent
    return False
