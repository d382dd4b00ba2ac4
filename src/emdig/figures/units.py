"""Lengths as written in scale-bar labels and captions: ``"50 nm"``, ``"0,5 µm"``, ``"2 Å"``.

One parser for the scale-bar reader (OCR text) and the caption parser (plain text from HTML, JATS
or a PDF text layer). It normalises the spellings of each unit to one of :data:`UNITS`:

- ``µm``: ``µm`` (U+00B5 or U+03BC), ``um``, ``u m``, ``µ m``, ``micron(s)``, ``micrometre``,
  ``µ`` alone, and ``lm``: PDF fonts often map the µ glyph to "l", so "5 lm" in a text layer is 5 µm
  (lumens never label a micrograph);
- ``Å``: ``Å`` (U+00C5 or U+212B), ``Ang``, ``angstrom``; a bare ``A`` only when the whole text is
  a label such as ``"5 A"`` (in running text "5 A" may be a current);
- ``pm``, ``nm``, ``mm`` (also spelled out);
- ``1/nm`` (reciprocal, for diffraction patterns and FFTs): ``nm-1``, ``nm⁻¹``, ``nm^-1``, ``1/nm``.

Numbers may use a decimal comma (``"0,5 µm"``; ``"1,000 nm"`` is a thousands separator), any
Unicode space or none between number and unit (``"50nm"``, ``"50-nm"``), a leading point
(``".2 um"``) and the OCR confusion of the letter O for a zero after a digit (``"5O nm"``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["UNITS", "Length", "find_lengths", "format_length", "parse_length", "to_nm"]

#: The normalised units, in increasing size; ``"1/nm"`` is reciprocal space.
UNITS: tuple[str, ...] = ("pm", "Å", "nm", "µm", "mm", "1/nm")

_NM_PER_UNIT: dict[str, float] = {"pm": 1e-3, "Å": 0.1, "nm": 1.0, "µm": 1e3, "mm": 1e6}


@dataclass(frozen=True, slots=True)
class Length:
    """A length as written: ``value`` in ``unit`` (one of :data:`UNITS`).

    ``nm`` is the length in nanometres, or None for the reciprocal unit ``"1/nm"``.
    """

    value: float
    unit: str
    nm: float | None

    def __str__(self) -> str:
        return format_length(self)


def to_nm(value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` (``"pm"``, ``"Å"``, ``"nm"``, ``"µm"``, ``"mm"``) to nm.

    Raises ValueError for ``"1/nm"`` (not a length) and for any other unit.
    """
    try:
        return value * _NM_PER_UNIT[unit]
    except KeyError:
        raise ValueError(f"not a length unit: {unit!r}; expected one of {UNITS[:-1]}") from None


def format_length(length: Length) -> str:
    """Write a length the way a label does: ``"2 nm"``, ``"0.5 µm"``, ``"5 1/nm"``."""
    value = f"{length.value:.6g}"
    return f"{value} {length.unit}"


# Every spacing character a PDF or HTML page may put between number and unit.
_SPACES = re.compile(r"[\s\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_MICRO = "[\u00b5\u03bcu]"
_ANGSTROM = "[\u00c5\u212b]"
_MINUS = "[-\u2212\u2013\u2010\u2011]"

# (pattern, unit), tried in order at the position after the number; the first that matches wins.
_UNIT_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        rf"nm\s?(?:{_MINUS}\s?1|\u207b\u00b9|\^\s?{_MINUS}\s?1|\^\s?\(\s?{_MINUS}1\s?\))"
        # not the start of a range such as "10 nm-1 µm" or "5 nm-10 nm"
        r"(?![\d.,]|\s?[\u00b5\u03bcunmp\u00c5])",
        "1/nm",
    ),
    (r"1\s?/\s?nm", "1/nm"),
    (r"(?:nano-?met(?:er|re)s?)", "nm"),
    (r"nm", "nm"),
    (r"pm|pico-?met(?:er|re)s?", "pm"),
    (rf"(?:{_MICRO}\s?m|micro-?met(?:er|re)s?|microns?|lm)", "µm"),
    (r"[\u00b5\u03bc]", "µm"),
    (r"mm|milli-?met(?:er|re)s?", "mm"),
    (rf"{_ANGSTROM}|[AaÅå]ngstr[oöø]ms?|Ang", "Å"),
)
_UNIT_RE = "|".join(f"(?P<u{i}>{p})" for i, (p, _u) in enumerate(_UNIT_PATTERNS))
# A digit, then digits or the letter O (OCR), with one optional decimal point or comma.
_NUMBER_RE = r"(?:\d[\dO]*(?:[.,]\d[\dO]*)?|[.,]\d[\dO]*)"
_LENGTH = re.compile(
    rf"(?<![\w.])(?<!\d,)(?P<num>{_NUMBER_RE})[ \-]?(?:{_UNIT_RE})(?![A-Za-z\u00b5\u03bc])",
    re.IGNORECASE,
)
# A whole label that is just "<number> A": here A can only be ångström.
_BARE_A = re.compile(rf"\s*(?P<num>{_NUMBER_RE})\s?A\s*")


def _normalise(text: str) -> str:
    # NFC keeps Å (U+212B -> U+00C5) and µ distinct; only the spaces are unified.
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text))


def _number(raw: str) -> float:
    digits = raw.replace("O", "0").replace("o", "0")
    if "," in digits:
        whole, _, frac = digits.partition(",")
        # "1,000" is a thousands separator; "0,500" and "2,5" are decimal commas
        thousands = len(frac) == 3 and whole not in ("", "0")
        digits = whole + frac if thousands else f"{whole}.{frac}"
    return float(digits)


def _length(value: float, unit: str) -> Length:
    return Length(value=value, unit=unit, nm=None if unit == "1/nm" else to_nm(value, unit))


def find_lengths(text: str) -> list[tuple[int, int, Length]]:
    """Every length written in ``text``, as ``(start, end, length)`` character spans, in order.

    The spans index the text after its spacing characters were unified to single spaces, which
    keeps them valid for the original text whenever it holds no runs of spaces.
    Zero and negative values are skipped (a label never reads "0 nm").
    """
    norm = _normalise(text)
    found: list[tuple[int, int, Length]] = []
    for m in _LENGTH.finditer(norm):
        # a lowercase "o" is only a zero next to digits in OCR text, never "5 of"
        if "o" in m.group("num"):
            continue
        unit = next(
            _UNIT_PATTERNS[i][1] for i in range(len(_UNIT_PATTERNS)) if m.group(f"u{i}") is not None
        )
        written = m.group(0)[len(m.group("num")) :].strip(" -")
        # OCR may shout "50 NM", but "5 Nm" is a torque and "5 PM" a time
        if unit in ("mm", "nm") and written[:1].isupper() and written[1:2].islower():
            continue
        if unit == "pm" and not written.startswith("p"):
            continue
        if unit == "Å" and written.lower() == "ang" and written[0] != "A":
            continue
        value = _number(m.group("num"))
        if value > 0:
            found.append((m.start(), m.end(), _length(value, unit)))
    return found


def parse_length(text: str) -> Length | None:
    """The first length written in ``text``, or None.

    Examples
    --------
    >>> parse_length("Scale bar, 0,5 µm")
    Length(value=0.5, unit='µm', nm=500.0)
    >>> parse_length("5 1/nm").unit
    '1/nm'
    """
    found = find_lengths(text)
    if found:
        return found[0][2]
    bare = _BARE_A.fullmatch(_normalise(text))
    if bare is not None:
        value = _number(bare.group("num"))
        if value > 0:
            return _length(value, "Å")
    return None
