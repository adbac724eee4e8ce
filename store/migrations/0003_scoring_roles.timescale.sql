-- TimescaleDB: the same names, with the engine's features.
-- Telemetry: compressed after 7 days, segmented by device (a vehicle's track stays together);
-- dropped after 180 days (violations and trips are kept: they carry their evidence).
ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                           timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('telemetry', INTERVAL '7 days', if_not_exists => true);
SELECT add_retention_policy('telemetry', INTERVAL '180 days', if_not_exists => true);

-- violations_daily becomes a continuous aggregate, refreshed every 30 minutes over the last
-- 30 days (late violations land in the past).
DROP VIEW IF EXISTS violations_daily;
CREATE MATERIALIZED VIEW IF NOT EXISTS violations_daily
WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 day', start_ts) AS day, company_id, rule,
           count(*) AS violations
    FROM violations WHERE state <> 'retracted'
    GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('violations_daily', start_offset => INTERVAL '30 days',
                                       end_offset => INTERVAL '1 hour',
                                       schedule_interval => INTERVAL '30 minutes',
                                       if_not_exists => true);
GRANT SELECT ON violations_daily TO muckwatch_analyst;
