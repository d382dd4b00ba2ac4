"""Tests of emdig.catalog.query: filters, sort orders and search text compiled to SQL."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emdig.catalog.query import (
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    Column,
    compile_order,
    compile_where,
    fts_query,
)
from emdig.errors import QueryError

COLUMNS: dict[str, Column] = {
    "voltage_kv": Column("voltage_kv", "t.voltage_kv", "num"),
    "detector": Column("detector", "t.detector", "text"),
    "magnification": Column("magnification", "t.magnification", "num"),
    "mode": Column("mode", "t.mode", "text"),
    "instrument": Column("instrument", "t.instrument", "text"),
}

# id, voltage_kv, detector, magnification, mode, instrument
ROWS: list[tuple[int, float, str | None, float, str, str | None]] = [
    (1, 300.0, "HAADF", 5e6, "STEM", "Titan Themis"),
    (2, 200.0, "haadf", 20e6, "STEM", "FEI TITAN"),
    (3, 80.0, "BF", 5e4, "TEM", "JEOL ARM"),
    (4, 120.0, "ABF", 1e7, "STEM", "JEOL 2100"),
    (5, 300.0, None, 1e5, "TEM", "Titan Krios"),
    (6, 60.0, "ADF", 8e6, "STEM", "Nion_100%"),
    (7, 250.0, "BF", 3e4, "TEM", "Talos"),
    (8, 100.0, "SE", 2e3, "SEM", None),
]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(":memory:")
    con.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, voltage_kv REAL, detector TEXT, "
        "magnification REAL, mode TEXT, instrument TEXT)"
    )
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", ROWS)
    con.commit()
    yield con
    con.close()


def select_ids(con: sqlite3.Connection, text: str) -> set[int]:
    sql, params = compile_where(text, COLUMNS)
    return {row[0] for row in con.execute(f"SELECT id FROM t WHERE {sql}", params)}


def row_count(con: sqlite3.Connection) -> int:
    return int(con.execute("SELECT count(*) FROM t").fetchone()[0])


# A compiled fragment may contain only these pieces (and whitespace).
_ALLOWED_PIECES = [
    *sorted((re.escape(c.sql) for c in COLUMNS.values()), key=len, reverse=True),
    r"\b(?:AND|OR|NOT|IS|NULL|LIKE|IN|BETWEEN|ESCAPE|COLLATE|NOCASE)\b",
    re.escape("'\\'"),  # the fixed ESCAPE character of "~"
    r"<=|>=|!=|=|<|>",
    r"[(),?]",
]
SAFE_FRAGMENT = re.compile(r"(?:\s+|" + "|".join(_ALLOWED_PIECES) + r")*")


def assert_safe(sql: str) -> None:
    assert sql == "1" or SAFE_FRAGMENT.fullmatch(sql), sql


# --------------------------------------------------------------------------------------------
# compile_where: behaviour against a real database


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("voltage_kv >= 200 and detector = 'HAADF'", {1, 2}),
        ("detector = haadf", {1, 2}),
        ("not (mode = 'TEM') or voltage_kv < 100", {1, 2, 3, 4, 6, 8}),
        ("magnification >= 10e6", {2, 4}),
        ("detector in ('BF', 'ABF')", {3, 4, 7}),
        ("instrument ~ titan", {1, 2, 5}),
        ("detector is null", {5}),
        ("voltage_kv between 100 and 250", {2, 4, 7, 8}),
        ("detector like 'A%'", {4, 6}),
        # further operators and forms
        ("detector is not null and instrument is null", {8}),
        ("detector not like 'A%'", {1, 2, 3, 7, 8}),
        ("detector not in (bf, abf, haadf)", {6, 8}),
        ("voltage_kv not between 100 and 250", {1, 3, 5, 6}),
        ("voltage_kv == 300", {1, 5}),
        ("voltage_kv != 300 and voltage_kv <> 200 and voltage_kv > 100", {4, 7}),
        ("voltage_kv <= 80", {3, 6}),
        ("detector != haadf", {3, 4, 6, 7, 8}),
        ("magnification < 1.5E4", {8}),
        ("voltage_kv > -1e3 and voltage_kv < '100'", {3, 6}),
        ('mode = "stem" AND (detector = BF OR detector = ABF)', {4}),
        ("mode = stem and detector = bf or detector = se", {8}),
        ("mode = stem and (detector = bf or detector = se)", set()),
        ("NOT NOT mode = 'TEM'", {3, 5, 7}),
        ("instrument ~ '100%'", {6}),
        ("instrument ~ '_'", {6}),
        ("instrument ~ 'n_'", {6}),
        ("instrument ~ 'JEOL 2'", {4}),
        ("  ", {1, 2, 3, 4, 5, 6, 7, 8}),
        ("", {1, 2, 3, 4, 5, 6, 7, 8}),
    ],
)
def test_where_selects_expected_rows(db: sqlite3.Connection, text: str, expected: set[int]) -> None:
    assert select_ids(db, text) == expected
    assert_safe(compile_where(text, COLUMNS)[0])


def test_where_empty_is_always_true() -> None:
    assert compile_where("", COLUMNS) == ("1", [])
    assert compile_where(" \t\n", COLUMNS) == ("1", [])


def test_where_output_is_parameterised() -> None:
    sql, params = compile_where("voltage_kv >= 200 and detector = 'HAADF'", COLUMNS)
    assert sql == "((t.voltage_kv >= ?) AND (t.detector = ? COLLATE NOCASE))"
    assert params == [200, "HAADF"]


def test_where_contains_escapes_wildcards() -> None:
    sql, params = compile_where(r"instrument ~ 'a%b_c\d'", COLUMNS)
    assert sql == "(t.instrument LIKE ? ESCAPE '\\')"
    assert params == ["%a\\%b\\_c\\\\d%"]


def test_where_precedence_is_explicit() -> None:
    sql, _ = compile_where("mode = a or mode = b and not mode = c", COLUMNS)
    assert sql == (
        "((t.mode = ? COLLATE NOCASE) OR ((t.mode = ? COLLATE NOCASE) AND "
        "(NOT (t.mode = ? COLLATE NOCASE))))"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("voltage_kv = 200", 200),
        ("voltage_kv = -200", -200),
        ("voltage_kv = 1.5", 1.5),
        ("voltage_kv = .5", 0.5),
        ("voltage_kv = 10e6", 10e6),
        ("voltage_kv = 1.5E-3", 1.5e-3),
        ("voltage_kv = 1e+16", 1e16),
        ("voltage_kv = -.5e2", -50.0),
        ("mode = 4D-STEM", "4D-STEM"),
        ("mode = 10e6x", "10e6x"),
        ("voltage_kv = '42'", 42),
        ("voltage_kv = 99999999999999999999", 1e20),
        ("mode = 10e6", "10e6"),
        ("mode = 'O''Brien'", "O'Brien"),
        ('mode = "say ""hi"""', 'say "hi"'),
        ("mode = STEM-HAADF", "STEM-HAADF"),
        ("mode = µm", "µm"),
    ],
)
def test_where_values(text: str, value: object) -> None:
    _, params = compile_where(text, COLUMNS)
    assert params == [value]
    assert type(params[0]) is type(value)


def test_where_keywords_and_columns_are_case_insensitive(db: sqlite3.Connection) -> None:
    assert select_ids(db, "Voltage_KV BETWEEN 100 AND 250 And Detector IS NOT NULL") == {2, 4, 7, 8}


# --------------------------------------------------------------------------------------------
# compile_where: errors


def test_where_syntax_error_names_position() -> None:
    with pytest.raises(QueryError) as info:
        compile_where("voltage_kv >= ", COLUMNS)
    assert str(info.value) == 'bad filter "voltage_kv >= ": expected a value at position 14'


def test_where_unknown_column_lists_allowed_names() -> None:
    with pytest.raises(QueryError) as info:
        compile_where("kv > 3", COLUMNS)
    message = str(info.value)
    assert '"kv"' in message
    assert "detector, instrument, magnification, mode, voltage_kv" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("voltage_kv = abc", "not a number"),
        ("voltage_kv = 'abc'", "not a number"),
        ("voltage_kv in (1, 'x')", "not a number"),
        ("voltage_kv like '1%'", "numeric"),
        ("voltage_kv ~ 1", "numeric"),
        ("voltage_kv > 1e999", "out of range"),
        ("detector = 'HAADF", "unterminated string"),
        ('detector = "HAADF', "unterminated string"),
        ("detector = null", "is null"),
        ("()", "position 1"),
        ("detector in ()", "position 13"),
        ("(detector = bf", 'expected ")"'),
        ("detector = bf)", "position 13"),
        ("detector = bf mode = tem", "position 14"),
        ("detector", "operator"),
        ("detector is", '"null"'),
        ("detector is not", '"null"'),
        ("detector not = x", 'after "not"'),
        ("voltage_kv between 1", '"and"'),
        ("voltage_kv between 1 or 2", '"and"'),
        ("detector in (bf,)", "a value"),
        ("detector in bf", '"("'),
        ("and", "a column name"),
        ("detector = bf and", "a column name"),
        ("detector = bf or or", "a column name"),
        ("not", "a column name"),
        ("= 3", "a column name"),
        ("3 = voltage_kv", "a column name"),
        ("voltage_kv >= 200; DROP TABLE x", "';' at position 17"),
        ("detector = bf -- comment", "position 14"),
        ("detector = a/b", "'/'"),
        ("detector = and", "a value"),
        ("detector == = x", "a value"),
    ],
)
def test_where_errors(text: str, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_where(text, COLUMNS)
    assert fragment in str(info.value)


def test_where_length_limit() -> None:
    text = "voltage_kv > 1" + " " * (MAX_QUERY_LENGTH - 14)
    assert compile_where(text, COLUMNS)[1] == [1]
    with pytest.raises(QueryError, match="limit"):
        compile_where(text + " ", COLUMNS)


def test_where_depth_limit(db: sqlite3.Connection) -> None:
    ok = "(" * MAX_DEPTH + "mode = tem" + ")" * MAX_DEPTH
    assert select_ids(db, ok) == {3, 5, 7}
    with pytest.raises(QueryError, match="nested too deeply"):
        compile_where("(" + ok + ")", COLUMNS)
    with pytest.raises(QueryError, match="nested too deeply"):
        compile_where("not " * (MAX_DEPTH + 1) + "mode = tem", COLUMNS)


def test_where_parameter_limit() -> None:
    values = ",".join(["1"] * 600)
    with pytest.raises(QueryError, match="too many values"):
        compile_where(f"voltage_kv in ({values})", COLUMNS)


# --------------------------------------------------------------------------------------------
# compile_where: injection attempts


@pytest.mark.parametrize(
    "text",
    [
        "detector = 'x' or 1=1 --",
        "voltage_kv >= 200; DROP TABLE t",
        "detector = '' OR ''=''",
        '"detector"="x") OR (1=1',
        "sqlite_master.name = 'x'",
        "detector = 'x'' OR ''1''=''1'",
        'detector = "x" or "1"="1"',
        "detector = x) or (1 = 1",
        "detector = 'x'); DROP TABLE t; --",
        "t.detector = 'x'",
        "detector = 'BF' union select name from sqlite_master",
        "detector = 'a\x00b'",
        "detector in ('BF') or voltage_kv in (select 1)",
        "detector = 'x' /* comment */",
        "voltage_kv = 0x10",
    ],
)
def test_where_injection_attempts(db: sqlite3.Connection, text: str) -> None:
    try:
        sql, params = compile_where(text, COLUMNS)
    except QueryError:
        pass
    else:
        assert_safe(sql)
        ids = {row[0] for row in db.execute(f"SELECT id FROM t WHERE {sql}", params)}
        # every literal in these inputs is an odd value no row has
        assert ids == set()
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone() == (1,)
    assert row_count(db) == len(ROWS)


def test_where_quoted_injection_is_a_literal(db: sqlite3.Connection) -> None:
    sql, params = compile_where("detector = 'x'' OR ''1''=''1'", COLUMNS)
    assert sql == "(t.detector = ? COLLATE NOCASE)"
    assert params == ["x' OR '1'='1"]
    assert select_ids(db, "detector = 'x'' OR ''1''=''1'") == set()


def test_where_unknown_qualified_column() -> None:
    with pytest.raises(QueryError, match=r'unknown column "sqlite_master\.name"'):
        compile_where("sqlite_master.name = 'x'", COLUMNS)


def test_where_expression_column_is_parenthesised(db: sqlite3.Connection) -> None:
    cols = {"label": Column("label", "t.mode || '-' || t.detector", "text")}
    sql, params = compile_where("label = stem-haadf", cols)
    assert sql == "((t.mode || '-' || t.detector) = ? COLLATE NOCASE)"
    assert {r[0] for r in db.execute(f"SELECT id FROM t WHERE {sql}", params)} == {1, 2}


# --------------------------------------------------------------------------------------------
# compile_where: property tests

_VOCABULARY = [
    *COLUMNS,
    "and",
    "or",
    "not",
    "is",
    "null",
    "like",
    "in",
    "between",
    "(",
    ")",
    ",",
    "=",
    "==",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "~",
    "1",
    "-2.5e3",
    "10e6",
    "'HAADF'",
    '"a""b"',
    "'it''s'",
    "'%_'",
    "bare",
    "'1=1'",
    ";",
    "--",
    "DROP TABLE t",
    "sqlite_master",
    "'",
    '"',
]


def _check_where(text: str) -> bool:
    con = sqlite3.connect(":memory:")
    try:
        con.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, voltage_kv REAL, detector TEXT, "
            "magnification REAL, mode TEXT, instrument TEXT)"
        )
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", ROWS)
        try:
            sql, params = compile_where(text, COLUMNS)
        except QueryError:
            return False
        assert_safe(sql)
        assert sql.count("?") == len(params)
        con.execute(f"SELECT id FROM t WHERE {sql}", params).fetchall()
        assert row_count(con) == len(ROWS)
        return True
    finally:
        con.close()


@settings(database=None, max_examples=300)
@given(st.text())
def test_where_random_text_is_safe(text: str) -> None:
    _check_where(text)


@settings(database=None, max_examples=300)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=14))
def test_where_random_token_soup_is_safe(words: list[str]) -> None:
    _check_where(" ".join(words))


_NUM_COLUMNS = [name for name, col in COLUMNS.items() if col.kind == "num"]
_TEXT_COLUMNS = [name for name, col in COLUMNS.items() if col.kind == "text"]
_numbers = st.one_of(
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_texts = st.one_of(
    st.text(max_size=20).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.text(max_size=20).map(lambda s: '"' + s.replace('"', '""') + '"'),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
        lambda w: w.lower() not in {"and", "or", "not", "is", "null", "like", "in", "between"}
    ),
    _numbers,
)


def _comparisons(columns: list[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    column = st.sampled_from(columns)
    ops = ["=", "==", "!=", "<>", "<", "<=", ">", ">="]
    return st.one_of(
        st.tuples(column, st.sampled_from(ops), values).map(" ".join),
        st.tuples(column, st.sampled_from(["is null", "is not null"])).map(" ".join),
        st.tuples(
            column, st.sampled_from(["in", "not in"]), st.lists(values, min_size=1, max_size=4)
        ).map(lambda c: f"{c[0]} {c[1]} ({', '.join(c[2])})"),
        st.tuples(column, st.sampled_from(["between", "not between"]), values, values).map(
            lambda c: f"{c[0]} {c[1]} {c[2]} and {c[3]}"
        ),
    )


_comparison = st.one_of(
    _comparisons(_NUM_COLUMNS, _numbers),
    _comparisons(_TEXT_COLUMNS, _texts),
    st.tuples(
        st.sampled_from(_TEXT_COLUMNS), st.sampled_from(["~", "like", "not like"]), _texts
    ).map(" ".join),
)
_filters = st.recursive(
    _comparison,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or"]), inner).map(" ".join),
        inner.map(lambda f: f"not {f}"),
        inner.map(lambda f: f"({f})"),
    ),
    max_leaves=8,
)


@settings(database=None, max_examples=300)
@given(_filters)
def test_where_valid_filters_compile_and_run(text: str) -> None:
    assert _check_where(text)


@settings(database=None, max_examples=300)
@given(_filters, st.integers(min_value=0), st.sampled_from(_VOCABULARY))
def test_where_mutated_filters_are_safe(text: str, where: int, token: str) -> None:
    at = where % (len(text) + 1)
    _check_where(text[:at] + " " + token + " " + text[at:])


@settings(database=None, max_examples=200)
@given(
    st.sampled_from(["detector", "mode", "instrument"]),
    st.sampled_from(["=", "!=", "<", ">=", "~", "like"]),
    st.text(max_size=200),
)
def test_where_any_quoted_text_value_is_a_parameter(column: str, op: str, value: str) -> None:
    quoted = "'" + value.replace("'", "''") + "'"
    sql, params = compile_where(f"{column} {op} {quoted}", COLUMNS)
    assert_safe(sql)
    assert len(params) == 1
    if op in ("=", "!=", "<", ">=", "like"):
        assert params == [value]
    _check_where(f"{column} {op} {quoted}")


# --------------------------------------------------------------------------------------------
# compile_order


def _ordered_ids(con: sqlite3.Connection, text: str) -> list[int]:
    order = compile_order(text, COLUMNS)
    return [row[0] for row in con.execute(f"SELECT id FROM t ORDER BY {order}, id")]


def test_order_fragment() -> None:
    assert compile_order("voltage_kv", COLUMNS) == "t.voltage_kv ASC"
    assert compile_order("voltage_kv DESC", COLUMNS) == "t.voltage_kv DESC"
    assert (
        compile_order(" magnification asc ,detector desc", COLUMNS)
        == "t.magnification ASC, t.detector COLLATE NOCASE DESC"
    )


def test_order_runs(db: sqlite3.Connection) -> None:
    assert _ordered_ids(db, "voltage_kv desc, magnification") == [5, 1, 7, 2, 4, 8, 3, 6]
    assert _ordered_ids(db, "magnification asc") == [8, 7, 3, 5, 1, 6, 4, 2]
    # text columns sort case-insensitively; NULL first in ascending order
    assert _ordered_ids(db, "detector") == [5, 4, 6, 3, 7, 1, 2, 8]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("foo", 'unknown column "foo"'),
        ("voltage_kv sideways", "direction"),
        ("voltage_kv desc extra", "item 1"),
        ("voltage_kv,", "item 2 is empty"),
        (",voltage_kv", "item 1 is empty"),
        ("voltage_kv; DROP TABLE t", "item 1"),
        ("voltage_kv;", 'unknown column "voltage_kv;"'),
        ("voltage_kv desc;", "direction"),
        ("(select 1)", "unknown column"),
        ("1", "unknown column"),
    ],
)
def test_order_errors(text: str, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_order(text, COLUMNS)
    assert fragment in str(info.value)


def test_order_unknown_column_lists_allowed_names() -> None:
    with pytest.raises(QueryError, match="detector, instrument, magnification, mode, voltage_kv"):
        compile_order("nope desc", COLUMNS)


def test_order_length_limit() -> None:
    with pytest.raises(QueryError, match="limit"):
        compile_order("voltage_kv," * 200, COLUMNS)


@settings(database=None, max_examples=200)
@given(st.text())
def test_order_random_text_is_safe(text: str) -> None:
    try:
        order = compile_order(text, COLUMNS)
    except QueryError:
        return
    item = r"t\.\w+(?: COLLATE NOCASE)? (?:ASC|DESC)"
    assert re.fullmatch(rf"{item}(?:, {item})*", order)


# --------------------------------------------------------------------------------------------
# fts_query


@pytest.fixture
def fts() -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
    except sqlite3.OperationalError:  # pragma: no cover - depends on the SQLite build
        con.close()
        pytest.skip("SQLite was built without FTS5")
    con.executemany(
        "INSERT INTO docs (rowid, body) VALUES (?, ?)",
        [
            (1, "Titan Themis HAADF STEM 300 kV"),
            (2, "JEOL ARM bright field 1.5 nm"),
            (3, "lab_rig µm-scale survey"),
            (4, "near OR and AND operators as words"),
        ],
    )
    yield con
    con.close()


def _match(con: sqlite3.Connection, text: str) -> set[int]:
    query = fts_query(text)
    return {row[0] for row in con.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (query,))}


def test_fts_query_text() -> None:
    assert fts_query("titan") == '"titan"*'
    assert fts_query("  Titan   HAADF ") == '"Titan"* "HAADF"*'
    assert fts_query('"titan" OR haadf*') == '"titan"* "OR"* "haadf"*'
    assert fts_query("col:val") == '"colval"*'
    assert fts_query("µm-scale 1.5 lab_rig") == '"µm-scale"* "1.5"* "lab_rig"*'


def test_fts_matches(fts: sqlite3.Connection) -> None:
    assert _match(fts, "titan") == {1}
    assert _match(fts, "tit haa") == {1}  # prefix, implicit AND
    assert _match(fts, "titan jeol") == set()
    assert _match(fts, "1.5") == {2}
    assert _match(fts, "µm-scale") == {3}
    assert _match(fts, "lab_rig") == {3}
    assert _match(fts, "OR") == {4}


@pytest.mark.parametrize(
    "text",
    [
        '" OR * NEAR(',
        "a AND b",
        "col:val",
        "body:titan",
        "NEAR(titan themis, 2)",
        "NOT titan",
        "titan -haadf",
        "^titan",
        "{body}: titan",
        "'; DROP TABLE docs; --",
        '"""',
        "a+b",
        "x*",
        "- . _ titan",
    ],
)
def test_fts_hostile_inputs_do_not_break_sqlite(fts: sqlite3.Connection, text: str) -> None:
    with contextlib.suppress(QueryError):
        _match(fts, text)
    assert fts.execute("SELECT count(*) FROM docs").fetchone() == (4,)


@pytest.mark.parametrize("text", ["", "   ", '" * ( ) :', "- . _", "***"])
def test_fts_empty_search(text: str) -> None:
    with pytest.raises(QueryError, match="empty search"):
        fts_query(text)


def test_fts_limits() -> None:
    with pytest.raises(QueryError, match="limit"):
        fts_query("a" * (MAX_QUERY_LENGTH + 1))
    with pytest.raises(QueryError, match="limit"):
        fts_query("a " * 100)


@settings(database=None, max_examples=300)
@given(st.text())
def test_fts_random_text_is_safe(text: str) -> None:
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
        con.execute("INSERT INTO docs (body) VALUES ('Titan Themis HAADF')")
        try:
            query = fts_query(text)
        except QueryError:
            return
        assert re.fullmatch(r'"[^"\s]+"\*(?: "[^"\s]+"\*)*', query)
        con.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (query,)).fetchall()
    finally:
        con.close()
