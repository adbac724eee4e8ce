-- Rules engine output: violations gain the restricted zone they concern and a 'retracted'
-- state (late data showed a SIGNAL_LOSS was only a link outage); trips record each haul.
ALTER TABLE violations ADD COLUMN IF NOT EXISTS fence_id text;
ALTER TABLE violations DROP CONSTRAINT IF EXISTS violations_state_check;
ALTER TABLE violations ADD CONSTRAINT violations_state_check
    CHECK (state IN ('open', 'closed', 'retracted'));

CREATE TABLE IF NOT EXISTS trips (
    id           text NOT NULL,
    device_id    text NOT NULL,
    plate        text,
    company_id   text,
    permit_id    text,
    origin       text,
    left_at      timestamptz NOT NULL,  -- device time the truck left its origin site
    destination  text,
    arrived_at   timestamptz,  -- NULL while on the way
    late         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id, left_at)
);
CREATE INDEX IF NOT EXISTS trips_destination_arrived ON trips (destination, arrived_at);
CREATE INDEX IF NOT EXISTS trips_company_left ON trips (company_id, left_at);

-- violations whose evidence track is still to be cut from telemetry (see store/database.py)
CREATE INDEX IF NOT EXISTS violations_awaiting_evidence ON violations (device_id)
    WHERE state = 'closed' AND evidence IS NULL;
