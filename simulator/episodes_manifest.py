"""Episodes of the manifest's rules (issue #22), each an offence or a near miss with its
truth read off the track, as ``simulator.episodes`` does for the older rules:

* ``WRONG_DESTINATION``: loaded on its permit, it drives off to another open disposal site
  or dock and tips there (lift; a lift-less terminal: the load drops), then drives empty to
  its own destination. Near miss: it drives loaded through another open site (one lift
  bounce, or one low load reading, there) and tips at its own destination.
* ``TRIP_NOT_CLOSED``: it pulls over loaded on the roadside (inside its corridor) and stays
  past ``TRIP_CLOSE_S`` after it left, its terminal reporting, then drives on and tips. Near
  miss: the same wait, arriving ``NEAR_S`` (10 min) before the deadline.
* ``OVERLOAD``: a weighing truck 15–60 % over its rated load drives its route. Near misses:
  5 % over with one reading 45 % over on the road; or 50 % over only while standing on the
  site's weighbridge, part of the load taken off before it leaves.
* ``PERMIT_VOLUME_EXCEEDED``: a small job's truck hauls the load that takes the job over its
  declared volume (after the loads still within it): one truth row per load beyond. Near
  miss: the loads that take a fresh job to exactly its declared volume.

The drive to a site the permit does not name leaves the corridors of every permit that
could explain the leg: when that is a true OFF_ROUTE (the rule's own condition, a minute and
3 fixes), it is written to the truth too (``Episode.extra``). A TRIP_NOT_CLOSED episode
begins ``LEAD_S`` before its planned moment (``lead_s``), so its deadline falls there —
before the run's start in a short run: the terminal then sends what it buffered first.

The job ledger (``JobLedger``) counts every load of the small jobs (simulator.cityregistry)
as the rules do — the departure's load against the first permit (by valid_from, id) of the
truck's permits valid as it leaves that origin — so an episode knows how many loads take a
job to, or over, its declared volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import shapely

from simulator.cityregistry import EPISODE_ROUTE_MAX_M, episode_job
from simulator.episodes import (
    EMPTY,
    LOADED,
    MANIFEST_BUILDERS,
    Episode,
    EpisodeError,
    Profile,
    _apply,
    _park,
    truth_entry,
)
from simulator.fleet_jobs import permit_valid_until
from simulator.scenarios import TruckTrack, inner_spot

if TYPE_CHECKING:
    from simulator.episodes import Episodes

TRIP_CLOSE_S = 7200.0  # the rules' trip_close_s (docs/rules.md)
NEAR_S = 600.0  # the near miss arrives this long before the deadline
# a TRIP_NOT_CLOSED episode begins this long before its moment (the deadline; for the near
# miss, its arrival): the deadline falls ≈ 100 s of loading after the track's start + 2 h
LEAD_S = TRIP_CLOSE_S + 100.0
OVERLOAD_TOLERANCE = 0.1  # the rules' overload_tolerance
ZONE_CLEARANCE_M = 150.0
MAX_DETOUR_M = 15_000.0  # the farthest site a truck drives to instead of its own
MAX_LEG_S = 6000.0  # a detour leg reaches its own destination well within TRIP_CLOSE_S
MAX_HAULS = 3  # loads one PERMIT_VOLUME_EXCEEDED episode hauls at the most


def lead_s(rule: str, negative: bool = False) -> float:
    """How long before its planned moment an episode of ``rule`` begins."""
    if rule != "TRIP_NOT_CLOSED":
        return 0.0
    return LEAD_S - NEAR_S if negative else LEAD_S


def valid_for_s(rule: str, plan=None) -> float:
    """How long the episode's permit must stay valid from the episode's start."""
    if rule == "TRIP_NOT_CLOSED":
        return LEAD_S + 5400.0
    if rule == "PERMIT_VOLUME_EXCEEDED":
        return 2 * 3600.0 * (plan.hauls if plan else MAX_HAULS)
    return 2 * 3600.0


# --- the small jobs' ledger -------------------------------------------------------------------

@dataclass(frozen=True)
class VolumePlan:
    """A PERMIT_VOLUME_EXCEEDED episode: which permit's route, how many loads, which job
    they count against."""

    permit_id: str
    hauls: int
    job: str


@dataclass
class JobLedger:
    """m³ hauled per small job so far (as the rules estimate it: the body volume of a full
    load of a truck with a load-level sensor)."""

    episodes: Episodes
    hauled: dict[str, float] = field(default_factory=dict)

    def counted(self, plate: str, origin: str, ts: int):
        """The permit a departure from ``origin`` at ``ts`` counts against (the rules'
        first candidate), or None."""
        for p in self.episodes.by_plate.get(plate, []):
            if p.origin == origin and permit_valid_until(p, ts, self.episodes.tz) is not None:
                return p
        return None

    def plan(self, device: str, permit, begin_ms: int, volume: float | None,
             negative: bool) -> VolumePlan | None:
        """Loads on ``permit`` from ``begin_ms``: for an offence, those within the job's
        declared volume and one over it; for a near miss, those that take a fresh job to
        exactly its declared volume. None if the job does not allow it."""
        plate = self.episodes.plates.get(device)
        if not volume or plate is None:
            return None
        counted = self.counted(plate, permit.origin, begin_ms + 120_000)
        if counted is None or not episode_job(counted.declared_volume_m3):
            return None
        job, declared = counted.job_id, float(counted.declared_volume_m3)
        hauled = self.hauled.get(job, 0.0)
        room = declared - hauled
        if negative:
            loads = room / volume
            if hauled > 0 or loads < 0.999 or abs(loads - round(loads)) > 1e-6:
                return None
            n = round(loads)
        else:
            n = int(np.floor(room / volume + 1e-9)) + 1 if room > -1e-9 else 1
        if n > MAX_HAULS:
            return None
        return VolumePlan(permit.id, n, job)

    def add(self, job: str, m3: float) -> None:
        self.hauled[job] = self.hauled.get(job, 0.0) + m3


# --- the episodes -----------------------------------------------------------------------------

def manifest_episode(b: Episodes, rule: str, negative: bool, device: str, permit_id: str | None,
                     begin_ms: int, seed: int, k: int, profile: Profile, plan=None) -> Episode:
    if permit_id is None:
        raise EpisodeError(f"{rule}: an episode needs a permit")
    t = TruckTrack(b.city, device, begin_ms, interval_s=b.interval_s, seed=seed)
    route = t.route(permit_id)
    permit = b.permits[permit_id]
    plate = b.plates.get(device)
    full_kg: float | None = None
    extra: list[dict] = []
    loads: list[int] = []
    hold_from: int | None = None
    kind = None
    if rule == "WRONG_DESTINATION":
        what, window, kind, extra = _wrong_destination(b, t, route, permit, plate, profile,
                                                       negative)
        hold_from = window[0] - 180_000
    elif rule == "TRIP_NOT_CLOSED":
        what, window = _trip(b, t, route, permit, negative)
        hold_from = window[0] - 120_000
    elif rule == "OVERLOAD":
        if not profile.weighs or not profile.rated_kg:
            raise EpisodeError("OVERLOAD needs a weighing terminal and a rated load")
        what, window, full_kg = _overload(b, t, route, profile, negative, k)
    elif rule == "PERMIT_VOLUME_EXCEEDED":
        if plan is None:
            raise EpisodeError("PERMIT_VOLUME_EXCEEDED needs a plan (JobLedger.plan)")
        what, window, loads = _volume(b, t, route, permit, plan, negative)
        hold_from = window[0] - 150_000
    else:
        raise EpisodeError(f"unknown rule {rule!r}")
    _park(t)

    def hit(f: dict, w: tuple[int, int] = window) -> bool:
        return w[0] <= f["ts"] <= w[1]
    entry = truth_entry(rule, t, plate, hit, what, negative=negative)
    entry["kind"] = kind or ("near_miss" if negative else "offence")
    for row in extra:
        row["during"] = rule  # committed on the way, in this episode
    _apply(t, profile, full_kg)
    return Episode(t, entry, extra=extra, arrivals=b._arrivals,
                   hold_from=max(hold_from, t.fixes[0]["ts"]) if hold_from else None,
                   loads=loads, job=plan.job if plan is not None else "")


def _candidates(b: Episodes, plate: str | None, origin: str, ts: int) -> list:
    """The truck's permits a leg leaving ``origin`` at ``ts`` is judged against."""
    return [p for p in b.by_plate.get(plate or "", [])
            if p.origin == origin and permit_valid_until(p, ts, b.tz) is not None]


def _departure(b: Episodes, t: TruckTrack, origin: str, since: int) -> int:
    """Device time of the first fix from ``since`` on outside ``origin`` (a leg's start)."""
    for f in t.fixes[since:]:
        if not b.inside(f, origin, t):
            return f["ts"]
    raise EpisodeError("the truck never left its origin")


def _clear(b: Episodes, path: shapely.LineString, allowed: set[str]) -> bool:
    """A path clear of restricted zones (by ``ZONE_CLEARANCE_M``) and of every site but
    ``allowed``."""
    for f in b._near_fences(path, ZONE_CLEARANCE_M):
        if f.kind == "restricted_zone" or (f.id not in allowed
                                            and b.fences[f.id].intersects(path)):
            return False
    return True


def _off_mask(b: Episodes, cands: list, xy: np.ndarray) -> np.ndarray:
    """Per metric point: outside the corridor of every candidate and outside their sites
    (OFF_ROUTE's condition for a loaded truck)."""
    pts = shapely.points(xy)
    off = np.ones(len(xy), bool)
    for p in cands:
        route = b.route_m(p.id)
        off &= shapely.distance(route, pts) > p.corridor_m
        for site in (p.origin, *p.destinations):
            off &= ~shapely.intersects(b.fences[site], pts)
    return off


def _off_route_truth(b: Episodes, t: TruckTrack, cands: list, plate: str | None) -> list[dict]:
    """The OFF_ROUTE offences of a track, by the rule's condition and debounce: runs of
    loaded fixes off every candidate's corridor lasting 60 s and 3 fixes (a break shorter
    than the rule's closing, 30 s and 3 fixes, does not end one)."""
    fixes = t.fixes
    if not fixes:
        return []
    x, y = t.projector.to_metric([f["lon"] for f in fixes], [f["lat"] for f in fixes])
    off = _off_mask(b, cands, np.column_stack([x, y]))
    off &= np.array([f.get("load", 0) >= 1 for f in fixes])
    # runs of off fixes; a break of fewer than 3 fixes or 30 s does not close the rule (one
    # load reading of 0 in the middle, say): one violation
    runs: list[list[int]] = []
    for k in np.flatnonzero(off).tolist():
        if runs:
            last = runs[-1][1]
            if k - last - 1 < 3 or fixes[k]["ts"] - fixes[last + 1]["ts"] < 30_000:
                runs[-1][1] = k
                continue
        runs.append([k, k])
    rows = []
    for first, end in runs:
        if end - first + 1 >= 3 and fixes[end]["ts"] - fixes[first]["ts"] >= 60_000:
            rows.append({"rule": "OFF_ROUTE", "device": t.device, "plate": plate,
                         "start_ts": fixes[first]["ts"], "end_ts": fixes[end]["ts"],
                         "what": "on its way loaded to a site its permits do not name, "
                                 "off their corridors", "kind": "offence"})
    return rows


def _detour(b: Episodes, t: TruckTrack | None, route, cands: list, at_ms: int):
    """(fraction of the route, path from there to a spot well inside the site, site id): an
    open disposal site or dock none of ``cands`` names, reached in a straight run clear of
    zones and other sites, leaving the corridors once and for good; the shortest such
    detour (the route driven to it, and the run)."""
    named = {s for p in cands for s in (p.origin, *p.destinations)}
    sites = [f for f in b.fence_list if f.kind in ("disposal_site", "transfer_dock")
             and f.id not in named and f.status_at(at_ms, b.city.timezone) == "open"]
    best = None
    for a in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        here = route.interpolate(a, normalized=True)
        for f in sites:
            area = b.fences[f.id]
            cost = a * route.length + area.distance(here)
            if area.distance(here) > MAX_DETOUR_M or (best is not None and cost >= best[0]):
                continue
            door = area.representative_point()
            spot = inner_spot(area, (door.x, door.y))
            path = shapely.LineString([(here.x, here.y), (door.x, door.y), spot])
            if not _clear(b, path, {f.id}):
                continue
            xy = shapely.get_coordinates(path.segmentize(10.0))
            off = _off_mask(b, cands, xy)
            if off.any() and not off[int(np.argmax(off)):].all():
                continue  # it would come back into a corridor on the way
            best = (a * route.length + path.length, a, path, f.id)
    if best is None:
        raise EpisodeError("no open site off the permit within reach")
    return best[1:]


def detour_estimate_m(b: Episodes, permit) -> float:
    """A quick lower bound of ``detour_m``: the route driven to a point and the distance
    from there to the nearest receiving site the permit does not name, over the route's
    tenths (cached per city and permit)."""
    key = (id(b.city), permit.id)
    if key not in _ESTIMATES:
        detour_estimates(b, [permit])
    return _ESTIMATES[key]


def detour_estimates(b: Episodes, permits: list) -> None:
    """``detour_estimate_m`` of many permits at once (a big city's pool holds tens of
    thousands): every route's tenths in one nearest-site query on a tree of the receiving
    sites; only a point whose nearest site is one the permit names looks further, in
    widening circles, until a site it does not name is inside."""
    todo = [p for p in dict.fromkeys(permits) if (id(b.city), p.id) not in _ESTIMATES]
    if not todo:
        return
    cache = b.__dict__.setdefault("_receiving_tree", {})
    if "tree" not in cache:
        fences = [f for f in b.fence_list if f.kind in ("disposal_site", "transfer_dock")]
        cache["ids"] = np.array([f.id for f in fences], dtype=object)
        cache["tree"] = shapely.STRtree([b.fences[f.id] for f in fences])
    tree, ids = cache["tree"], cache["ids"]
    tenths = np.arange(0.1, 0.95, 0.1)
    routes = [b.route_m(p.id) for p in todo]
    if not len(ids):
        for p in todo:
            _ESTIMATES[(id(b.city), p.id)] = float("inf")
        return
    lengths = shapely.length(np.asarray(routes))
    pts = shapely.line_interpolate_point(np.repeat(np.asarray(routes), len(tenths)),
                                         np.tile(tenths, len(todo)), normalized=True)
    along = np.tile((np.arange(len(tenths)) + 1) * 0.1, len(todo)) * \
        np.repeat(lengths, len(tenths))
    owner = np.repeat(np.arange(len(todo)), len(tenths))
    (at, site), gap = tree.query_nearest(pts, return_distance=True, all_matches=True)
    nearest = np.full(len(pts), np.inf)
    # (point, site) pairs whose site the point's permit names, by interned codes
    code = {fid: k for k, fid in enumerate(ids.tolist())}
    named = [{code[f] for f in (p.origin, *p.destinations) if f in code} for p in todo]

    def unnamed(points: np.ndarray, sites: np.ndarray) -> np.ndarray:
        return np.fromiter((int(j) not in named[int(owner[i])]
                            for i, j in zip(points.tolist(), sites.tolist(), strict=True)),
                           bool, len(points))

    ok = unnamed(at, site)
    np.minimum.at(nearest, at[ok], gap[ok])
    # points whose every nearest site is named look in widening circles, all at once
    open_ = np.flatnonzero(~np.isfinite(nearest))
    radius = np.full(len(pts), np.inf)
    np.minimum.at(radius, at, gap)
    radius = np.maximum(radius * 2, 50.0)
    while len(open_):
        i, j = tree.query(pts[open_], predicate="dwithin", distance=radius[open_])
        i = open_[i]
        keep = unnamed(i, j)
        if keep.any():
            d = shapely.distance(pts[i[keep]], tree.geometries[j[keep]])
            np.minimum.at(nearest, i[keep], d)
        found = np.bincount(i, minlength=len(pts))[open_]
        # the permit names every receiving site: no detour from there
        open_ = open_[~np.isfinite(nearest[open_]) & (found < len(ids))]
        radius[open_] *= 2
    best = np.full(len(todo), np.inf)
    np.minimum.at(best, owner, along + nearest)
    for p, value in zip(todo, best.tolist(), strict=True):
        _ESTIMATES[(id(b.city), p.id)] = value


_ESTIMATES: dict[tuple[int, str], float] = {}


def detour_m(b: Episodes, permit, at_ms: int) -> float:
    """How far a WRONG_DESTINATION episode on ``permit`` drives loaded (route and detour) to
    the nearest site it does not name; inf when there is none (cached per permit)."""
    cache = b.__dict__.setdefault("_detours", {})
    if permit.id not in cache:
        cands = _candidates(b, permit.plate, permit.origin, at_ms) or [permit]
        try:
            a, path, _ = _detour(b, None, b.route_m(permit.id), cands, at_ms)
            cache[permit.id] = a * b.route_m(permit.id).length + path.length
        except EpisodeError:
            cache[permit.id] = float("inf")
    return cache[permit.id]


def _run(b: Episodes, a: tuple[float, float], c: tuple[float, float]):
    """A straight run from a to c, or one with a bend, clear of restricted zones."""
    dx, dy = c[0] - a[0], c[1] - a[1]
    d = float(np.hypot(dx, dy)) or 1.0
    options = [[a, c]]
    for side in (0.25, -0.25, 0.5, -0.5):
        options.append([a, (a[0] + dx / 2 - dy / d * side * d, a[1] + dy / 2 + dx / d * side * d),
                        c])
    for pts in options:
        line = shapely.LineString(pts)
        if not any(f.kind == "restricted_zone"
                   for f in b._near_fences(line, ZONE_CLEARANCE_M)):
            return line
    return None


def _wrong_destination(b: Episodes, t: TruckTrack, route, permit, plate, profile: Profile,
                       negative: bool):
    b._load_and_drive(t, route, 0.0)
    cands = _candidates(b, plate, permit.origin, t.t + 60_000) or [permit]
    a, path, site = _detour(b, t, route, cands, t.t)
    t.drive(t.part(route, 0.0, a), 35, **LOADED)
    departed = _departure(b, t, permit.origin, 0)
    since = len(t.fixes)
    t.drive(path, 30, **LOADED)
    t.go_to(*path.coords[-1])
    t.dwell(20, **LOADED)
    first = len(t.fixes)
    if negative:  # through the other site: one sensor glitch while it stands there
        if profile.has_lift:
            t.emit(0.0, lid=0, lift=1, load=2)
            kind, what = None, f"drives loaded through {site}, one lift-sensor bounce there, " \
                "tips at its own destination"
        else:
            t.emit(0.0, lid=0, lift=0, load=0)
            kind, what = "load_spike", f"drives loaded through {site}, one low load reading " \
                "there, tips at its own destination"
        t.dwell(60, **LOADED)
        window = (t.fixes[first]["ts"], t.fixes[-1]["ts"])
        t.drive(shapely.reverse(path), 30, **LOADED)
        b._drive_and_tip(t, route, a)
    else:
        if profile.has_lift:
            t.dwell(90, lid=1, lift=1, load=2)
            kind, what = None, f"tips in {site}, which its permit does not name"
        else:
            t.dwell(90, lid=1, lift=0, load=0)
            kind, what = "load_drop", f"the load drops in {site}, which its permit does not " \
                "name (no lift sensor)"
        window = (t.fixes[first]["ts"], t.fixes[-1]["ts"])
        b.note_arrival(t, site, since)
        t.dwell(20, **EMPTY)
        home = b._spot(route, end=True)
        back = _run(b, (t.x, t.y), home)
        if back is None:
            raise EpisodeError("no way back clear of the zones")
        t.drive(back, 30, **EMPTY)
        t.go_to(*home)
        t.dwell(20, **EMPTY)
    if t.fixes[-1]["ts"] - departed > MAX_LEG_S * 1000:
        raise EpisodeError("the detour takes too long")
    return what, window, kind, _off_route_truth(b, t, cands, plate)


def _roadside(b: Episodes, route, corridor: float) -> tuple[float, float, float]:
    """(x, y, fraction): a spot beside the route, well inside its corridor, clear of every
    fence by 50 m."""
    for a in (0.4, 0.3, 0.5, 0.6, 0.2, 0.7):
        for side in (0.35, -0.35):
            x, y = TruckTrack.beside(route, a, side * corridor)
            if not b._near_fences(shapely.Point(x, y), 50):
                return x, y, a
    raise EpisodeError("no roadside spot clear of the fences")


def _trip(b: Episodes, t: TruckTrack, route, permit, negative: bool):
    x, y, a = _roadside(b, route, permit.corridor_m)
    b._load_and_drive(t, route, a)
    departed = _departure(b, t, permit.origin, 0)
    deadline = departed + int(TRIP_CLOSE_S * 1000)
    back = (t.x, t.y)
    t.drive(shapely.LineString([back, (x, y)]), 10, **LOADED)
    if negative:
        # how long the rest takes: a dry run from the roadside
        probe = TruckTrack(b.city, t.device, 0, interval_s=b.interval_s)
        probe.go_to(x, y)
        probe.drive(shapely.LineString([(x, y), back]), 10, **LOADED)
        b._drive_and_tip(probe, route, a)
        site = permit.destinations[0]
        took = b.arrived(probe, b.site_at(*b._spot(route, end=True)) or site, 0)
        if took is None:
            raise EpisodeError("the dry run never arrives")
        wait = (deadline - int(NEAR_S * 1000) - took) - t.t
        if wait < 60_000:
            raise EpisodeError("the route is too long to wait before the deadline")
        b._arrivals.clear()
    else:
        wait = deadline - t.t + int(t.rng.uniform(300, 1200) * 1000)
    t.dwell(wait / 1000, **LOADED)
    t.drive(shapely.LineString([(x, y), back]), 10, **LOADED)
    since = len(t.fixes)
    b._drive_and_tip(t, route, a)
    dest = b.site_at(*b._spot(route, end=True)) or permit.destinations[0]
    arrived = b.arrived(t, dest, since)
    if arrived is None:
        raise EpisodeError("it never arrives")
    if negative:
        # the terminal goes on reporting from the destination past the deadline
        t.dwell(max(0.0, (deadline - t.t) / 1000 + 60), **EMPTY)
        what = f"waits loaded on the roadside, arrives {(deadline - arrived) / 60000:.0f} min " \
            "before the trip deadline"
        return what, (arrived, deadline + 60_000)
    over = [f["ts"] for f in t.fixes if deadline < f["ts"] < arrived]
    if not over:
        raise EpisodeError("no fix past the deadline")
    what = f"waits loaded on the roadside {(arrived - departed) / 60000:.0f} min after it " \
        "left, arrives after the trip deadline"
    return what, (over[0], over[-1])


def _overload(b: Episodes, t: TruckTrack, route, profile: Profile, negative: bool, k: int):
    rated = float(profile.rated_kg or 0)
    if not negative:
        over = float(t.rng.uniform(0.15, 0.60))
        b._load_and_drive(t, route, 0.05)
        t.drive(t.part(route, 0.05, 0.85), 35, **LOADED)
        b._drive_and_tip(t, route, 0.85)
        moving = [f["ts"] for f in t.fixes if f.get("load") == 2 and f["spd"] > 5]
        return f"drives {over:.0%} over its rated load", (moving[0], moving[-1]), \
            rated * (1 + over)
    if k % 2 == 0:  # 5 % over, one heavy reading on the road
        b._load_and_drive(t, route, 0.05)
        t.drive(t.part(route, 0.05, 0.45), 35, **LOADED)
        t.emit(35, 0.0, None, None, **LOADED, _kg=rated * 1.45)
        t.drive(t.part(route, 0.45, 0.85), 35, **LOADED)
        b._drive_and_tip(t, route, 0.85)
        moving = [f["ts"] for f in t.fixes if f.get("load") == 2 and f["spd"] > 5]
        return "drives 5 % over its rated load, one reading 45 % over", \
            (moving[0], moving[-1]), rated * 1.05
    # heavily over on the weighbridge, standing; part of it taken off before it leaves
    start = route.interpolate(0.0)
    t.go_to(*b._spot(route, end=False))
    t.dwell(60, lid=1, lift=0, load=1)
    first = len(t.fixes)
    t.dwell(120, lid=1, lift=0, load=2, _kg=rated * 1.5)
    window = (t.fixes[first]["ts"], t.fixes[-1]["ts"])
    t.dwell(60, lid=1, lift=0, load=1)
    t.dwell(30, **LOADED)
    t.drive(shapely.LineString([(t.x, t.y), (start.x, start.y)]), 15, **LOADED)
    t.drive(t.part(route, 0.0, 0.85), 35, **LOADED)
    b._drive_and_tip(t, route, 0.85)
    return "50 % over its rated load standing on the site's weighbridge; part taken off " \
        "before it leaves", window, rated * 0.97


def _volume(b: Episodes, t: TruckTrack, route, permit, plan: VolumePlan, negative: bool):
    departures = []
    for n in range(plan.hauls):
        if n:  # back to the origin, empty, for the next load
            t.drive(shapely.LineString([(t.x, t.y), tuple(shapely.get_coordinates(route)[-1])]),
                    15, **EMPTY)
            t.drive(t.part(route, 1.0, 0.0), 35, **EMPTY)
            t.drive(shapely.LineString([(t.x, t.y), b._spot(route, end=False)]), 15, **EMPTY)
        since = len(t.fixes)
        b._load_and_drive(t, route, 0.0)
        b._drive_and_tip(t, route, 0.0)
        departures.append(_departure(b, t, permit.origin, since))
    last = departures[-1]
    what = f"{plan.hauls} load(s) take job {plan.job} to exactly its declared volume" \
        if negative else f"the load that takes job {plan.job} over its declared volume" \
        + (f" (after {plan.hauls - 1} within it)" if plan.hauls > 1 else "")
    return what, (last, last), departures


def route_ok(length_m: float) -> bool:
    """Whether an episode may take a route this long (its leg well within 2 hours)."""
    return length_m <= EPISODE_ROUTE_MAX_M


MANIFEST_BUILDERS[:] = [manifest_episode]  # simulator.episodes dispatches the manifest rules
