-- Merges, not inserts, were most of what a span cost ClickHouse: every span was rewritten ~6
-- times within two minutes of landing (system.events MergedRows / InsertedRows), as the
-- collector's inserts (a part every 2 s in each span table) merged five at a time, level by
-- level. Merging parts of about the same size twenty at a time instead, the three tables that
-- take a row per span rewrote each ~2 times, and ClickHouse's CPU a span fell from 44-47 us to
-- 28-37 (3,000 spans/s for 60 s and 60 s after, 2 rounds interleaved, 2026-12-02, slower
-- machine), for ~20-25 active parts a table instead of ~9 (inserts are delayed from 1,000, the
-- parts alert warns at 300). Over a day's partition the levels go from ~6.6 to ~3.6. The
-- rollups keep the default: their parts are small and a merge is what aggregates them.
ALTER TABLE otel.otel_traces MODIFY SETTING merge_selector_base = 20;

ALTER TABLE otel.otel_traces_trace_id_ts MODIFY SETTING merge_selector_base = 20;

ALTER TABLE analytics.request_metrics MODIFY SETTING merge_selector_base = 20;
