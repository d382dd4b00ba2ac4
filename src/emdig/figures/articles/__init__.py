"""Read an article (PDF, JATS XML or HTML) into an :class:`~emdig.figures.records.Article`.

:func:`read_article` identifies the format from the content, never from the extension, and hands
the file to :func:`read_pdf`, :func:`read_jats` or :func:`read_html`. Each returns the article's
metadata and its figures: ``number`` ("1", "2", "S1"), ``caption`` as printed *without* its
leading "Figure N." label (whitespace normalised, micro signs repaired), ``image`` as an RGB
``uint8`` array when the pixels are available and ``image_ref`` saying where they came from.

Every reader works within :class:`ArticleLimits` and raises :class:`~emdig.errors.EmdigError`
subclasses with a one-line message that names the file and the reason.

Example
-------
>>> from emdig.figures.articles import read_article
>>> art = read_article("paper.pdf")  # doctest: +SKIP
>>> [(f.number, f.caption[:30], f.image.shape) for f in art.figures]  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ...errors import UnsupportedFormat
from ...io.sniff import open_checked
from ..records import Article
from ._base import ArticleLimits
from .html import read_html
from .jats import read_jats
from .pdf import read_pdf

__all__ = ["ArticleLimits", "read_article", "read_html", "read_jats", "read_pdf", "sniff_article"]

_OTHER = (
    (b"PK\x03\x04", "a ZIP archive (unpack it first)"),
    (b"\x1f\x8b", "a gzip stream (unpack it first)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"{\\rtf", "an RTF document"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document"),
)


def sniff_article(path: str | Path) -> str:
    """The article format of a file from its first bytes: ``"pdf"``, ``"jats"`` or ``"html"``.

    Raises :class:`~emdig.errors.UnsupportedFormat` for anything else.
    """
    path = Path(path)
    open_checked(path)
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for magic, what in _OTHER:
        if head.startswith(magic):
            raise UnsupportedFormat(f"not an article: the file is {what}", path=path)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", "replace")
    else:
        text = head.decode("utf-8", "replace")
    low = text.lstrip("\ufeff \t\r\n").lower()
    if re.search(r"<!doctype\s+html|<html[\s>]", low):
        return "html"
    if re.search(r"<article[\s>]|<pmc-articleset[\s>]|<!doctype\s+(article|response)", low):
        return "jats"
    if low.startswith("<?xml"):
        return "jats"  # other XML: read_jats says whether it holds an <article>
    if re.search(r"<(head|body|figure|div|p|img)[\s>]", low):
        return "html"
    raise UnsupportedFormat(
        "not a PDF, JATS XML or HTML article (no %PDF- header, no <article> or <html>)",
        path=path,
    )


def read_article(
    path: str | Path,
    *,
    images_dir: str | Path | None = None,
    limits: ArticleLimits | None = None,
    render_dpi: float = 200,
    progress: Callable[[int, int], None] | None = None,
) -> Article:
    """Read a PDF, JATS XML or HTML article with its figures.

    Parameters
    ----------
    path
        The article file; its format is found from the content (:func:`sniff_article`).
    images_dir
        Folder with the figure image files of an HTML page or a JATS XML, found by file name.
    limits
        Budgets: pages, stream bytes, file bytes, seconds, figure pixels, nesting.
    render_dpi
        Resolution of rendered PDF figure regions (dots per inch).
    progress
        For PDFs, called as ``progress(pages_done, pages_total)``.

    Returns
    -------
    Article
        See :func:`read_pdf`, :func:`read_jats` and :func:`read_html`.
    """
    fmt = sniff_article(path)
    if fmt == "pdf":
        return read_pdf(
            path, images_dir=images_dir, limits=limits, render_dpi=render_dpi, progress=progress
        )
    if fmt == "jats":
        return read_jats(path, images_dir=images_dir, limits=limits, render_dpi=render_dpi)
    return read_html(path, images_dir=images_dir, limits=limits, render_dpi=render_dpi)
