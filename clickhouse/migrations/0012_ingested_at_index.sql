-- The visibility-lag alert and the Pipeline dashboard ask which requests arrived in the last
-- minute (ingested_at), whatever their timestamps (after an outage, rows of 10 minutes ago
-- arrive now). Rows arrive in ingestion order, so each granule's min/max ingested_at prunes
-- to the last minute's granules instead of reading every request of the last 15 minutes
-- (180,000 rows at 200 req/s, every 30 s).
ALTER TABLE analytics.request_metrics
    ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1;

ALTER TABLE analytics.request_metrics MATERIALIZE INDEX idx_ingested_at;
