-- muckwatch schema v1: telemetry, dead letters, device status, reference data, violations.
-- Every name here is part of the analysts' contract (docs/sql.md): the TimescaleDB variant
-- (0001_initial.timescale.sql) creates the same tables and columns.

CREATE TABLE IF NOT EXISTS companies (
    id          text PRIMARY KEY,
    name        text NOT NULL
);

CREATE TABLE IF NOT EXISTS vehicles (
    plate       text PRIMARY KEY,
    device_id   text NOT NULL UNIQUE,
    company_id  text NOT NULL REFERENCES companies (id)
);

CREATE TABLE IF NOT EXISTS fences (
    id              text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('construction_site', 'disposal_site',
                                                  'transfer_dock', 'restricted_zone')),
    name            text,
    windows         text[],
    speed_limit_kmh real,
    geometry        jsonb NOT NULL  -- GeoJSON geometry, WGS-84
);

CREATE TABLE IF NOT EXISTS permits (
    id           text PRIMARY KEY,
    plate        text NOT NULL,
    origin       text NOT NULL,
    destinations text[] NOT NULL,
    corridor_m   real NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz NOT NULL,
    hours        text,
    route        jsonb NOT NULL  -- GeoJSON LineString, WGS-84
);
CREATE INDEX IF NOT EXISTS permits_plate ON permits (plate);

-- One row per fix, keyed by (device, device time): a redelivered fix is not stored twice.
CREATE TABLE IF NOT EXISTS telemetry (
    device_id    text        NOT NULL,
    ts           timestamptz NOT NULL,  -- device time, UTC
    lon          double precision NOT NULL,  -- WGS-84
    lat          double precision NOT NULL,
    speed_kmh    real,
    heading_deg  real,
    lid          smallint,  -- 0 closed, 1 open, NULL unknown
    lift         smallint,  -- 0 down, 1 raised, NULL unknown
    load         smallint,  -- 0 empty, 1 half, 2 full, NULL unknown
    load_kg      real,
    sats         smallint,
    hdop         real,
    seq          bigint,
    received_at  timestamptz NOT NULL,  -- when ingest received it
    backfill     boolean NOT NULL DEFAULT false,  -- arrived on the blind-area batch topic
    PRIMARY KEY (device_id, ts)
);
CREATE INDEX IF NOT EXISTS telemetry_ts_brin ON telemetry USING brin (ts);

-- Input the pipeline refused, with the raw bytes and a specific reason.
CREATE TABLE IF NOT EXISTS dead_letter (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    device_id    text,
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload      bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letter_received ON dead_letter (received_at);
CREATE INDEX IF NOT EXISTS dead_letter_reason ON dead_letter (reason);

-- Last online/offline announcement per device (MQTT retained status / last will).
CREATE TABLE IF NOT EXISTS device_status (
    device_id    text PRIMARY KEY,
    online       boolean NOT NULL,
    changed_at   timestamptz NOT NULL
);

-- Violations: one row per violation, upserted as it opens, updates and closes.
CREATE TABLE IF NOT EXISTS violations (
    id           text NOT NULL,
    rule         text NOT NULL,
    severity     smallint NOT NULL DEFAULT 1,
    device_id    text NOT NULL,
    plate        text,
    company_id   text,
    permit_id    text,
    start_ts     timestamptz NOT NULL,
    end_ts       timestamptz,
    start_lon    double precision,
    start_lat    double precision,
    end_lon      double precision,
    end_lat      double precision,
    peak         double precision,
    state        text NOT NULL CHECK (state IN ('open', 'closed')),
    late         boolean NOT NULL DEFAULT false,
    evidence     jsonb,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, start_ts)
);
CREATE INDEX IF NOT EXISTS violations_rule_start ON violations (rule, start_ts);
CREATE INDEX IF NOT EXISTS violations_company_start ON violations (company_id, start_ts);
