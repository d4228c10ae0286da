-- The requests of one session that failed (4xx and 5xx), oldest first.
SELECT
    timestamp,
    method,
    endpoint,
    status_code,
    round(response_time_ms, 1) AS ms,
    product_id,
    trace_id
FROM analytics.request_metrics
WHERE session_id = {session_id:String}
  AND status_code >= 400
ORDER BY timestamp
