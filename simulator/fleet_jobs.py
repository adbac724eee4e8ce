"""What a truck does next: its permits' validity, its shift, the next job or parking.

Why a module of its own: these are the per-truck *decisions*, taken one truck at a time and
only when a truck reaches the end of something (loading, tipping, a path, a parking spell),
while the motion and the reports run over the whole fleet at once. Everything that makes the
fleet compliant with its permits sits here: a truck starts a loaded leg only if the permit
stays valid — validity and ``hours`` in the city's timezone — for the whole leg with a margin
(``LEG_MARGIN_S``) and its shift lasts long enough; between legs it works the same job again
(driving the route back empty) or switches to another of its permits (``switch_share``),
getting to that job's origin back along a route they share or by a straight run clear of
every restricted zone; with nothing it may start, it parks inside the site it is at, and a
long parking spell goes into the truth as a near miss.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import shapely

from domain.city import parse_window
from simulator.fleet_phases import (
    LEG_MARGIN_S,
    LOADING,
    LOADING_S,
    OUTBOUND,
    PARKED,
    PARKED_REPORT_S,
    RETURNING,
    TIPPING,
    TIPPING_S,
    TRANSFER,
)

if TYPE_CHECKING:
    from simulator.fleet import Fleet

PARK_TRUTH_MIN_S = 1800.0  # parking this long or longer is written to the truth
MAX_LEG_DRIVE_S = 5400.0  # a truck takes no job whose loaded drive it expects to last longer
RED_LIGHT_MEAN_S = 32.5  # fleet_motion.RED_LIGHT_S


def within(minute: int, window: tuple[int, int]) -> bool:
    """Whether a local minute of the day is inside an ``hours`` window (may wrap midnight)."""
    start, end = window
    return start <= minute < end if start <= end else (minute >= start or minute < end)


def permit_valid_until(permit, ms: float, tz: ZoneInfo) -> float | None:
    """Until when (epoch ms) a permit stays valid without a break, from ``ms``; None if it is
    not valid at ``ms``. Minutes as the rules count them (HH:MM of local time)."""
    at = datetime.fromtimestamp(ms / 1000, tz)
    if not permit.valid_from <= at <= permit.valid_to:
        return None
    b = permit.valid_to.timestamp() * 1000
    if permit.hours is None:
        return float(b)
    window = parse_window(permit.hours)
    sod = at.hour * 3600 + at.minute * 60 + at.second + at.microsecond / 1e6
    minute = int(sod // 60)
    if not within(minute, window):
        return None
    start, end = window
    left = (end * 60 - sod) if (start <= end or minute < end) else (86400 - sod + end * 60)
    return float(min(b, ms + left * 1000))


# --- time and shifts --------------------------------------------------------------------------

def local_s(fleet: Fleet, ms: float) -> float:
    at = datetime.fromtimestamp(ms / 1000, fleet.tz)
    return at.hour * 3600 + at.minute * 60 + at.second + at.microsecond / 1e6


def in_shift(fleet: Fleet, i: int, ms: float) -> float:
    """Seconds left of truck ``i``'s shift at ``ms`` (0 when off shift)."""
    if not fleet.daily:
        return 1e9
    minute = local_s(fleet, ms) / 60
    into = (minute - fleet.shift_start[i]) % 1440
    return max(0.0, (fleet.shift_len[i] - into) * 60)


def next_shift_s(fleet: Fleet, i: int, ms: float) -> float:
    minute = local_s(fleet, ms) / 60
    return ((fleet.shift_start[i] - minute) % 1440) * 60


def drive_s(fleet: Fleet, i: int, j: int) -> float:
    """The expected time truck ``i`` drives permit ``j``'s route: at its cruising speed, a
    red light every ``junction_spacing_m`` (mean wait, and the time lost braking for it and
    pulling away)."""
    v = float(fleet.cruise[i])
    lights = fleet.paths.length[j] / fleet.junction_spacing_m
    return float(fleet.paths.length[j] / v + lights * (RED_LIGHT_MEAN_S + 1.2 * v))


def workable(fleet: Fleet, i: int, j: int) -> bool:
    """Whether truck ``i`` takes job ``j`` at all: its loaded leg must end well within the
    rules' 2 hours (TRIP_NOT_CLOSED); a slow truck leaves a city-crossing haul to others."""
    return drive_s(fleet, i, j) <= MAX_LEG_DRIVE_S


def leg_s(fleet: Fleet, i: int, j: int) -> float:
    """A generous estimate of a loaded leg on permit ``j``: loading, the route with red
    lights, a gate, tipping."""
    return LOADING_S[1] + fleet.paths.length[j] / (0.4 * fleet.cruise[i]) + 120 + TIPPING_S[1]


# --- decisions --------------------------------------------------------------------------------

def position_of(fleet: Fleet, i: int) -> tuple[float, float]:
    x, y, _ = fleet.paths.position(fleet.route[[i]], fleet.s[[i]], np.array([False]))
    return float(x[0]), float(y[0])


def site_of(fleet: Fleet, i: int) -> str | None:
    """The site a stationary truck is at (the end of the route it drove)."""
    paths = fleet.paths
    r = int(fleet.route[i])
    if r >= len(fleet.permits):
        return paths.origin[int(fleet.job[i])]
    return paths.dest[r] if fleet.s[i] > 0.5 * paths.length[r] else paths.origin[r]


def start_state(fleet: Fleet, i: int) -> None:
    """A fleet already at work: a truck on shift is somewhere in a leg of a job that
    allows it, the others are parked at one of their sites."""
    rng, now = fleet.rng, fleet.now_ms
    jobs = fleet.jobs[i]
    ok = [j for j in jobs if in_shift(fleet, i, now) > 0 and workable(fleet, i, j)
          and (u := fleet.valid_until(j, now)) is not None and u >= now + 1000 * (
              leg_s(fleet, i, j) + LEG_MARGIN_S)]
    if not ok:
        j = jobs[int(rng.integers(len(jobs)))]
        fleet.route[i] = fleet.job[i] = j
        fleet.s[i] = fleet.paths.length[j] if rng.random() < 0.5 else 0.0
        park(fleet, i, until_wake(fleet, i))
        fleet.next_report[i] = now + int(rng.random() * PARKED_REPORT_S[1] * 1000)
        return
    j = ok[int(rng.integers(len(ok)))]
    fleet.route[i] = fleet.job[i] = j
    phase = rng.choice(np.array([LOADING, OUTBOUND, TIPPING, RETURNING], np.int8),
                       p=[0.15, 0.4, 0.1, 0.35])
    length = fleet.paths.length[j]
    fleet.phase[i] = phase
    fleet.timer[i] = rng.uniform(0, (LOADING_S if phase == LOADING else TIPPING_S)[1])
    fleet.s[i] = {OUTBOUND: rng.uniform(0.05, 0.9) * length,
                  RETURNING: rng.uniform(0.1, 0.95) * length,
                  TIPPING: length}.get(int(phase), 0.0)
    if phase in (OUTBOUND, RETURNING):
        fleet.v[i] = fleet.cruise[i]
    fleet.stop_at[i] = fleet.s[i] + (-1 if phase == RETURNING else 1) * fleet._gap()


def until_wake(fleet: Fleet, i: int) -> float:
    """How long a truck with nothing to do now parks: until its next shift, or a while."""
    if in_shift(fleet, i, fleet.now_ms) <= 0:
        return next_shift_s(fleet, i, fleet.now_ms) + fleet.rng.uniform(0, 1200)
    return fleet.rng.uniform(900, 2400)


def park(fleet: Fleet, i: int, seconds: float) -> None:
    if fleet.phase[i] != PARKED or fleet.park_since[i] < 0:
        fleet.park_since[i] = fleet.now_ms
    fleet.phase[i] = PARKED
    fleet.timer[i] = seconds
    fleet.v[i] = 0.0


def unpark(fleet: Fleet, i: int) -> None:
    since = int(fleet.park_since[i])
    if since >= 0 and fleet.now_ms - since >= PARK_TRUTH_MIN_S * 1000:
        fleet._event(i, "SIGNAL_LOSS", "parking", since, fleet.now_ms,
                     "parked inside a site, reporting every 60–300 s")
    fleet.park_since[i] = -1
    # report soon: the terminal wakes up with the engine
    fleet.next_report[i] = min(int(fleet.next_report[i]),
                               fleet.now_ms + int(fleet.rng.random() * fleet.interval_ms))


def decide(fleet: Fleet, i: int) -> None:
    """At a site with nothing loaded: the next job, or parking."""
    rng, now = fleet.rng, fleet.now_ms
    left = in_shift(fleet, i, now)
    here_x, here_y = position_of(fleet, i)
    site = site_of(fleet, i)
    choices = []
    for j in fleet.jobs[i]:
        if not workable(fleet, i, j):
            continue
        plan = way_to(fleet, i, j, site, here_x, here_y)
        if plan is None:
            continue
        travel = plan[2] / (0.4 * fleet.cruise[i])
        begin = now + 1000 * travel
        u = fleet.valid_until(j, begin)
        if u is None or u < begin + 1000 * (leg_s(fleet, i, j) + LEG_MARGIN_S):
            continue
        if left < travel + 600:
            continue
        choices.append((j, plan))
    if not choices:
        if fleet.phase[i] == PARKED:
            fleet.timer[i] = until_wake(fleet, i)
        else:
            park(fleet, i, until_wake(fleet, i))
        return
    current = [c for c in choices if c[0] == fleet.job[i]]
    if current and rng.random() >= fleet.switch_share:
        j, plan = current[0]
    else:
        j, plan = choices[int(rng.integers(len(choices)))]
    if fleet.phase[i] == PARKED:
        unpark(fleet, i)
    fleet.job[i] = j
    how, path, _ = plan
    if how == "load":
        start_loading(fleet, i)
        return
    if how == "back":  # drive a route backwards, empty, to its origin
        fleet.route[i] = path
        fleet.s[i] = fleet.paths.length[path]
        fleet.phase[i] = RETURNING
    else:
        fleet.route[i] = fleet.paths.set_transfer(i, path)
        fleet.s[i] = 0.0
        fleet.phase[i] = TRANSFER
    fleet.v[i] = 0.0
    fleet.stop_at[i] = fleet.s[i] + (-1 if fleet.phase[i] == RETURNING else 1) * fleet._gap()


def way_to(fleet: Fleet, i: int, j: int, site: str | None, x: float, y: float):
    """How truck ``i`` gets from here (site) to job ``j``'s origin, empty: (how, path,
    metres); None if there is no compliant way."""
    paths = fleet.paths
    r = int(fleet.route[i])
    if site == paths.origin[j]:
        return ("load", None, 0.0)
    if r < len(fleet.permits) and site == paths.dest[r] and paths.origin[r] == paths.origin[j]:
        return ("back", r, float(paths.length[r]))
    if site == paths.dest[j]:
        return ("back", j, float(paths.length[j]))
    ox, oy = paths.start_xy[j]
    path = paths.clear_path((x, y), (ox, oy))
    if path is None:
        return None
    return ("transfer", path, float(shapely.LineString(path).length))


def start_loading(fleet: Fleet, i: int) -> None:
    """At job ``fleet.job[i]``'s origin: load, if the permit and the shift still allow the
    whole leg; else decide again."""
    j = int(fleet.job[i])
    u = fleet.valid_until(j, fleet.now_ms)
    if u is None or u < fleet.now_ms + 1000 * (leg_s(fleet, i, j) + LEG_MARGIN_S) \
            or in_shift(fleet, i, fleet.now_ms) <= 0:
        fleet.route[i] = j
        fleet.s[i] = 0.0
        decide(fleet, i)
        return
    fleet.route[i] = j
    fleet.s[i] = 0.0
    fleet.v[i] = 0.0
    fleet.phase[i] = LOADING
    fleet.timer[i] = fleet.rng.uniform(*LOADING_S)
