"""The pure parts of `nox -s sql`: splitting a script, its FORMAT clauses, parameters, and the
messages for errors the stack cannot be made to raise on demand."""

from __future__ import annotations

import pytest

from clickpulse.sql.errors import explain
from clickpulse.sql.script import RawParam, UsageError, parse_params, split_script
from clickpulse.sql.stream import QueryFailed, parse_server_error

pytestmark = pytest.mark.no_stack


def test_a_script_splits_at_semicolons_outside_strings_and_comments() -> None:
    script = (
        "-- report\nSET max_execution_time = 5;\n"
        "SELECT 'a;b', $$c;d$$, `e;f` /* g; */ FROM t;\n"
        "-- only a comment;\n\n"
        "SELECT (SELECT 1 FORMAT TSV) FORMAT JSONEachRow\n"
    )
    statements = split_script(script)
    assert [s.line for s in statements] == [1, 3, 4]
    assert [s.takes_format for s in statements] == [False, True, True]
    assert [s.format_clause for s in statements] == [None, None, "JSONEachRow"]
    assert "$$c;d$$" in statements[1].text and "`e;f`" in statements[1].text
    assert split_script("-- nothing;\n/* at all */") == []


def test_parameters_are_passed_as_typed() -> None:
    assert parse_params(["ids=[1,2]", "s=a=b"]) == {"ids": RawParam("[1,2]"), "s": RawParam("a=b")}
    assert str(RawParam("['a','b']")) == "['a','b']"
    for bad in ("nope", "=1", "two words=1"):
        with pytest.raises(UsageError):
            parse_params([bad])


def test_server_errors_are_read_from_clickhouse_connect_and_from_the_stream() -> None:
    wrapped = parse_server_error(
        "Received ClickHouse exception, code: 159, server response: Code: 159. DB::Exception:"
        " Timeout exceeded: elapsed 1001 ms, maximum: 1000 ms. (TIMEOUT_EXCEEDED)"
        " (version 26.9.2.1) (for url http://127.0.0.1:8123)"
    )
    assert wrapped == QueryFailed(
        159, "TIMEOUT_EXCEEDED", "Timeout exceeded: elapsed 1001 ms, maximum: 1000 ms."
    )


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (
            "Memory limit (total) exceeded: would use 7.2 GiB, maximum: 7.0 GiB. OvercommitTracker",
            "the server as a whole ran out of memory",
        ),
        (
            "User memory limit exceeded: would use 5.00 GiB, maximum: 4.00 GiB",
            "SETTINGS max_memory_usage_for_user = '10Gi'",
        ),
    ],
)
def test_memory_limits_that_no_test_can_reach_on_demand(message: str, says: str) -> None:
    assert says in explain(QueryFailed(241, "MEMORY_LIMIT_EXCEEDED", message), "SELECT 1")


def test_a_limit_named_by_clickhouse_is_named_back() -> None:
    failed = QueryFailed(
        158,
        "TOO_MANY_ROWS",
        "Limit for rows (controlled by 'max_rows_to_read' setting) exceeded, max rows: 1.00",
    )
    assert "SETTINGS max_rows_to_read = ..." in explain(failed, "SELECT 1")
