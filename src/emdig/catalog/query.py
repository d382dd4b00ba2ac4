"""Safe compilation of user filter, sort and search text into SQLite fragments.

The catalog lets users filter (``--where``), sort (``--order``) and search (``--search``)
with small text languages. This module turns that text into SQL **without ever pasting
user text into the SQL**: the only things that appear in a compiled fragment are

* the SQL expressions of allowlisted :class:`Column` objects,
* fixed keywords and operators written by this module, and
* ``?`` placeholders, whose values are returned separately as parameters.

Filter grammar (keywords are case-insensitive)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := IDENT op value
                | IDENT "is" ["not"] "null"
                | IDENT ["not"] "like" value
                | IDENT ["not"] "in" "(" value ("," value)* ")"
                | IDENT ["not"] "between" value "and" value
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "~"
    value      := NUMBER | 'string' | "string" | bare-word

``~`` means case-insensitive "contains" and is only valid for text columns. Equality
(``=``, ``==``, ``!=``, ``<>``) and ``in`` on text columns ignore case.

Examples
--------
>>> cols = {"voltage_kv": Column("voltage_kv", "m.voltage_kv", "num")}
>>> compile_where("voltage_kv >= 200", cols)
('(m.voltage_kv >= ?)', [200])
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from emdig.errors import QueryError

__all__ = [
    "MAX_DEPTH",
    "MAX_PARAMETERS",
    "MAX_QUERY_LENGTH",
    "MAX_SEARCH_TERMS",
    "Column",
    "compile_order",
    "compile_where",
    "fts_query",
]

#: Longest filter, order or search text accepted, in characters.
MAX_QUERY_LENGTH = 2000
#: Deepest nesting of parentheses and ``not`` accepted in a filter.
MAX_DEPTH = 50
#: Most ``?`` placeholders one filter may produce (SQLite's historical limit is 999).
MAX_PARAMETERS = 500
#: Most terms a free-text search may contain.
MAX_SEARCH_TERMS = 64

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_KEYWORDS = frozenset({"and", "or", "not", "is", "null", "like", "in", "between"})
# Longest operators first so that "<=" is not read as "<" followed by "=".
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">", "~")
_SQL_OPERATORS = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
# ASCII digits only: int() and float() would also accept other scripts' digits.
_NUMBER_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_RE = re.compile(r"-?[0-9]+")
# A number token must not run on into word characters ("10e6x" is a bare word).
_NUMBER_TOKEN_RE = re.compile(_NUMBER_RE.pattern + r"(?![\w.\-])")
# A bare word: starts with a letter, digit or "_"; continues with those, "." and "-".
_WORD_RE = re.compile(r"\w[\w.\-]*")
_SIMPLE_SQL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_FTS_EXTRA_CHARS = frozenset("_-.µ")


@dataclass(frozen=True)
class Column:
    """A column users may filter and sort on.

    Parameters
    ----------
    name
        The user-facing name, e.g. ``"voltage_kv"``.
    sql
        The trusted SQL expression it maps to, e.g. ``"m.voltage_kv"``. It is written into
        compiled fragments verbatim, so it must never come from user input.
    kind
        ``"num"`` for numeric columns, ``"text"`` for text columns; decides which operators
        and values are allowed.
    """

    name: str
    sql: str
    kind: Literal["num", "text"]


@dataclass(frozen=True)
class _Token:
    """One lexical token of a filter.

    Parameters
    ----------
    kind
        ``"word"``, ``"number"``, ``"string"``, ``"op"``, ``"("``, ``")"``, ``","`` or
        ``"end"``.
    text
        The token's value: the lexeme, or for strings the unquoted contents.
    pos
        Zero-based character position of the token in the filter text.
    """

    kind: str
    text: str
    pos: int

    @property
    def keyword(self) -> str | None:
        """Return the lower-cased keyword this token spells, or ``None``."""
        if self.kind == "word" and self.text.lower() in _KEYWORDS:
            return self.text.lower()
        return None


def _display(text: str) -> str:
    """Shorten user text for use in an error message."""
    flat = text.replace("\n", " ").replace("\r", " ")
    return flat if len(flat) <= 120 else flat[:117] + "..."


def _check_length(text: str, what: str) -> None:
    """Raise :class:`QueryError` if *text* is longer than :data:`MAX_QUERY_LENGTH`."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(f"{what} is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}")


def _unknown_column(name: str, columns: Mapping[str, Column], what: str) -> QueryError:
    """Build the error for a column name that is not in the allowlist."""
    allowed = ", ".join(sorted(columns)) or "(none)"
    return QueryError(f'unknown column "{_display(name)}" in {what}; allowed columns: {allowed}')


def _lookup(name: str, columns: Mapping[str, Column]) -> Column | None:
    """Find *name* in *columns*, exactly or else case-insensitively if that is unambiguous."""
    if name in columns:
        return columns[name]
    matches = [col for key, col in columns.items() if key.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _column_sql(col: Column) -> str:
    """Return the column's SQL, parenthesised unless it is a plain (qualified) name."""
    return col.sql if _SIMPLE_SQL_RE.fullmatch(col.sql) else f"({col.sql})"


def _tokenize(text: str, fail: _Fail) -> list[_Token]:
    """Split filter text into tokens; the last token has kind ``"end"``."""
    tokens: list[_Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"":
            start = i
            parts: list[str] = []
            i += 1
            while True:
                close = text.find(ch, i)
                if close < 0:
                    raise fail(f"unterminated string starting at position {start}")
                parts.append(text[i:close])
                if close + 1 < n and text[close + 1] == ch:  # doubled quote = literal quote
                    parts.append(ch)
                    i = close + 2
                    continue
                i = close + 1
                break
            tokens.append(_Token("string", "".join(parts), start))
            continue
        if ch in "(),":
            tokens.append(_Token(ch, ch, i))
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(_Token("op", op, i))
            i += len(op)
            continue
        number = _NUMBER_TOKEN_RE.match(text, i)
        if number is not None:
            tokens.append(_Token("number", number.group(), i))
            i = number.end()
            continue
        word = _WORD_RE.match(text, i)
        if word is not None:
            tokens.append(_Token("word", word.group(), i))
            i = word.end()
            continue
        raise fail(f"unexpected character {ch!r} at position {i}")
    tokens.append(_Token("end", "", n))
    return tokens


class _Fail:
    """Factory of :class:`QueryError` messages that quote the filter text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, reason: str) -> QueryError:
        return QueryError(f'bad filter "{_display(self.text)}": {reason}')


class _Parser:
    """Recursive-descent parser that emits SQL while it parses."""

    def __init__(self, text: str, columns: Mapping[str, Column]) -> None:
        self.fail = _Fail(text)
        self.tokens = _tokenize(text, self.fail)
        self.columns = columns
        self.index = 0
        self.params: list[object] = []

    # -- token helpers -------------------------------------------------------------------

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at_keyword(self, keyword: str) -> bool:
        return self.current.keyword == keyword

    def expected(self, what: str) -> QueryError:
        token = self.current
        if token.kind == "end":
            return self.fail(f"expected {what} at position {token.pos}")
        found = "the string " if token.kind == "string" else ""
        return self.fail(
            f"expected {what} at position {token.pos}, found {found}{_display(token.text)!r}"
        )

    def expect_keyword(self, keyword: str, what: str) -> None:
        if not self.at_keyword(keyword):
            raise self.expected(what)
        self.advance()

    def expect_kind(self, kind: str, what: str) -> _Token:
        if self.current.kind != kind:
            raise self.expected(what)
        return self.advance()

    def add_param(self, value: object) -> str:
        if len(self.params) >= MAX_PARAMETERS:
            raise self.fail(f"too many values (the limit is {MAX_PARAMETERS})")
        self.params.append(value)
        return "?"

    # -- grammar -------------------------------------------------------------------------

    def parse(self) -> str:
        sql = self.or_expr(0)
        if self.current.kind != "end":
            raise self.expected('"and", "or" or the end of the filter')
        return sql

    def or_expr(self, depth: int) -> str:
        parts = [self.and_expr(depth)]
        while self.at_keyword("or"):
            self.advance()
            parts.append(self.and_expr(depth))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_expr(self, depth: int) -> str:
        parts = [self.not_expr(depth)]
        while self.at_keyword("and"):
            self.advance()
            parts.append(self.not_expr(depth))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def not_expr(self, depth: int) -> str:
        token = self.current
        if token.keyword == "not" or token.kind == "(":
            if depth >= MAX_DEPTH:
                raise self.fail(
                    f"nested too deeply at position {token.pos} (the limit is {MAX_DEPTH})"
                )
            self.advance()
            if token.kind == "(":
                if self.current.kind == ")":
                    raise self.expected("a condition inside the parentheses")
                inner = self.or_expr(depth + 1)
                self.expect_kind(")", '")"')
                return inner
            return f"(NOT {self.not_expr(depth + 1)})"
        return self.comparison()

    def comparison(self) -> str:
        token = self.current
        if token.kind != "word" or token.keyword is not None:
            raise self.expected("a column name")
        col = _lookup(token.text, self.columns)
        if col is None:
            raise _unknown_column(token.text, self.columns, "filter")
        self.advance()
        sql = _column_sql(col)
        nocase = f"{sql} COLLATE NOCASE" if col.kind == "text" else sql

        if self.current.kind == "op":
            op = self.advance().text
            if op == "~":
                self.require_text(col, '"~"', token.pos)
                needle = str(self.value(col))
                escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                return f"({sql} LIKE {self.add_param(f'%{escaped}%')} ESCAPE '\\')"
            value = self.value(col)
            if col.kind == "text" and op in ("=", "==", "!=", "<>"):
                return f"({sql} {_SQL_OPERATORS[op]} {self.add_param(value)} COLLATE NOCASE)"
            return f"({sql} {_SQL_OPERATORS[op]} {self.add_param(value)})"

        if self.at_keyword("is"):
            self.advance()
            negate = self.at_keyword("not")
            if negate:
                self.advance()
            self.expect_keyword("null", '"null"')
            return f"({sql} IS NOT NULL)" if negate else f"({sql} IS NULL)"

        negate = self.at_keyword("not")
        if negate:
            self.advance()
        prefix = "NOT " if negate else ""
        if self.at_keyword("like"):
            self.require_text(col, '"like"', token.pos)
            self.advance()
            pattern = str(self.value(col))
            return f"({sql} {prefix}LIKE {self.add_param(pattern)})"
        if self.at_keyword("in"):
            self.advance()
            self.expect_kind("(", '"(" after "in"')
            if self.current.kind == ")":
                raise self.expected('a value inside "in ( )"')
            marks = [self.add_param(self.value(col))]
            while self.current.kind == ",":
                self.advance()
                marks.append(self.add_param(self.value(col)))
            self.expect_kind(")", '"," or ")"')
            return f"({nocase} {prefix}IN ({', '.join(marks)}))"
        if self.at_keyword("between"):
            self.advance()
            low = self.add_param(self.value(col))
            self.expect_keyword("and", '"and"')
            high = self.add_param(self.value(col))
            return f"({sql} {prefix}BETWEEN {low} AND {high})"
        if negate:
            raise self.expected('"like", "in" or "between" after "not"')
        raise self.expected("an operator (=, !=, <, <=, >, >=, ~, is, like, in, between)")

    def require_text(self, col: Column, what: str, pos: int) -> None:
        if col.kind != "text":
            raise self.fail(
                f'{what} needs a text column, but "{col.name}" (position {pos}) is numeric'
            )

    def value(self, col: Column) -> object:
        """Parse one value and convert it to the column's kind."""
        token = self.current
        if token.kind == "number":
            self.advance()
            return _to_number(token.text, self.fail, token.pos) if col.kind == "num" else token.text
        if token.kind == "string":
            self.advance()
            if col.kind == "text":
                return token.text
            if _NUMBER_RE.fullmatch(token.text.strip()):
                return _to_number(token.text.strip(), self.fail, token.pos)
            raise self.fail(
                f'column "{col.name}" is numeric but the value at position {token.pos} '
                f"is not a number: {_display(token.text)!r}"
            )
        if token.kind == "word":
            if token.keyword == "null":
                raise self.fail(
                    f'use "is null" or "is not null" to test for missing values '
                    f"(position {token.pos})"
                )
            if token.keyword is not None:
                raise self.expected("a value")
            if col.kind == "num":
                raise self.fail(
                    f'column "{col.name}" is numeric but the value at position {token.pos} '
                    f"is not a number: {_display(token.text)!r}"
                )
            self.advance()
            return token.text
        raise self.expected("a value")


def _to_number(lexeme: str, fail: _Fail, pos: int) -> int | float:
    """Convert a number lexeme to an ``int`` (if it fits SQLite's 64 bits) or finite ``float``."""
    if _INTEGER_RE.fullmatch(lexeme):
        as_int = int(lexeme)
        if _INT64_MIN <= as_int <= _INT64_MAX:
            return as_int
    as_float = float(lexeme)
    if not math.isfinite(as_float):
        raise fail(f"number out of range at position {pos}: {_display(lexeme)!r}")
    return as_float


def compile_where(text: str, columns: Mapping[str, Column]) -> tuple[str, list[object]]:
    """Compile a user filter expression into a parameterised SQL ``WHERE`` fragment.

    Parameters
    ----------
    text
        The user's filter, e.g. ``"voltage_kv >= 200 and detector = HAADF"``. See the module
        docstring for the grammar.
    columns
        Allowlist mapping user-facing names to :class:`Column`. Names are matched exactly,
        or case-insensitively when that is unambiguous.

    Returns
    -------
    sql : str
        The fragment, made only of allowlisted column SQL, fixed keywords and operators,
        parentheses and ``?`` placeholders. ``"1"`` (always true) for empty text.
    params : list of object
        The values for the placeholders, in order.

    Raises
    ------
    QueryError
        If the text is too long or too deeply nested, does not follow the grammar, names an
        unknown column, or compares a numeric column with a non-number (or uses ``like`` or
        ``~`` on it). Syntax errors give the zero-based character position.

    Examples
    --------
    >>> cols = {"detector": Column("detector", "m.detector", "text")}
    >>> compile_where("detector = haadf", cols)
    ('(m.detector = ? COLLATE NOCASE)', ['haadf'])
    """
    _check_length(text, "filter")
    if not text.strip():
        return "1", []
    parser = _Parser(text, columns)
    sql = parser.parse()
    return sql, parser.params


def compile_order(text: str, columns: Mapping[str, Column]) -> str:
    """Compile a user sort specification into an SQL ``ORDER BY`` fragment.

    Parameters
    ----------
    text
        Comma-separated items, each a column name optionally followed by ``asc`` or ``desc``
        (case-insensitive), e.g. ``"voltage_kv desc, detector"``.
    columns
        Allowlist mapping user-facing names to :class:`Column`.

    Returns
    -------
    str
        The fragment without the ``ORDER BY`` keywords, e.g. ``"m.voltage_kv DESC,
        m.detector COLLATE NOCASE ASC"``. Text columns sort case-insensitively.

    Raises
    ------
    QueryError
        If the text is empty or too long, an item is empty, names an unknown column or has a
        direction other than ``asc``/``desc``.

    Examples
    --------
    >>> cols = {"voltage_kv": Column("voltage_kv", "m.voltage_kv", "num")}
    >>> compile_order("voltage_kv desc", cols)
    'm.voltage_kv DESC'
    """
    _check_length(text, "sort order")
    if not text.strip():
        raise QueryError("empty sort order; give a column name, e.g. --order voltage_kv")
    items: list[str] = []
    for number, item in enumerate(text.split(","), start=1):
        words = item.split()
        if not words:
            raise QueryError(f'bad sort order "{_display(text)}": item {number} is empty')
        if len(words) > 2:
            raise QueryError(
                f'bad sort order "{_display(text)}": item {number} should be '
                f'"column", "column asc" or "column desc"'
            )
        col = _lookup(words[0], columns)
        if col is None:
            raise _unknown_column(words[0], columns, "sort order")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise QueryError(
                f'bad sort order "{_display(text)}": direction must be "asc" or "desc", '
                f"not {_display(words[1])!r}"
            )
        sql = _column_sql(col)
        if col.kind == "text":
            sql += " COLLATE NOCASE"
        items.append(f"{sql} {direction.upper()}")
    return ", ".join(items)


def _fts_char_ok(ch: str) -> bool:
    """Return whether *ch* may stay in a search term."""
    return ch.isalnum() or ch in _FTS_EXTRA_CHARS


def fts_query(text: str) -> str:
    """Turn free search text into a safe SQLite FTS5 ``MATCH`` expression.

    Each whitespace-separated word is stripped of every character except letters, digits,
    ``_``, ``-``, ``.`` and ``µ``; words left without any letter or digit are dropped. Each
    remaining word becomes a quoted FTS5 string with a ``*`` for prefix matching, and the
    terms are joined by spaces (all must match). FTS5 operators such as ``OR``, ``NEAR``,
    ``AND`` or ``col:`` in the input are thereby searched for as plain words.

    Parameters
    ----------
    text
        The user's search text.

    Returns
    -------
    str
        The expression, e.g. ``'"titan"* "haadf"*'``, to bind as the ``MATCH`` parameter.

    Raises
    ------
    QueryError
        If no searchable term is left, the text is too long, or it has more than
        :data:`MAX_SEARCH_TERMS` terms.

    Examples
    --------
    >>> fts_query('titan "haadf"')
    '"titan"* "haadf"*'
    """
    _check_length(text, "search")
    terms: list[str] = []
    for word in text.split():
        term = "".join(ch for ch in word if _fts_char_ok(ch))
        if not any(ch.isalnum() for ch in term):
            continue
        terms.append('"' + term.replace('"', '""') + '"*')
    if not terms:
        raise QueryError("empty search")
    if len(terms) > MAX_SEARCH_TERMS:
        raise QueryError(f"search has {len(terms)} terms; the limit is {MAX_SEARCH_TERMS}")
    return " ".join(terms)
