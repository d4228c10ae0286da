-- Every span of one trace, across both services, in the order they started; the lookup table
-- narrows the scan of otel_traces to the trace's own seconds.
WITH span_window AS (
    SELECT min(Start) - 1 AS first, max(End) + 1 AS last
    FROM otel.otel_traces_trace_id_ts
    WHERE TraceId = {trace_id:String}
)
SELECT
    formatDateTime(Timestamp, '%H:%i:%S.%f') AS started,
    ServiceName AS service,
    SpanKind AS kind,
    SpanName AS span,
    round(Duration / 1e6, 2) AS ms,
    SpanAttributes['http.response.status_code'] AS status,
    SpanId AS span_id,
    ParentSpanId AS parent_id
FROM otel.otel_traces
WHERE TraceId = {trace_id:String}
  AND Timestamp BETWEEN (SELECT first FROM span_window) AND (SELECT last FROM span_window)
ORDER BY Timestamp
