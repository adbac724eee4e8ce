-- The live map (issue #23): each vehicle's newest stored fix, for the console's live view
-- and anything else that asks "where is every truck now" without scanning telemetry.
--
-- Written by the ingest in each batch's transaction (store/live.py): the batch's newest fix
-- per device, only where it is newer than the row (a late or backfilled fix never moves a
-- truck back). UNLOGGED: it is derived data that the next fixes rewrite within seconds, so
-- it costs no WAL; after a database crash PostgreSQL empties it and it fills again from
-- live data (or `SELECT refill_live_positions()` from telemetry). fillfactor 50 keeps the
-- updates HOT (no indexed column changes).
--
-- `xid` is the writing transaction: the console's stream asks for rows written by
-- transactions at or after the oldest one still running at its previous read
-- (pg_snapshot_xmin), so a transaction that commits late is never skipped.
CREATE UNLOGGED TABLE IF NOT EXISTS live_positions (
    device_id    text PRIMARY KEY,
    ts           timestamptz NOT NULL,  -- device time of the newest fix
    lon          double precision NOT NULL,
    lat          double precision NOT NULL,
    speed_kmh    real,
    heading_deg  real,
    lid          smallint,
    lift         smallint,
    load         smallint,
    load_kg      real,
    received_at  timestamptz NOT NULL,
    district_id  text,  -- district_at(lon, lat) when written
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id()
) WITH (fillfactor = 50);

-- Rebuild from telemetry (the last day), e.g. after a crash emptied the table.
CREATE OR REPLACE FUNCTION refill_live_positions() RETURNS bigint
LANGUAGE sql AS $$
    WITH newest AS (
        SELECT DISTINCT ON (device_id) device_id, ts, lon, lat, speed_kmh, heading_deg, lid,
               lift, load, load_kg, received_at
        FROM telemetry WHERE ts > now() - interval '1 day'
        ORDER BY device_id, ts DESC),
    written AS (
        INSERT INTO live_positions AS p (device_id, ts, lon, lat, speed_kmh, heading_deg, lid,
                                         lift, load, load_kg, received_at, district_id)
        SELECT n.*, district_at(n.lon, n.lat) FROM newest n
        ON CONFLICT (device_id) DO UPDATE SET
            ts = excluded.ts, lon = excluded.lon, lat = excluded.lat,
            speed_kmh = excluded.speed_kmh, heading_deg = excluded.heading_deg,
            lid = excluded.lid, lift = excluded.lift, load = excluded.load,
            load_kg = excluded.load_kg, received_at = excluded.received_at,
            district_id = excluded.district_id, xid = pg_current_xact_id()
        WHERE p.ts < excluded.ts
        RETURNING 1)
    SELECT count(*) FROM written
$$;
SELECT refill_live_positions();

-- "Is this truck in violation now": the open violations, found without scanning history.
CREATE INDEX IF NOT EXISTS violations_open_device ON violations (device_id) WHERE state = 'open';

GRANT SELECT ON live_positions TO muckwatch_analyst;
