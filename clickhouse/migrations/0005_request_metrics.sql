-- One row per request to our services: the server spans of the clickpulse services, with the
-- hot attributes copied into real columns at insert time (reading one Map key reads the whole
-- map, which is what every dashboard query would otherwise do).
-- Columns follow the seed's schema, with two deliberate changes: response_time_ms is Float64
-- (most requests here take under a millisecond; UInt32 would round them to 0) and timestamp
-- keeps microseconds (requests of one session keep their order).
CREATE TABLE IF NOT EXISTS analytics.request_metrics (
    timestamp DateTime64(6) CODEC(Delta, ZSTD(1)),
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    endpoint LowCardinality(String) CODEC(ZSTD(1)),
    method LowCardinality(String) CODEC(ZSTD(1)),
    status_code UInt16 CODEC(T64, ZSTD(1)),
    response_time_ms Float64 CODEC(ZSTD(1)),
    request_size UInt32 CODEC(T64, ZSTD(1)),
    response_size UInt32 CODEC(T64, ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    session_id String CODEC(ZSTD(1)),
    client_ip String CODEC(ZSTD(1)),
    region LowCardinality(String) CODEC(ZSTD(1)),
    user_agent LowCardinality(String) CODEC(ZSTD(1)),
    product_id Nullable(UInt64) CODEC(ZSTD(1)),
    product_category LowCardinality(Nullable(String)) CODEC(ZSTD(1)),
    transaction_amount Nullable(Float64) CODEC(ZSTD(1)),
    cart_items_count Nullable(UInt16) CODEC(ZSTD(1)),
    order_id Nullable(UInt64) CODEC(ZSTD(1)),
    run_id LowCardinality(String) CODEC(ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    -- When the row became queryable: end-to-end visibility lag = ingested_at - request end.
    ingested_at DateTime64(3) DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_run_id run_id TYPE set(256) GRANULARITY 4
) ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
-- Dashboards filter on a time range, often per service, and group by endpoint: the hour bucket
-- before endpoint prunes by time within each service and keeps endpoints together inside it.
ORDER BY (service_name, toStartOfHour(timestamp), endpoint, timestamp)
TTL toDateTime(timestamp) + INTERVAL 90 DAY
SETTINGS index_granularity = 8192;

-- Runs as its definer (the admin who migrates): the collector's writer may only INSERT into
-- otel.*, and a view running as the invoker would fail its inserts half-way.
CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.request_metrics_mv
TO analytics.request_metrics
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT
    toDateTime64(Timestamp, 6) AS timestamp,
    ServiceName AS service_name,
    SpanAttributes['http.route'] AS endpoint,
    SpanAttributes['http.request.method'] AS method,
    toUInt16OrZero(SpanAttributes['http.response.status_code']) AS status_code,
    Duration / 1e6 AS response_time_ms,
    toUInt32OrZero(SpanAttributes['http.request.body.size']) AS request_size,
    toUInt32OrZero(SpanAttributes['http.response.body.size']) AS response_size,
    SpanAttributes['user.id'] AS user_id,
    SpanAttributes['session.id'] AS session_id,
    SpanAttributes['client.address'] AS client_ip,
    SpanAttributes['app.region'] AS region,
    SpanAttributes['user_agent.original'] AS user_agent,
    toUInt64OrNull(SpanAttributes['app.product.id']) AS product_id,
    nullIf(SpanAttributes['app.product.category'], '') AS product_category,
    toFloat64OrNull(SpanAttributes['app.transaction.amount']) AS transaction_amount,
    toUInt16OrNull(SpanAttributes['app.cart.items_count']) AS cart_items_count,
    toUInt64OrNull(SpanAttributes['app.order.id']) AS order_id,
    SpanAttributes['app.load.run_id'] AS run_id,
    TraceId AS trace_id,
    SpanId AS span_id
FROM otel.otel_traces
WHERE SpanKind = 'Server' AND ResourceAttributes['service.namespace'] = 'clickpulse';
