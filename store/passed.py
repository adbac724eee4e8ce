"""Who passed here: the trucks that passed a place (a complaint, a spill a patrol found) in a
time window, closest first, each with its company and the track of its pass.

How it is answered: migration 0009 indexes every fix by a 0.01° grid cell and time
(``telemetry (geo_cell(lon, lat), ts)``), so the query reads one index range per cell around
the place, for the window only — the cost follows the traffic near the place in the window,
not the size of ``telemetry``. Distances are metres on the WGS-84 ellipsoid with the
equirectangular approximation at the pair's mean latitude (``geo_distance_m``), within a
millimetre of the geodesic distance for the ≤ 5 km radii allowed here.

Between two consecutive fixes a truck is taken to drive in a straight line at constant speed:
at 35 km/h and a fix every 30 s a truck moves ≈ 290 m between fixes, so a truck can cross a
200 m circle with no fix inside it. Where two fixes of a truck are at most ``MAX_GAP`` apart
in time and ``2 × SEGMENT_MARGIN_M`` apart in space, the closest point of the line between
them counts (and its interpolated time must lie in the window); longer gaps are a blind
stretch and only the fixes themselves count. Such a segment has an end within
``radius + SEGMENT_MARGIN_M`` of the place, which is how far the cell search looks.

What is returned (one row per truck):

* ``closest_m``/``closest_ts`` — the truck's closest approach within the window (on a fix or
  between two), ``load_at_closest`` the load of the fix nearer to that point;
* ``fixes_in_radius`` — reported fixes inside the radius within the window (0 when the truck
  crossed the circle between two fixes);
* ``loaded`` — over the fixes of the pass (those inside the radius, and the two either side of
  a crossing between fixes): True if any reports load ≥ 1 (half or full), None ("maybe") if
  none does and some report no load at all, False if all report empty. ``loaded_only`` keeps
  True and None: an unknown load may hide the culprit, so it is listed, after the loaded ones;
* ``lid_open`` — the same over the lid: True if any fix of the pass reports it open;
* ``track`` — the truck's fixes from ``TRACK_BEFORE_AFTER`` before to after ``closest_ts``
  (at most ``TRACK_MAX_POINTS``, the ones nearest that moment), in time order.

Ranking: loaded before unknown before empty, then by closest distance, then by the time of
the closest approach, then by device id (so equal rows always come in the same order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

MAX_RADIUS_M = 5000.0
MAX_WINDOW = timedelta(hours=24)
MAX_LIMIT = 1000
MAX_GAP = timedelta(seconds=90)  # longest time between two fixes interpolated over
SEGMENT_MARGIN_M = 500.0  # segments up to 1 km between fixes are interpolated over
TRACK_BEFORE_AFTER = timedelta(minutes=5)
TRACK_MAX_POINTS = 600
MAX_NEAR_FIXES = 300_000  # more near the place in the window: TooManyFixes


class TooManyFixes(ValueError):
    """The place and window hold more fixes than one answer should read (a 5 km radius over
    a busy day): narrow the radius or the window."""


@dataclass(frozen=True, slots=True)
class TrackPoint:
    ts: datetime
    lon: float
    lat: float
    speed_kmh: float | None
    load: int | None


@dataclass(frozen=True, slots=True)
class PassedTruck:
    device_id: str
    plate: str | None  # None: a terminal not in `vehicles`
    company_id: str | None
    company_name: str | None
    closest_m: float
    closest_ts: datetime
    load_at_closest: int | None  # 0 empty, 1 half, 2 full, None unknown
    fixes_in_radius: int
    loaded: bool | None  # True loaded, None unknown ("maybe loaded"), False empty
    lid_open: bool | None
    track: tuple[TrackPoint, ...]


# The fixes within radius + margin of the place in the window widened by the longest gap
# (one index range per grid cell), each with the fix before and after it (primary key).
_NEAR = """
SELECT n.device_id, (extract(epoch FROM n.ts) * 1000000)::bigint, n.lon, n.lat, n.load, n.lid,
       (extract(epoch FROM p.ts) * 1000000)::bigint, p.lon, p.lat, p.load, p.lid,
       (extract(epoch FROM x.ts) * 1000000)::bigint, x.lon, x.lat, x.load, x.lid
FROM (SELECT device_id, ts, lon, lat, load, lid FROM telemetry
      WHERE geo_cell(lon, lat) = ANY (geo_cells_near(%(lon)s, %(lat)s, %(search)s))
        AND ts >= %(since)s - %(gap)s AND ts <= %(until)s + %(gap)s
        AND geo_distance_m(%(lon)s, %(lat)s, lon, lat) <= %(search)s
      LIMIT %(cap)s) n
LEFT JOIN LATERAL (
    SELECT ts, lon, lat, load, lid FROM telemetry
    WHERE device_id = n.device_id AND ts < n.ts AND ts >= n.ts - %(gap)s
    ORDER BY ts DESC LIMIT 1) p ON true
LEFT JOIN LATERAL (
    SELECT ts, lon, lat, load, lid FROM telemetry
    WHERE device_id = n.device_id AND ts > n.ts AND ts <= n.ts + %(gap)s
    ORDER BY ts LIMIT 1) x ON true
"""

# Plate, company and the track around the closest approach of each truck, in rank order.
_DETAILS = """
SELECT q.device_id, v.plate, v.company_id, c.name, tr.ts, tr.lon, tr.lat, tr.speed, tr.load
FROM unnest(%(devices)s::text[], %(at)s::timestamptz[]) WITH ORDINALITY AS q (device_id, at, n)
LEFT JOIN vehicles v ON v.device_id = q.device_id
LEFT JOIN companies c ON c.id = v.company_id
CROSS JOIN LATERAL (
    SELECT array_agg(p.ts ORDER BY p.ts) AS ts, array_agg(p.lon ORDER BY p.ts) AS lon,
           array_agg(p.lat ORDER BY p.ts) AS lat, array_agg(p.speed_kmh ORDER BY p.ts) AS speed,
           array_agg(p.load ORDER BY p.ts) AS load
    FROM (SELECT ts, lon, lat, speed_kmh, load FROM telemetry
          WHERE device_id = q.device_id
            AND ts BETWEEN q.at - %(around)s AND q.at + %(around)s
          ORDER BY abs(extract(epoch FROM ts - q.at)), ts
          LIMIT %(points)s) p
) tr
ORDER BY q.n
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_A, _E2 = 6378137.0, 0.00669437999014  # WGS-84


def metres_per_degree(lat: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) metres per degree at ``lat``: geo_m_per_deg_lon/lat of migration 0009."""
    phi = np.radians(lat)
    w = 1 - _E2 * np.sin(phi) ** 2
    return (np.pi / 180 * _A * np.cos(phi) / np.sqrt(w),
            np.pi / 180 * _A * (1 - _E2) / w ** 1.5)


def distance_m(lon0: float, lat0: float, lon: np.ndarray | float,
               lat: np.ndarray | float) -> np.ndarray:
    """geo_distance_m of migration 0009: metres, equirectangular at the mean latitude."""
    kx, ky = metres_per_degree((np.asarray(lat) + lat0) / 2)
    return np.hypot((np.asarray(lon) - lon0) * kx, (np.asarray(lat) - lat0) * ky)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def validate(lon: object, lat: object, radius_m: object, since: object, until: object,
             limit: object = 50) -> tuple[float, float, float]:
    """Refuse what the query cannot answer well, naming the argument; return lon, lat and the
    radius as floats."""
    x, y, r = _number("lon", lon), _number("lat", lat), _number("radius_m", radius_m)
    if not -180 <= x <= 180:
        raise ValueError(f"lon must be within -180..180 degrees, got {x}")
    if not -85 <= y <= 85:
        raise ValueError(f"lat must be within -85..85 degrees, got {y}")
    if not 1 <= r <= MAX_RADIUS_M:
        raise ValueError(f"radius_m must be within 1..{MAX_RADIUS_M:.0f} m, got {r:g}")
    for name, t in (("since", since), ("until", until)):
        if not isinstance(t, datetime):
            raise ValueError(f"{name} must be a datetime, got {t!r}")
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"{name} must carry a time zone (device times are UTC), got {t}")
    assert isinstance(since, datetime) and isinstance(until, datetime)
    if not since < until:
        raise ValueError(f"since must be before until, got {since} .. {until}")
    if until - since > MAX_WINDOW:
        raise ValueError(f"the window may be at most 24 h, got {until - since}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer within 1..{MAX_LIMIT}, got {limit!r}")
    return x, y, r


def who_passed(conn: psycopg.Connection, lon: float, lat: float, radius_m: float,
               since: datetime, until: datetime, *, loaded_only: bool = True,
               limit: int = 50) -> list[PassedTruck]:
    """The trucks within ``radius_m`` metres of (``lon``, ``lat``) (WGS-84) at some moment
    from ``since`` to ``until`` (both included, time-zone aware), one row per truck, ranked
    as the module says. ``loaded_only`` leaves out trucks known to be empty throughout the
    pass. Raises ValueError for a radius outside 1..5000 m, a window over 24 h or not
    forwards, a naive datetime, a place off the map or a limit outside 1..1000, and
    TooManyFixes (a ValueError) when more than ``MAX_NEAR_FIXES`` fixes lie within the radius
    + ``SEGMENT_MARGIN_M`` in the window."""
    x, y, r = validate(lon, lat, radius_m, since, until, limit)
    rows = conn.cursor(binary=True).execute(_NEAR, {
        "lon": x, "lat": y, "search": r + SEGMENT_MARGIN_M, "since": since, "until": until,
        "gap": MAX_GAP, "cap": MAX_NEAR_FIXES + 1}).fetchall()
    if len(rows) > MAX_NEAR_FIXES:
        raise TooManyFixes(f"more than {MAX_NEAR_FIXES:,} fixes within {r + SEGMENT_MARGIN_M:g} m"
                           " of the place in the window: narrow the radius or the window")
    passes = _passes(rows, x, y, r, _micros(since), _micros(until))
    kept = [p for p in passes if not loaded_only or p.loaded is not False]
    kept.sort(key=_Pass.rank)
    kept = kept[:limit]
    if not kept:
        return []
    details = conn.execute(_DETAILS, {
        "devices": [p.device_id for p in kept], "at": [p.closest_ts for p in kept],
        "around": TRACK_BEFORE_AFTER, "points": TRACK_MAX_POINTS}).fetchall()
    return [PassedTruck(
        device_id=p.device_id, plate=d[1], company_id=d[2], company_name=d[3],
        closest_m=p.closest_m, closest_ts=p.closest_ts, load_at_closest=p.load_at_closest,
        fixes_in_radius=p.fixes_in_radius, loaded=p.loaded, lid_open=p.lid_open,
        track=tuple(TrackPoint(*point) for point in zip(*(d[k] or () for k in range(4, 9)),
                                                        strict=True)),
    ) for p, d in zip(kept, details, strict=True)]


@dataclass(frozen=True, slots=True)
class _Pass:
    device_id: str
    closest_m: float
    closest_ts: datetime
    load_at_closest: int | None
    fixes_in_radius: int
    loaded: bool | None
    lid_open: bool | None

    def rank(self) -> tuple:
        return ({True: 0, None: 1, False: 2}[self.loaded], self.closest_m, self.closest_ts,
                self.device_id)


def _flag(device: np.ndarray, values: np.ndarray, n: int) -> list[bool | None]:
    """Per device: True if any value is ≥ 1, else None if any is unknown (NaN), else False."""
    on = np.bincount(device, weights=values >= 1, minlength=n) > 0
    unknown = np.bincount(device, weights=np.isnan(values), minlength=n) > 0
    return [True if a else None if b else False
            for a, b in zip(on.tolist(), unknown.tolist(), strict=True)]


def _passes(rows: list[tuple], lon: float, lat: float, radius: float, since_us: int,
            until_us: int) -> list[_Pass]:
    """Each truck's closest approach, from the near fixes and their neighbours (microsecond
    times and unknown values as NaN: every column is float64)."""
    if not rows:
        return []
    names, device = np.unique(np.array([r[0] for r in rows], object), return_inverse=True)
    near = np.array([r[1:] for r in rows], float)  # fix, fix before, fix after: 5 columns each
    fix, before, after = near[:, 0:5], near[:, 5:10], near[:, 10:15]
    has_before, has_after = ~np.isnan(before[:, 0]), ~np.isnan(after[:, 0])
    # segments a → b: each near fix alone (a = b), from the fix before, to the fix after
    a = np.concatenate([fix, before[has_before], fix[has_after]])
    b = np.concatenate([fix, fix[has_before], after[has_after]])
    dev = np.concatenate([device, device[has_before], device[has_after]])
    single = np.arange(len(a)) < len(fix)
    kxa, kya = metres_per_degree((a[:, 2] + lat) / 2)
    kxb, kyb = metres_per_degree((b[:, 2] + lat) / 2)
    xa, ya = (a[:, 1] - lon) * kxa, (a[:, 2] - lat) * kya
    dx, dy = (b[:, 1] - lon) * kxb - xa, (b[:, 2] - lat) * kyb - ya
    span = b[:, 0] - a[:, 0]
    length2 = dx * dx + dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        # the part of the segment (0..1) inside the window, and the point nearest the place
        lo = np.where(single, 0.0, np.maximum(0.0, (since_us - a[:, 0]) / span))
        hi = np.where(single, 1.0, np.minimum(1.0, (until_us - a[:, 0]) / span))
        t = np.where(length2 > 0, -(xa * dx + ya * dy) / length2, 0.0)
    t = np.minimum(hi, np.maximum(lo, t))
    usable = np.where(single, (a[:, 0] >= since_us) & (a[:, 0] <= until_us),
                      (b[:, 0] >= since_us) & (a[:, 0] <= until_us)
                      & (length2 <= (2 * SEGMENT_MARGIN_M) ** 2))
    d = np.hypot(xa + t * dx, ya + t * dy)
    ts_c = np.clip(np.round(a[:, 0] + t * span), since_us, until_us).astype(np.int64)
    hit = np.flatnonzero(usable & (d <= radius))
    if not len(hit):
        return []
    # each truck's closest hit (then the earliest)
    order = hit[np.lexsort((ts_c[hit], d[hit], dev[hit]))]
    first = order[np.r_[True, dev[order][1:] != dev[order][:-1]]]
    n = len(names)
    fixes = np.bincount(dev[hit], weights=single[hit], minlength=n)
    # the fixes of the pass: inside the radius, or an end of a crossing between two fixes
    of_pass = hit[single[hit] | ((t[hit] > 0) & (t[hit] < 1))]
    pass_dev = np.concatenate([dev[of_pass], dev[of_pass]])
    loaded = _flag(pass_dev, np.concatenate([a[of_pass, 3], b[of_pass, 3]]), n)
    lid_open = _flag(pass_dev, np.concatenate([a[of_pass, 4], b[of_pass, 4]]), n)
    out = []
    for i in first.tolist():
        k = int(dev[i])
        load = a[i, 3] if t[i] <= 0.5 else b[i, 3]
        out.append(_Pass(
            device_id=str(names[k]), closest_m=float(d[i]),
            closest_ts=_EPOCH + int(ts_c[i]) * _US,
            load_at_closest=None if np.isnan(load) else int(load),
            fixes_in_radius=int(fixes[k]), loaded=loaded[k], lid_open=lid_open[k]))
    return out
