-- TimescaleDB: the same names, with the engine's features.
-- Telemetry: compressed after 7 days, segmented by device (a vehicle's track stays together);
-- dropped after 180 days (violations and trips are kept: they carry their evidence).
ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                           timescaledb.compress_orderby = 'ts');
SELECT add_compression_policy('telemetry', INTERVAL '7 days', if_not_exists => true);
SELECT add_retention_policy('telemetry', INTERVAL '180 days', if_not_exists => true);

-- violations_daily becomes a continuous aggregate, refreshed every 30 minutes over the last
-- 30 days (late violations land in the past). TimescaleDB refuses a continuous aggregate on a
-- table with row-level security (which violations needs for company accounts), so the
-- aggregate reads violation_days, a slim mirror of violations kept by a trigger.
CREATE TABLE IF NOT EXISTS violation_days (
    id          text NOT NULL,
    start_ts    timestamptz NOT NULL,
    company_id  text,
    rule        text NOT NULL,
    state       text NOT NULL,
    PRIMARY KEY (id, start_ts)
);
SELECT create_hypertable('violation_days', by_range('start_ts', INTERVAL '30 days'),
                         if_not_exists => true);
INSERT INTO violation_days SELECT id, start_ts, company_id, rule, state FROM violations
ON CONFLICT (id, start_ts) DO NOTHING;

CREATE OR REPLACE FUNCTION mirror_violation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO violation_days (id, start_ts, company_id, rule, state)
    VALUES (NEW.id, NEW.start_ts, NEW.company_id, NEW.rule, NEW.state)
    ON CONFLICT (id, start_ts) DO UPDATE SET company_id = excluded.company_id,
        rule = excluded.rule, state = excluded.state;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS violations_mirror ON violations;
CREATE TRIGGER violations_mirror AFTER INSERT OR UPDATE ON violations
    FOR EACH ROW EXECUTE FUNCTION mirror_violation();

DROP VIEW IF EXISTS violations_daily;
CREATE MATERIALIZED VIEW IF NOT EXISTS violations_daily
WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 day', start_ts) AS day, company_id, rule,
           count(*) AS violations
    FROM violation_days WHERE state <> 'retracted'
    GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('violations_daily', start_offset => INTERVAL '30 days',
                                       end_offset => INTERVAL '1 hour',
                                       schedule_interval => INTERVAL '30 minutes',
                                       if_not_exists => true);
GRANT SELECT ON violations_daily TO muckwatch_analyst;
