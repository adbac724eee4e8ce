-- Applied after 0001_initial.sql when the TimescaleDB extension is active: the same tables,
-- turned into hypertables on their device-time columns (unique keys include that column).
SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'), if_not_exists => true);
SELECT create_hypertable('violations', by_range('start_ts', INTERVAL '30 days'),
                         if_not_exists => true);
