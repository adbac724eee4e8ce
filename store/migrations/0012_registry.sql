-- The registry (issue #22): sites have a status (open / closed / full), a capacity and a
-- licence expiry — a closed or full disposal site, or one whose licence has expired, is no
-- allowed destination; vehicles have a rated load, a volume, a type and an inspection
-- expiry; companies a licence number and expiry. docs/permits.md, "Registry".
--
-- Plain SQL for PostgreSQL and TimescaleDB; every statement may run again (idempotent).

-- Sites. `status` is the last decision (API or import) and `status_from` when it takes
-- effect; what holds at an instant is site_status_at() below, from the history.
-- Only meaningful for construction sites, disposal sites and transfer docks.
ALTER TABLE fences ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'open';
ALTER TABLE fences ADD COLUMN IF NOT EXISTS status_from timestamptz;
ALTER TABLE fences ADD COLUMN IF NOT EXISTS capacity_m3 numeric;
ALTER TABLE fences ADD COLUMN IF NOT EXISTS licence_expires date;  -- valid through this day
ALTER TABLE fences DROP CONSTRAINT IF EXISTS fences_status_check;
ALTER TABLE fences ADD CONSTRAINT fences_status_check
    CHECK (status IN ('open', 'closed', 'full'));
ALTER TABLE fences DROP CONSTRAINT IF EXISTS fences_capacity_check;
ALTER TABLE fences ADD CONSTRAINT fences_capacity_check
    CHECK (capacity_m3 IS NULL OR capacity_m3 > 0);

-- Status history: a change holds from `from_ts` until the next change of the same site (by
-- from_ts, then id: of two changes with the same from_ts the later one wins). Rows are never
-- deleted, so "was site S open at device time t" stays answerable for any past t.
CREATE TABLE IF NOT EXISTS site_status_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     text NOT NULL REFERENCES fences (id),
    status      text NOT NULL CHECK (status IN ('open', 'closed', 'full')),
    from_ts     timestamptz NOT NULL,
    reason      text,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS site_status_changes_site
    ON site_status_changes (site_id, from_ts, id);

-- Vehicles and companies.
ALTER TABLE vehicles ADD COLUMN IF NOT EXISTS rated_load_kg real;
ALTER TABLE vehicles ADD COLUMN IF NOT EXISTS volume_m3 real;
ALTER TABLE vehicles ADD COLUMN IF NOT EXISTS vehicle_type text;
ALTER TABLE vehicles ADD COLUMN IF NOT EXISTS inspection_expires date;  -- valid through
ALTER TABLE vehicles DROP CONSTRAINT IF EXISTS vehicles_registry_check;
ALTER TABLE vehicles ADD CONSTRAINT vehicles_registry_check
    CHECK ((rated_load_kg IS NULL OR rated_load_kg > 0) AND (volume_m3 IS NULL OR volume_m3 > 0));
ALTER TABLE companies ADD COLUMN IF NOT EXISTS licence_no text;
ALTER TABLE companies ADD COLUMN IF NOT EXISTS licence_expires date;  -- valid through

-- The state of a site at instant `at` (device time for the pipeline, now() for people):
--   'closed' / 'full'   the latest change at or before `at` says so
--   'licence_expired'   otherwise, when the local date of `at` (time zone `tz`) is after
--                       licence_expires: a licence is valid through its expiry day
--   'open'              otherwise (also a site that never had a change)
-- NULL for an unknown fence.
CREATE OR REPLACE FUNCTION site_status_at(site_id text, at timestamptz,
                                          tz text DEFAULT 'Asia/Shanghai')
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN s.status IN ('closed', 'full') THEN s.status
        WHEN f.licence_expires IS NOT NULL
             AND (site_status_at.at AT TIME ZONE site_status_at.tz)::date > f.licence_expires
            THEN 'licence_expired'
        ELSE 'open'
    END
    FROM fences f
    LEFT JOIN LATERAL (
        SELECT c.status FROM site_status_changes c
        WHERE c.site_id = f.id AND c.from_ts <= site_status_at.at
        ORDER BY c.from_ts DESC, c.id DESC LIMIT 1) s ON true
    WHERE f.id = site_status_at.site_id
$$;

-- May spoil be received at site S at instant `at`: true unless the latest change at or
-- before `at` says closed or full, or its licence has expired by then. False for an unknown
-- fence.
CREATE OR REPLACE FUNCTION site_open_at(site_id text, at timestamptz,
                                        tz text DEFAULT 'Asia/Shanghai')
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(site_status_at(site_id, at, tz) = 'open', false)
$$;

-- Every site with its registry columns and its state now (time zone Asia/Shanghai).
CREATE OR REPLACE VIEW site_states AS
    SELECT f.id, f.kind, f.name, f.status, f.status_from, f.capacity_m3, f.licence_expires,
           site_status_at(f.id, now()) AS current_status
    FROM fences f
    WHERE f.kind IN ('construction_site', 'disposal_site', 'transfer_dock');

GRANT SELECT ON site_status_changes, site_states TO muckwatch_analyst;
GRANT SELECT ON site_status_changes TO muckwatch_company;

-- The running ingest follows site changes too (migration 0011's notify_reference_change).
DROP TRIGGER IF EXISTS reference_changed ON site_status_changes;
CREATE TRIGGER reference_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON site_status_changes FOR EACH STATEMENT EXECUTE FUNCTION notify_reference_change();
DROP TRIGGER IF EXISTS reference_changed ON companies;
CREATE TRIGGER reference_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON companies
    FOR EACH STATEMENT EXECUTE FUNCTION notify_reference_change();
