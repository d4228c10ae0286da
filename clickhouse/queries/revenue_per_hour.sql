-- Revenue per hour over the last 24 hours (successful checkouts and orders only).
SELECT
    toStartOfHour(timestamp) AS hour,
    sum(transaction_amount) AS revenue
FROM analytics.request_metrics
WHERE timestamp >= now() - INTERVAL 24 HOUR
  AND transaction_amount IS NOT NULL
  AND status_code < 400
GROUP BY hour
ORDER BY hour
