-- Who is online, and since when (issue #24): every online / offline announcement a terminal
-- made (MQTT: its retained status and last will; JT/T 808: the gateway on authentication,
-- logout, close and idle timeout), kept as history beside device_status's last word, and the
-- online rate (上线率) per company and day that transport authorities publish.
CREATE TABLE IF NOT EXISTS device_status_changes (
    device_id  text NOT NULL,
    online     boolean NOT NULL,
    at         timestamptz NOT NULL,  -- when the ingest received it
    PRIMARY KEY (device_id, at, online)
);
CREATE INDEX IF NOT EXISTS device_status_changes_at ON device_status_changes (at);

-- The online rate of a local day: of each company's registered vehicles, those whose
-- terminal was online at any moment of the day — an 'online' announcement before the day's
-- end not followed by an 'offline' before its start. tz: the city's zone (the API's
-- connections speak it; psql: SET TimeZone or pass it).
CREATE OR REPLACE FUNCTION online_rate(day date, tz text DEFAULT current_setting('TimeZone'))
RETURNS TABLE (company_id text, vehicles bigint, online bigint, rate numeric)
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        SELECT (day::timestamp AT TIME ZONE tz) AS lo,
               ((day + 1)::timestamp AT TIME ZONE tz) AS hi),
    periods AS (
        SELECT c.device_id, c.online,
               lead(c.at) OVER (PARTITION BY c.device_id ORDER BY c.at, c.online) AS until
        FROM device_status_changes c, bounds b WHERE c.at < b.hi),
    up AS (
        SELECT DISTINCT p.device_id FROM periods p, bounds b
        WHERE p.online AND coalesce(p.until, 'infinity') > b.lo)
    SELECT v.company_id, count(*), count(up.device_id),
           round(count(up.device_id)::numeric / count(*), 4)
    FROM vehicles v LEFT JOIN up ON up.device_id = v.device_id
    GROUP BY v.company_id ORDER BY v.company_id
$$;

GRANT SELECT ON device_status_changes TO muckwatch_analyst;
