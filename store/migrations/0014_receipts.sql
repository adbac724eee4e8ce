-- The manifest's other end (电子联单, issue #22): a disposal site's (or transfer dock's)
-- operator confirms each load received; every receipt is matched to at most one manifest
-- line (a trip) and every line to at most one receipt; the view `manifest` is the
-- electronic manifest analysts query, and reconcile_sites / reconcile_jobs the daily
-- reconciliation. docs/permits.md "The manifest (电子联单)", docs/sql.md.
--
-- Plain SQL for PostgreSQL and TimescaleDB (trips may be a hypertable: row triggers work on
-- it); every statement may run again (idempotent).

-- Site operators: a new API role scoped to one or more receiving sites, as an officer is
-- scoped to districts.
ALTER TABLE api_accounts ADD COLUMN IF NOT EXISTS sites text[] NOT NULL DEFAULT '{}';
ALTER TABLE api_accounts DROP CONSTRAINT IF EXISTS api_accounts_role_check;
ALTER TABLE api_accounts ADD CONSTRAINT api_accounts_role_check
    CHECK (role IN ('officer', 'supervisor', 'company', 'association', 'public', 'analyst',
                    'site_operator'));
ALTER TABLE api_accounts DROP CONSTRAINT IF EXISTS api_accounts_sites;
ALTER TABLE api_accounts ADD CONSTRAINT api_accounts_sites
    CHECK ((role = 'site_operator') = (cardinality(sites) > 0));

-- Receipts (消纳确认). Append-only: a receipt never changes and is never deleted; one recorded
-- in error is replaced by a new receipt naming it (`replaces`), and the replaced one then
-- counts for nothing (no matching, no reconciliation). A retried POST is the same receipt:
-- unique on (site_id, plate, received_at).
CREATE TABLE IF NOT EXISTS disposal_receipts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id      text NOT NULL REFERENCES fences (id),
    plate        text NOT NULL REFERENCES vehicles (plate),
    received_at  timestamptz NOT NULL,  -- when the load was received, as the operator says
    volume_m3    numeric CHECK (volume_m3 IS NULL OR volume_m3 > 0),
    note         text,
    replaces     bigint UNIQUE REFERENCES disposal_receipts (id),
    recorded_by  text NOT NULL,  -- the API account
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT disposal_receipts_once UNIQUE (site_id, plate, received_at),
    CONSTRAINT disposal_receipts_not_self CHECK (replaces IS NULL OR replaces <> id)
);
CREATE INDEX IF NOT EXISTS disposal_receipts_plate_site
    ON disposal_receipts (plate, site_id, received_at);
CREATE INDEX IF NOT EXISTS disposal_receipts_received ON disposal_receipts (received_at);

CREATE OR REPLACE FUNCTION disposal_receipts_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'disposal_receipts is append-only: % refused (record a receipt that '
                    'replaces it)', TG_OP;
END $$;
DROP TRIGGER IF EXISTS disposal_receipts_no_change ON disposal_receipts;
CREATE TRIGGER disposal_receipts_no_change BEFORE UPDATE OR DELETE ON disposal_receipts
    FOR EACH ROW EXECUTE FUNCTION disposal_receipts_append_only();
DROP TRIGGER IF EXISTS disposal_receipts_no_truncate ON disposal_receipts;
CREATE TRIGGER disposal_receipts_no_truncate BEFORE TRUNCATE ON disposal_receipts
    FOR EACH STATEMENT EXECUTE FUNCTION disposal_receipts_append_only();

-- Which receipt confirms which manifest line. Kept up to date by triggers (a receipt
-- written, a trip's arrival written — in either order), never by hand: rematch_receipts()
-- recomputes the matching around a moment, rematch_all_receipts() everything.
CREATE TABLE IF NOT EXISTS receipt_matches (
    receipt_id    bigint PRIMARY KEY REFERENCES disposal_receipts (id),
    trip_id       text NOT NULL,
    trip_left_at  timestamptz NOT NULL,
    seconds       double precision NOT NULL,  -- received_at − arrived_at
    matched_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (trip_id, trip_left_at)
);

-- The matching window: a receipt may confirm an arrival of the same plate at the same site
-- from 30 minutes before it (the operator typed it before the pipeline saw the truck enter)
-- to 3 hours after it (a queue at the weighbridge, a receipt entered at the end of a shift).
CREATE OR REPLACE FUNCTION receipt_window_before() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '30 minutes' $$;
CREATE OR REPLACE FUNCTION receipt_window_after() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '3 hours' $$;

-- Indexes the matching and the manifest read.
CREATE INDEX IF NOT EXISTS trips_plate_destination_arrived
    ON trips (plate, destination, arrived_at) WHERE arrived_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS trips_device_left ON trips (device_id, left_at);
CREATE INDEX IF NOT EXISTS violations_trip_not_closed ON violations (device_id, start_ts)
    WHERE rule = 'TRIP_NOT_CLOSED';

-- Match the receipts and arrivals of one plate at one site around `around`, one to one,
-- nearest first: every candidate pair (a receipt from 30 min before to 3 h after an
-- arrival) in ascending |received_at − arrived_at| — a receipt after the arrival before one
-- as far before it, then the earlier receipt, then the earlier trip — is taken when neither
-- its receipt nor its trip is taken yet (greedy). Replaced receipts take no part.
-- Only the "island" around `around` is recomputed: the receipts and arrivals of the plate
-- at the site linked to it by gaps of at most 3 h (no candidate pair spans a larger gap), so
-- the result is the same as matching everything at once.
CREATE OR REPLACE FUNCTION rematch_receipts(p_plate text, p_site text, around timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    reach constant interval := greatest(receipt_window_before(), receipt_window_after());
    lo timestamptz := around;
    hi timestamptz := around;
    new_lo timestamptz;
    new_hi timestamptz;
    taken_r bigint[] := '{}';
    taken_t text[] := '{}';
    pair record;
BEGIN
    IF p_plate IS NULL OR p_site IS NULL OR around IS NULL THEN
        RETURN;
    END IF;
    -- one matcher per plate and site at a time (the API and the pipeline may race)
    PERFORM pg_advisory_xact_lock(hashtextextended('muckwatch.receipts:' || p_plate || '|'
                                                   || p_site, 0));
    LOOP
        SELECT least(min(e.ts), lo), greatest(max(e.ts), hi) INTO new_lo, new_hi FROM (
            SELECT r.received_at AS ts FROM disposal_receipts r
            WHERE r.plate = p_plate AND r.site_id = p_site
              AND r.received_at BETWEEN lo - reach AND hi + reach
            UNION ALL
            SELECT t.arrived_at FROM trips t
            WHERE t.plate = p_plate AND t.destination = p_site AND t.arrived_at IS NOT NULL
              AND t.arrived_at BETWEEN lo - reach AND hi + reach) e;
        EXIT WHEN new_lo IS NULL OR (new_lo = lo AND new_hi = hi);
        lo := new_lo;
        hi := new_hi;
    END LOOP;

    DELETE FROM receipt_matches m USING disposal_receipts r
    WHERE m.receipt_id = r.id AND r.plate = p_plate AND r.site_id = p_site
      AND r.received_at BETWEEN lo AND hi;
    DELETE FROM receipt_matches m USING trips t
    WHERE m.trip_id = t.id AND m.trip_left_at = t.left_at AND t.plate = p_plate
      AND t.destination = p_site AND t.arrived_at BETWEEN lo AND hi;

    FOR pair IN
        SELECT r.id AS receipt_id, t.id AS trip_id, t.left_at,
               extract(epoch FROM r.received_at - t.arrived_at) AS seconds
        FROM disposal_receipts r
        JOIN trips t ON t.plate = r.plate AND t.destination = r.site_id
                    AND t.arrived_at BETWEEN r.received_at - receipt_window_after()
                                         AND r.received_at + receipt_window_before()
        WHERE r.plate = p_plate AND r.site_id = p_site AND r.received_at BETWEEN lo AND hi
          AND NOT EXISTS (SELECT 1 FROM disposal_receipts n WHERE n.replaces = r.id)
        ORDER BY abs(extract(epoch FROM r.received_at - t.arrived_at)),
                 r.received_at < t.arrived_at, r.received_at, r.id, t.arrived_at, t.id
    LOOP
        CONTINUE WHEN pair.receipt_id = ANY(taken_r)
                   OR (pair.trip_id || '@' || pair.left_at::text) = ANY(taken_t);
        INSERT INTO receipt_matches (receipt_id, trip_id, trip_left_at, seconds)
        VALUES (pair.receipt_id, pair.trip_id, pair.left_at, pair.seconds);
        taken_r := taken_r || pair.receipt_id;
        taken_t := taken_t || (pair.trip_id || '@' || pair.left_at::text);
    END LOOP;
END $$;

-- Everything again (after a bulk load, or to check the kept matches): returns the number
-- of matches.
CREATE OR REPLACE FUNCTION rematch_all_receipts() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    g record;
BEGIN
    DELETE FROM receipt_matches;
    FOR g IN SELECT DISTINCT ON (plate, site_id, received_at) plate, site_id, received_at
             FROM disposal_receipts ORDER BY plate, site_id, received_at LOOP
        IF NOT EXISTS (SELECT 1 FROM receipt_matches m WHERE m.receipt_id IN (
                SELECT id FROM disposal_receipts r WHERE r.plate = g.plate
                  AND r.site_id = g.site_id AND r.received_at = g.received_at)) THEN
            PERFORM rematch_receipts(g.plate, g.site_id, g.received_at);
        END IF;
    END LOOP;
    RETURN (SELECT count(*) FROM receipt_matches);
END $$;

-- A receipt written (or one replaced): match again around it.
CREATE OR REPLACE FUNCTION disposal_receipts_match() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rematch_receipts(NEW.plate, NEW.site_id, NEW.received_at);
    IF NEW.replaces IS NOT NULL THEN
        PERFORM rematch_receipts(r.plate, r.site_id, r.received_at)
        FROM disposal_receipts r WHERE r.id = NEW.replaces;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS disposal_receipts_match ON disposal_receipts;
CREATE TRIGGER disposal_receipts_match AFTER INSERT ON disposal_receipts
    FOR EACH ROW EXECUTE FUNCTION disposal_receipts_match();

-- A trip's arrival written by the pipeline (or its plate / destination changed): match
-- again around it — this is what makes a receipt typed before the arrival was stored find
-- its line. Only when there is a receipt of the plate at the site to match.
CREATE OR REPLACE FUNCTION trips_match_receipts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.arrived_at IS NOT NULL
       AND EXISTS (SELECT 1 FROM disposal_receipts r
                   WHERE r.plate = OLD.plate AND r.site_id = OLD.destination) THEN
        PERFORM rematch_receipts(OLD.plate, OLD.destination, OLD.arrived_at);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.arrived_at IS NOT NULL
       AND EXISTS (SELECT 1 FROM disposal_receipts r
                   WHERE r.plate = NEW.plate AND r.site_id = NEW.destination) THEN
        PERFORM rematch_receipts(NEW.plate, NEW.destination, NEW.arrived_at);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS trips_match_receipts_insert ON trips;
CREATE TRIGGER trips_match_receipts_insert AFTER INSERT ON trips
    FOR EACH ROW WHEN (NEW.arrived_at IS NOT NULL)
    EXECUTE FUNCTION trips_match_receipts();
DROP TRIGGER IF EXISTS trips_match_receipts_update ON trips;
CREATE TRIGGER trips_match_receipts_update AFTER UPDATE ON trips
    FOR EACH ROW WHEN (OLD.arrived_at IS DISTINCT FROM NEW.arrived_at
                       OR OLD.destination IS DISTINCT FROM NEW.destination
                       OR OLD.plate IS DISTINCT FROM NEW.plate)
    EXECUTE FUNCTION trips_match_receipts();
DROP TRIGGER IF EXISTS trips_match_receipts_delete ON trips;
CREATE TRIGGER trips_match_receipts_delete AFTER DELETE ON trips
    FOR EACH ROW WHEN (OLD.arrived_at IS NOT NULL)
    EXECUTE FUNCTION trips_match_receipts();

-- The electronic manifest: one line per loaded leg (trip), with its receipt.
--   status  'received'    arrived, and a receipt confirms it
--           'arrived'     arrived at a disposal site / dock, no receipt (yet)
--           'not_closed'  no arrival, and TRIP_NOT_CLOSED was raised for the leg
--           'en_route'    no arrival (yet)
-- `not_closed_violation` names the TRIP_NOT_CLOSED violation of the leg (also when the
-- truck arrived late after it). security_invoker: a company's database role sees its own
-- lines through the row-level security of trips.
CREATE OR REPLACE VIEW manifest WITH (security_invoker = true) AS
    SELECT t.id AS trip_id, t.left_at, t.device_id, t.plate, t.company_id,
           c.name AS company_name, t.permit_id, coalesce(p.job, p.id) AS job, t.origin,
           t.transfers, t.destination, t.arrived_at, t.arrived_at - t.left_at AS duration,
           t.volume_m3, t.volume_source, t.load_kg, t.late,
           m.receipt_id, r.received_at AS receipt_received_at,
           r.volume_m3 AS receipt_volume_m3, r.recorded_by AS receipt_recorded_by,
           nc.id AS not_closed_violation,
           CASE WHEN m.receipt_id IS NOT NULL THEN 'received'
                WHEN t.arrived_at IS NOT NULL THEN 'arrived'
                WHEN nc.id IS NOT NULL THEN 'not_closed'
                ELSE 'en_route' END AS status
    FROM trips t
    LEFT JOIN companies c ON c.id = t.company_id
    LEFT JOIN permits p ON p.id = t.permit_id
    LEFT JOIN receipt_matches m ON m.trip_id = t.id AND m.trip_left_at = t.left_at
    LEFT JOIN disposal_receipts r ON r.id = m.receipt_id
    LEFT JOIN LATERAL (
        SELECT v.id FROM violations v
        WHERE v.rule = 'TRIP_NOT_CLOSED' AND v.device_id = t.device_id
          AND v.state <> 'retracted' AND v.start_ts >= t.left_at
          AND v.start_ts <= coalesce(t.arrived_at, (
                SELECT min(n.left_at) FROM trips n
                WHERE n.device_id = t.device_id AND n.left_at > t.left_at), 'infinity')
        ORDER BY v.start_ts LIMIT 1) nc ON true;

-- Every receipt with what it confirms:
--   state  'matched'    it confirms the manifest line trip_id / trip_left_at
--          'unmatched'  no arrival of the plate at the site in its window: a load the
--                       manifest cannot explain (or a truck whose terminal missed the site)
--          'replaced'   a later receipt replaces it (replaced_by); it counts for nothing
CREATE OR REPLACE VIEW manifest_receipts WITH (security_invoker = true) AS
    SELECT r.id, r.site_id, f.name AS site_name, f.kind AS site_kind, r.plate,
           v.company_id, r.received_at, r.volume_m3, r.note, r.replaces, n.id AS replaced_by,
           r.recorded_by, r.recorded_at,
           m.trip_id, m.trip_left_at, t.arrived_at, t.permit_id, coalesce(p.job, p.id) AS job,
           m.seconds AS seconds_after_arrival,
           CASE WHEN n.id IS NOT NULL THEN 'replaced'
                WHEN t.id IS NOT NULL THEN 'matched'
                ELSE 'unmatched' END AS state
    FROM disposal_receipts r
    LEFT JOIN fences f ON f.id = r.site_id
    LEFT JOIN vehicles v ON v.plate = r.plate
    LEFT JOIN disposal_receipts n ON n.replaces = r.id
    LEFT JOIN receipt_matches m ON m.receipt_id = r.id AND n.id IS NULL
    LEFT JOIN trips t ON t.id = m.trip_id AND t.left_at = m.trip_left_at
    LEFT JOIN permits p ON p.id = t.permit_id;

CREATE OR REPLACE VIEW unmatched_receipts WITH (security_invoker = true) AS
    SELECT id, site_id, site_name, plate, company_id, received_at, volume_m3, note,
           recorded_by, recorded_at
    FROM manifest_receipts WHERE state = 'unmatched';

-- Daily reconciliation per site, for the local day `day` in time zone `tz` (the city's):
-- one row per construction site, disposal site or transfer dock that had anything that day.
--   departures / departed_m3     legs that left it (as origin) that day, their estimated
--                                volume; departures_unknown_m3: how many had no estimate
--   not_closed                   of those, legs with TRIP_NOT_CLOSED and no arrival
--   transfers                    legs that entered it as a transfer dock on the way
--   arrivals / arrived_m3        legs that arrived there (as destination) that day
--   arrivals_received            of those, legs a receipt confirms (any day)
--   receipts / received_m3       receipts recorded for that day (replaced ones left out),
--                                the volume the operators stated
--   receipts_matched / _unmatched  of those, confirming a line / explaining none
CREATE OR REPLACE FUNCTION reconcile_sites(day date, tz text DEFAULT 'Asia/Shanghai')
RETURNS TABLE (site_id text, site_name text, kind text, departures bigint,
               departed_m3 numeric, departures_unknown_m3 bigint, not_closed bigint,
               transfers bigint, arrivals bigint, arrived_m3 numeric,
               arrivals_received bigint, receipts bigint, received_m3 numeric,
               receipts_matched bigint, receipts_unmatched bigint)
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        SELECT (reconcile_sites.day::timestamp AT TIME ZONE reconcile_sites.tz) AS lo,
               ((reconcile_sites.day + 1)::timestamp AT TIME ZONE reconcile_sites.tz) AS hi
    ), dep AS (
        SELECT m.origin AS site, count(*) AS n, sum(m.volume_m3) AS m3,
               count(*) FILTER (WHERE m.volume_m3 IS NULL) AS unknown,
               count(*) FILTER (WHERE m.status = 'not_closed') AS not_closed
        FROM manifest m, bounds b
        WHERE m.left_at >= b.lo AND m.left_at < b.hi AND m.origin IS NOT NULL
        GROUP BY 1
    ), arr AS (
        SELECT m.destination AS site, count(*) AS n, sum(m.volume_m3) AS m3,
               count(*) FILTER (WHERE m.receipt_id IS NOT NULL) AS received
        FROM manifest m, bounds b
        WHERE m.arrived_at >= b.lo AND m.arrived_at < b.hi AND m.destination IS NOT NULL
        GROUP BY 1
    ), tra AS (
        SELECT x->>'dock' AS site, count(*) AS n
        FROM trips t, bounds b, jsonb_array_elements(t.transfers) x
        WHERE t.left_at >= b.lo - interval '1 day' AND t.left_at < b.hi
          AND (x->>'entered_at')::timestamptz >= b.lo AND (x->>'entered_at')::timestamptz < b.hi
        GROUP BY 1
    ), rec AS (
        SELECT r.site_id AS site, count(*) AS n, sum(r.volume_m3) AS m3,
               count(*) FILTER (WHERE r.state = 'matched') AS matched,
               count(*) FILTER (WHERE r.state = 'unmatched') AS unmatched
        FROM manifest_receipts r, bounds b
        WHERE r.received_at >= b.lo AND r.received_at < b.hi AND r.state <> 'replaced'
        GROUP BY 1
    ), sites AS (
        SELECT site FROM dep UNION SELECT site FROM arr UNION SELECT site FROM tra
        UNION SELECT site FROM rec
    )
    SELECT s.site, f.name, f.kind,
           coalesce(dep.n, 0), coalesce(dep.m3, 0), coalesce(dep.unknown, 0),
           coalesce(dep.not_closed, 0), coalesce(tra.n, 0),
           coalesce(arr.n, 0), coalesce(arr.m3, 0), coalesce(arr.received, 0),
           coalesce(rec.n, 0), coalesce(rec.m3, 0), coalesce(rec.matched, 0),
           coalesce(rec.unmatched, 0)
    FROM sites s
    LEFT JOIN fences f ON f.id = s.site
    LEFT JOIN dep ON dep.site = s.site
    LEFT JOIN arr ON arr.site = s.site
    LEFT JOIN tra ON tra.site = s.site
    LEFT JOIN rec ON rec.site = s.site
    ORDER BY s.site
$$;

-- Daily reconciliation per job (one application's permits, or a bundle permit): one row
-- per job with a departure, an arrival or a confirmed receipt on the local day `day`.
--   departures / departed_m3 / departures_unknown_m3 / not_closed   as per site
--   arrivals / arrived_m3, receipts (confirming the job's lines) / received_m3   that day
--   declared_m3        the job's declared volume (NULL: none declared)
--   hauled_to_date_m3  estimated volume of every departure of the job up to the day's end
--   remaining_m3       declared − hauled to date (negative: over the declared volume, where
--                      PERMIT_VOLUME_EXCEEDED fired)
CREATE OR REPLACE FUNCTION reconcile_jobs(day date, tz text DEFAULT 'Asia/Shanghai')
RETURNS TABLE (job text, company_id text, permits bigint, declared_m3 numeric,
               departures bigint, departed_m3 numeric, departures_unknown_m3 bigint,
               not_closed bigint, arrivals bigint, arrived_m3 numeric, receipts bigint,
               received_m3 numeric, hauled_to_date_m3 numeric, remaining_m3 numeric)
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        SELECT (reconcile_jobs.day::timestamp AT TIME ZONE reconcile_jobs.tz) AS lo,
               ((reconcile_jobs.day + 1)::timestamp AT TIME ZONE reconcile_jobs.tz) AS hi
    ), jobs AS (
        SELECT coalesce(p.job, p.id) AS job, min(p.company_id) AS company_id,
               count(*) AS permits, max(p.declared_volume_m3) AS declared_m3
        FROM permits p GROUP BY 1
    ), dep AS (
        SELECT m.job, count(*) AS n, sum(m.volume_m3) AS m3,
               count(*) FILTER (WHERE m.volume_m3 IS NULL) AS unknown,
               count(*) FILTER (WHERE m.status = 'not_closed') AS not_closed
        FROM manifest m, bounds b
        WHERE m.left_at >= b.lo AND m.left_at < b.hi AND m.job IS NOT NULL
        GROUP BY 1
    ), arr AS (
        SELECT m.job, count(*) AS n, sum(m.volume_m3) AS m3
        FROM manifest m, bounds b
        WHERE m.arrived_at >= b.lo AND m.arrived_at < b.hi AND m.job IS NOT NULL
        GROUP BY 1
    ), rec AS (
        SELECT m.job, count(*) AS n, sum(m.receipt_volume_m3) AS m3
        FROM manifest m, bounds b
        WHERE m.receipt_received_at >= b.lo AND m.receipt_received_at < b.hi
          AND m.job IS NOT NULL
        GROUP BY 1
    ), active AS (
        SELECT dep.job FROM dep UNION SELECT arr.job FROM arr UNION SELECT rec.job FROM rec
    ), hauled AS (
        SELECT coalesce(p.job, p.id) AS job, sum(t.volume_m3) AS m3
        FROM trips t JOIN permits p ON p.id = t.permit_id, bounds b
        WHERE coalesce(p.job, p.id) IN (SELECT a.job FROM active a) AND t.left_at < b.hi
        GROUP BY 1
    )
    SELECT a.job, j.company_id, coalesce(j.permits, 0), j.declared_m3,
           coalesce(dep.n, 0), coalesce(dep.m3, 0), coalesce(dep.unknown, 0),
           coalesce(dep.not_closed, 0), coalesce(arr.n, 0), coalesce(arr.m3, 0),
           coalesce(rec.n, 0), coalesce(rec.m3, 0), coalesce(hauled.m3, 0),
           j.declared_m3 - coalesce(hauled.m3, 0)
    FROM active a
    LEFT JOIN jobs j ON j.job = a.job
    LEFT JOIN dep ON dep.job = a.job
    LEFT JOIN arr ON arr.job = a.job
    LEFT JOIN rec ON rec.job = a.job
    LEFT JOIN hauled ON hauled.job = a.job
    ORDER BY a.job
$$;

GRANT SELECT ON disposal_receipts, receipt_matches, manifest, manifest_receipts,
                unmatched_receipts TO muckwatch_analyst;
GRANT EXECUTE ON FUNCTION reconcile_sites(date, text), reconcile_jobs(date, text),
                          receipt_window_before(), receipt_window_after()
    TO muckwatch_analyst;
-- a company's database role: its own trucks' receipts and their matches (row-level
-- security), and so its own manifest lines and receipts through the views
GRANT SELECT ON disposal_receipts, receipt_matches, manifest, manifest_receipts,
                unmatched_receipts TO muckwatch_company;
ALTER TABLE disposal_receipts ENABLE ROW LEVEL SECURITY;
ALTER TABLE receipt_matches ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS analyst_reads_all ON disposal_receipts;
CREATE POLICY analyst_reads_all ON disposal_receipts FOR SELECT TO muckwatch_analyst
    USING (true);
DROP POLICY IF EXISTS analyst_reads_all ON receipt_matches;
CREATE POLICY analyst_reads_all ON receipt_matches FOR SELECT TO muckwatch_analyst
    USING (true);
DROP POLICY IF EXISTS own_company ON disposal_receipts;
CREATE POLICY own_company ON disposal_receipts FOR SELECT TO muckwatch_company
    USING (plate IN (SELECT plate FROM vehicles WHERE company_id = current_company()));
DROP POLICY IF EXISTS own_company ON receipt_matches;
CREATE POLICY own_company ON receipt_matches FOR SELECT TO muckwatch_company
    USING (receipt_id IN (SELECT id FROM disposal_receipts));
