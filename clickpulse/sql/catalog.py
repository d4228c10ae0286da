"""`\\d` in the shell: the analyst's tables, and one table's columns, with their comments."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.table import Table

from clickpulse.sql.script import UsageError

ANALYST_DATABASES = ("otel", "analytics")


def list_tables(client: Client, console: Console) -> None:
    # Materialized views here all write TO a table: they hold no rows of their own.
    rows = client.query(
        "SELECT database, name, engine, total_rows, comment FROM system.tables"
        " WHERE database IN {dbs:Array(String)} AND engine != 'MaterializedView'"
        " ORDER BY database, name",
        parameters={"dbs": list(ANALYST_DATABASES)},
    ).result_rows
    table = Table(title="the analyst's tables")
    # Names are what the analyst copies into a query: never cut them, wrap the comments.
    table.add_column("table", no_wrap=True)
    table.add_column("engine", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("comment")
    for database, name, engine, total_rows, comment in rows:
        table.add_row(
            f"{database}.{name}",
            str(engine),
            "-" if total_rows is None else f"{total_rows:,}",
            str(comment),
        )
    console.print(table)
    console.print("[dim]\\d TABLE for its columns[/dim]")


def describe_table(client: Client, console: Console, name: str) -> None:
    database, _, table_name = name.rpartition(".")
    databases = [database] if database else list(ANALYST_DATABASES)
    found = client.query(
        "SELECT database, name, comment, sorting_key FROM system.tables"
        " WHERE database IN {dbs:Array(String)} AND name = {name:String} ORDER BY database",
        parameters={"dbs": databases, "name": table_name},
    ).result_rows
    if not found:
        raise UsageError(f"no table {name!r} the analyst may read; \\d lists them")
    database, table_name, comment, sorting_key = found[0]
    columns = client.query(
        "SELECT name, type, comment FROM system.columns"
        " WHERE database = {db:String} AND table = {name:String} ORDER BY position",
        parameters={"db": database, "name": table_name},
    ).result_rows
    table = Table(title=f"{database}.{table_name}", caption=comment)
    table.add_column("column", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("comment")
    for column, column_type, column_comment in columns:
        table.add_row(str(column), str(column_type), str(column_comment))
    console.print(table)
    if sorting_key:
        console.print(f"[dim]sorted by ({sorting_key}): filters on these columns read least[/dim]")
