"""The alert rules: one source for Grafana's provisioning and for `nox -s alerts`. Every rule's
SQL runs as the analyst and has the shape both read (labels, then `value`); the pipeline's rules
see the running pipeline; a burst of 5xx goes pending, then firing, in `nox -s alerts`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client
from clickpulse_grafana import alerting
from clickpulse_grafana.dashboards import ALERTING_FILE
from conftest import service_tracer_provider

from clickpulse.monitoring.evaluation import observe, rule_sql
from clickpulse.monitoring.rules import CLICKHOUSE_STARTED, GROUPS, RULES, Rule, rule
from clickpulse.stack.settings import REPO_ROOT, Settings

NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*)\)?$")


@pytest.mark.no_stack
def test_committed_alerting_provisioning_is_what_the_rules_render() -> None:
    assert ALERTING_FILE.read_text() == alerting.render(), (
        "run `python -m clickpulse_grafana build` and commit grafana/provisioning/alerting/"
    )


@pytest.mark.no_stack
def test_grafana_evaluates_what_the_evaluator_evaluates() -> None:
    provisioned = yaml.safe_load(ALERTING_FILE.read_text())
    groups = {g["name"]: g for g in provisioned["groups"]}
    assert set(groups) == {g.name for g in GROUPS}
    seen = set()
    for r in RULES:
        group = groups[r.group.name]
        assert group["folder"] == "clickpulse"
        assert group["interval"] in (f"{r.group.interval_s}s", f"{r.group.interval_s // 60}m")
        (grafana_rule,) = [x for x in group["rules"] if x["uid"] == r.uid]
        query, threshold = grafana_rule["data"]
        assert query["model"]["rawSql"] == r.sql.strip()
        assert query["relativeTimeRange"] == {"from": r.window_s, "to": 0}
        assert query["datasourceUid"] == "clickpulse-clickhouse"
        assert grafana_rule["condition"] == threshold["refId"] == "C"
        (condition,) = threshold["model"]["conditions"]
        assert condition["evaluator"] == {
            "type": "gt" if r.condition == ">" else "lt",
            "params": [r.threshold],
        }
        seconds = int(grafana_rule["for"][:-1]) * (60 if grafana_rule["for"].endswith("m") else 1)
        assert seconds == r.for_s
        assert grafana_rule["execErrState"] == (
            "Alerting" if r.on_error == "alerting" else "KeepLast"
        )
        assert grafana_rule["noDataState"] == "OK"
        seen.add(r.uid)
    assert seen == {r.uid for r in RULES}
    (contact,) = provisioned["contactPoints"]
    assert contact["receivers"][0]["type"] == "webhook"
    assert provisioned["policies"][0]["receiver"] == contact["name"]


@pytest.mark.no_stack
def test_rules_are_written_against_the_windows_end_and_survive_provisioning() -> None:
    assert len({r.uid for r in RULES}) == len(RULES)
    assert len({r.title for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.uid.startswith("clickpulse-")
        # Evaluated at an earlier moment, a rule must mean that moment: no wall clock.
        # ClickHouse's start is a fixed instant, whenever it is evaluated.
        wall_clock = r.sql.replace(CLICKHOUSE_STARTED, "")
        assert not re.search(r"\b(now|today|now64)\s*\(", wall_clock, re.I), r.uid
        bounded = "$__timeFilter" in r.sql or "<= $__toTime" in r.sql
        assert bounded or r.on_error == "alerting", r.uid
        expanded = rule_sql(r, time.time())
        assert "$" not in expanded, (r.uid, expanded)
        # Grafana's file provisioning replaces $VAR and ${VAR} in annotations.
        assert "$" not in r.summary and "$" not in r.title
        assert r.for_s == 0 or r.for_s >= r.group.interval_s, r.uid


@pytest.mark.parametrize("r", RULES, ids=[r.uid for r in RULES])
def test_every_rules_sql_runs_as_the_analyst_with_labels_then_a_value(
    r: Rule, reader: Client
) -> None:
    sql = rule_sql(r, time.time())
    described = {row[0]: row[1] for row in reader.query(f"DESCRIBE TABLE ({sql})").result_rows}
    assert "value" in described and NUMERIC.match(described["value"]), (r.uid, described)
    for column, kind in described.items():
        if column != "value":
            assert "String" in kind, (r.uid, column, kind)

    def query(text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = reader.query(text)
        return list(result.column_names), [tuple(x) for x in result.result_rows]

    for value in observe(r, query, time.time()).values():
        assert isinstance(value, float)


def _value(
    r: Rule, reader: Client, at: float | None = None
) -> dict[tuple[tuple[str, str], ...], float]:
    """What the rule says at `at` (now by default), as the evaluator asks it."""

    def query(text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = reader.query(text)
        return list(result.column_names), [tuple(x) for x in result.result_rows]

    return observe(r, query, time.time() if at is None else at)


@pytest.mark.parametrize(
    ("uid", "table"),
    [
        ("clickpulse-collector-silent", "otel.otel_metrics_gauge"),
        ("clickpulse-clickhouse-samples-stale", "ops.clickhouse_samples"),
    ],
)
def test_a_silence_counts_from_clickhouses_start_at_most(
    uid: str, table: str, reader: Client
) -> None:
    """Right after `nox -s up` a component's newest report is from before the stop: Grafana,
    which knows nothing of the stack's start, showed "Collector unreachable" pending on every
    start. Here the newest report is 30 days old (no ClickHouse of a test run is that old)."""
    r = rule(uid)
    assert f"FROM {table}\n" in r.sql
    old = (
        "(SELECT now() - toIntervalDay(30) AS TimeUnix, TimeUnix AS ts, 'metrics' AS source,"
        " 'clickpulse-otelcol' AS ServiceName, 'otelcol_process_memory_rss' AS MetricName)"
    )
    stale = replace(r, sql=r.sql.replace(f"FROM {table}\n", f"FROM {old}\n"))
    at = time.time()
    value = _value(stale, reader, at)[()]
    uptime = reader.command("SELECT uptime()")
    assert isinstance(uptime, int) and uptime < 30 * 86_400
    assert abs(value - uptime) <= 5, (value, uptime)
    # Asked a day later: silent since ClickHouse's start all the same.
    assert abs(_value(stale, reader, at + 86_400)[()] - uptime - 86_400) <= 5


def test_the_pipeline_rules_see_a_healthy_pipeline(
    reader: Client, wait_for: Callable[..., Any], some_requests: int
) -> None:
    assert _value(rule("clickpulse-clickhouse-unreachable"), reader) == {(): 0.0}
    # The collector reports itself every 10 s, ClickHouse samples itself every 15 s, the monitor
    # samples PostgreSQL every 15 s: all three are there and recent.
    silent = wait_for(lambda: _value(rule("clickpulse-collector-silent"), reader), timeout=30)
    assert silent and silent[()] <= 40, silent
    stale = _value(rule("clickpulse-clickhouse-samples-stale"), reader)
    assert stale and stale[()] <= 60, stale
    postgres = wait_for(lambda: _value(rule("clickpulse-postgres-down"), reader), timeout=40)
    assert postgres == {(): 1.0}

    # Each signal's queue is reported once the collector has had some of it (its own metrics
    # every 10 s, then a batch of up to 2 s): on a fresh stack, within the first half minute.
    def backlog_of_both() -> dict[Any, float] | None:
        found: dict[Any, float] = _value(rule("clickpulse-collector-backlog"), reader)
        signals = {dict(k)["signal"] for k in found}
        return found if signals >= {"traces", "metrics"} else None

    backlog = wait_for(backlog_of_both, timeout=45)
    assert backlog, "the collector's sending queue is not reported for traces and metrics"
    assert all(v < 15 for v in backlog.values()), backlog
    lag = wait_for(lambda: _value(rule("clickpulse-visibility-lag"), reader), timeout=5)
    assert not lag or lag[()] < 10, lag
    disk = _value(rule("clickpulse-clickhouse-disk"), reader)
    assert disk and all(0 < v <= 1 for v in disk.values())
    # On a fresh stack request_metrics gets its first part when the collector flushes the
    # first requests (a small batch waits up to 2 s) and shows in the next sample (15 s).
    table = (("table", "analytics.request_metrics"),)
    parts = wait_for(
        lambda: _value(rule("clickpulse-clickhouse-too-many-parts"), reader).get(table),
        timeout=45,
    )
    assert parts is not None and parts >= 1, parts


def _alerts_json(settings: Settings) -> tuple[int, list[dict[str, Any]]]:
    result = subprocess.run(
        [sys.executable, "-m", "clickpulse.monitoring", "alerts", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return result.returncode, rows


def _emit_requests(settings: Settings, service: str, ok: int, failed: int) -> None:
    """Requests of a service of its own, some failed, through the real collector (the services
    answer 5xx only while a dependency is down; the drills do that). Few failures: the
    dashboards' "latest server errors" must still show the traffic fixture's."""
    from opentelemetry.trace import SpanKind, StatusCode

    provider = service_tracer_provider(settings, service)
    tracer = provider.get_tracer("clickpulse.tests")
    for index in range(ok + failed):
        status = 503 if index < failed else 200
        with tracer.start_as_current_span(
            "GET /products",
            kind=SpanKind.SERVER,
            attributes={
                "http.route": "/products",
                "http.request.method": "GET",
                "http.response.status_code": status,
            },
        ) as span:
            if status >= 500:
                span.set_status(StatusCode.ERROR)
    provider.shutdown()


def test_a_share_of_server_errors_is_pending_then_firing_in_nox_alerts(
    settings: Settings, reader: Client, wait_for: Callable[..., Any]
) -> None:
    service = f"test-{uuid.uuid4().hex[:10]}"
    # 2 of 22 requests failed: 9.1 %, above the rule's 5 %, over its minimum of 20 requests.
    _emit_requests(settings, service, ok=20, failed=2)
    landed = wait_for(
        lambda: (
            reader.query(
                "SELECT count() FROM analytics.request_metrics WHERE service_name = {s:String}",
                parameters={"s": service},
            ).result_rows[0][0]
            == 22
        ),
        timeout=30,
    )
    assert landed
    burst = rule("clickpulse-5xx-share")

    def row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next(
            (x for x in rows if x["rule"] == burst.uid and x["labels"].get("service") == service),
            None,
        )

    code, rows = _alerts_json(settings)
    first = row(rows)
    assert first is not None, [x for x in rows if x["rule"] == burst.uid]
    assert first["value"] == pytest.approx(2 / 22) and first["value_text"] == "9.1%"
    assert first["state"] in ("pending", "firing")
    if first["state"] == "pending":
        # Firing once the breach has lasted `for` (30 s), and the command then exits 1.
        # Polled, not one sleep: on a busy CI box `nox -s alerts` itself takes seconds.
        time.sleep(max(0.0, burst.for_s - first["for_s"]))

        def fired() -> tuple[int, dict[str, Any] | None] | None:
            code, rows = _alerts_json(settings)
            found = row(rows)
            return (code, found) if found is not None and found["state"] == "firing" else None

        result = wait_for(fired, timeout=3 * burst.group.interval_s)
        assert result is not None, "the 5xx share did not fire"
        code, later = result
        assert later is not None and later["state"] == "firing", later
    assert code == 1


def test_a_collector_that_never_reported_is_no_alert_but_a_long_silence_is(
    reader: Client, wait_for: Callable[..., Any]
) -> None:
    """A fresh stack's collector reports itself ~12 s after it starts: until then the rule has
    no row (it once read max() of no rows as 1970, and every fresh `nox -s up` showed it
    firing). A collector silent for longer than the rule's window still breaches."""
    silent = rule("clickpulse-collector-silent")
    assert "'clickpulse-otelcol'" in silent.sql
    never = replace(silent, sql=silent.sql.replace("'clickpulse-otelcol'", "'never-started'"))
    assert _value(never, reader) == {}
    assert wait_for(lambda: _value(silent, reader), timeout=30)
    # An hour from now: the newest report is an hour old, past the 300 s window.
    later = _value(silent, reader, time.time() + 3600)
    assert later[()] >= 3600 - 60 and silent.breaches(later[()]), later
