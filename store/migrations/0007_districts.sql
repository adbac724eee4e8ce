-- Districts (issue #21): officers, review queues and case statistics are scoped to districts
-- (片区). A district is a fence of kind 'district' in the city bundle (docs/city.md) — an
-- administrative area, never judged by the rules — imported into fences like any fence, and
-- its outline into district_areas as PostgreSQL's built-in polygon type (no PostGIS needed),
-- so every violation can be tagged with the district it started in.

ALTER TABLE fences DROP CONSTRAINT IF EXISTS fences_kind_check;
ALTER TABLE fences ADD CONSTRAINT fences_kind_check
    CHECK (kind IN ('construction_site', 'disposal_site', 'transfer_dock', 'restricted_zone',
                    'district'));

-- One row per polygon part of a district, exterior ring only: holes are ignored for the
-- district lookup. Rewritten by `muckwatch import city` (store/reference.py).
CREATE TABLE IF NOT EXISTS district_areas (
    district_id  text NOT NULL,
    part         int NOT NULL,
    area         polygon NOT NULL,  -- WGS-84, x = longitude, y = latitude
    PRIMARY KEY (district_id, part)
);

-- The district whose area contains the point (borders included); where districts overlap or
-- share a border, the lowest id (compared byte by byte); NULL outside every district.
CREATE OR REPLACE FUNCTION district_at(lon double precision, lat double precision)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT district_id FROM district_areas
    WHERE area @> point(lon, lat)
    ORDER BY district_id COLLATE "C"
    LIMIT 1
$$;

-- Each violation's district: where it started, set when the row is first written.
ALTER TABLE violations ADD COLUMN IF NOT EXISTS district_id text;
CREATE INDEX IF NOT EXISTS violations_district_start ON violations (district_id, start_ts);

CREATE OR REPLACE FUNCTION violation_district() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.district_id IS NULL THEN
        NEW.district_id := district_at(NEW.start_lon, NEW.start_lat);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS violations_district ON violations;
CREATE TRIGGER violations_district BEFORE INSERT ON violations
    FOR EACH ROW EXECUTE FUNCTION violation_district();

-- After districts are (re)imported: recompute every violation's district from its start
-- point; returns the number of rows whose district changed (updated_at is left alone: the
-- violation itself did not change).
CREATE OR REPLACE FUNCTION assign_violation_districts() RETURNS bigint
LANGUAGE sql AS $$
    WITH fresh AS (
        SELECT id, start_ts, district_at(start_lon, start_lat) AS district_id
        FROM violations
    ), changed AS (
        UPDATE violations v SET district_id = f.district_id
        FROM fresh f
        WHERE v.id = f.id AND v.start_ts = f.start_ts
          AND v.district_id IS DISTINCT FROM f.district_id
        RETURNING 1
    )
    SELECT count(*) FROM changed
$$;

GRANT SELECT ON district_areas TO muckwatch_analyst, muckwatch_company;
