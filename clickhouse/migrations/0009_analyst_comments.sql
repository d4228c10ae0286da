-- What the analyst reads, said where `\d` in `nox -s sql` (and any client's DESCRIBE) shows it.
-- Comments only: metadata, no data is rewritten.

ALTER TABLE otel.otel_traces
    MODIFY COMMENT 'Every span as the collector''s ClickHouse exporter writes it: one row per span of both services. Find a trace by TraceId through otel_traces_trace_id_ts.';

ALTER TABLE otel.otel_traces
    COMMENT COLUMN Timestamp 'Span start, UTC, nanoseconds',
    COMMENT COLUMN TraceId 'W3C trace id, 32 hex digits: the same for every span of one request across both services',
    COMMENT COLUMN SpanId 'W3C span id, 16 hex digits',
    COMMENT COLUMN ParentSpanId 'SpanId of the parent span; empty for the root span of a trace',
    COMMENT COLUMN SpanName 'Server spans: method and route template (GET /products/{product_id}); client spans: the outgoing call',
    COMMENT COLUMN SpanKind 'Server, Client, Internal, Producer or Consumer',
    COMMENT COLUMN ServiceName 'crud-api or ecommerce-api (resource attribute service.name)',
    COMMENT COLUMN ResourceAttributes 'The process: service.name, service.namespace, service.instance.id (one per worker process), SDK versions',
    COMMENT COLUMN SpanAttributes 'http.route, http.request.method, http.response.status_code, user.id, session.id, client.address, app.region, app.product.id, app.transaction.amount, app.order.id, app.load.run_id, ... (all values are strings)',
    COMMENT COLUMN Duration 'Span duration in nanoseconds (divide by 1e6 for milliseconds)',
    COMMENT COLUMN StatusCode 'Unset, Ok or Error (a 5xx answer is Error)',
    COMMENT COLUMN StatusMessage 'Why the span failed, when it did',
    COMMENT COLUMN `Events.Name` 'Span events; an exception behind a 5xx is one named exception',
    COMMENT COLUMN `Events.Attributes` 'exception.type, exception.message, exception.stacktrace for exception events';

ALTER TABLE otel.otel_traces_trace_id_ts
    MODIFY COMMENT 'First and last second of each trace: read it first to narrow a trace lookup in otel_traces to its time range.';

ALTER TABLE otel.otel_metrics_gauge
    MODIFY COMMENT 'Gauges the services export: process.cpu.utilization, process.memory.usage, db.client.connection.count (MetricName), one row per data point.';

ALTER TABLE analytics.request_metrics
    MODIFY COMMENT 'One row per request to the services (their server spans), hot attributes as real columns: faster than otel_traces for anything about requests. Kept 90 days.';

ALTER TABLE analytics.request_metrics
    COMMENT COLUMN timestamp 'Request start, UTC, microseconds',
    COMMENT COLUMN service_name 'crud-api or ecommerce-api',
    COMMENT COLUMN endpoint 'Route template (/products/{product_id}); empty for a path that matched no route',
    COMMENT COLUMN method 'HTTP method; _OTHER outside RFC 9110',
    COMMENT COLUMN status_code 'HTTP status answered',
    COMMENT COLUMN response_time_ms 'Server span duration in milliseconds',
    COMMENT COLUMN request_size 'Request body bytes',
    COMMENT COLUMN response_size 'Response body bytes',
    COMMENT COLUMN user_id 'X-User-Id of the caller; empty when not sent',
    COMMENT COLUMN session_id 'X-Session-Id of the caller; empty when not sent',
    COMMENT COLUMN client_ip 'Client address (X-Forwarded-For only from trusted proxies)',
    COMMENT COLUMN region 'Region of the client address (CLICKPULSE_REGIONS), e.g. eu-west',
    COMMENT COLUMN user_agent 'User-Agent header',
    COMMENT COLUMN product_id 'Product viewed, added or changed; NULL when none',
    COMMENT COLUMN product_category 'Category of that product; NULL when none',
    COMMENT COLUMN transaction_amount 'Order total of a checkout, in the shop currency; NULL otherwise',
    COMMENT COLUMN cart_items_count 'Items in the cart after the request; NULL when not a cart request',
    COMMENT COLUMN order_id 'Order created by a checkout; NULL otherwise',
    COMMENT COLUMN run_id 'nox -s load run that sent the request; empty for other traffic',
    COMMENT COLUMN trace_id 'TraceId in otel.otel_traces: all spans of this request, across both services',
    COMMENT COLUMN span_id 'SpanId of the server span in otel.otel_traces',
    COMMENT COLUMN ingested_at 'When the row became queryable (ingested_at - timestamp = visibility lag)';

ALTER TABLE analytics.request_metrics_1m
    MODIFY COMMENT 'Requests rolled up per minute, service, endpoint, method, status and region (kept 400 days). Sum the counters; latency quantiles: clickpulse_latency_quantile(sumMap(latency_histogram), 0.95).';

ALTER TABLE analytics.request_metrics_1h
    MODIFY COMMENT 'The same rollup per hour (kept 800 days): for ranges of a week and more.';

ALTER TABLE analytics.audience_1h
    MODIFY COMMENT 'Distinct users and funnel sessions per hour, service and region as HyperLogLog states: uniqCombinedMerge(12)(users), ~1.6 % standard error.';
