-- RED and business rollups for the dashboards: one row per (minute or hour, service, endpoint,
-- method, status, region) instead of one per request. Panels read the hourly one for wide ranges
-- (a week of minutes is still close to one row per request at demo traffic). Both have the same
-- columns, so a panel can read either through one UNION ALL.
CREATE TABLE IF NOT EXISTS analytics.request_metrics_1m (
    ts DateTime CODEC(Delta, ZSTD(1)),
    service_name LowCardinality(String),
    endpoint LowCardinality(String),
    method LowCardinality(String),
    status_code UInt16,
    region LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    server_errors SimpleAggregateFunction(sum, UInt64),
    client_errors SimpleAggregateFunction(sum, UInt64),
    latency_sum_ms SimpleAggregateFunction(sum, Float64),
    -- t-digest states are small and merge fast; the default reservoir keeps 8,192 samples each.
    latency_quantiles AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    revenue SimpleAggregateFunction(sum, Float64),
    orders SimpleAggregateFunction(sum, UInt64),
    users AggregateFunction(uniq, String)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service_name, ts, endpoint, method, status_code, region)
TTL ts + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.request_metrics_1m_mv
TO analytics.request_metrics_1m
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT
    toStartOfMinute(timestamp) AS ts,
    service_name,
    endpoint,
    method,
    status_code,
    region,
    count() AS requests,
    countIf(status_code >= 500) AS server_errors,
    countIf(status_code >= 400 AND status_code < 500) AS client_errors,
    sum(response_time_ms) AS latency_sum_ms,
    quantilesTDigestState(0.5, 0.95, 0.99)(response_time_ms) AS latency_quantiles,
    sumIf(ifNull(transaction_amount, 0), status_code < 400) AS revenue,
    countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400) AS orders,
    uniqStateIf(user_id, user_id != '') AS users
FROM analytics.request_metrics
GROUP BY ts, service_name, endpoint, method, status_code, region;

-- Same columns as the minute rollup; kept twice as long.
CREATE TABLE IF NOT EXISTS analytics.request_metrics_1h AS analytics.request_metrics_1m
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service_name, ts, endpoint, method, status_code, region)
TTL ts + INTERVAL 800 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.request_metrics_1h_mv
TO analytics.request_metrics_1h
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT
    toStartOfHour(timestamp) AS ts,
    service_name,
    endpoint,
    method,
    status_code,
    region,
    count() AS requests,
    countIf(status_code >= 500) AS server_errors,
    countIf(status_code >= 400 AND status_code < 500) AS client_errors,
    sum(response_time_ms) AS latency_sum_ms,
    quantilesTDigestState(0.5, 0.95, 0.99)(response_time_ms) AS latency_quantiles,
    sumIf(ifNull(transaction_amount, 0), status_code < 400) AS revenue,
    countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400) AS orders,
    uniqStateIf(user_id, user_id != '') AS users
FROM analytics.request_metrics
GROUP BY ts, service_name, endpoint, method, status_code, region;
