"""Scripted episodes with known truth: one offence per rule, and one near-miss per rule that
looks like the offence but must *not* be flagged.

Each episode drives one truck (``TruckTrack``) and returns its truth entry: the rule, the
first and last offending fix (device time) and, for a near-miss, ``negative: true``. The
predicates that pick the offending fixes are the rule's own condition, so the truth is read
off the track rather than assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import shapely

from muckwatch.city import City, Fence, parse_window
from simulator.scenarios import TruckTrack

RULES = ("OVERSPEED", "UNAUTHORISED_DUMP", "UNCOVERED_LOAD", "RESTRICTED_ZONE", "OFF_ROUTE",
         "NO_PERMIT", "SIGNAL_LOSS")
LOADED = {"lid": 0, "lift": 0, "load": 2}
EMPTY = {"lid": 0, "lift": 0, "load": 0}


class EpisodeError(ValueError):
    """The city offers no place for this episode (e.g. no restricted zone)."""


@dataclass
class Episode:
    track: TruckTrack
    truth: dict


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
        self.plates = {v.device_id: v.plate for v in city.vehicles}
        self.tz = ZoneInfo(city.timezone)

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

    def _clear_of(self, route, track: TruckTrack, metres: float) -> tuple[float, float]:
        """A point ``metres`` beside the route that really is that far from all of it (a
        route that doubles back could pass right by) and not near any fence."""
        for fraction in (0.4, 0.3, 0.5, 0.6, 0.2, 0.7, 0.8, 0.1):
            for side in (metres, -metres):
                x, y = track.beside(route, fraction, side)
                point = shapely.Point(x, y)
                if route.distance(point) >= 0.9 * metres and not self._near_fences(point, 50):
                    return x, y
        raise EpisodeError("no point clear of the route and the fences")

    def _unlimited_part(self, route, length: float) -> tuple[float, float]:
        """A stretch of the route (as fractions) that no speed-limited fence touches."""
        for a in np.arange(0.05, 0.95 - length, 0.05):
            piece = TruckTrack.part(route, a, a + length)
            if not any(f.speed_limit_kmh for f in self._near_fences(piece, 30)):
                return float(a), float(a + length)
        raise EpisodeError("every stretch of the route crosses a speed-limited fence")

    # --- offences -------------------------------------------------------------------------

    def offence(self, rule: str, device: str, permit_id: str | None, begin_ms: int, seed: int,
                k: int = 0) -> Episode:
        t = TruckTrack(self.city, device, begin_ms, interval_s=self.interval_s, seed=seed)
        route = t.route(permit_id) if permit_id else None
        if rule == "OVERSPEED":
            t.drive(t.part(route, 0.05, 0.5), 75, **LOADED)
            t.drive(t.part(route, 0.5, 0.8), 40, **LOADED)
            what, offending = "75 km/h loaded on its route", lambda f: f["spd"] > 60
        elif rule == "UNAUTHORISED_DUMP":
            p = route.interpolate(0.5, normalized=True)
            t.go_to(p.x, p.y)
            t.dwell(30, **LOADED)
            t.dwell(120, lid=1, lift=1, load=2)
            t.dwell(60, **EMPTY)
            t.drive(t.part(route, 0.5, 0.7), 35, **EMPTY)
            what, offending = "tips 2 min on the roadside", lambda f: f["lift"] == 1
        elif rule == "UNCOVERED_LOAD":
            t.drive(t.part(route, 0.1, 0.6), 35, lid=1, lift=0, load=2)
            t.drive(t.part(route, 0.6, 0.9), 35, **LOADED)
            what, offending = "drives loaded with the lid open", lambda f: f["lid"] == 1
        elif rule == "RESTRICTED_ZONE":
            zones = [f for f in self.fence_list if f.kind == "restricted_zone"
                     and (not f.windows or "00:00-24:00" in f.windows)]
            if not zones:
                raise EpisodeError("the city has no all-day restricted zone")
            zone = zones[k % len(zones)]
            t.go_to(*t.centre(zone.id))
            t.dwell(180, **EMPTY)
            what, offending = f"waits 3 min in {zone.id}", lambda f: True
        elif rule == "OFF_ROUTE":
            t.go_to(*self._clear_of(route, t, 400))
            t.dwell(300, **LOADED)
            what, offending = "parked loaded 400 m off its corridor", lambda f: True
        elif rule == "NO_PERMIT":
            t.drive(t.part(route, 0.1, 0.9), 35, **LOADED)
            what, offending = "hauls with no permit", lambda f: True
        elif rule == "SIGNAL_LOSS":
            t.drive(t.part(route, 0.05, 0.3), 35, **LOADED)
            last = t.fixes[-1]["ts"]
            t.silence(480)
            t.drive(t.part(route, 0.5, 0.8), 35, **LOADED)
            what = "terminal silent 8 min while hauling"
            offending = lambda f, last=last: f["ts"] == last  # noqa: E731
        else:
            raise EpisodeError(f"unknown rule {rule!r}")
        return Episode(t, truth_entry(rule, t, self.plates.get(device), offending, what))

    # --- near-misses ------------------------------------------------------------------------

    def near_miss(self, rule: str, device: str, permit_id: str | None, begin_ms: int,
                  seed: int, k: int = 0) -> Episode:
        """Looks like ``rule`` but is not an offence; the truth entry is a negative."""
        t = TruckTrack(self.city, device, begin_ms, interval_s=self.interval_s, seed=seed)
        route = t.route(permit_id) if permit_id else None
        if rule == "OVERSPEED":
            a, b = self._unlimited_part(route, 0.3)
            t.drive(t.part(route, a, (a + b) / 2), 57, **LOADED)
            t.emit(82, **LOADED)  # one speed-sensor spike
            t.drive(t.part(route, (a + b) / 2, b), 57, **LOADED)
            what, near = "57 km/h with one 82 km/h spike", lambda f: f["spd"] > 50
        elif rule == "UNAUTHORISED_DUMP":
            p = route.interpolate(0.5, normalized=True)
            t.go_to(p.x, p.y)
            t.dwell(30, **LOADED)
            t.emit(0.0, lid=0, lift=1, load=2)  # the lift sensor bounces once
            t.dwell(60, **LOADED)
            what, near = "stopped on the roadside, one lift-sensor bounce", \
                lambda f: f["spd"] == 0
        elif rule == "UNCOVERED_LOAD":
            t.drive(t.part(route, 0.6, 0.1), 35, lid=1, lift=0, load=0)
            what, near = "drives empty with the lid open", lambda f: f["lid"] == 1
        elif rule == "RESTRICTED_ZONE":
            zone = self._inactive_zone(begin_ms, k)
            t.go_to(*t.centre(zone.id))
            t.dwell(180, **EMPTY)
            what, near = f"waits 3 min in {zone.id} outside its hours", lambda f: True
        elif rule == "OFF_ROUTE":
            permit = next(p for p in self.city.permits if p.id == permit_id)
            path = self._parallel(route, 0.6 * permit.corridor_m)
            t.drive(path, 30, **LOADED)
            what = f"drives {0.6 * permit.corridor_m:.0f} m beside its route, inside the corridor"
            near = lambda f: True  # noqa: E731
        elif rule == "NO_PERMIT":
            t.drive(t.part(route, 0.1, 0.9), 35, **EMPTY)
            what, near = "no permit, but driving empty", lambda f: True
        elif rule == "SIGNAL_LOSS":
            t.drive(t.part(route, 0.05, 0.3), 35, **LOADED)
            last = t.fixes[-1]["ts"]
            t.silence(240)
            t.drive(t.part(route, 0.5, 0.8), 35, **LOADED)
            what = "terminal silent 4 min while hauling (a long tunnel)"
            near = lambda f, last=last: f["ts"] == last  # noqa: E731
        else:
            raise EpisodeError(f"unknown rule {rule!r}")
        return Episode(t, truth_entry(rule, t, self.plates.get(device), near, what, negative=True))

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

    def _parallel(self, route, metres: float) -> shapely.LineString:
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
                    return line
        raise EpisodeError("no stretch of the route has a clean parallel")


def demo_offenders(city: City, devices_with_permits: dict[str, str], start_ms: int,
                   seconds: float, interval_s: float = 1.0) -> list[Episode]:
    """Five trucks that break a rule each within a minute, for ``muckwatch demo``:
    OVERSPEED, UNAUTHORISED_DUMP, UNCOVERED_LOAD, RESTRICTED_ZONE and OFF_ROUTE, with their
    truth. ``devices_with_permits`` maps device id → its permit id (the fleet's choice)."""
    plates = {v.device_id: v.plate for v in city.vehicles}
    picks = list(devices_with_permits.items())[-5:]
    episodes = []
    zone = next((f for f in city.fences if f.kind == "restricted_zone"
                 and (not f.windows or "00:00-24:00" in f.windows)), None)
    for n, (device, permit_id) in enumerate(picks):
        t = TruckTrack(city, device, start_ms, interval_s=interval_s)
        route = t.route(permit_id)
        fixes = int(seconds / interval_s) + 1
        if n == 0:
            t.drive(t.part(route, 0.1, 0.9), 75, **LOADED)
            rule, what, hit = "OVERSPEED", "75 km/h on its route", lambda f: f["spd"] > 60
        elif n == 1:
            p = route.interpolate(0.5, normalized=True)
            t.go_to(p.x, p.y)
            t.dwell(8, **LOADED)
            t.dwell(max(seconds - 20, 15), lid=1, lift=1, load=2)
            t.dwell(10, **EMPTY)
            rule, what, hit = "UNAUTHORISED_DUMP", "tips on the roadside", \
                lambda f: f["lift"] == 1
        elif n == 2:
            t.drive(t.part(route, 0.2, 0.8), 35, lid=1, lift=0, load=2)
            rule, what, hit = "UNCOVERED_LOAD", "drives loaded with the lid open", \
                lambda f: f["lid"] == 1
        elif n == 3 and zone is not None:
            t.go_to(*t.centre(zone.id))
            t.dwell(seconds + 5, **EMPTY)
            rule, what, hit = "RESTRICTED_ZONE", f"waits in {zone.id}", lambda f: True
        else:
            t.go_to(*t.beside(route, 0.4, 400))
            t.dwell(seconds + 5, **LOADED)
            rule, what, hit = "OFF_ROUTE", "parked loaded 400 m off its corridor", \
                lambda f: True
        del t.fixes[fixes:]
        episodes.append(Episode(t, truth_entry(rule, t, plates.get(device), hit, what)))
    return episodes
