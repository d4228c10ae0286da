"""What went wrong, said to the analyst: who may do what they tried, where the syntax breaks,
which limit a query hit and how to raise it for that query."""

from __future__ import annotations

import math
import re

from rich.markup import escape

from clickpulse.sql.stream import QueryFailed

READONLY_CODES = {164, 497}  # READONLY, ACCESS_DENIED
_FILE_FUNCTION = re.compile(r"\bfile\s*\(", re.I)
_GRANT = re.compile(r"necessary to have the grant (.+?) ON (\S+?)\.? \(|grant (.+?) ON (\S+)\.?$")
_POSITION = re.compile(r"failed at position (\d+)")
_EXPECTED = re.compile(r"Expected one of: (.*?)\.?$", re.S)
_MAXIMUM = re.compile(r"maximum: ([\d.]+) ?(ms|s|seconds)?", re.I)
_CONTROLLED_BY = re.compile(r"controlled by '(\w+)' setting")
_SOURCES = ("READ ON", "FILE", "URL", "REMOTE", "S3", "HDFS", "MYSQL", "POSTGRES", "JDBC", "ODBC")


def explain(error: QueryFailed, sql: str) -> str:
    """Rich markup, several lines: ours first, ClickHouse's own message last."""
    theirs = f"[dim]ClickHouse: {escape(error.message)} ({error.name or error.code})[/dim]"
    if error.name == "UNREACHABLE":
        return f"ClickHouse does not answer ({escape(error.message)}); start it with `nox -s up`"
    if error.code in READONLY_CODES:
        if "READ ON FILE" in error.message and not _FILE_FUNCTION.search(sql):
            # chdb's server is clickhouse-local's code: a table name it does not know (no
            # database, or `db.table` in one pair of backquotes) is tried as a file path.
            return (
                "no such table: the analyst's tables are otel.* and analytics.*, named with"
                " their database (\\d in the shell lists them); this ClickHouse reads an unknown"
                f" table name as a file, which nobody may\n{theirs}"
            )
        return f"{_read_only(error.message)}\n{theirs}"
    if error.name == "SYNTAX_ERROR" or error.code == 62:
        return _syntax(error.message, sql)
    if error.name == "MEMORY_LIMIT_EXCEEDED" or error.code == 241:
        return f"{_memory(error.message)}\n{theirs}"
    if error.name in {"TIMEOUT_EXCEEDED", "TOO_SLOW"} or error.code in {159, 160}:
        return f"{_time(error.message)}\n{theirs}"
    limit = _CONTROLLED_BY.search(error.message)
    if limit is not None:
        name = limit.group(1)
        return (
            f"the query went over the [bold]{name}[/bold] limit; raise it for this query by"
            f" ending it with `SETTINGS {name} = ...`\n{theirs}"
        )
    if error.name == "UNKNOWN_QUERY_PARAMETER" or error.code == 456:
        name = re.search(r"Substitution `?(\w+)`? is not set", error.message)
        placeholder = name.group(1) if name else "name"
        return (
            f"the query has a {{{placeholder}:Type}} placeholder and no value for it: give one"
            f" with --param {placeholder}=VALUE (in the shell: \\param {placeholder}=VALUE)"
        )
    if error.name == "ALL_CONNECTION_TRIES_FAILED" or error.code == 279:
        # A cluster (docs/scaling.md) with no copy of some shard answering: a partial answer
        # would look like a drop in traffic, so it is an error unless asked for by name.
        return (
            "[bold]a shard of the ClickHouse cluster is down[/bold] (no copy of it answers): the"
            " query would see part of the data, so it fails instead; start the nodes with"
            " `nox -s up`, or take a partial answer knowingly by ending the query with"
            f" `SETTINGS skip_unavailable_shards = 1`\n{theirs}"
        )
    if error.name == "AUTHENTICATION_FAILED" or error.code == 516:
        return f"ClickHouse refused the analyst's password (see the stack's secrets.env)\n{theirs}"
    return f"{escape(error.message)} ({error.name or error.code})"


def _read_only(message: str) -> str:
    grant = _GRANT.search(message)
    privilege, target = (
        (grant.group(1) or grant.group(3), grant.group(2) or grant.group(4)) if grant else ("", "")
    )
    who = "[bold]the analyst is read-only[/bold]: it may SELECT from otel.* and analytics.*"
    if privilege.startswith("READ") or any(word in privilege for word in _SOURCES[1:]):
        return (
            f"{who}, and no user may read files, URLs or other servers through ClickHouse's"
            " network ports (clickhouse/users.xml): query the tables instead"
        )
    if privilege.startswith("INSERT"):
        return (
            f"{who}; rows are written by [bold]otel_writer[/bold] (the collector, INSERT into"
            " otel.* only) and the views; [bold]admin[/bold] may write anywhere"
        )
    if privilege.startswith(("SELECT", "SHOW")):
        return f"{who}; {escape(target)} is for [bold]admin[/bold]"
    if not privilege:
        return (
            f"{who} and change settings for its queries; writes and schema changes are for"
            " [bold]admin[/bold] (a migration in clickhouse/migrations/)"
        )
    return (
        f"{who}; {escape(privilege)} is for [bold]admin[/bold], through a migration in"
        " clickhouse/migrations/ that `nox -s up` applies"
    )


def _syntax(message: str, sql: str) -> str:
    text = message
    expected = _EXPECTED.search(text)
    if expected is not None:
        choices = [c.strip() for c in expected.group(1).split(",")]
        if len(choices) > 8:
            shown = ", ".join(choices[:8])
            text = text[: expected.start(1)] + f"{shown} (and {len(choices) - 8} more)."
    position = _POSITION.search(message)
    where = ""
    if position is not None:
        # ClickHouse counts bytes from 1.
        offset = len(sql.encode()[: int(position.group(1)) - 1].decode(errors="ignore"))
        line_no = sql.count("\n", 0, offset) + 1
        start = sql.rfind("\n", 0, offset) + 1
        end = sql.find("\n", offset)
        line = sql[start : end if end >= 0 else len(sql)]
        column = offset - start + 1
        caret = " " * (column - 1) + "[red]^[/red]"
        where = f" at line {line_no}, column {column}:\n  {escape(line)}\n  {caret}"
    return f"[bold]syntax error[/bold]{where}\n[dim]ClickHouse: {escape(text)}[/dim]"


def _maximum(message: str) -> tuple[float, str] | None:
    match = _MAXIMUM.search(message)
    return (float(match.group(1)), match.group(2) or "") if match else None


_SIZE = re.compile(r"(would use|maximum:) ([\d.]+) (B|KiB|MiB|GiB|TiB)")
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def _memory(message: str) -> str:
    lower = message.lower()
    if "(total)" in lower or "total memory" in lower:
        return (
            "the server as a whole ran out of memory (max_server_memory_usage); no query setting"
            " raises that: narrow the query (a shorter time range, fewer columns, a LIMIT)"
        )
    setting = "max_memory_usage_for_user" if "user memory" in lower else "max_memory_usage"
    sizes = {word: float(value) * _UNITS[unit] for word, value, unit in _SIZE.findall(message)}
    shown = ""
    suggestion = "'8Gi'"
    if "maximum:" in sizes:
        shown = f" ({_readable(sizes['maximum:'])})"
        # Twice what the query was about to use when it stopped, which may be far past the limit.
        suggestion = f"'{_readable(2 * max(sizes.values()), ceil=True).replace(' ', '')[:-1]}'"
    return (
        f"the query needed more memory than [bold]{setting}[/bold]{shown} allows; raise it for"
        f" this query by ending it with `SETTINGS {setting} = {suggestion}`"
    )


def _readable(size: float, *, ceil: bool = False) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size >= _UNITS[unit]:
            value = size / _UNITS[unit]
            return f"{math.ceil(value) if ceil else round(value, 2):g} {unit}"
    return f"{math.ceil(size)} B"


def _time(message: str) -> str:
    limit = _maximum(message)
    seconds = 60.0
    if limit is not None:
        value, unit = limit
        seconds = value / 1000 if unit == "ms" else value
    raised = max(2, math.ceil(seconds * 2))
    return (
        f"the query ran longer than [bold]max_execution_time[/bold] ({seconds:g} s); raise it"
        f" for this query by ending it with `SETTINGS max_execution_time = {raised}`"
    )
