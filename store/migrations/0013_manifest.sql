-- The manifest (电子联单, issue #22): every loaded leg is a row of trips — vehicle, permit,
-- origin and departure, the transfer docks it passed, destination and arrival — and now
-- also the load's estimated volume (weighed load / density, or the vehicle's rated volume;
-- docs/rules.md PERMIT_VOLUME_EXCEEDED), how it was estimated and the weighed load at
-- departure.
ALTER TABLE trips ADD COLUMN IF NOT EXISTS volume_m3 numeric;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS volume_source text;
ALTER TABLE trips ADD COLUMN IF NOT EXISTS load_kg real;
-- [{"dock": id, "entered_at": ts, "left_at": ts|null}, …] in the order passed
ALTER TABLE trips ADD COLUMN IF NOT EXISTS transfers jsonb NOT NULL DEFAULT '[]'::jsonb;
ALTER TABLE trips DROP CONSTRAINT IF EXISTS trips_volume_source_check;
ALTER TABLE trips ADD CONSTRAINT trips_volume_source_check
    CHECK (volume_source IS NULL OR volume_source IN ('load_sensor', 'rated'));
-- per permit, for the jobs' hauled volume (the pipeline's reference) and reconciliation
CREATE INDEX IF NOT EXISTS trips_permit_left ON trips (permit_id, left_at);
CREATE INDEX IF NOT EXISTS trips_origin_left ON trips (origin, left_at);
CREATE INDEX IF NOT EXISTS trips_plate_arrived ON trips (plate, arrived_at);

-- A job (出土申报): one application's permits together, sharing its declared volume; a
-- bundle permit names its own (permits.geojson ``job``, else its id). PERMIT_VOLUME_EXCEEDED
-- counts a job's loads; the pipeline reads what the manifest holds of each job when it
-- loads its reference.
ALTER TABLE permits ADD COLUMN IF NOT EXISTS job text;
UPDATE permits SET job = coalesce('A' || application_id, id) WHERE job IS NULL;
CREATE INDEX IF NOT EXISTS permits_job ON permits (job);

CREATE OR REPLACE FUNCTION job_hauled_m3(job_id text) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(t.volume_m3), 0) FROM trips t
    WHERE t.permit_id IN (SELECT p.id FROM permits p WHERE p.job = job_id)
$$;
