"""Figures and metadata from a JATS XML article (PMC, Europe PMC, eLife, Springer).

The XML is parsed with defusedxml. Entity declarations are refused (billion laughs, quadratic
blow-up, XXE ``file://`` or ``http://`` entities) before anything is expanded, and nothing
external is ever fetched: neither the DTD named in the DOCTYPE nor any entity. The one kind of
declaration allowed is an *external parameter entity that is never expanded*, because Springer's
API wraps every article in a DOCTYPE that declares the JATS DTD that way.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from ...errors import (
    CorruptFile,
    EmdigError,
    NestingTooDeep,
    TooLarge,
    UnsafeContent,
    UnsupportedFormat,
)
from ...io.sniff import open_checked
from ..records import Article, ArticleFigure
from ._base import ArticleLimits, Deadline, clean_text, load_image, normalise_licence, split_label

__all__ = ["read_jats"]

log = logging.getLogger(__name__)

_XLINK = "{http://www.w3.org/1999/xlink}href"
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp")


class _DepthBuilder(ET.TreeBuilder):
    """A tree builder that refuses documents nested deeper than the budget."""

    def __init__(self, max_depth: int) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.depth = 0

    def start(self, tag: Any, attrs: Any) -> Any:
        self.depth += 1
        if self.depth > self.max_depth:
            raise _TooDeep()
        return super().start(tag, attrs)

    def end(self, tag: Any) -> Any:
        self.depth -= 1
        return super().end(tag)


class _TooDeep(Exception):
    pass


class _Parser(DefusedXMLParser):
    """defusedxml's parser, allowing only never-expanded external parameter entities."""

    def defused_entity_decl(
        self,
        name: str,
        is_parameter_entity: bool,
        value: str | None,
        base: str | None,
        sysid: str | None,
        pubid: str | None,
        notation_name: str | None,
    ) -> None:
        if is_parameter_entity and value is None and notation_name is None:
            return  # declared, never loaded: expat does not read external parameter entities
        raise EntitiesForbidden(name, value, base, sysid, pubid, notation_name)


def _parse(path: Path, data: bytes, limits: ArticleLimits) -> ET.Element:
    builder = _DepthBuilder(limits.max_nesting)
    parser = _Parser(target=builder, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(data)
        root = parser.close()
    except EntitiesForbidden as e:
        raise UnsafeContent(
            f"XML declares the entity {e.name!r}; entity declarations are refused "
            "(entity expansion and external entities are never allowed)",
            path=path,
        ) from None
    except DefusedXmlException as e:
        raise UnsafeContent(
            f"XML refers to external content ({type(e).__name__}); it is never loaded", path=path
        ) from None
    except _TooDeep:
        raise NestingTooDeep(
            f"XML is nested deeper than {limits.max_nesting} elements (ArticleLimits.max_nesting)",
            path=path,
        ) from None
    except ET.ParseError as e:
        msg = str(e)
        if "undefined entity" in msg:
            raise UnsafeContent(
                f"XML uses an entity defined outside the file ({msg}); external definitions "
                "are never loaded",
                path=path,
            ) from None
        raise CorruptFile(f"XML is not well formed: {msg}", path=path) from None
    if not isinstance(root, ET.Element):
        raise CorruptFile("XML has no root element", path=path)
    return root


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _find(el: ET.Element, name: str) -> ET.Element | None:
    for e in el.iter():
        if _local(e.tag) == name:
            return e
    return None


def _findall(el: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in el.iter() if _local(e.tag) == name]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in el if _local(e.tag) == name]


_BLOCK = frozenset({"p", "title", "sec", "list-item", "def", "term", "disp-formula", "td", "th"})
_SKIP = frozenset({"object-id", "xref-group", "alternatives-skip"})


def _text(el: ET.Element | None) -> str:
    """Text content, block elements separated by spaces, without recursion."""
    if el is None:
        return ""
    out: list[str] = []
    stack: list[ET.Element | str] = [el]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
            continue
        name = _local(node.tag)
        if name in _SKIP:
            if node.tail:
                out.append(node.tail)
            continue
        if name in _BLOCK:
            out.append(" ")
        if node.text:
            out.append(node.text)
        tail = node.tail if node is not el else None
        if tail or name in _BLOCK:
            stack.append((" " if name in _BLOCK else "") + (tail or ""))
        stack.extend(reversed(list(node)))
    return clean_text("".join(out))


def _article(root: ET.Element) -> ET.Element | None:
    if _local(root.tag) == "article":
        return root
    return _find(root, "article")


def _authors(meta: ET.Element) -> list[str]:
    names = []
    for contrib in _findall(meta, "contrib"):
        if contrib.get("contrib-type", "author") != "author":
            continue
        name = _find(contrib, "name")
        if name is not None:
            given = _text(_find(name, "given-names"))
            surname = _text(_find(name, "surname"))
            full = f"{given} {surname}".strip()
        else:
            full = _text(_find(contrib, "collab")) or _text(_find(contrib, "string-name"))
        if full:
            names.append(full)
    return names


def _licence(meta: ET.Element) -> str | None:
    lic = _find(meta, "license")
    if lic is not None:
        href = lic.get(_XLINK) or lic.get("href")
        if href:
            return normalise_licence(href)
        ref = _find(lic, "license_ref")
        if ref is not None and (ref.text or "").strip():
            return normalise_licence(ref.text)
        return normalise_licence(_text(lic))
    stmt = _find(meta, "copyright-statement")
    if stmt is not None and re.search(r"creative commons|CC[ -]BY", _text(stmt), re.I):
        return normalise_licence(_text(stmt))
    return None


def _abstract(meta: ET.Element) -> str | None:
    abstracts = _children(meta, "abstract") or _findall(meta, "abstract")
    plain = [a for a in abstracts if a.get("abstract-type") in (None, "", "author", "main")]
    chosen = (plain or abstracts)[:1]
    if not chosen:
        return None
    parts = [
        _text(c)
        for i, c in enumerate(chosen[0])
        if not (i == 0 and _local(c.tag) == "title" and _text(c).lower() == "abstract")
    ]
    return clean_text(" ".join(parts)) or _text(chosen[0]) or None


def _resolve(href: str, dirs: list[Path], listings: dict[Path, dict[str, Path]]) -> Path | None:
    name = href.replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        return None
    names = [name.lower()] + [name.lower() + ext for ext in _IMAGE_EXT]
    stem = name.rsplit(".", 1)[0].lower() if "." in name else None
    if stem:
        names += [stem + ext for ext in _IMAGE_EXT]
    for d in dirs:
        if d not in listings:
            try:
                listings[d] = {p.name.lower(): p for p in d.iterdir() if p.is_file()}
            except OSError:
                listings[d] = {}
        for n in names:
            p = listings[d].get(n)
            if p is not None:
                try:
                    if p.resolve().is_relative_to(d.resolve()):
                        return p
                except OSError:
                    continue
    return None


def _caption(cap: ET.Element) -> str:
    """Caption title and paragraphs; the title gets a full stop if it has none (as rendered).

    eLife's "DOI: ..." paragraphs are left out.
    """
    parts = []
    for child in cap:
        t = _text(child)
        if not t or re.fullmatch(r"DOI:?\s*\S+", t):
            continue
        if _local(child.tag) == "title" and not re.search(r"[.!?:]$", t):
            t += "."
        parts.append(t)
    if not parts and (cap.text or "").strip():
        parts.append(clean_text(cap.text or ""))
    return clean_text(" ".join(parts))


def _label_number(label: str) -> tuple[str | None, str]:
    """The figure number in a JATS ``<label>``: "Figure 3." -> "3", "Figure 9—figure supplement
    1." -> "9-S1"; ("", label) when the label is not a figure's."""
    label = clean_text(label)
    m = re.match(r"^\s*(?:Figure|Fig\.?|FIGURE|FIG\.?)\s*(S?\d+)\s*[\u2014\u2013-]\s*figure\s+"
                 r"supplement\s+(\d+)", label, re.I)  # fmt: skip
    if m:
        return f"{m.group(1)}-S{m.group(2)}", label
    num, _ = split_label(label)
    if num is None and re.fullmatch(r"S?\d{1,3}\.?", label):
        return label.rstrip("."), label
    return num, label


def read_jats(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    limits: ArticleLimits | None = None,
    render_dpi: float = 200,
) -> Article:
    """Read a JATS XML article: metadata and every ``<fig>``.

    Parameters
    ----------
    path
        The XML file (a bare ``<article>``, or one wrapped by an API response).
    images_dir
        Folder with the figure files, found by the ``<graphic xlink:href>`` file name with or
        without its extension (.jpg .png .gif .tif ...). The XML's own folder is searched too.
    limits
        Budgets (bytes, nesting, seconds, figure pixels).
    render_dpi
        Unused for XML; accepted so every reader has one signature.

    Returns
    -------
    Article
        ``number`` from ``<label>`` ("1", "S2", "9-S1" for eLife's figure supplements),
        ``caption`` = caption title and paragraphs, ``image`` when the file is found else None,
        ``image_ref`` the graphic's href.

    Raises
    ------
    UnsafeContent
        The XML declares entities or uses entities defined outside it.
    CorruptFile, NestingTooDeep, TooLarge, UnsupportedFormat, TimeLimit
    """
    del render_dpi
    path = Path(path)
    limits = limits or ArticleLimits()
    deadline = Deadline(limits.max_seconds, path)
    st = open_checked(path)
    if st.st_size > limits.max_bytes:
        raise TooLarge(
            f"XML is {st.st_size} bytes, more than the budget of {limits.max_bytes} "
            "(ArticleLimits.max_bytes)",
            path=path,
        )
    root = _parse(path, path.read_bytes(), limits)
    deadline.check("parsing the XML")
    art = _article(root)
    if art is None:
        raise UnsupportedFormat(
            f"XML has no JATS <article> element (root is <{_local(root.tag)}>)", path=path
        )
    meta = _find(art, "article-meta")
    if meta is None:
        meta = art
    title = _text(_find(meta, "article-title")) or None
    doi = None
    for aid in _findall(meta, "article-id"):
        if aid.get("pub-id-type") == "doi":
            doi = clean_text(aid.text or "") or None
            break
    journal_el = _find(art, "journal-title")
    dirs = ([Path(images_dir)] if images_dir is not None else []) + [path.parent]
    listings: dict[Path, dict[str, Path]] = {}
    figures: list[ArticleFigure] = []
    for fig in _findall(art, "fig"):
        deadline.check("reading figures")
        label = _text(_find(fig, "label"))
        number, _ = _label_number(label)
        cap = _find(fig, "caption")
        caption = _caption(cap) if cap is not None else ""
        if caption:
            num2, rest = split_label(caption)
            if num2 is not None and (number is None or num2 == number):
                number, caption = num2, rest  # a label repeated inside the caption
        graphic = _find(fig, "graphic")
        href = None
        if graphic is not None:
            href = graphic.get(_XLINK) or graphic.get("href")
        image = None
        if href:
            local = _resolve(href, dirs, listings)
            if local is not None:
                try:
                    image = load_image(local, max_pixels=limits.max_figure_pixels)
                except EmdigError as e:
                    log.warning("%s: figure %s image not used: %s", path, number, e)
                href = str(local)
        figures.append(ArticleFigure(number, caption, image, href))
    return Article(
        title=title,
        doi=doi,
        licence=_licence(meta),
        path=str(path),
        authors=_authors(meta),
        abstract=_abstract(meta),
        journal=_text(journal_el) or None,
        figures=figures,
    )
