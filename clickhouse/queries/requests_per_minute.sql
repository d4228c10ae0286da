-- Requests per minute over the last hour.
SELECT
    toStartOfMinute(timestamp) AS minute,
    count() AS requests
FROM analytics.request_metrics
WHERE timestamp >= now() - INTERVAL 1 HOUR
GROUP BY minute
ORDER BY minute
