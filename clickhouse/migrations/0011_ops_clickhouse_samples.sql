-- ClickHouse's own health, sampled from its system tables every 15 s by ClickHouse itself (a
-- refreshable materialized view: no sampler process, and a sample costs one small insert).
-- The pipeline dashboard and the alert rules read it; `ops` holds what the stack records about
-- itself, apart from the data it carries.
--
-- One narrow table for every kind of sample, so one refresh writes one part (merged away like
-- any other): ~270 rows per sample here, ~1.5M rows and a few MB a day, kept 14 days.
--   source   what it samples           name                          object        value
--   metrics  system.metrics (non-zero) the metric (Query, Merge...)  ''            current value
--   events   system.events (non-zero)  the event (InsertQuery...)   ''            count since start
--   errors   system.errors             the error (UNKNOWN_TABLE...) ''            count since start
--   parts    active system.parts       active_parts, rows, bytes    db.table      per partition
--   merges   system.merges             running, longest_s, bytes    db.table      now
--   disks    system.disks              free_bytes, total_bytes      the disk      now
-- Counters restart from 0 with the server: rates take the difference between consecutive
-- samples and read a drop as a restart. A metric absent from a sample was 0 then.
-- (system.asynchronous_metrics is not there in the chdb server; the compose server has it.)
CREATE DATABASE IF NOT EXISTS ops;

CREATE TABLE IF NOT EXISTS ops.clickhouse_samples (
    ts DateTime CODEC(Delta, ZSTD(1)),
    source LowCardinality(String),
    name LowCardinality(String),
    object LowCardinality(String),
    partition String CODEC(ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    -- The last message of an error (system.errors), else empty.
    detail String CODEC(ZSTD(3))
) ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (source, name, object, partition, ts)
TTL ts + INTERVAL 14 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS ops.clickhouse_samples_refresh
REFRESH EVERY 15 SECOND APPEND TO ops.clickhouse_samples
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT now() AS ts, 'metrics' AS source, metric AS name, '' AS object, '' AS partition,
          toFloat64(value) AS value, '' AS detail
   FROM system.metrics WHERE value != 0
UNION ALL
SELECT now(), 'events', event, '', '', toFloat64(value), '' FROM system.events
-- system.events lists an event once it happened: the ones alert rules count are sampled from
-- 0, so their first occurrence is an increase like any other.
WHERE value != 0 OR event IN ('FailedInsertQuery', 'RejectedInserts', 'DelayedInserts',
                              'FailedQuery', 'InsertQuery', 'InsertQueryTimeMicroseconds',
                              'InsertedRows', 'Merge', 'MergeTotalMilliseconds')
SETTINGS system_events_show_zero_values = 1
UNION ALL
SELECT now(), 'errors', name, '', '', toFloat64(value), substring(last_error_message, 1, 300)
FROM system.errors
UNION ALL
SELECT now(), 'parts', kv.1, object, partition, kv.2, ''
FROM (
    SELECT concat(database, '.', table) AS object, partition, count() AS parts,
           sum(rows) AS rows, sum(bytes_on_disk) AS bytes
    FROM system.parts WHERE active AND database NOT IN ('system', 'information_schema')
    GROUP BY object, partition
) ARRAY JOIN [('active_parts', toFloat64(parts)), ('rows', toFloat64(rows)),
              ('bytes_on_disk', toFloat64(bytes))] AS kv
UNION ALL
SELECT now(), 'merges', kv.1, object, '', kv.2, ''
FROM (
    SELECT concat(database, '.', table) AS object, count() AS running,
           max(elapsed) AS longest_s, sum(total_size_bytes_compressed) AS bytes
    FROM system.merges GROUP BY object
) ARRAY JOIN [('running', toFloat64(running)), ('longest_s', longest_s),
              ('bytes', toFloat64(bytes))] AS kv
UNION ALL
SELECT now(), 'disks', kv.1, name, '', kv.2, ''
FROM system.disks
ARRAY JOIN [('free_bytes', toFloat64(free_space)), ('total_bytes', toFloat64(total_space))] AS kv;
