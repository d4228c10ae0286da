"""What the analyst typed: statements split out of a script, their FORMAT clause, parameters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlparse
from sqlparse import tokens as T
from sqlparse.sql import Token


class UsageError(Exception):
    """Bad input from the analyst: said as one line, never a traceback."""


def _tokens(text: str) -> Iterator[Token]:
    return sqlparse.parse(text)[0].flatten()  # type: ignore[no-untyped-call,no-any-return]


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # where it starts in its script, 1-based, for messages about a file

    @property
    def first_keyword(self) -> str:
        for token in _tokens(self.text):
            if token.ttype in T.Keyword or token.ttype in T.Keyword.DML:
                return str(token.value).upper()
            if not (token.is_whitespace or token.ttype in T.Comment):
                return ""
        return ""

    @property
    def takes_format(self) -> bool:
        """`SET x = 1 FORMAT TSV` is a syntax error: statements that answer nothing take none."""
        return self.first_keyword not in {"SET", "USE"}

    @property
    def format_clause(self) -> str | None:
        """The name in the statement's own top-level `FORMAT name`, if it has one."""
        depth = 0
        seen_format = False
        for token in _tokens(self.text):
            if token.is_whitespace or token.ttype in T.Comment:
                continue
            if token.ttype in T.Punctuation and token.value in "()":
                depth += 1 if token.value == "(" else -1
                continue
            if seen_format:
                return str(token.value)
            seen_format = depth == 0 and str(token.value).upper() == "FORMAT"
        return None


def split_script(script: str) -> list[Statement]:
    """Statements separated by `;` (sqlparse knows quotes, backticks, $$ and comments);
    statements that are only comments are dropped."""
    statements = []
    cursor = 0
    for text in sqlparse.split(script):
        start = script.find(text, cursor)
        cursor = start + len(text) if start >= 0 else cursor
        if sqlparse.format(text, strip_comments=True).strip().strip(";").strip():
            line = script.count("\n", 0, start) + 1 if start >= 0 else 1
            statements.append(Statement(text=text, line=line))
    return statements


@dataclass(frozen=True)
class RawParam:
    """A parameter value passed to ClickHouse exactly as typed, as clickhouse-client's
    `--param_name=value` does: the server parses it in the escaped text format of the declared
    type, so `['a','b']` binds an Array(String). (clickhouse-connect would escape a plain str for
    a String placeholder, which breaks arrays and tuples; it sends other objects as `str()`.)"""

    value: str

    def __str__(self) -> str:
        return self.value


def parse_params(items: list[str]) -> dict[str, object]:
    """`name=value` pairs, bound to `{name:Type}` placeholders by ClickHouse."""
    params: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"--param {item!r}: write it as name=value, e.g. --param hours=1")
        params[name] = RawParam(value)
    return params
