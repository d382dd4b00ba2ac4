"""Figure captions: which panels they name, the text about each panel, and the scale statements.

Pure text rules, no model. Captions come in many styles; the ones handled here:

- leading labels: ``"(a) TEM image ... (b) ..."``, ``"a) ..."``, ``"A, Schematic ...; B, ..."``,
  Nature's bold letters after the bold lost in plain text: ``"a HAADF-STEM image of ... b Magnified
  ..."``, groups and ranges ``"a, b"``, ``"c–e"``, ``"(a and b)"``, ``"(A)–(C)"``, ``"E,F)"``;
- trailing labels: ``"TEM images of the sample at 300 °C (a) and 500 °C (b)."``;
- position words when no letters are used: ``"Top: ... Bottom: ..."``, ``"(left) ... (right)"``.

A letter is only taken for a label where its place says so. The article "a" and the capital "A"
at the start of a sentence, units ("6 h", "0.1 M"), chemical formulas ("Pt/C", "O K-edge"),
cross-references to other figures ("Fig. 2a", "Figure 3b,c") and "e.g." are not labels. Letters in
a lower-case caption are never upper-case labels and vice versa. A label set must contain "a";
letters beyond a gap of more than one missing letter are dropped. Roman numerals and digit labels
are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from emdig.figures.records import CaptionChunk
from emdig.figures.units import Length, find_lengths
from emdig.figures.vocabulary import find_terms

__all__ = [
    "POSITION_LABELS",
    "caption_labels",
    "caption_scales",
    "keywords",
    "panel_captions",
    "split_caption",
]

#: The pseudo-labels :func:`split_caption` gives to position words when a caption uses no letters:
#: "upper"/"lower" map to "top"/"bottom", "centre"/"center" to "middle", and a two-word place is
#: joined with a hyphen ("top-left").
POSITION_LABELS: tuple[str, ...] = (
    "top",
    "middle",
    "bottom",
    "left",
    "right",
    "top-left",
    "top-middle",
    "top-right",
    "middle-left",
    "middle-right",
    "bottom-left",
    "bottom-middle",
    "bottom-right",
)

_DASH_CHARS = "-\u2010\u2011\u2012\u2013\u2014\u2212"
_DASH = r"\-\u2010-\u2014\u2212"  # for use inside a character class
_SEP = rf"(?:\s*,\s*(?:and\s+|&\s*)?|\s*;\s*|\s*&\s*|\s+and\s+|\s+to\s+|\s*[{_DASH}]\s*)"
_SEP_RE = re.compile(_SEP)
_L = "[A-Za-z]"
# a label letter may not be part of a word, a formula ("Pt/C"), a hyphenated word ("a-shaped",
# "T-shaped"), an abbreviation ("e.g.", "S. aureus" is handled by the caller) or a unit ("s-1")
_BARE_BEFORE = rf"(?<![\w/.\'’(\[+{_DASH}])"
_BARE_AFTER = rf"(?![\w\'’/+{_DASH}]|\.\w|\s*[{_DASH}]\s*\d)"
_PAREN1 = rf"\(\s*{_L}(?:{_SEP}{_L})*\s*\)"
_PAREN1_RE = re.compile(_PAREN1)
_PAREN = re.compile(
    rf"(?<![\w)]){_PAREN1}(?:(?:\s*,\s*|\s+and\s+|\s*&\s*|\s+to\s+|\s*[{_DASH}]\s*){_PAREN1})*"
    rf"(?![a-z0-9_{_DASH}(])"  # "(e)PC Day 4" is a label, "(R)-BINAP" and "(a)b" are not
)
# "(b; scale bar = 5 µm)" or "(a: 50X objective; b: ...)": letters first in a parenthesis
_PAREN_LEAD = re.compile(rf"\(\s*({_L}(?:{_SEP}{_L})*)\s*[;:,]\s+(?=\S)")
_PAREN_LEAD_END = re.compile(rf"\(\s*({_L}(?:{_SEP}{_L})*)\s*[;:,]\s*$")
_RPAREN1 = rf"{_L}(?:{_SEP}{_L})*\)"
_RPAREN = re.compile(
    rf"{_BARE_BEFORE}{_RPAREN1}(?:(?:\s*,\s*|\s+and\s+|\s*&\s*|\s*[{_DASH}]\s*){_RPAREN1})*"
    rf"(?![a-z0-9_{_DASH}])"  # "d)TEM image" is a label
)
_BARE = re.compile(rf"{_BARE_BEFORE}{_L}(?:{_SEP}{_L}(?![\w]))*{_BARE_AFTER}")
_EXPLICIT = re.compile(
    rf"\b(?:(?:Figure|Fig\.|panels?|Panels?)\s+({_L}(?:{_SEP}{_L})*)"
    rf"|from\s+({_L}\s+to\s+{_L})){_BARE_AFTER}"
)

# A figure's own header and cross-references to other figures, masked before label search.
_HEADER = re.compile(
    r"^\s*[\"“]?\s*(?:Supplementary\s+)?(?:Figure|Fig\.?)\s*S?\d+[A-Za-z]?\s*(?:[.:|]\s*)?",
    re.IGNORECASE,
)
_CROSSREF = re.compile(
    rf"\b(?:Supplementary\s+|Extended\s+Data\s+|ESI\s+)?(?:Figure|Fig|Table|Scheme)s?\.?\s*"
    rf"S?\s?\d+(?:[A-Za-z]{{1,4}}(?![A-Za-z]))?"
    rf"(?:(?:\s*,\s*|\s+and\s+|\s*&\s*|\s*[{_DASH}]\s*)(?:S?\d+)?{_L}(?![\w]))*",
    re.IGNORECASE,
)
_URL = re.compile(r"(?:https?://|doi:\s*|www\.)\S+", re.IGNORECASE)
_ABBREV = frozenset(
    {
        "fig",
        "figs",
        "vs",
        "e.g",
        "i.e",
        "ca",
        "approx",
        "no",
        "nos",
        "ref",
        "refs",
        "eq",
        "eqs",
        "al",
        "resp",
        "cf",
        "st",
        "dr",
        "mr",
        "ms",
        "inc",
        "ltd",
        "co",
    }
)
_PREV_WORDS = frozenset({"and", "or", "&"})


@dataclass(slots=True)
class _Group:
    start: int
    end: int
    letters: tuple[str, ...]  # as written, ranges expanded
    kind: str  # "paren", "rparen", "bare", "explicit"
    role: str = "ref"  # "leading", "trailing", "strong", "ref"
    depth: int = 0


def _expand(spec: str) -> tuple[str, ...]:
    """ "a, b", "c–e", "A and B", "a to h" -> the letters, ranges expanded."""
    spec = spec.replace("(", "").replace(")", "")
    tokens = [t for t in _SEP_RE.split(spec.strip()) if t.strip()]
    seps = _SEP_RE.findall(spec.strip())
    letters: list[str] = []
    for i, tok in enumerate(tokens):
        tok = tok.strip()
        if len(tok) != 1 or not tok.isalpha():
            return ()
        sep = seps[i - 1].strip() if i > 0 and i - 1 < len(seps) else ","
        is_range = sep == "to" or (len(sep) == 1 and sep in _DASH_CHARS)
        if is_range and letters and letters[-1].islower() == tok.islower() and tok > letters[-1]:
            first = letters[-1]
            letters.extend(chr(c) for c in range(ord(first) + 1, ord(tok) + 1))
        else:
            letters.append(tok)
    if len({c.islower() for c in letters}) > 1:
        return ()  # "a, B" mixes cases: not a label group
    return tuple(dict.fromkeys(letters))


def _mask(text: str) -> str:
    """The caption with its header blanked and cross-references and URLs replaced by "#"."""
    chars = list(text)
    header = _HEADER.match(text)
    if header is not None:
        chars[: header.end()] = " " * header.end()
    for rx in (_CROSSREF, _URL):
        for m in rx.finditer(text):
            if header is not None and m.start() < header.end():
                continue
            chars[m.start() : m.end()] = "#" * (m.end() - m.start())
    return "".join(chars)


def _depths(text: str) -> list[int]:
    depth, out = 0, []
    for ch in text:
        if ch == ")":
            depth = max(0, depth - 1)
        out.append(depth)
        if ch == "(":
            depth += 1
    return out


def _prev_context(text: str, start: int) -> str:
    """What precedes position ``start``: "start", "comma", "number", "open" or "word"."""
    i = start - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    if i < 0:
        return "start"
    ch = text[i]
    if ch in ",":
        return "comma"
    if ch == "(":
        return "open"
    if ch in ";:!?|":
        return "start"
    if ch == ".":
        j = i - 1
        while j >= 0 and not text[j].isspace():
            j -= 1
        word = text[j + 1 : i].lstrip("(")
        if word.lower() in _ABBREV or (len(word) == 1 and word.isupper()):
            return "word"  # "Fig. a", "vs. b", an initial "J. Smith"
        return "start"
    if ch.isdigit():
        j = i
        while j >= 0 and (text[j].isdigit() or text[j] in ".,"):
            j -= 1
        if j < 0 or not (text[j].isalpha() or text[j] in "-_"):
            return "number"  # "6 h", "0.1 M", but not "MoS2 b" or "Ti3C2 c"
        return "word"
    if ch.isalpha():
        j = i
        while j >= 0 and text[j].isalpha():
            j -= 1
        if text[j + 1 : i + 1].lower() in _PREV_WORDS:
            return "comma"
    return "word"


def _next_context(text: str, end: int) -> str:
    """What follows position ``end``: "upper", "lower", "and" or "punct" (or the end)."""
    i = end
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        return "punct"
    ch = text[i]
    if ch.isupper() or ch.isdigit():
        return "upper"
    if ch.isalpha():
        word = re.match(r"[a-z]+", text[i:])
        if word is not None and word.group(0) in ("and", "or", "respectively"):
            return "and"
        return "lower"
    if ch in "\u03b1\u03b2\u03b3\u03b4\u0394\u039b\u03bc\u00b5[\"“'‘~∼≈":
        return "upper"  # a Greek letter, a bracket or a quote starts a description
    return "punct"


@dataclass(slots=True)
class _Analysis:
    text: str
    masked: str
    groups: list[_Group]
    labels: list[str]  # lower case, sorted
    upper: bool  # the caption writes its labels in capitals


def _find_groups(masked: str) -> list[_Group]:
    depth = _depths(masked)
    taken = [False] * len(masked)
    groups: list[_Group] = []

    def add(
        start: int, end: int, letters: tuple[str, ...], kind: str, at: int | None = None
    ) -> None:
        # the kinds are tried strongest first; a character belongs to one group at most
        if not letters or any(taken[start:end]):
            return
        for k in range(start, end):
            taken[k] = True
        groups.append(_Group(start, end, letters, kind, depth=depth[start if at is None else at]))

    for m in _EXPLICIT.finditer(masked):
        # "Figure c" and "panel b" take the word along: the chunk starts after the letter
        spec = m.group(1) or m.group(2)
        s = m.start() if m.group(1) else m.start(2)
        add(s, m.end(), _expand(spec), "explicit")
    for m in _PAREN.finditer(masked):
        letters = _expand(m.group(0))
        if letters:
            add(m.start(), m.end(), letters, "paren")
        else:  # "(a) 5%Pd-LDH (A) and (b)": a chain that mixes cases, one by one
            for sub in _PAREN1_RE.finditer(masked, m.start(), m.end()):
                add(sub.start(), sub.end(), _expand(sub.group(0)), "paren")
    for m in _PAREN_LEAD.finditer(masked):
        add(m.start(1), m.end(1), _expand(m.group(1)), "paren", at=m.start())
    for m in _RPAREN.finditer(masked):
        add(m.start(), m.end(), _expand(m.group(0)), "rparen")
    for m in _BARE.finditer(masked):
        add(m.start(), m.end(), _expand(m.group(0)), "bare")
    groups.sort(key=lambda g: g.start)
    return groups


def _classify(masked: str, g: _Group) -> None:
    prev = _prev_context(masked, g.start)
    nxt = _next_context(masked, g.end)
    single = len(g.letters) == 1
    if g.kind == "explicit":
        leads = g.depth == 0 and prev in ("start", "comma") and nxt == "upper"
        g.role = "leading" if leads else "strong"
        return
    if g.kind == "paren":
        if prev == "number" and single and g.letters[0] in "hsKMVgLmW":
            g.role = "drop"  # "held at 300 (K)" is a unit; "Entries 2 (A), 4 (B)" are labels
        elif g.depth > 0:
            g.role = "ref"
        elif nxt in ("punct", "and"):
            g.role = "trailing"
        elif prev in ("start", "open") or nxt == "upper" or (prev == "comma" and nxt == "lower"):
            g.role = "leading"
        else:
            g.role = "ref"
        return
    if g.kind == "rparen":
        # "(2 h)" or "(phase A)" close a parenthesis; "a) and b)" inside one are still labels
        if g.depth > 0 and prev not in ("start", "comma", "open"):
            g.role = "drop"
        elif nxt in ("punct", "and"):
            g.role = "strong"
        elif prev in ("start", "comma") or nxt == "upper":
            g.role = "leading"
        else:
            g.role = "strong"
        return
    # bare letters
    after = masked[g.end : g.end + 1]
    dash = re.match(rf"\s*[{_DASH}]\s+(?=\w)", masked[g.end :])
    if dash is not None:  # "a – top view of ...; b – ..."
        after, nxt = ",", _next_context(masked, g.end + dash.end())
    if prev == "number" or prev == "open":
        g.role = "drop" if prev == "number" else "ref"
        return
    # "a. TEM image" is a label, "S. aureus" and "C. elegans" are not
    if after == "." and (_next_context(masked, g.end + 1) != "upper" or not single):
        g.role = "drop"
        return
    if g.depth > 0:
        g.role = "ref"
        return
    letter = g.letters[0]
    if prev == "start":
        if nxt == "punct" and after not in ",.:":
            g.role = "ref"
        elif single and letter in "AI" and nxt == "lower":
            g.role = "drop"  # "A group of mice", "I"
        else:
            g.role = "leading"
    elif prev == "comma":
        if single and letter in "aAiI" and nxt != "upper":
            g.role = "ref"  # ", a process that"
        elif nxt in ("upper", "lower") or after in ",:":
            g.role = "leading"
        else:
            g.role = "ref"
    else:
        g.role = "ref"


def _analyse(caption: str) -> _Analysis:
    masked = _mask(caption)
    groups = _find_groups(masked)
    for g in groups:
        _classify(masked, g)
    # letters inside a scale statement ("Scale bars: a, 50 nm; b, 2 µm") only refer to panels
    for m in _SCALE_START.finditer(masked):
        end = _statement_end(masked, m.end())
        for g in groups:
            if m.end() <= g.start < end and g.role == "leading":
                g.role = "ref"
    # "a. TEM image ... b. SEM image": once a caption labels with "a." at a sentence start, a
    # letter with a point before a capitalised word is a label even in mid-sentence
    dotted = any(
        g.kind == "bare" and g.role == "leading" and masked[g.end : g.end + 1] == "."
        for g in groups
    )
    if dotted:
        for g in groups:
            if (
                g.kind == "bare"
                and g.role == "ref"
                and g.depth == 0
                and masked[g.end : g.end + 1] == "."
                and _next_context(masked, g.end + 1) == "upper"
            ):
                g.role = "leading"
    groups = [g for g in groups if g.role != "drop"]

    def case_votes(upper: bool) -> tuple[int, int, int]:
        # letters in parentheses outvote bare ones: "a) ... b) ... A: pellet, B: ..."
        paren = ref = bare = 0
        for g in groups:
            if g.letters[0].isupper() != upper:
                continue
            if g.kind == "bare":
                if g.role == "leading" and g.letters not in (("a",), ("A",)):
                    bare += len(g.letters)
            elif g.role in ("leading", "strong", "trailing"):
                paren += len(g.letters)
            elif g.depth == 0:
                ref += len(g.letters)
        return paren, ref, bare

    upper = case_votes(True) > case_votes(False)
    groups = [g for g in groups if g.letters[0].isupper() == upper]
    for g in groups:
        g.letters = tuple(c.lower() for c in g.letters)

    owned: set[str] = set()
    for g in groups:
        if g.role in ("leading", "strong"):
            owned.update(g.letters)
    # a lone bare "a" needs a "b" to be a label
    if not any(g.kind != "bare" and "a" in g.letters for g in groups) and "b" not in owned:
        owned.discard("a")
        for g in groups:
            if g.kind == "bare" and g.letters == ("a",):
                g.role = "ref"
    labels = set(owned)
    for g in groups:
        if (
            g.kind in ("paren", "rparen")
            and g.role in ("trailing", "ref")
            and g.depth == 0
            and not owned.intersection(g.letters)
        ):
            labels.update(g.letters)
            g.role = "trailing"
    if "b" in labels and "a" not in labels:
        first_b = min(g.start for g in groups if "b" in g.letters)
        before = [g for g in groups if g.letters == ("a",) and g.start < first_b]
        if before:
            labels.add("a")
            if any(g.role == "leading" and "b" in g.letters for g in groups):
                before[-1].role = "leading"
    final: list[str] = []
    if "a" in labels:
        for c in sorted(labels):
            if not final or ord(c) - ord(final[-1]) <= 2:
                final.append(c)
            else:
                break
    return _Analysis(caption, masked, groups, final, upper)


def caption_labels(caption: str) -> list[str]:
    """The panel letters a caption names, lower-cased, in alphabetical order.

    Examples
    --------
    >>> caption_labels("a, b Schematic. c–e SEM images of BM (c), PM (d) and SMNp (e).")
    ['a', 'b', 'c', 'd', 'e']
    >>> caption_labels("A TEM image of the particles; see Fig. 2a for details.")
    []
    """
    return _analyse(caption).labels


# ---------------------------------------------------------------------------------- splitting

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(\[]?[A-Z0-9]|\([a-z][,)])|(?<=;)\s+")
_SCALE_START = re.compile(
    r"\b(?:scale[\s\-]?bars?|scalebars?)\b|(?:(?<=^)|(?<=[.;:(]\s)|(?<=[(]))bars?\b(?=\s*[:=,]"
    r"|\s+(?:is|are|represents?|indicates?|corresponds?|=))|(?<=,\s)bars?(?=\s*[:=]\s*\d)",
    re.IGNORECASE,
)
_POSITION = re.compile(
    r"(?:^|(?<=[.;:]))\s*\(?\s*(?P<p>(?:top|upper|bottom|lower|middle|centre|center"
    r"|left|right)(?:[\s\-]+(?:left|right|middle|centre|center))?)"
    r"(?:\s+(?:panels?|rows?|images?|columns?))?\s*(?:[:,)]|\s+panels?\s*[:,])\s*",
    re.IGNORECASE,
)
_POSITION_TRAILING = re.compile(
    r"\(\s*(?P<p>(?:top|upper|bottom|lower|middle|centre|center|left|right)"
    r"(?:[\s\-]+(?:left|right|middle|centre|center))?)\s*\)",
    re.IGNORECASE,
)
_POS_WORDS = {"upper": "top", "lower": "bottom", "centre": "middle", "center": "middle"}


def _position_label(words: str) -> str:
    parts = [_POS_WORDS.get(w, w) for w in re.split(r"[\s\-]+", words.lower()) if w]
    return "-".join(parts)


def _clean(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"^[\s,;:)\].]+", "", text)
    text = re.sub(r"(?:[\s,;(\[]|\band)+$", "", text)
    return text.strip()


@dataclass(slots=True)
class _Span:
    start: int
    end: int
    labels: tuple[str, ...]
    # the chunk starts a sentence ("... . (c) TEM image"), so a bare "Scale bar, 5 nm" in it
    # is about its panels; not so for "(a, c) bottom surface and (b, d) top surface. Scale ..."
    sentence: bool = True
    carved: bool = False


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out, s = [], start
    depth = _depths(text + " ")
    for m in _SENTENCE_END.finditer(text, start, end):
        if depth[m.start()] > 0 and text[m.start() - 1] == ";":
            continue  # "(b; scale bar = 5 µm)"
        # "Fig. 2" or "e.g. The": not an end
        before = text[max(start, m.start() - 5) : m.start()].lower()
        if re.search(r"(?:\bfig|\bvs|e\.g|i\.e|\bca|\bal|\bno)\.$", before):
            continue
        out.append((s, m.start()))
        s = m.end()
    out.append((s, end))
    return [(a, b) for a, b in out if text[a:b].strip()]


def _states_scale(text: str) -> bool:
    """Whether ``text`` holds a scale statement with a length ("Bars are mean ± SD" is none)."""
    return any(
        find_lengths(text[m.end() : _statement_end(text, m.end())])
        for m in _SCALE_START.finditer(text)
    )


def _is_scale_sentence(text: str) -> bool:
    """Whether a sentence opens with "Scale bar(s)" or "<length> scale bar"."""
    text = text.lstrip(' ("“')
    lengths = find_lengths(text[:24])
    if lengths and lengths[0][0] == 0:
        text = text[lengths[0][1] :].lstrip(" -")
    return _SCALE_START.match(text) is not None


def _spans(a: _Analysis) -> list[_Span]:
    text, label_set = a.text, set(a.labels)
    delims = [g for g in a.groups if g.role == "leading" and label_set.intersection(g.letters)]
    spans: list[_Span] = []
    if delims:
        first = delims[0].start
        spans.append(_Span(0, first, ()))
        for i, g in enumerate(delims):
            end = delims[i + 1].start if i + 1 < len(delims) else len(text)
            labels = tuple(c for c in g.letters if c in label_set)
            sentence = _prev_context(a.masked, g.start) == "start"
            spans.append(_Span(g.end, end, labels, sentence=sentence))
    elif a.labels:
        for s, e in _sentences(text, 0, len(text)):
            labels = tuple(
                dict.fromkeys(
                    c
                    for g in a.groups
                    if s <= g.start < e and g.role in ("trailing", "strong")
                    for c in g.letters
                    if c in label_set
                )
            )
            if labels or not spans or spans[-1].labels:
                # a sentence without letters after a labelled one may describe a panel the
                # caption does not letter ("SEM micrograph (scale bar = 1 µm) of ..."): shared
                spans.append(_Span(s, e, labels, sentence=bool(labels)))
            else:
                spans[-1].end = e
    else:
        return []
    # labels named but without a chunk of their own: carve the sentence that names them
    have = {c for sp in spans for c in sp.labels}
    missing = [c for c in a.labels if c not in have]
    for g in a.groups:
        want = tuple(c for c in g.letters if c in missing)
        if not want or g.role not in ("trailing", "strong"):
            continue
        host = next((sp for sp in spans if sp.start <= g.start < sp.end), None)
        if host is None:
            continue
        sents = _sentences(text, host.start, host.end)
        s0, e0 = next((s, e) for s, e in sents if s <= g.start < e or e >= g.start)
        if s0 <= host.start and (host.carved or not host.labels):
            host.labels = tuple(dict.fromkeys((*host.labels, *want)))
            host.carved = True
            if e0 < host.end:
                spans.append(_Span(e0, host.end, (), sentence=False))
                host.end = e0
        elif s0 <= host.start:
            spans.append(_Span(s0, e0, want, carved=True))
        else:
            spans.append(_Span(s0, e0, want, carved=True))
            if e0 < host.end:
                # what follows the carved sentence cannot be told apart: figure-wide
                spans.append(_Span(e0, host.end, (), sentence=False))
            host.end = s0
        missing = [c for c in missing if c not in want]
    spans.sort(key=lambda sp: (sp.start, sp.end))
    # figure-wide scale sentences at the end of the last chunk go to a chunk of their own
    last = max(spans, key=lambda sp: sp.start)
    # unless every panel states its own: "(C) ... Scale bar: 10 µm. (D) ... Scale bar: 5 µm."
    per_panel = any(
        sp is not last and sp.labels and _states_scale(text[sp.start : sp.end]) for sp in spans
    )
    if last.labels and not per_panel:
        for s, e in _sentences(text, last.start, last.end):
            if s > last.start and _is_scale_sentence(text[s:e]):
                spans.append(_Span(s, last.end, ()))
                last.end = s
                break
    return spans


def _position_spans(text: str) -> list[_Span]:
    leading = list(_POSITION.finditer(_mask(text)))
    if len(leading) >= 2:
        spans = [_Span(0, leading[0].start(), ())]
        for i, m in enumerate(leading):
            end = leading[i + 1].start() if i + 1 < len(leading) else len(text)
            spans.append(_Span(m.end(), end, (_position_label(m.group("p")),)))
        return spans
    trailing = list(_POSITION_TRAILING.finditer(text))
    if len(trailing) >= 2:
        spans = []
        for s, e in _sentences(text, 0, len(text)):
            labels = tuple(
                dict.fromkeys(_position_label(m.group("p")) for m in trailing if s <= m.start() < e)
            )
            if labels or not spans:
                spans.append(_Span(s, e, labels))
            else:
                spans[-1].end = e
        return spans
    return []


def split_caption(caption: str) -> list[CaptionChunk]:
    """Split a caption into the text about each panel.

    Returns chunks in caption order. A chunk with ``labels == ()`` applies to the whole figure:
    the title before the first label, and a closing scale-bar sentence about several panels. The
    shared text is not copied into the panel chunks; :func:`panel_captions` gathers, for one
    panel, the shared chunks and its own (what EXSCLAIM puts in a panel's ``caption`` list).
    The label tokens themselves ("(a)", "c–e") are left out of the chunk text.

    When a caption uses no letters but position words ("Top: ...", "(left)"), the chunks carry
    the pseudo-labels of :data:`POSITION_LABELS`. A caption without any labels gives one chunk
    with ``labels == ()``.
    """
    a = _analyse(caption)
    spans = _spans(a) if a.labels else _position_spans(caption)
    header = _HEADER.match(caption)
    skip = header.end() if header is not None else 0
    chunks: list[CaptionChunk] = []
    for sp in spans:
        text = _clean(caption[max(sp.start, skip) : sp.end]) if sp.end > skip else ""
        if text or sp.labels:
            chunks.append(CaptionChunk(labels=sp.labels, text=text))
    if not chunks:
        text = _clean(caption[skip:])
        if text:
            chunks.append(CaptionChunk(labels=(), text=text))
    return chunks


def panel_captions(chunks: Sequence[CaptionChunk], label: str | None) -> list[str]:
    """The caption texts that describe panel ``label``: the shared chunks, then its own.

    With ``label=None`` (a figure without labels) every chunk is returned.
    """
    if label is None:
        return [c.text for c in chunks if c.text]
    return [c.text for c in chunks if c.text and (not c.labels or label in c.labels)]


# ------------------------------------------------------------------------------ scale statements

_INSET_BEFORE = re.compile(r"\b(?:insets?|inlets?|inserts?)\b", re.IGNORECASE)
_INSET = re.compile(r"^\s*(?:\(\s*insets?\s*\)|(?:in|for|of)\s+(?:the\s+)?insets?\b)", re.I)
_ALL = re.compile(
    r"^\s*(?:\(\s*)?(?:in\s+|for\s+)?(?:all|the\s+other|other|remaining)\s+(?:panels|images)", re.I
)
_ALL_ANYWHERE = re.compile(
    r"\ball\s+(?:the\s+)?(?:panels|images|pictures|micrographs|figures)\b", re.IGNORECASE
)
_STMT_LABELS = re.compile(
    rf"(?P<paren>{_PAREN1}(?:(?:\s*,\s*|\s+and\s+|\s*[{_DASH}]\s*){_PAREN1})*)"
    rf"|(?:\b(?:in|for|of)\s+(?:panels?\s+)?)(?P<in>{_L}(?:{_SEP}{_L})*){_BARE_AFTER}"
    rf"|(?:(?<=[,;:(])|(?<=[,;:(]\s)|^)\s*(?P<pre>{_L}(?:{_SEP}{_L})*)\s*(?=[,:)]|\s+\d)",
)


def _statement_end(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return i
            depth -= 1
        elif ch == "." and depth == 0 and re.match(r"\.(?:\s|$)", text[i:]):
            word = re.search(r"(\w+)$", text[:i])
            if word is None or word.group(1).lower() not in _ABBREV:
                return i
    return len(text)


def _statement_scales(
    stmt: str, labels: set[str], upper: bool
) -> list[tuple[tuple[str, ...] | None, Length]]:
    """(labels, length) for each length of one scale statement.

    The labels are ``()`` when the statement names none, None when it says "all panels".
    """
    lengths = find_lengths(stmt)
    if lengths and _INSET_BEFORE.search(stmt[: lengths[0][0]]):
        return []  # "scale bars on the inset images correspond to 500 nm"
    tokens: list[tuple[int, int, str, object]] = [(s, e, "len", f) for s, e, f in lengths]
    for m in _STMT_LABELS.finditer(stmt):
        spec = m.group("paren") or m.group("in") or m.group("pre")
        if spec is None:
            continue
        s = m.start("paren") if m.group("paren") else m.start("in" if m.group("in") else "pre")
        if any(ls <= s < le for ls, le, _k, _v in tokens):
            continue
        letters = _expand(spec)
        if not letters or letters[0].isupper() != upper:
            continue
        lowered = tuple(c.lower() for c in letters)
        if labels and not set(lowered) <= labels:
            continue
        tokens.append((s, s + len(spec), "lab", lowered))
    for m in _ALL.finditer(stmt):
        tokens.append((m.start(), m.end(), "all", None))
    if _ALL_ANYWHERE.search(stmt) and not any(t[2] == "lab" for t in tokens):
        return [(None, f) for _s, _e, f in lengths]
    tokens.sort(key=lambda t: t[0])
    out: list[tuple[tuple[str, ...] | None, Length]] = []
    first_len = next((i for i, t in enumerate(tokens) if t[2] == "len"), None)
    if first_len is None:
        return out
    prefix = any(t[2] == "lab" for t in tokens[:first_len])
    for i, (_s, e, kind, val) in enumerate(tokens):
        if kind != "len":
            continue
        assert isinstance(val, Length)
        if _INSET.match(stmt[e:]):
            continue
        neighbours = tokens[:i][::-1] if prefix else tokens[i + 1 :]
        found: tuple[str, ...] | None = ()
        for t in neighbours:
            if t[2] == "len":
                break
            if t[2] == "all":
                found = None
                break
            if t[2] == "lab" and isinstance(t[3], tuple):
                found = t[3]
                break
        out.append((found, val))
    return out


def caption_scales(caption: str) -> dict[str | None, Length]:
    """The scale-bar lengths a caption states, by panel label.

    Reads "Scale bars, 50 nm (a), 2 µm (b–d)", "Scale bar: 5 µm", "scale bars = 200 nm in a and
    1 µm in b", "Scale bars: a, 50 nm; b, 2 µm", "Bar: 200 nm" and "(scale bar, 10 nm)". A length
    without a label belongs to the panel whose chunk holds the statement, or, in the title or a
    closing sentence, to every panel: key None. When the caption uses position words instead of
    letters, the keys are those pseudo-labels ("top", ...). Lengths of insets ("(inset)", "scale
    bars on the inset images") are skipped; reciprocal lengths ("5 nm⁻¹") are kept with unit
    "1/nm"; the first statement about a panel wins.

    Examples
    --------
    >>> scales = caption_scales("a TEM. b SEM. Scale bars, 2 nm (a), 1 µm (b)")
    >>> {k: str(v) for k, v in scales.items()}
    {'a': '2 nm', 'b': '1 µm'}
    """
    a = _analyse(caption)
    label_set = set(a.labels)
    spans = (_spans(a) if a.labels else _position_spans(caption)) or [_Span(0, len(caption), ())]
    out: dict[str | None, Length] = {}
    for sp in spans:
        chunk = caption[sp.start : sp.end]
        for m in _SCALE_START.finditer(chunk):
            stmt = chunk[m.end() : _statement_end(chunk, m.end())]
            in_paren = _depths(chunk + " ")[m.start()] > 0
            local = sp.labels if (in_paren or sp.sentence) else ()
            if in_paren and not sp.sentence and m.group(0).lower().endswith("s"):
                # "(a) NCs with oleate and (b) with AL (scale bars are 100 nm)": the sentence
                pos = sp.start + m.start()
                s0, e0 = next(
                    ((s, e) for s, e in _sentences(caption, 0, len(caption)) if s <= pos < e),
                    (sp.start, sp.end),
                )
                local = tuple(
                    dict.fromkeys(c for o in spans if s0 <= o.start < e0 for c in o.labels)
                )
            if in_paren:
                # "(b; scale bar = 500 µm)": the letters that open the parenthesis
                lead = _PAREN_LEAD_END.search(chunk[: m.start()])
                letters = _expand(lead.group(1)) if lead is not None else ()
                if letters and letters[0].isupper() == a.upper:
                    local = tuple(c.lower() for c in letters)
            found = _statement_scales(stmt, label_set, a.upper)
            if re.search(r"\ball\s+(?:the\s+)?$", chunk[max(0, m.start() - 9) : m.start()], re.I):
                found = [(lab or None, f) for lab, f in found]  # "All scale bars"
            if not found:
                # "100 um scale bar": the length before the words
                before = chunk[max(0, m.start() - 24) : m.start()]
                lengths = find_lengths(before)
                if lengths and not before[lengths[-1][1] :].strip(" -"):
                    found = [((), lengths[-1][2])]
            for labels, length in found:
                keys: Iterable[str | None] = (
                    (None,) if labels is None else (labels or local or (None,))
                )
                for k in keys:
                    out.setdefault(k, length)
    return out


# -------------------------------------------------------------------------------------- keywords


def _term_pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in re.split(r"[\s\-\u2010-\u2014]+", term.strip()) if w]
    body = r"[\s\-\u2010-\u2014]*".join(words)
    return re.compile(rf"(?<![A-Za-z0-9]){body}(?:s|es)?(?![A-Za-z0-9])", re.IGNORECASE)


def keywords(text: str, *, query_terms: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The query terms and the microscopy vocabulary terms a text mentions.

    Parameters
    ----------
    text
        A caption or a caption chunk.
    query_terms
        The search terms and their synonyms, flattened. Matched case-insensitively on word
        boundaries, with spaces and hyphens interchangeable and an optional plural "s"/"es".

    Returns
    -------
    (keywords, general)
        ``keywords``: the query terms found, as given, in the order they first occur in ``text``.
        ``general``: canonical vocabulary terms found ("HAADF STEM" and "high-angle annular dark
        field STEM" both give "HAADF-STEM"), in order of first occurrence; see
        :mod:`emdig.figures.vocabulary`.
    """
    hits: list[tuple[int, str]] = []
    for term in dict.fromkeys(t for t in query_terms if t and t.strip()):
        m = _term_pattern(term).search(text)
        if m is not None:
            hits.append((m.start(), term))
    found = [t for _p, t in sorted(hits, key=lambda h: h[0])]
    return found, find_terms(text)
