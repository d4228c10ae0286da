-- Dashboards over a week of 10M requests within 150 ms per panel (docs/benchmarks.md, section 3).
-- Measured on that data, 2 cores:
--   * the time filter alone decompressed `timestamp` (Delta + ZSTD) in 80 ms; T64 + LZ4 reads it
--     in 30 ms at the same size. Same for the other columns raw panels filter or sort on.
--   * merging t-digest states took 170 ms for 168 hourly points; a log-bucket histogram merged
--     with sumMap takes 18 ms (p50/p95/p99 within 0.3 % of the exact ones on that data).
--   * distinct users and sessions (raw `uniq` or merged `uniq` states): 250-530 ms. A narrow
--     hourly table of HyperLogLog states per (hour, service, region) merges in 15-50 ms.
--
-- The rollups are rebuilt from the raw table, which keeps 90 days: `nox -s up` applies
-- migrations before the collector starts, so no insert runs while the views are replaced.

ALTER TABLE analytics.request_metrics
    MODIFY COLUMN timestamp DateTime64(6) CODEC(T64, LZ4),
    MODIFY COLUMN status_code UInt16 CODEC(T64, LZ4),
    MODIFY COLUMN response_time_ms Float64 CODEC(LZ4);

-- "Slowest requests" is a top 20 by response time: with each granule's min/max, ClickHouse skips
-- the granules that cannot hold one of them (use_skip_indexes_for_top_k): 29 ms instead of 80.
ALTER TABLE analytics.request_metrics
    ADD INDEX IF NOT EXISTS idx_response_time response_time_ms TYPE minmax GRANULARITY 1;

ALTER TABLE analytics.request_metrics MATERIALIZE INDEX idx_response_time;

-- Latency histogram: bucket b holds [2^((b - 80) / 8), 2^((b - 79) / 8)) ms, i.e. 8 buckets per
-- doubling from about 1 microsecond (bucket 0 takes everything below) to about an hour
-- (bucket 255 everything above).
CREATE FUNCTION IF NOT EXISTS clickpulse_latency_bucket AS (ms) ->
    toUInt8(greatest(0, least(255, floor(log2(ms) * 8) + 80)));

-- Helper of clickpulse_latency_quantile: the rank-th request sits in the idx-th non-empty bucket;
-- interpolate geometrically inside that bucket. NaN when the histogram is empty.
CREATE FUNCTION IF NOT EXISTS clickpulse_histogram_value AS (histogram, rank, idx) ->
    if(idx = 0, nan, pow(2, (mapKeys(histogram)[idx] - 80
        + (rank - arrayCumSum(mapValues(histogram))[idx] + mapValues(histogram)[idx])
          / mapValues(histogram)[idx]) / 8));

-- The level-quantile (0..1) of the response times counted in a merged histogram, in ms.
CREATE FUNCTION IF NOT EXISTS clickpulse_latency_quantile AS (histogram, level) ->
    clickpulse_histogram_value(histogram, level * arraySum(mapValues(histogram)),
        arrayFirstIndex(c -> c >= greatest(level * arraySum(mapValues(histogram)), 1),
                        arrayCumSum(mapValues(histogram))));

DROP VIEW IF EXISTS analytics.request_metrics_1m_mv;
DROP VIEW IF EXISTS analytics.request_metrics_1h_mv;
DROP TABLE IF EXISTS analytics.request_metrics_1m;
DROP TABLE IF EXISTS analytics.request_metrics_1h;

-- RED and business rollups: one row per (minute or hour, service, endpoint, method, status,
-- region). Panels read the hourly one for wide ranges (a week of minutes is still close to one
-- row per request at demo traffic); both have the same columns, so a panel reads either through
-- one UNION ALL.
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
    -- Requests per clickpulse_latency_bucket; read with clickpulse_latency_quantile(sumMap(...)).
    latency_histogram SimpleAggregateFunction(sumMap, Map(UInt8, UInt64)),
    revenue SimpleAggregateFunction(sum, Float64),
    orders SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service_name, ts, endpoint, method, status_code, region)
TTL ts + INTERVAL 400 DAY;

-- Same columns as the minute rollup; kept twice as long.
CREATE TABLE IF NOT EXISTS analytics.request_metrics_1h AS analytics.request_metrics_1m
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (service_name, ts, endpoint, method, status_code, region)
TTL ts + INTERVAL 800 DAY;

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
    sumMap(map(clickpulse_latency_bucket(response_time_ms), toUInt64(1))) AS latency_histogram,
    sumIf(ifNull(transaction_amount, 0), status_code < 400) AS revenue,
    countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400) AS orders
FROM analytics.request_metrics
GROUP BY ts, service_name, endpoint, method, status_code, region;

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
    sumMap(map(clickpulse_latency_bucket(response_time_ms), toUInt64(1))) AS latency_histogram,
    sumIf(ifNull(transaction_amount, 0), status_code < 400) AS revenue,
    countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400) AS orders
FROM analytics.request_metrics
GROUP BY ts, service_name, endpoint, method, status_code, region;

-- Distinct users and funnel sessions per (hour, service, region), for wide ranges. HyperLogLog
-- with 2^12 cells: exact for small sets, ~1.6 % standard error past a few hundred values.
-- Merging 1,680 of them (a week) takes 15-50 ms where raw `uniq` over 10M rows took 250-530 ms.
CREATE TABLE IF NOT EXISTS analytics.audience_1h (
    ts DateTime CODEC(Delta, ZSTD(1)),
    service_name LowCardinality(String),
    region LowCardinality(String),
    users AggregateFunction(uniqCombined(12), String),
    sessions AggregateFunction(uniqCombined(12), String),
    sessions_viewed_product AggregateFunction(uniqCombined(12), String),
    sessions_added_to_cart AggregateFunction(uniqCombined(12), String),
    sessions_checked_out AggregateFunction(uniqCombined(12), String)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, service_name, region)
TTL ts + INTERVAL 800 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.audience_1h_mv
TO analytics.audience_1h
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT
    toStartOfHour(timestamp) AS ts,
    service_name,
    region,
    uniqCombinedStateIf(12)(user_id, user_id != '') AS users,
    uniqCombinedStateIf(12)(session_id, session_id != '') AS sessions,
    uniqCombinedStateIf(12)(session_id, session_id != ''
        AND endpoint = '/products/{product_id}') AS sessions_viewed_product,
    uniqCombinedStateIf(12)(session_id, session_id != ''
        AND method = 'POST' AND endpoint = '/cart' AND status_code < 400) AS sessions_added_to_cart,
    uniqCombinedStateIf(12)(session_id, session_id != ''
        AND endpoint = '/checkout' AND status_code < 400) AS sessions_checked_out
FROM analytics.request_metrics
GROUP BY ts, service_name, region;

-- Backfill from the raw rows (the views above only see new inserts).
INSERT INTO analytics.request_metrics_1m
SELECT
    toStartOfMinute(timestamp) AS ts, service_name, endpoint, method, status_code, region,
    count(), countIf(status_code >= 500), countIf(status_code >= 400 AND status_code < 500),
    sum(response_time_ms),
    sumMap(map(clickpulse_latency_bucket(response_time_ms), toUInt64(1))),
    sumIf(ifNull(transaction_amount, 0), status_code < 400),
    countIf(order_id IS NOT NULL AND transaction_amount IS NOT NULL AND status_code < 400)
FROM analytics.request_metrics
GROUP BY ts, service_name, endpoint, method, status_code, region;

INSERT INTO analytics.request_metrics_1h
SELECT
    toStartOfHour(ts) AS hour, service_name, endpoint, method, status_code, region,
    sum(requests), sum(server_errors), sum(client_errors), sum(latency_sum_ms),
    sumMap(latency_histogram), sum(revenue), sum(orders)
FROM analytics.request_metrics_1m
GROUP BY hour, service_name, endpoint, method, status_code, region;

INSERT INTO analytics.audience_1h
SELECT
    toStartOfHour(timestamp) AS ts, service_name, region,
    uniqCombinedStateIf(12)(user_id, user_id != ''),
    uniqCombinedStateIf(12)(session_id, session_id != ''),
    uniqCombinedStateIf(12)(session_id, session_id != '' AND endpoint = '/products/{product_id}'),
    uniqCombinedStateIf(12)(session_id, session_id != ''
        AND method = 'POST' AND endpoint = '/cart' AND status_code < 400),
    uniqCombinedStateIf(12)(session_id, session_id != ''
        AND endpoint = '/checkout' AND status_code < 400)
FROM analytics.request_metrics
GROUP BY ts, service_name, region;
