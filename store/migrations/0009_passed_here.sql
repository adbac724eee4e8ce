-- "Who passed here" (issue #21): which trucks passed a place in a time window. store/passed.py,
-- docs/sql.md ("Who passed here"), bench/passed_here.py.
--
-- No PostGIS: fixes are indexed by a coarse grid cell and time. A cell is 0.01° × 0.01°
-- (≈ 1.03 km × 1.11 km at Shenzhen's 22.5° N); geo_cell(lon, lat) numbers it, and the btree
-- on (geo_cell(lon, lat), ts) answers "the fixes in these cells in this window" with one
-- index range per cell, whatever the table's size. A query enumerates the cells its circle's
-- bounding box touches (geo_cells_near) and keeps the fixes within the radius
-- (geo_distance_m).
--
-- geo_cell's body must never change: the index stores its values. A different grid needs a
-- new function name and a new index.

-- (lon-cell + 18000) * 100000 + (lat-cell + 9000): 114.05, 22.55 → 2940511255. Both cell
-- numbers are floor(degrees × 100), so a cell's edges are exact multiples of 0.01° and the
-- number is monotone in lon and lat (what geo_cells_near relies on).
CREATE OR REPLACE FUNCTION geo_cell(lon double precision, lat double precision)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (floor(lon * 100)::bigint + 18000) * 100000 + (floor(lat * 100)::bigint + 9000) $$;

-- Metres per degree of longitude / latitude at latitude `lat` on the WGS-84 ellipsoid
-- (prime-vertical and meridional radii of curvature).
CREATE OR REPLACE FUNCTION geo_m_per_deg_lon(lat double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pi() / 180 * 6378137.0 * cos(radians(lat))
       / sqrt(1 - 0.00669437999014 * sin(radians(lat)) ^ 2) $$;

CREATE OR REPLACE FUNCTION geo_m_per_deg_lat(lat double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pi() / 180 * 6378137.0 * (1 - 0.00669437999014)
       / (1 - 0.00669437999014 * sin(radians(lat)) ^ 2) ^ 1.5 $$;

-- Distance in metres between two points a few km apart: the equirectangular approximation on
-- the ellipsoid, scaled at the pair's mean latitude. Within 1 mm of the geodesic distance up
-- to 5.5 km at latitudes below 45° (1 cm at 80°); not for long distances.
CREATE OR REPLACE FUNCTION geo_distance_m(lon1 double precision, lat1 double precision,
                                          lon2 double precision, lat2 double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT sqrt(((lon2 - lon1) * geo_m_per_deg_lon((lat1 + lat2) / 2)) ^ 2
            + ((lat2 - lat1) * geo_m_per_deg_lat((lat1 + lat2) / 2)) ^ 2) $$;

-- Every cell that a point within `radius_m` of (lon, lat) can fall in: the cells of a
-- bounding box made a little larger than the circle's (the smallest metres-per-degree over
-- the box, plus 0.1% and 1e-6°), so rounding never leaves a cell out.
CREATE OR REPLACE FUNCTION geo_cells_near(lon double precision, lat double precision,
                                          radius_m double precision)
RETURNS bigint[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT array_agg((x + 18000) * 100000 + (y + 9000) ORDER BY x, y)
    FROM (SELECT radius_m * 1.001 / 110574.0 + 1e-6 AS dlat) AS b,
         LATERAL (SELECT radius_m * 1.001
                         / geo_m_per_deg_lon(least(89.0, abs(lat) + b.dlat)) + 1e-6 AS dlon)
             AS c,
         generate_series(floor((lon - c.dlon) * 100)::bigint,
                         floor((lon + c.dlon) * 100)::bigint) AS x,
         generate_series(floor((lat - b.dlat) * 100)::bigint,
                         floor((lat + b.dlat) * 100)::bigint) AS y
$$;

CREATE INDEX IF NOT EXISTS telemetry_cell_ts ON telemetry (geo_cell(lon, lat), ts);
