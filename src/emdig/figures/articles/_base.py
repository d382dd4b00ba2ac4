"""What the article readers share: budgets, figure labels, text clean-up, image files."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import EmdigError, TimeLimit, TooLarge

__all__ = [
    "ArticleLimits",
    "Deadline",
    "clean_text",
    "fix_micro",
    "load_image",
    "normalise_licence",
    "split_label",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ArticleLimits:
    """Budgets for reading one article.

    Attributes
    ----------
    max_pages
        Most pages in a PDF; a longer PDF is rejected before any page is parsed.
    max_stream_bytes
        Largest PDF stream, raw or inflated (bytes); checked before the PDF is parsed.
    max_bytes
        Largest article file (bytes).
    max_seconds
        Wall-clock budget for one article; exceeded -> :class:`~emdig.errors.TimeLimit`.
    max_figure_pixels
        Most pixels in one figure image (decoded or rendered). A PDF region that would exceed it
        is rendered at a lower resolution; an image file that exceeds it is not decoded.
    max_nesting
        Deepest element nesting in HTML or XML.
    """

    max_pages: int = 100
    max_stream_bytes: int = 64 * 1024**2
    max_bytes: int = 512 * 1024**2
    max_seconds: float = 120.0
    max_figure_pixels: int = 40_000_000
    max_nesting: int = 512


class Deadline:
    """Wall-clock budget of one read; :meth:`check` raises :class:`TimeLimit` once it has passed."""

    def __init__(self, seconds: float, path: str | Path) -> None:
        self.seconds = seconds
        self.path = path
        self.end = time.monotonic() + seconds

    def check(self, doing: str) -> None:
        if time.monotonic() > self.end:
            raise TimeLimit(
                f"gave up after {self.seconds:g} s while {doing} "
                "(raise ArticleLimits.max_seconds to allow more)",
                path=self.path,
            )


# "Figure 3", "Fig. 3", "FIG. 3", "Supplementary Figure 2", "Figure S2", "Extended Data Fig. 1"
_LABEL = re.compile(
    r"^\s*(?P<prefix>(?:Supplementary|Supporting|Suppl\.?|Extended\s+Data)\s+)?"
    r"(?P<word>Figure|Fig\.?|FIGURE|FIG\.?)\s*(?P<num>S?\d{1,3})(?![\d])"
)
# what may separate the label from the caption text
_LABEL_SEP = re.compile(r"^\s*(?:[.:|\u2014\u2013\u2012-]\s*)?")


def split_label(text: str) -> tuple[str | None, str]:
    """Split a caption into its figure number and the caption without the label.

    ``"Figure 2. TEM of ..."`` -> ``("2", "TEM of ...")``; ``"Figure S1: ..."`` and
    ``"Supplementary Figure 1 ..."`` -> ``"S1"``; ``"Extended Data Fig. 3 | ..."`` -> ``"ED3"``.
    Text without a label gives ``(None, text)``.
    """
    m = _LABEL.match(text)
    if not m:
        return None, text.strip()
    num = m.group("num")
    prefix = (m.group("prefix") or "").lower()
    if prefix.startswith("extended"):
        num = "ED" + num
    elif prefix and not num.startswith("S"):
        num = "S" + num
    rest = text[m.end() :]
    rest = rest[_LABEL_SEP.match(rest).end() :]  # type: ignore[union-attr]
    return num, rest.strip()


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\ufeff\u00ad]")
_SPACES = re.compile(r"\s+")
# Greek mu (or the compatibility micro) before a unit -> the micro sign the rest of emdig uses
_MU_UNIT = re.compile(r"[\u03bc\u00b5](?=(?:m|M|g|L|l|s|mol|A|V|W|Gy|Ci)\b)")
# the common PDF font trap: a symbol font's mu whose text layer says "l" ("5 lm" is 5 µm)
_L_FOR_MU = re.compile(r"(?<=\d)(\s?)l(m|M|mol)\b")
# a mu set apart from its unit by the text layer ("5 µ m")
_MU_SPACE = re.compile(r"(?<=\d)(\s?)[\u03bc\u00b5]\s+(m|M|g|L|l|s|mol)\b")
_CID = re.compile(r"\(cid:\d+\)")


def clean_text(text: str) -> str:
    """Normalise a caption or title: NFC, no control characters, single spaces, micro sign.

    The Angstrom sign becomes Å and the Greek mu before a unit becomes the micro sign (U+00B5).
    """
    text = unicodedata.normalize("NFC", text).replace("\u212b", "\u00c5")
    text = _CONTROL.sub("", text)
    text = text.replace("\u00a0", " ").replace("\u2009", " ").replace("\u202f", " ")
    text = _MU_UNIT.sub("\u00b5", text)
    return _SPACES.sub(" ", text).strip()


def fix_micro(text: str) -> str:
    """Repair PDF text-layer traps around the micro sign.

    ``"5 lm"`` -> ``"5 µm"`` (a symbol font's mu mapped to "l"), ``"5 µ m"`` -> ``"5 µm"``;
    glyphs without any Unicode mapping (pdfminer's ``"(cid:2)"``) become U+FFFD.
    """
    text = _CID.sub("\ufffd", text)
    text = _MU_SPACE.sub("\\1\u00b5\\2", text)
    return _L_FOR_MU.sub("\\1\u00b5\\2", text)


_CC = re.compile(
    r"creativecommons\.org/(?:licenses/(?P<kind>[a-z-]+)/(?P<ver>\d(?:\.\d)?)"
    r"|publicdomain/(?P<pd>zero|mark)/(?P<pdver>\d\.\d))",
    re.I,
)
_CC_TEXT = re.compile(
    r"\b(?:CC[- ]BY(?:[- ](?:NC|ND|SA)){0,2}(?:[- ]\d\.\d)?|CC0)\b"
    r"|Creative Commons Attribution(?:[- ][A-Za-z]+){0,4}(?: \d\.\d)?",
)


def normalise_licence(text: str | None) -> str | None:
    """A licence URL or statement as a short name where it is a Creative Commons one.

    ``"http://creativecommons.org/licenses/by-nc/4.0/"`` -> ``"CC BY-NC 4.0"``; other text is
    returned cleaned and cut to 300 characters; empty text gives None.
    """
    if not text:
        return None
    m = _CC.search(text)
    if m:
        if m.group("pd"):
            return "CC0 " + m.group("pdver") if m.group("pd") == "zero" else "Public Domain Mark"
        return f"CC {m.group('kind').upper()} {m.group('ver')}"
    m2 = _CC_TEXT.search(text)
    if m2:
        found = m2.group(0)
        if found.upper().startswith("CC"):
            parts = re.split(r"[- ]", found.upper())
            ver = [p for p in parts if "." in p]
            kind = "-".join(p for p in parts[1:] if "." not in p)
            return " ".join(["CC", kind] if kind else ["CC0"]) + (f" {ver[0]}" if ver else "")
        v = re.search(r"\d\.\d", found)
        kinds = [
            k for k in ("NonCommercial", "NoDerivatives", "NoDerivs", "ShareAlike") if k in found
        ]
        abbrev = {
            "NonCommercial": "NC",
            "NoDerivatives": "ND",
            "NoDerivs": "ND",
            "ShareAlike": "SA",
        }
        name = "CC BY" + "".join("-" + abbrev[k] for k in kinds)
        return f"{name} {v.group(0)}" if v else name
    text = clean_text(text)
    return text[:300] or None


# Formats a figure file may be in; anything else (SVG, PDF, EPS) is not decoded.
_IMAGE_FORMATS = ["PNG", "JPEG", "GIF", "TIFF", "WEBP", "BMP"]


def load_image(path: Path, *, max_pixels: int) -> np.ndarray:
    """Decode an image file to an RGB ``uint8`` array of shape ``(h, w, 3)``.

    The header's size is checked against ``max_pixels`` before any pixel is decoded. Raises
    :class:`~emdig.errors.TooLarge` or :class:`~emdig.errors.CorruptFile`-like
    :class:`~emdig.errors.EmdigError` subclasses.
    """
    from PIL import Image, ImageFile

    from ...errors import CorruptFile, UnsupportedFormat

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_IMAGE_FORMATS) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise TooLarge(
                        f"image is {w} x {h} px, more than the budget of {max_pixels} px "
                        "(ArticleLimits.max_figure_pixels)",
                        path=path,
                    )
                im.draft("RGB", (w, h))
                arr = _to_rgb(im)
    except EmdigError:
        raise
    except Image.UnidentifiedImageError:
        raise UnsupportedFormat(
            "not a PNG, JPEG, GIF, TIFF, WebP or BMP image", path=path
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(f"decompression bomb refused: {e}", path=path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise CorruptFile(f"image cannot be decoded: {e}", path=path) from None
    return arr


def _to_rgb(im: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(im, Image.Image)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # scientific greyscale: stretch to 8 bits rather than clip
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        g = (
            np.zeros(a.shape, np.uint8)
            if hi <= lo
            else ((a - lo) / (hi - lo) * 255).astype(np.uint8)
        )
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # transparent figure backgrounds are white on the page
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
