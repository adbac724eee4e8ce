-- Credit scoring (诚信评定), the analysts' daily view, and access roles.

-- Deduction points per violation by rule and severity: the scoring table. Edit it with SQL;
-- scores are recomputed from violations, so a change applies to the whole window.
CREATE TABLE IF NOT EXISTS score_deductions (
    rule      text NOT NULL,
    severity  smallint NOT NULL CHECK (severity BETWEEN 1 AND 3),
    points    numeric NOT NULL CHECK (points >= 0),
    PRIMARY KEY (rule, severity)
);
INSERT INTO score_deductions (rule, severity, points) VALUES
    ('UNAUTHORISED_DUMP', 1, 10), ('UNAUTHORISED_DUMP', 2, 15), ('UNAUTHORISED_DUMP', 3, 20),
    ('NO_PERMIT', 1, 6), ('NO_PERMIT', 2, 8), ('NO_PERMIT', 3, 10),
    ('OFF_ROUTE', 1, 3), ('OFF_ROUTE', 2, 5), ('OFF_ROUTE', 3, 8),
    ('RESTRICTED_ZONE', 1, 3), ('RESTRICTED_ZONE', 2, 5), ('RESTRICTED_ZONE', 3, 8),
    ('UNCOVERED_LOAD', 1, 2), ('UNCOVERED_LOAD', 2, 4), ('UNCOVERED_LOAD', 3, 6),
    ('SIGNAL_LOSS', 1, 2), ('SIGNAL_LOSS', 2, 4), ('SIGNAL_LOSS', 3, 6),
    ('OVERSPEED', 1, 1), ('OVERSPEED', 2, 2), ('OVERSPEED', 3, 4)
ON CONFLICT (rule, severity) DO NOTHING;

-- Grade cut-offs: A ≥ 90, B ≥ 80, C ≥ 60, D below.
CREATE OR REPLACE FUNCTION score_grade(score numeric) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN score >= 90 THEN 'A' WHEN score >= 80 THEN 'B'
                WHEN score >= 60 THEN 'C' ELSE 'D' END
$$;

-- Violations that count: not retracted, started in the 365 days up to as_of.
CREATE OR REPLACE FUNCTION scored_violations(as_of timestamptz)
RETURNS TABLE (id text, rule text, severity smallint, device_id text, plate text,
               company_id text, start_ts timestamptz, points numeric)
LANGUAGE sql STABLE AS $$
    SELECT v.id, v.rule, v.severity, v.device_id, coalesce(v.plate, ve.plate),
           coalesce(v.company_id, ve.company_id), v.start_ts, coalesce(d.points, 0)
    FROM violations v
    LEFT JOIN vehicles ve ON ve.device_id = v.device_id
    LEFT JOIN score_deductions d ON d.rule = v.rule AND d.severity = v.severity
    WHERE v.state <> 'retracted'
      AND v.start_ts > as_of - interval '365 days' AND v.start_ts <= as_of
$$;

-- Company score: 100 minus deductions per ten vehicles, so a large fleet is not punished for
-- its size (one grave dump a year per ten trucks → 80, grade B). Floor 0.
CREATE OR REPLACE FUNCTION company_scores(as_of timestamptz DEFAULT now())
RETURNS TABLE (company_id text, name text, vehicles bigint, violations bigint,
               deductions numeric, score numeric, grade text)
LANGUAGE sql STABLE AS $$
    WITH fleet AS (SELECT c.id, c.name, count(ve.plate) AS vehicles
                   FROM companies c LEFT JOIN vehicles ve ON ve.company_id = c.id
                   GROUP BY c.id, c.name),
         hits AS (SELECT s.company_id, count(*) AS violations, sum(s.points) AS deductions
                  FROM scored_violations(as_of) s GROUP BY s.company_id)
    SELECT f.id, f.name, f.vehicles, coalesce(h.violations, 0), coalesce(h.deductions, 0),
           round(greatest(0, 100 - 10 * coalesce(h.deductions, 0) / greatest(f.vehicles, 1)), 1),
           score_grade(round(greatest(0, 100 - 10 * coalesce(h.deductions, 0)
                                         / greatest(f.vehicles, 1)), 1))
    FROM fleet f LEFT JOIN hits h ON h.company_id = f.id
$$;

-- Vehicle (and so driver) score: 100 minus its own deductions. Floor 0.
CREATE OR REPLACE FUNCTION vehicle_scores(as_of timestamptz DEFAULT now())
RETURNS TABLE (plate text, device_id text, company_id text, violations bigint,
               deductions numeric, score numeric, grade text)
LANGUAGE sql STABLE AS $$
    SELECT ve.plate, ve.device_id, ve.company_id, count(s.id), coalesce(sum(s.points), 0),
           greatest(0, 100 - coalesce(sum(s.points), 0)),
           score_grade(greatest(0, 100 - coalesce(sum(s.points), 0)))
    FROM vehicles ve LEFT JOIN scored_violations(as_of) s ON s.device_id = ve.device_id
    GROUP BY ve.plate, ve.device_id, ve.company_id
$$;

CREATE OR REPLACE VIEW company_scores_now AS SELECT * FROM company_scores(now());
CREATE OR REPLACE VIEW vehicle_scores_now AS SELECT * FROM vehicle_scores(now());

-- Daily snapshots (muckwatch scores snapshot): the score history analysts chart.
CREATE TABLE IF NOT EXISTS score_snapshots (
    day          date NOT NULL,
    subject      text NOT NULL CHECK (subject IN ('company', 'vehicle')),
    subject_id   text NOT NULL,
    company_id   text,
    violations   bigint NOT NULL,
    deductions   numeric NOT NULL,
    score        numeric NOT NULL,
    grade        text NOT NULL,
    PRIMARY KEY (day, subject, subject_id)
);

-- Violations per company per day and rule. With TimescaleDB this is a continuous aggregate
-- (0003_scoring_roles.timescale.sql); here a plain view with the same name and columns.
CREATE OR REPLACE VIEW violations_daily AS
    SELECT date_trunc('day', start_ts) AS day, company_id, rule, count(*) AS violations
    FROM violations WHERE state <> 'retracted'
    GROUP BY 1, 2, 3;

-- Access. muckwatch_analyst reads everything and writes nothing; members of
-- muckwatch_company see only their company's vehicles, permits, trips and violations
-- (row-level security; which company is looked up in company_accounts by role name) and
-- their vehicles' fixes through the view company_telemetry — not through telemetry itself,
-- because TimescaleDB cannot compress a table with row-level security.
CREATE TABLE IF NOT EXISTS company_accounts (
    role_name   text PRIMARY KEY,
    company_id  text NOT NULL REFERENCES companies (id)
);

DO $$
DECLARE
    may_create boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles
                           WHERE rolname = current_user);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'muckwatch_analyst') THEN
        IF NOT may_create THEN
            RAISE EXCEPTION 'migration 0003 needs the roles muckwatch_analyst and '
                'muckwatch_company: migrate as a user with CREATEROLE, or have an admin run '
                '"CREATE ROLE muckwatch_analyst LOGIN; CREATE ROLE muckwatch_company NOLOGIN;"';
        END IF;
        CREATE ROLE muckwatch_analyst LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'muckwatch_company') THEN
        IF NOT may_create THEN
            RAISE EXCEPTION 'migration 0003 needs the role muckwatch_company (CREATEROLE)';
        END IF;
        CREATE ROLE muckwatch_company NOLOGIN;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO muckwatch_analyst, muckwatch_company;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO muckwatch_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO muckwatch_analyst;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO muckwatch_analyst, muckwatch_company;
GRANT SELECT ON companies, vehicles, trips, violations, fences, permits,
                score_deductions, company_accounts TO muckwatch_company;

CREATE OR REPLACE FUNCTION current_company() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT company_id FROM company_accounts WHERE role_name = current_user
$$;

ALTER TABLE vehicles ENABLE ROW LEVEL SECURITY;
ALTER TABLE trips ENABLE ROW LEVEL SECURITY;
ALTER TABLE violations ENABLE ROW LEVEL SECURITY;
ALTER TABLE permits ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS analyst_reads_all ON vehicles;
CREATE POLICY analyst_reads_all ON vehicles FOR SELECT TO muckwatch_analyst USING (true);
DROP POLICY IF EXISTS analyst_reads_all ON trips;
CREATE POLICY analyst_reads_all ON trips FOR SELECT TO muckwatch_analyst USING (true);
DROP POLICY IF EXISTS analyst_reads_all ON violations;
CREATE POLICY analyst_reads_all ON violations FOR SELECT TO muckwatch_analyst USING (true);
DROP POLICY IF EXISTS analyst_reads_all ON permits;
CREATE POLICY analyst_reads_all ON permits FOR SELECT TO muckwatch_analyst USING (true);

DROP POLICY IF EXISTS own_company ON vehicles;
CREATE POLICY own_company ON vehicles FOR SELECT TO muckwatch_company
    USING (company_id = current_company());
DROP POLICY IF EXISTS own_company ON trips;
CREATE POLICY own_company ON trips FOR SELECT TO muckwatch_company
    USING (company_id = current_company());
DROP POLICY IF EXISTS own_company ON violations;
CREATE POLICY own_company ON violations FOR SELECT TO muckwatch_company
    USING (company_id = current_company());
DROP POLICY IF EXISTS own_company ON permits;
CREATE POLICY own_company ON permits FOR SELECT TO muckwatch_company
    USING (plate IN (SELECT plate FROM vehicles WHERE company_id = current_company()));

-- A company's own fixes. The view runs with its owner's rights (so it can read telemetry)
-- and filters by the caller's company; security_barrier keeps the filter first.
CREATE OR REPLACE VIEW company_telemetry WITH (security_barrier) AS
    SELECT t.*
    FROM telemetry t
    WHERE t.device_id IN (SELECT v.device_id FROM vehicles v
                          WHERE v.company_id = current_company());
GRANT SELECT ON company_telemetry TO muckwatch_company, muckwatch_analyst;
