-- The slowest checkouts of the last {hours} hours, with the trace to open for each.
SELECT
    timestamp,
    round(response_time_ms, 1) AS ms,
    status_code,
    transaction_amount AS amount,
    session_id,
    trace_id
FROM analytics.request_metrics
WHERE endpoint = '/checkout'
  AND timestamp >= now() - toIntervalHour({hours:UInt16})
ORDER BY response_time_ms DESC
LIMIT 10
