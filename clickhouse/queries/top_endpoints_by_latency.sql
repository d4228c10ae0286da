-- Endpoints by average latency over the last hour, with their p95.
SELECT
    concat(method, ' ', endpoint) AS endpoint,
    avg(response_time_ms) AS avg_latency,
    quantile(0.95)(response_time_ms) AS p95_latency
FROM analytics.request_metrics
WHERE timestamp >= now() - INTERVAL 1 HOUR
GROUP BY method, endpoint
ORDER BY avg_latency DESC
