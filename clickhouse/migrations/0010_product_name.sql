-- The product's name on each request that is about one product (app.product.name, set by the
-- services beside app.product.id): dashboards show "Blue Lamp", not "#17". Rows from before
-- this migration keep NULL, and the dashboards fall back to the id for them.
ALTER TABLE analytics.request_metrics
    ADD COLUMN IF NOT EXISTS product_name LowCardinality(Nullable(String)) CODEC(ZSTD(1))
    COMMENT 'Name of that product when the request was served (app.product.name)'
    AFTER product_id;

-- The view fills it from now on (the same SELECT as 0005, plus the new column).
ALTER TABLE analytics.request_metrics_mv MODIFY QUERY
SELECT
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
    nullIf(SpanAttributes['app.product.name'], '') AS product_name,
    nullIf(SpanAttributes['app.product.category'], '') AS product_category,
    toFloat64OrNull(SpanAttributes['app.transaction.amount']) AS transaction_amount,
    toUInt16OrNull(SpanAttributes['app.cart.items_count']) AS cart_items_count,
    toUInt64OrNull(SpanAttributes['app.order.id']) AS order_id,
    SpanAttributes['app.load.run_id'] AS run_id,
    TraceId AS trace_id,
    SpanId AS span_id
FROM otel.otel_traces
WHERE SpanKind = 'Server' AND ResourceAttributes['service.namespace'] = 'clickpulse';
