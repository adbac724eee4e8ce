"""Scripted episodes with known truth: one offence per rule, and one near-miss per rule that
looks like the offence but must *not* be flagged.

Each episode drives one truck (``TruckTrack``) and returns its truth entry: the rule, the
first and last offending fix (device time) and, for a near-miss, ``negative: true``. The
predicates that pick the offending fixes are the rule's own condition, so the truth is read
off the track rather than assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import shapely

from domain.city import SITE_KINDS, City, Fence, parse_window
from simulator.scenarios import TruckTrack, inner_spot


@dataclass(frozen=True)
class Profile:
    """What a terminal reports — a lift sensor or not, a load level or a weight (``full_kg``
    a full load) — and what the registry says of its truck (None: unknown)."""

    has_lift: bool = True
    weighs: bool = False
    full_kg: float = 28_000.0
    rated_kg: float | None = None
    volume_m3: float | None = None

    @property
    def load_m3(self) -> float | None:
        """The true volume of a full load: weighed / 1,800 kg/m³, else the body volume."""
        if self.weighs:
            return round(self.full_kg / 1800.0, 1)
        return self.volume_m3


STANDARD = Profile()

#: the manifest's rules (issue #22), their episodes in ``simulator.episodes_manifest``
MANIFEST_RULES = ("WRONG_DESTINATION", "TRIP_NOT_CLOSED", "OVERLOAD", "PERMIT_VOLUME_EXCEEDED")
RULES = ("OVERSPEED", "UNAUTHORISED_DUMP", "UNCOVERED_LOAD", "RESTRICTED_ZONE", "OFF_ROUTE",
         "NO_PERMIT", "SIGNAL_LOSS", *MANIFEST_RULES, "TERMINAL_TAMPER")
ANTENNA_CUT, POWER_CUT = 1 << 5, 1 << 8  # JT/T 808 alarm bits (docs/protocol.md)
LOADED = {"lid": 0, "lift": 0, "load": 2}
EMPTY = {"lid": 0, "lift": 0, "load": 0}


class EpisodeError(ValueError):
    """The city offers no place for this episode (e.g. no restricted zone)."""


@dataclass
class Episode:
    track: TruckTrack
    truth: dict
    # other true offences the episode commits on the way (an OFF_ROUTE on the way to a site
    # the permit does not name), written to the truth with it
    extra: list[dict] = field(default_factory=list)
    # (site, device ms of the first fix inside, the load's true m³ or None) of every loaded
    # arrival where it tips: the site operator's receipts
    arrivals: list[tuple[str, int, float | None]] = field(default_factory=list)
    # inside a blind area, the terminal holds its fixes from this device time (None: from
    # the track's first fix)
    hold_from: int | None = None
    # device ms of the departures of loads counted against a small job (PERMIT_VOLUME_EXCEEDED)
    loads: list[int] = field(default_factory=list)
    job: str = ""


def truth_entry(rule: str, track: TruckTrack, plate: str | None, offending: Callable[[dict], bool],
           what: str, negative: bool = False) -> dict:
    hits = [f for f in track.fixes if offending(f)]
    if not hits:
        raise EpisodeError(f"{rule}: the episode has no offending fix")
    entry = {"rule": rule, "device": track.device, "plate": plate,
             "start_ts": hits[0]["ts"], "end_ts": hits[-1]["ts"], "what": what}
    if negative:
        entry["negative"] = True
    return entry


class Episodes:
    """Builds episodes over one city; remembers its metric fences so each check is cheap."""

    def __init__(self, city: City, interval_s: float) -> None:
        self.city = city
        self.interval_s = interval_s
        probe = TruckTrack(city, "-", 0)
        self.fences = {f.id: probe.metric(f.geometry) for f in city.fences}
        self.tree = shapely.STRtree(list(self.fences.values()))
        self.fence_list = list(city.fences)
        sites = [(f.id, g) for f, g in zip(city.fences, self.fences.values(), strict=True)
                 if f.kind != "restricted_zone" and f.kind != "district"]
        self.site_ids = [i for i, _ in sites]
        self.site_tree = shapely.STRtree([g for _, g in sites])
        self.permits = {p.id: p for p in city.permits}
        self.plates = {v.device_id: v.plate for v in city.vehicles}
        self.tz = ZoneInfo(city.timezone)
        self._spots: dict[tuple[float, float], tuple[float, float]] = {}
        self.vehicles = {v.device_id: v for v in city.vehicles}
        self.by_plate: dict[str, list] = {}
        for p in sorted(city.permits, key=lambda p: (p.valid_from, p.id)):  # as the rules
            self.by_plate.setdefault(p.plate, []).append(p)
        self._arrivals: list[tuple[str, int, float | None]] = []
        self._routes: dict[str, shapely.LineString] = {}
        self._load_m3: float | None = None  # the episode truck's load, for its receipts

    def route_m(self, permit_id: str) -> shapely.LineString:
        """A permit's route in metres (cached)."""
        if permit_id not in self._routes:
            self._routes[permit_id] = TruckTrack(self.city, "-", 0).route(permit_id)
        return self._routes[permit_id]

    def site_at(self, x: float, y: float) -> str | None:
        """The site (not a zone or district) holding a metric point."""
        hit = self.site_tree.query(shapely.Point(x, y), "intersects")
        return self.site_ids[int(hit[0])] if len(hit) else None

    def inside(self, fix: dict, fence_id: str, track: TruckTrack) -> bool:
        x, y = track.projector.to_metric([fix["lon"]], [fix["lat"]])
        return bool(self.fences[fence_id].intersects(shapely.Point(x[0], y[0])))

    def arrived(self, t: TruckTrack, site: str, since: int) -> int | None:
        """Device time of the first fix from index ``since`` on inside ``site``."""
        return next((f["ts"] for f in t.fixes[since:] if self.inside(f, site, t)), None)

    def note_arrival(self, t: TruckTrack, site: str | None, since: int) -> None:
        """A loaded arrival where the truck tips: a receipt at that site."""
        if site is None:
            return
        ts = self.arrived(t, site, since)
        if ts is not None:
            self._arrivals.append((site, ts, self._load_m3))

    def _local_minute(self, ms: int) -> int:
        at = datetime.fromtimestamp(ms / 1000, self.tz)
        return at.hour * 60 + at.minute

    def _zone_active(self, zone: Fence, ms: int) -> bool:
        if not zone.windows:
            return True
        minute = self._local_minute(ms)
        for w in zone.windows:
            a, b = parse_window(w)
            if (a <= minute < b) if a <= b else (minute >= a or minute < b):
                return True
        return False

    def _near_fences(self, geom, metres: float) -> list[Fence]:
        return [self.fence_list[i] for i in self.tree.query(geom, "dwithin", metres)]

    def _clear_of(self, route, track: TruckTrack, metres: float, avoid=()
                  ) -> tuple[float, float, float]:
        """A point ``metres`` beside the route that really is that far from all of it (a
        route that doubles back could pass right by), from the truck's other permit routes
        (``avoid``: route, corridor) and not near any fence; with its fraction of the route."""
        for fraction in (0.4, 0.3, 0.5, 0.6, 0.2, 0.7, 0.8, 0.1):
            for side in (metres, -metres):
                x, y = track.beside(route, fraction, side)
                point = shapely.Point(x, y)
                if route.distance(point) >= 0.9 * metres and not self._near_fences(point, 50) \
                        and all(r.distance(point) > c + 100 for r, c in avoid):
                    return x, y, fraction
        raise EpisodeError("no point clear of the route and the fences")

    def _leave_zone(self, t: TruckTrack, zone: Fence) -> None:
        """Drive out of the zone to 200 m past its nearest edge (clear of every zone): a
        truck that fell silent inside would still be inside as far as anyone knows."""
        area = self.fences[zone.id]
        here = shapely.Point(t.x, t.y)
        edge = area.boundary.interpolate(area.boundary.project(here))
        dx, dy = edge.x - t.x, edge.y - t.y
        norm = float(np.hypot(dx, dy)) or 1.0
        zones = [self.fences[f.id] for f in self.fence_list if f.kind == "restricted_zone"]
        for metres in (200, 400, 700, 1000, 1500):
            x, y = edge.x + dx / norm * metres, edge.y + dy / norm * metres
            if not any(z.distance(shapely.Point(x, y)) < 50 for z in zones):
                break
        t.drive(shapely.LineString([(t.x, t.y), (x, y)]), 20, **EMPTY)

    # --- a real leg around the episode: loaded at the origin, tipped at the destination ------

    def _outside_sites(self, fix: dict, track: TruckTrack) -> bool:
        x, y = track.projector.to_metric([fix["lon"]], [fix["lat"]])
        return not len(self.site_tree.query(shapely.Point(x[0], y[0]), "intersects"))

    def _spot(self, route, end: bool) -> tuple[float, float]:
        """Where a truck on ``route`` loads (its origin) or tips (``end``: its destination):
        well inside the site, reached in a straight line from where the route meets it."""
        xy = shapely.get_coordinates(route)[-1 if end else 0]
        key = (float(xy[0]), float(xy[1]))
        if key not in self._spots:
            here = shapely.Point(key)
            sites = self.site_tree.geometries.take(self.site_tree.query(here, "intersects"))
            self._spots[key] = inner_spot(sites[0], key) if sites else key
        return self._spots[key]

    def _load_and_drive(self, t: TruckTrack, route, a: float) -> None:
        """Load well inside the origin (lid open, half; then closed, full), drive to where
        the route leaves the site and on along the route to fraction ``a``."""
        start = route.interpolate(0.0)
        t.go_to(*self._spot(route, end=False))
        t.dwell(60, lid=1, lift=0, load=1)
        t.dwell(30, **LOADED)
        if np.hypot(start.x - t.x, start.y - t.y) > 1.0:
            t.drive(shapely.LineString([(t.x, t.y), (start.x, start.y)]), 15, **LOADED)
        if a > 0.001:
            t.drive(t.part(route, 0.0, a), 35, **LOADED)

    def _into_site(self, t: TruckTrack, route, **sensors) -> None:
        """From the last fix (a fix falls every interval, so the route's last metres are
        driven between fixes) to the route's end, and on to a spot well inside the
        destination."""
        spot = self._spot(route, end=True)
        path = shapely.LineString([(t.x, t.y), tuple(shapely.get_coordinates(route)[-1]), spot])
        if path.length > 1.0:
            t.drive(path, 15, **sensors)
        t.go_to(*spot)  # the next fix stands there (drive's last fix may fall short of it)

    def _drive_and_tip(self, t: TruckTrack, route, b: float) -> None:
        """Drive the rest of the route loaded and tip well inside the destination."""
        since = len(t.fixes)
        if b < 0.999:
            t.drive(t.part(route, b, 1.0), 35, **LOADED)
        self._into_site(t, route, **LOADED)
        self.note_arrival(t, self.site_at(t.x, t.y), since)
        t.dwell(20, **LOADED)
        t.dwell(90, lid=1, lift=1, load=2)
        t.dwell(20, **EMPTY)

    def _drive_empty_home(self, t: TruckTrack, route, b: float) -> None:
        if b < 0.999:
            t.drive(t.part(route, b, 1.0), 35, **EMPTY)
        self._into_site(t, route, **EMPTY)
        t.dwell(20, **EMPTY)

    def _unlimited_part(self, route, length: float) -> tuple[float, float]:
        """A stretch of the route (as fractions) that no speed-limited fence touches."""
        for a in np.arange(0.05, 0.95 - length, 0.05):
            piece = TruckTrack.part(route, a, a + length)
            if not any(f.speed_limit_kmh for f in self._near_fences(piece, 30)):
                return float(a), float(a + length)
        raise EpisodeError("every stretch of the route crosses a speed-limited fence")

    # --- offences -------------------------------------------------------------------------

    def offence(self, rule: str, device: str, permit_id: str | None, begin_ms: int, seed: int,
                k: int = 0, profile: Profile = STANDARD, avoid=(), plan=None) -> Episode:
        self._arrivals, self._load_m3 = [], profile.load_m3
        if rule in MANIFEST_RULES:
            return _manifest_builder()(self, rule, False, device, permit_id, begin_ms, seed,
                                       k, profile, plan)
        t = TruckTrack(self.city, device, begin_ms, interval_s=self.interval_s, seed=seed)
        route = t.route(permit_id) if permit_id else None
        kind = None
        offending: Callable[[dict], bool]
        if rule == "OVERSPEED":
            self._load_and_drive(t, route, 0.05)
            t.drive(t.part(route, 0.05, 0.5), 75, **LOADED)
            t.drive(t.part(route, 0.5, 0.8), 40, **LOADED)
            self._drive_and_tip(t, route, 0.8)
            what, offending = "75 km/h loaded on its route", lambda f: f["spd"] > 60
        elif rule == "UNAUTHORISED_DUMP":
            self._load_and_drive(t, route, 0.5)
            t.dwell(30, **LOADED)
            first = len(t.fixes)
            if profile.has_lift:
                t.dwell(120, lid=1, lift=1, load=2)
                what = "tips 2 min on the roadside"
            else:
                t.dwell(120, lid=1, lift=0, load=0)
                what, kind = "the load drops to empty on the roadside (no lift sensor)", \
                    "load_drop"
            window = (t.fixes[first]["ts"], t.fixes[-1]["ts"])
            t.dwell(60, **EMPTY)
            t.drive(t.part(route, 0.5, 0.7), 35, **EMPTY)
            self._drive_empty_home(t, route, 0.7)
            def offending(f: dict, w: tuple[int, int] = window) -> bool:
                return w[0] <= f["ts"] <= w[1]
        elif rule == "UNCOVERED_LOAD":
            self._load_and_drive(t, route, 0.1)
            t.drive(t.part(route, 0.1, 0.6), 35, lid=1, lift=0, load=2)
            t.drive(t.part(route, 0.6, 0.9), 35, **LOADED)
            self._drive_and_tip(t, route, 0.9)
            what = "drives loaded with the lid open"
            offending = lambda f: f["lid"] == 1 and f["spd"] > 5 and f["load"] == 2 \
                and self._outside_sites(f, t)  # noqa: E731
        elif rule == "RESTRICTED_ZONE":
            zones = [f for f in self.fence_list if f.kind == "restricted_zone"
                     and (not f.windows or "00:00-24:00" in f.windows)]
            if not zones:
                raise EpisodeError("the city has no all-day restricted zone")
            zone = zones[k % len(zones)]
            t.go_to(*t.centre(zone.id))
            t.dwell(180, **EMPTY)
            last = t.fixes[-1]["ts"]
            self._leave_zone(t, zone)
            what = f"waits 3 min in {zone.id}"
            def offending(f: dict, last: int = last) -> bool:
                return f["ts"] <= last
        elif rule == "OFF_ROUTE":
            if permit_id is None or route is None:
                raise ValueError("an OFF_ROUTE offence needs a permit (its route)")
            x, y, a = self._clear_of(route, t, 400, avoid)
            corridor = self.permits[permit_id].corridor_m
            self._load_and_drive(t, route, a)
            back = (t.x, t.y)
            t.drive(shapely.LineString([back, (x, y)]), 30, **LOADED)
            t.dwell(300, **LOADED)
            t.drive(shapely.LineString([(x, y), back]), 30, **LOADED)
            self._drive_and_tip(t, route, a)

            def offending(f, route=route, corridor=corridor):
                px, py = t.projector.to_metric([f["lon"]], [f["lat"]])
                return route.distance(shapely.Point(px[0], py[0])) > corridor \
                    and self._outside_sites(f, t)
            what = "parks loaded 400 m off its corridor"
        elif rule == "NO_PERMIT":
            self._load_and_drive(t, route, 0.1)
            t.drive(t.part(route, 0.1, 0.9), 35, **LOADED)
            self._drive_and_tip(t, route, 0.9)
            what = "hauls with no permit"
            offending = lambda f: f["load"] == 2 and f["spd"] > 5 \
                and self._outside_sites(f, t)  # noqa: E731
        elif rule == "SIGNAL_LOSS":
            self._load_and_drive(t, route, 0.05)
            t.drive(t.part(route, 0.05, 0.3), 35, **LOADED)
            last = t.fixes[-1]["ts"]
            t.silence(480)
            t.drive(t.part(route, 0.5, 0.8), 35, **LOADED)
            self._drive_and_tip(t, route, 0.8)
            what = "terminal silent 8 min while hauling"
            def offending(f: dict, last: int = last) -> bool:
                return f["ts"] == last
        elif rule == "TERMINAL_TAMPER":
            self._load_and_drive(t, route, 0.05)
            first = len(t.fixes)
            t.drive(t.part(route, 0.05, 0.4), 35, alarm=ANTENNA_CUT, **LOADED)
            window = (t.fixes[first]["ts"], t.fixes[-1]["ts"])
            t.drive(t.part(route, 0.4, 0.8), 35, **LOADED)
            self._drive_and_tip(t, route, 0.8)
            what = "hauls with its GNSS antenna cut (the terminal's alarm)"
            def offending(f: dict, w: tuple[int, int] = window) -> bool:
                return w[0] <= f["ts"] <= w[1]
        else:
            raise EpisodeError(f"unknown rule {rule!r}")
        _park(t)
        if rule == "TERMINAL_TAMPER":
            _reports_alarms(t)
        entry = truth_entry(rule, t, self.plates.get(device), offending, what)
        entry["kind"] = kind or "offence"
        _apply(t, profile)
        return Episode(t, entry, arrivals=self._arrivals)

    # --- near-misses ------------------------------------------------------------------------

    def near_miss(self, rule: str, device: str, permit_id: str | None, begin_ms: int,
                  seed: int, k: int = 0, profile: Profile = STANDARD, avoid=(),
                  plan=None) -> Episode:
        """Looks like ``rule`` but is not an offence; the truth entry is a negative."""
        self._arrivals, self._load_m3 = [], profile.load_m3
        if rule in MANIFEST_RULES:
            return _manifest_builder()(self, rule, True, device, permit_id, begin_ms, seed,
                                       k, profile, plan)
        t = TruckTrack(self.city, device, begin_ms, interval_s=self.interval_s, seed=seed)
        route = t.route(permit_id) if permit_id else None
        kind = None
        near: Callable[[dict], bool]
        if rule == "OVERSPEED":
            a, b = self._unlimited_part(route, 0.3)
            self._load_and_drive(t, route, a)
            t.drive(t.part(route, a, (a + b) / 2), 57, **LOADED)
            t.emit(82, **LOADED)  # one speed-sensor spike
            t.drive(t.part(route, (a + b) / 2, b), 57, **LOADED)
            self._drive_and_tip(t, route, b)
            what, near = "57 km/h with one 82 km/h spike", lambda f: f["spd"] > 50
        elif rule == "UNAUTHORISED_DUMP":
            self._load_and_drive(t, route, 0.5)
            t.dwell(30, **LOADED)
            if profile.has_lift:
                t.emit(0.0, lid=0, lift=1, load=2)  # the lift sensor bounces once
                what = "stopped on the roadside, one lift-sensor bounce"
            else:
                t.emit(0.0, lid=0, lift=0, load=0)  # one low load reading
                what, kind = "stopped on the roadside, one low load reading (no lift sensor)", \
                    "load_spike"
            first = t.fixes[-1]["ts"]
            t.dwell(60, **LOADED)
            self._drive_and_tip(t, route, 0.5)
            def near(f: dict, first: int = first) -> bool:
                return abs(f["ts"] - first) <= 30_000
        elif rule == "UNCOVERED_LOAD":
            t.drive(t.part(route, 0.6, 0.1), 35, lid=1, lift=0, load=0)
            what, near = "drives empty with the lid open", lambda f: f["lid"] == 1
        elif rule == "RESTRICTED_ZONE":
            zone = self._inactive_zone(begin_ms, k)
            t.go_to(*t.centre(zone.id))
            t.dwell(180, **EMPTY)
            last = t.fixes[-1]["ts"]
            self._leave_zone(t, zone)
            what = f"waits 3 min in {zone.id} outside its hours"
            def near(f: dict, last: int = last) -> bool:
                return f["ts"] <= last
        elif rule == "OFF_ROUTE":
            if permit_id is None or route is None:
                raise ValueError("an OFF_ROUTE near-miss needs a permit (its route)")
            permit = self.permits[permit_id]
            path, a, b = self._parallel(route, 0.6 * permit.corridor_m)
            self._load_and_drive(t, route, a)
            t.drive(shapely.LineString([(t.x, t.y), path.coords[0]]), 30, **LOADED)
            first = len(t.fixes)
            t.drive(path, 30, **LOADED)
            window = (t.fixes[first]["ts"], t.fixes[-1]["ts"])
            end = route.interpolate(b, normalized=True)
            t.drive(shapely.LineString([(t.x, t.y), (end.x, end.y)]), 30, **LOADED)
            self._drive_and_tip(t, route, b)
            what = f"drives {0.6 * permit.corridor_m:.0f} m beside its route, inside the corridor"
            def near(f: dict, w: tuple[int, int] = window) -> bool:
                return w[0] <= f["ts"] <= w[1]
        elif rule == "NO_PERMIT":
            t.drive(t.part(route, 0.1, 0.9), 35, **EMPTY)
            what, near = "no permit, but driving empty", lambda f: True
        elif rule == "SIGNAL_LOSS":
            self._load_and_drive(t, route, 0.05)
            t.drive(t.part(route, 0.05, 0.3), 35, **LOADED)
            last = t.fixes[-1]["ts"]
            t.silence(240)
            t.drive(t.part(route, 0.5, 0.8), 35, **LOADED)
            self._drive_and_tip(t, route, 0.8)
            what = "terminal silent 4 min while hauling (a long tunnel)"
            def near(f: dict, last: int = last) -> bool:
                return f["ts"] == last
        elif rule == "TERMINAL_TAMPER":
            # the power connector bounces once on the road; the battery is off while parked
            self._load_and_drive(t, route, 0.1)
            t.drive(t.part(route, 0.1, 0.3), 35, **LOADED)
            t.emit(35, alarm=POWER_CUT, **LOADED)
            t.drive(t.part(route, 0.3, 0.6), 35, **LOADED)
            t.dwell(240, alarm=POWER_CUT, **LOADED)
            t.drive(t.part(route, 0.6, 0.8), 35, **LOADED)
            self._drive_and_tip(t, route, 0.8)
            what = "one power-cut report on the road, power off 4 min while parked"
            near = lambda f: f.get("alarm", 0) != 0  # noqa: E731
        else:
            raise EpisodeError(f"unknown rule {rule!r}")
        _park(t)
        if rule == "TERMINAL_TAMPER":
            _reports_alarms(t)
        entry = truth_entry(rule, t, self.plates.get(device), near, what, negative=True)
        entry["kind"] = kind or "near_miss"
        _apply(t, profile)
        return Episode(t, entry, arrivals=self._arrivals)

    def _inactive_zone(self, at_ms: int, k: int) -> Fence:
        """A restricted zone whose hours do not cover the next 10 minutes, with a centre no
        zone that *is* active covers."""
        zones = [f for f in self.fence_list if f.kind == "restricted_zone"]
        quiet = [z for z in zones if z.windows
                 and not any(self._zone_active(z, at_ms + m * 60_000) for m in range(11))]
        probe = TruckTrack(self.city, "-", 0)
        for z in quiet[k % max(1, len(quiet)):] + quiet[:k % max(1, len(quiet))]:
            centre = shapely.Point(*probe.centre(z.id))
            if not any(o.kind == "restricted_zone" and o.id != z.id
                       and self._zone_active(o, at_ms) for o in self._near_fences(centre, 50)):
                return z
        raise EpisodeError("no restricted zone is outside its hours at this time")

    def _parallel(self, route, metres: float) -> tuple[shapely.LineString, float, float]:
        """A stretch of up to 1.5 km beside the route, every point ``metres`` (± 20 %) from
        it, clear of restricted zones."""
        for a in (0.3, 0.4, 0.5, 0.2, 0.6, 0.1, 0.7):
            span = min(0.2, 1500 / max(route.length, 1))
            piece = TruckTrack.part(route, a, a + span)
            for side in (metres, -metres):
                line = piece.offset_curve(side)
                if line.is_empty or line.geom_type != "LineString":
                    continue
                points = shapely.points(shapely.get_coordinates(
                    line.segmentize(10.0)))
                d = shapely.distance(route, points)
                if d.min() >= 0.8 * metres and d.max() <= 1.2 * metres and not any(
                        f.kind == "restricted_zone" for f in self._near_fences(line, 30)):
                    return line, a, a + span
        raise EpisodeError("no stretch of the route has a clean parallel")


# The manifest rules' episodes are built in ``simulator.episodes_manifest``, which builds on
# this module and registers its builder here when imported (``simulator.mixed`` imports it):
# dependencies point one way.
MANIFEST_BUILDERS: list = []


def _manifest_builder():
    if not MANIFEST_BUILDERS:
        raise EpisodeError("the manifest rules' episodes need simulator.episodes_manifest "
                           "imported (simulator.mixed does)")
    return MANIFEST_BUILDERS[0]


def _reports_alarms(track: TruckTrack) -> None:
    """This terminal reports its alarm word on every fix (0: none raised)."""
    for f in track.fixes:
        f.setdefault("alarm", 0)


def _park(track: TruckTrack) -> None:
    """An episode ends with the truck standing (engine off): a terminal that goes quiet
    after driving would be a real SIGNAL_LOSS."""
    last = track.fixes[-1]
    if last["spd"] > 0:
        track.dwell(30, lid=last.get("lid"), lift=last.get("lift"), load=last.get("load"))


def _apply(track: TruckTrack, profile: Profile, full_kg: float | None = None) -> None:
    """The terminal's sensors: no lift key without a lift sensor, a weight instead of a
    level on a weighing terminal (``full_kg`` a full load, default the profile's; a fix's
    own ``_kg`` — set by an episode — is what it weighs)."""
    full = profile.full_kg if full_kg is None else full_kg
    for f in track.fixes:
        own = f.pop("_kg", None)
        if profile.has_lift and not profile.weighs:
            continue
        if not profile.has_lift:
            f.pop("lift", None)
        if profile.weighs and "load" in f:
            level = f.pop("load")
            kg = {0: 80.0, 1: 0.45 * full, 2: full}[level] if own is None else own
            f["load_kg"] = round(kg + float(track.rng.normal(0, 60)), 0) if level else kg


#: How long each demo offence must have lasted (device time) by the end of the demo for its
#: rule to have opened: the rule's debounce (docs/rules.md; UNAUTHORISED_DUMP's truck stands
#: 8 s before it tips) plus ``_DEMO_MARGIN_S`` for the reorder window and a few more fixes.
_DEMO_OPENS_S = {"OVERSPEED": 15, "UNAUTHORISED_DUMP": 18, "UNCOVERED_LOAD": 30,
                 "RESTRICTED_ZONE": 20, "OFF_ROUTE": 60, "NO_PERMIT": 120}
_DEMO_MARGIN_S = 25.0  # the reorder window (10 s), the debounce's fixes, a loaded machine
DEMO_LEAD_S = 15.0  # every offender's terminal has at least this much buffered at the start
DEMO_SILENCE_S = 360.0  # the SIGNAL_LOSS truck's silence (the rule: more than 300 s)
_DEMO_ORDER = ("OVERSPEED", "UNAUTHORISED_DUMP", "UNCOVERED_LOAD", "RESTRICTED_ZONE",
               "OFF_ROUTE", "SIGNAL_LOSS", "NO_PERMIT")


def demo_lead_s(rule: str, seconds: float) -> float:
    """How long before the demo's start (device time) a demo offender's track begins: its
    terminal sends what it buffered first, so even a short demo shows the offence opened."""
    if rule == "SIGNAL_LOSS":
        return DEMO_SILENCE_S + 20.0 - min(10.0, seconds / 2)  # back a few s into the demo
    return max(DEMO_LEAD_S, _DEMO_OPENS_S[rule] + _DEMO_MARGIN_S - seconds)


def demo_offenders(city: City, devices_with_permits: dict[str, str], start_ms: int,
                   seconds: float, interval_s: float = 1.0) -> list[Episode]:
    """Seven trucks that break a rule each during a demo of ``seconds`` from ``start_ms``
    (device time, the wall clock), for ``muckwatch demo``, with their truth:

    * OVERSPEED, UNAUTHORISED_DUMP, UNCOVERED_LOAD, RESTRICTED_ZONE and OFF_ROUTE: trucks of
      the fleet (``devices_with_permits``: device id → the permit it works now) offending
      from the first fix of a track that begins ``demo_lead_s`` before the demo — what their
      terminals buffered, sent first — so each offence has outlasted its rule's debounce by
      the end of even a short demo;
    * NO_PERMIT: a vehicle that holds no permit hauls loaded along a route, from two minutes
      and more before the end (the rule's debounce is 120 s);
    * SIGNAL_LOSS: a truck of the fleet hauled loaded on its route 6½ minutes before the
      demo (device time), fell silent for 6 minutes — a terminal shielded while it drives
      on — and reappears a few seconds into the demo, further along its route. The rule finds
      the loss in the gap between its two fixes (device time, more than 300 s after a fix
      moving outside sites) when the second arrives; a terminal silent *now* would be found
      by the ingest's sweep after 300 s of wall-clock silence, too long for a one-minute
      demo.

    Every track ends at the end of the demo."""
    plates = {v.device_id: v.plate for v in city.vehicles}
    permits = {p.id: p for p in city.permits}
    end_ms = start_ms + int(seconds * 1000)
    # all-day jobs first (a track may begin minutes before the demo), the last trucks first
    fleet = sorted(reversed(list(devices_with_permits.items())),
                   key=lambda dp: permits[dp[1]].hours is not None)
    zone = next((f for f in city.fences if f.kind == "restricted_zone"
                 and (not f.windows or "00:00-24:00" in f.windows)), None)
    holders = {p.plate for p in city.permits}
    unpermitted = next((v.device_id for v in city.vehicles if v.plate not in holders), None)
    probe = TruckTrack(city, "-", 0)
    sites = shapely.union_all([probe.metric(f.geometry) for f in city.fences
                               if f.kind in SITE_KINDS])
    long_routes = sorted(devices_with_permits.values(),
                         key=lambda pid: -probe.route(pid).length)
    episodes = []
    for n, rule in enumerate(_DEMO_ORDER):
        if rule == "NO_PERMIT":
            # a stretch of road clear of every site (NO_PERMIT is about the road), whatever
            # the hour picked as the working fleet's longest routes
            clear = next((pid for pid in long_routes
                          if not shapely.intersects(sites, probe.part(probe.route(pid), 0.1,
                                                                      0.9))), None)
            if unpermitted is None or clear is None:
                continue
            device, permit_id = unpermitted, clear
        elif rule == "SIGNAL_LOSS":  # the longest route left: it drives on while silent
            rest = sorted(fleet[n:], key=lambda dp: -probe.route(dp[1]).length)
            if not rest:
                continue
            device, permit_id = rest[0]
        elif n < len(fleet):
            device, permit_id = fleet[n]
        else:
            continue
        begin = start_ms - int(demo_lead_s(rule, seconds) * 1000)
        span = (end_ms - begin) / 1000
        t = TruckTrack(city, device, begin, interval_s=interval_s)
        route = t.route(permit_id)
        hit: Callable[[dict], bool]
        if rule == "OVERSPEED":
            t.drive(t.part(route, 0.1, 0.9), 75, **LOADED)
            what, hit = "75 km/h on its route", lambda f: f["spd"] > 60
        elif rule == "UNAUTHORISED_DUMP":
            p = route.interpolate(0.5, normalized=True)
            t.go_to(p.x, p.y)
            t.dwell(8, **LOADED)
            t.dwell(max(span - 20, 15), lid=1, lift=1, load=2)
            t.dwell(10, **EMPTY)
            what, hit = "tips on the roadside", lambda f: f["lift"] == 1
        elif rule == "UNCOVERED_LOAD":
            t.drive(t.part(route, 0.2, 0.8), 35, lid=1, lift=0, load=2)
            what, hit = "drives loaded with the lid open", lambda f: f["lid"] == 1
        elif rule == "RESTRICTED_ZONE":
            if zone is None:
                continue
            t.go_to(*t.centre(zone.id))
            t.dwell(span + 5, **EMPTY)
            what, hit = f"waits in {zone.id}", lambda f: True
        elif rule == "OFF_ROUTE":
            t.go_to(*t.beside(route, 0.4, 400))
            t.dwell(span + 5, **LOADED)
            what, hit = "parked loaded 400 m off its corridor", lambda f: True
        elif rule == "NO_PERMIT":
            t.drive(t.part(route, 0.1, 0.9), 35, **LOADED)
            what, hit = "hauls loaded with no permit", \
                lambda f: f["load"] == 2 and f["spd"] > 5
        else:  # SIGNAL_LOSS: at a pace its route holds for the whole track, silence included
            kmh = max(10.0, min(35.0, 0.8 * route.length / span * 3.6))
            t.drive(t.part(route, 0.1, 0.9), kmh, **LOADED)
            last = begin + 20_000
            back = begin + int((DEMO_SILENCE_S + 20) * 1000)
            t.fixes = [f for f in t.fixes if f["ts"] <= last or f["ts"] >= back]
            last = max(f["ts"] for f in t.fixes if f["ts"] <= last)
            what = f"terminal silent {DEMO_SILENCE_S / 60:.0f} min while hauling, before the demo"
            def hit(f: dict, last: int = last) -> bool:
                return f["ts"] == last
        t.fixes = [f for f in t.fixes if f["ts"] <= end_ms]
        episodes.append(Episode(t, truth_entry(rule, t, plates.get(device), hit, what)))
    return episodes
