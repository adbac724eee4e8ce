-- Permits with a life cycle (issue #22, 出土申报 → 核准): a company applies, an officer
-- approves (after the checks of the permits package) or rejects with a reason; an approved
-- application becomes one permit per plate, which an officer may suspend, resume or revoke,
-- and which expires when its validity ends. docs/permits.md.
--
-- Plain SQL for PostgreSQL and TimescaleDB; every statement may run again (idempotent).

-- Applications (出土申报). The route is stored in WGS-84, converted at submission from the
-- system the company drew it in (route_crs); route_submitted keeps what was sent.
CREATE TABLE IF NOT EXISTS permit_applications (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id          text NOT NULL REFERENCES companies (id),
    origin              text NOT NULL,
    destinations        text[] NOT NULL CHECK (cardinality(destinations) > 0),
    plates              text[] NOT NULL CHECK (cardinality(plates) > 0),
    route               jsonb NOT NULL,  -- GeoJSON LineString, WGS-84
    route_crs           text NOT NULL CHECK (route_crs IN ('wgs84', 'gcj02', 'bd09')),
    route_submitted     jsonb NOT NULL,  -- the LineString as sent, in route_crs
    corridor_m          real NOT NULL CHECK (corridor_m > 0),
    hours               text,  -- "HH:MM-HH:MM" local time; NULL = any hour
    valid_from          timestamptz NOT NULL,
    valid_to            timestamptz NOT NULL,
    declared_volume_m3  numeric NOT NULL CHECK (declared_volume_m3 > 0),
    status              text NOT NULL DEFAULT 'applied'
                        CHECK (status IN ('applied', 'approved', 'rejected', 'withdrawn')),
    submitted_by        text NOT NULL,
    submitted_at        timestamptz NOT NULL DEFAULT now(),
    decided_by          text,
    decided_at          timestamptz,
    decision_reason     text,
    check_report        jsonb,  -- the last run of the checks (at submission, then approval)
    checked_at          timestamptz,
    CONSTRAINT permit_applications_validity CHECK (valid_to > valid_from),
    CONSTRAINT permit_applications_decided CHECK
        ((status = 'applied') = (decided_at IS NULL)),
    CONSTRAINT permit_applications_rejected_reason CHECK
        (status <> 'rejected' OR coalesce(btrim(decision_reason), '') <> '')
);
CREATE INDEX IF NOT EXISTS permit_applications_status
    ON permit_applications (status, submitted_at);
CREATE INDEX IF NOT EXISTS permit_applications_company
    ON permit_applications (company_id, submitted_at);

-- Permits: the bundle's (imported, status 'active') and the approved applications' (one row
-- per plate, id 'A<application id>-<plate>'). The stored status is the last administrative
-- decision; what holds at an instant is permit_status_at() below.
ALTER TABLE permits ADD COLUMN IF NOT EXISTS application_id bigint
    REFERENCES permit_applications (id);
ALTER TABLE permits ADD COLUMN IF NOT EXISTS company_id text;
ALTER TABLE permits ADD COLUMN IF NOT EXISTS declared_volume_m3 numeric;
ALTER TABLE permits ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'active';
-- when the current status took (or takes) effect: for 'revoked' the moment the permit stops
-- applying, for 'suspended' the start of the suspension, for 'expired' valid_to
ALTER TABLE permits ADD COLUMN IF NOT EXISTS status_changed_at timestamptz;
ALTER TABLE permits ADD COLUMN IF NOT EXISTS status_reason text;
ALTER TABLE permits ADD COLUMN IF NOT EXISTS status_changed_by text;
ALTER TABLE permits ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE permits DROP CONSTRAINT IF EXISTS permits_status_check;
ALTER TABLE permits ADD CONSTRAINT permits_status_check
    CHECK (status IN ('active', 'suspended', 'revoked', 'expired'));
ALTER TABLE permits DROP CONSTRAINT IF EXISTS permits_revoked_when;
ALTER TABLE permits ADD CONSTRAINT permits_revoked_when
    CHECK (status <> 'revoked' OR status_changed_at IS NOT NULL);
CREATE INDEX IF NOT EXISTS permits_company ON permits (company_id, status);
CREATE INDEX IF NOT EXISTS permits_application ON permits (application_id);
UPDATE permits p SET company_id = v.company_id
FROM vehicles v WHERE v.plate = p.plate AND p.company_id IS NULL;

-- Suspensions (暂停): [from_ts, to_ts), to_ts NULL = until resumed. Rows are never deleted:
-- resuming sets to_ts, so the history answers "was P suspended at device time t".
CREATE TABLE IF NOT EXISTS permit_suspensions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    permit_id   text NOT NULL REFERENCES permits (id),
    from_ts     timestamptz NOT NULL,
    to_ts       timestamptz,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resumed_by  text,
    resumed_at  timestamptz,
    CONSTRAINT permit_suspensions_order CHECK (to_ts IS NULL OR to_ts >= from_ts)
);
CREATE INDEX IF NOT EXISTS permit_suspensions_permit ON permit_suspensions (permit_id, from_ts);

-- The state of a permit at instant `at` (device time for the pipeline, now() for people):
--   'revoked'   at or after the revocation's effective time
--   'expired'   after valid_to (valid_from and valid_to are both inclusive, docs/city.md)
--   'pending'   before valid_from (approved, not yet valid)
--   'suspended' inside a suspension [from_ts, to_ts)
--   'active'    otherwise
-- NULL for an unknown permit. The daily `hours` window is not part of it (permit_in_hours).
CREATE OR REPLACE FUNCTION permit_status_at(permit_id text, at timestamptz)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p.status = 'revoked' AND at >= p.status_changed_at THEN 'revoked'
        WHEN at > p.valid_to THEN 'expired'
        WHEN at < p.valid_from THEN 'pending'
        WHEN EXISTS (SELECT 1 FROM permit_suspensions s
                     WHERE s.permit_id = p.id AND s.from_ts <= at
                       AND (s.to_ts IS NULL OR at < s.to_ts)) THEN 'suspended'
        ELSE 'active'
    END
    FROM permits p WHERE p.id = permit_status_at.permit_id
$$;

-- Is permit P valid at instant `at`: inside its validity, not revoked by then, not
-- suspended then. False for an unknown permit. The question the pipeline asks per fix, by
-- device time; the daily hours are asked separately (permit_in_hours).
CREATE OR REPLACE FUNCTION permit_valid_at(permit_id text, at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(permit_status_at(permit_id, at) = 'active', false)
$$;

-- Is `at` inside the permit's daily hours ("HH:MM-HH:MM", local time of `tz`; an end before
-- the start crosses midnight; NULL hours = any hour). NULL for an unknown permit.
CREATE OR REPLACE FUNCTION permit_in_hours(permit_id text, at timestamptz,
                                           tz text DEFAULT 'Asia/Shanghai')
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p.hours IS NULL THEN true
        WHEN split_part(p.hours, '-', 1) = split_part(p.hours, '-', 2) THEN false
        WHEN split_part(p.hours, '-', 1) < split_part(p.hours, '-', 2)
            THEN to_char(at AT TIME ZONE tz, 'HH24:MI') >= split_part(p.hours, '-', 1)
             AND to_char(at AT TIME ZONE tz, 'HH24:MI') < split_part(p.hours, '-', 2)
        ELSE to_char(at AT TIME ZONE tz, 'HH24:MI') >= split_part(p.hours, '-', 1)
          OR to_char(at AT TIME ZONE tz, 'HH24:MI') < split_part(p.hours, '-', 2)
    END
    FROM permits p WHERE p.id = permit_in_hours.permit_id
$$;

-- Every permit with its state now, derived (no cron needed): 'expired' shows as soon as
-- valid_to passed, a lapsed suspension shows 'active', whatever the stored status says.
CREATE OR REPLACE VIEW permit_states AS
    SELECT p.id, p.application_id, p.plate, p.company_id, p.origin, p.destinations,
           p.corridor_m, p.hours, p.valid_from, p.valid_to, p.declared_volume_m3, p.status,
           p.status_changed_at, p.status_reason, p.status_changed_by,
           permit_status_at(p.id, now()) AS current_status
    FROM permits p;

-- The stored status catches up with time (`muckwatch permits expire`; the views do not need
-- it): 'active' / 'suspended' permits whose valid_to has passed become 'expired'. Returns
-- the permits changed and their status before.
CREATE OR REPLACE FUNCTION expire_permits(at timestamptz)
RETURNS TABLE (permit_id text, status_before text)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT id, status FROM permits
        WHERE status IN ('active', 'suspended') AND valid_to < at
        FOR UPDATE
    ), changed AS (
        UPDATE permits p SET status = 'expired', status_changed_at = p.valid_to,
                             status_reason = 'validity ended', status_changed_by = 'system'
        FROM due WHERE p.id = due.id
        RETURNING p.id, due.status
    )
    SELECT id, status FROM changed ORDER BY id
$$;

-- Analysts read everything (default privileges of 0003); a company's role reads its own
-- applications and the suspensions of its own permits (row-level security below). The view
-- runs with its owner's rights, so it is the analysts' only.
GRANT SELECT ON permit_applications, permit_suspensions, permit_states TO muckwatch_analyst;
GRANT SELECT ON permit_applications, permit_suspensions TO muckwatch_company;
ALTER TABLE permit_applications ENABLE ROW LEVEL SECURITY;
ALTER TABLE permit_suspensions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS analyst_reads_all ON permit_applications;
CREATE POLICY analyst_reads_all ON permit_applications FOR SELECT TO muckwatch_analyst
    USING (true);
DROP POLICY IF EXISTS own_company ON permit_applications;
CREATE POLICY own_company ON permit_applications FOR SELECT TO muckwatch_company
    USING (company_id = current_company());
DROP POLICY IF EXISTS analyst_reads_all ON permit_suspensions;
CREATE POLICY analyst_reads_all ON permit_suspensions FOR SELECT TO muckwatch_analyst
    USING (true);
DROP POLICY IF EXISTS own_company ON permit_suspensions;
CREATE POLICY own_company ON permit_suspensions FOR SELECT TO muckwatch_company
    USING (permit_id IN (SELECT id FROM permits));  -- permits' own policy: the company's
