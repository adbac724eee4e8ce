"""The checks an application must pass before an officer may approve it (核准).

Given the city's fences and vehicles, an application is checked for:

* **sites** — the origin is a ``construction_site``; every destination a ``disposal_site`` or
  ``transfer_dock``;
* **open destinations** — no destination is closed, full or past its licence now or at the
  permit's ``valid_from`` (the registry, issue #22: such a site is no allowed destination,
  and every truck tipping there would be dumping);
* **route ends** — the route's first point lies in the origin, its last in one of the
  destinations (a truck whose permitted route ends outside the site it may tip in is sent
  into an UNAUTHORISED_DUMP by its own permit);
* **restricted zones** — the route does not cross a restricted zone during a window that
  meets the permit's hours (and, for a validity shorter than a day, that day's span): each
  crossing is reported with the zone, where the route enters and leaves it, its length and
  the overlapping window. A crossing outside the zone's windows is a warning, not a refusal
  (a night-only permit may use the road through a zone closed by day);
* **corridor** — the half-width within ``[permits] corridor_min_m .. corridor_max_m``;
* **vehicles** — each plate registered and belonging to the applying company;
* **validity** — forwards, not longer than ``[permits] max_validity_days``, not over before
  the approval; a start before the approval is a warning (the permit applies from the
  approval on);
* **hours** — ``"HH:MM-HH:MM"`` and not empty.

Lengths and distances are measured in a metric projection (the city's ``metric_epsg``, or the
Gauss-Krüger / UTM zone of the route). Pure: no SQL, no clock — ``now`` is an argument.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from domain.city import City, Fence
from domain.coords import metric_epsg_for
from domain.settings import PermitSettings
from geofence.projection import Projector
from permits import windows as W

ORIGIN_KIND = "construction_site"
DESTINATION_KINDS = ("disposal_site", "transfer_dock")
ZONE_KIND = "restricted_zone"
_PREFILTER_DEG = 0.001  # ≈ 100 m: zones farther than this from the route are not projected


@dataclass(frozen=True)
class Application:
    """What a company asks for; the route in WGS-84 (converted at submission)."""

    company_id: str
    origin: str
    destinations: tuple[str, ...]
    plates: tuple[str, ...]
    route: BaseGeometry  # LineString, WGS-84
    corridor_m: float
    valid_from: datetime
    valid_to: datetime
    hours: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Application:
        """From a ``permit_applications`` row (``route`` a GeoJSON LineString)."""
        return cls(company_id=str(row["company_id"]), origin=str(row["origin"]),
                   destinations=tuple(row["destinations"]), plates=tuple(row["plates"]),
                   route=shapely.geometry.shape(row["route"]),
                   corridor_m=float(row["corridor_m"]), valid_from=row["valid_from"],
                   valid_to=row["valid_to"], hours=row.get("hours"))


@dataclass(frozen=True)
class CityView:
    """The part of the city the checks read: fences by id, each plate's company."""

    fences: Mapping[str, Fence]
    vehicles: Mapping[str, str]  # plate → company id
    timezone: str = "Asia/Shanghai"
    metric_epsg: int | None = None  # None: the zone of the route

    @classmethod
    def from_city(cls, city: City) -> CityView:
        return cls({f.id: f for f in city.fences}, {v.plate: v.company_id for v in city.vehicles},
                   city.timezone, city.metric_epsg)

    @classmethod
    def of(cls, fences: Sequence[Fence], vehicles: Mapping[str, str], timezone: str,
           metric_epsg: int | None = None) -> CityView:
        return cls({f.id: f for f in fences}, dict(vehicles), timezone, metric_epsg)


@dataclass(frozen=True)
class Problem:
    """One finding: a stable ``code``, a sentence for people, and where (ids, points in
    WGS-84 ``[lon, lat]``, metres). ``error`` refuses the approval, ``warning`` informs."""

    code: str
    message: str
    where: dict[str, Any] = field(default_factory=dict)
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "where": self.where}


@dataclass(frozen=True)
class Crossing:
    """A stretch of the route inside a restricted zone, in route order."""

    zone_id: str
    zone_name: str | None
    entry: tuple[float, float]  # lon, lat (WGS-84)
    exit: tuple[float, float]
    length_m: float
    windows: tuple[str, ...]  # the zone's windows; () = restricted all day
    overlap: tuple[str, ...]  # when the permit's hours meet them; () = never

    def as_dict(self) -> dict[str, Any]:
        return {"zone_id": self.zone_id, "zone_name": self.zone_name,
                "entry": list(self.entry), "exit": list(self.exit),
                "length_m": self.length_m, "windows": list(self.windows) or ["00:00-24:00"],
                "overlap": list(self.overlap), "blocking": bool(self.overlap)}


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[Problem, ...]
    crossings: tuple[Crossing, ...]
    route_length_m: float | None
    metric_epsg: int | None
    checked_at: datetime
    settings: PermitSettings

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity != "error")

    def codes(self) -> list[str]:
        """The error codes, in the order found."""
        return [p.code for p in self.errors]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": len(self.errors), "warnings": len(self.warnings),
                "problems": [p.as_dict() for p in self.problems],
                "crossings": [c.as_dict() for c in self.crossings],
                "route_length_m": self.route_length_m, "metric_epsg": self.metric_epsg,
                "checked_at": self.checked_at.isoformat(),
                "limits": {"corridor_min_m": self.settings.corridor_min_m,
                           "corridor_max_m": self.settings.corridor_max_m,
                           "max_validity_days": self.settings.max_validity_days}}

    def text(self) -> str:
        return describe(self.as_dict())


def describe(report: Mapping[str, Any]) -> str:
    """A report (``CheckReport.as_dict()``, as stored) for a terminal: one line per finding."""
    problems = report.get("problems") or []
    errors = sum(1 for p in problems if p["severity"] == "error")
    warnings = len(problems) - errors
    head = "all checks passed" if not errors else f"{errors} check(s) failed: approval refused"
    lines = [head + (f", {warnings} warning(s)" if warnings else "")]
    lines += [f"  {p['severity'].upper():7} {p['code']}: {p['message']}" for p in problems]
    return "\n".join(lines)


def check(app: Application, city: CityView, settings: PermitSettings,
          now: datetime) -> CheckReport:
    """Every check, every finding (not just the first)."""
    problems: list[Problem] = []
    problems += _sites(app, city)
    problems += _destinations_open(app, city, now)
    problems += _vehicles(app, city)
    problems += _corridor(app, settings)
    problems += _validity(app, settings, now)
    permit_minutes = _hours(app, city.timezone, problems)
    crossings: list[Crossing] = []
    length_m = epsg = None
    route = app.route
    if not isinstance(route, shapely.LineString) or route.is_empty \
            or len(set(route.coords)) < 2:
        problems.append(Problem("route_invalid", "the route must be a LineString of at least "
                                "two distinct points"))
    else:
        epsg = city.metric_epsg or metric_epsg_for(route.centroid.x, route.centroid.y)
        metric = _Metric(_projector(epsg))
        route_m = metric.shape(route)
        length_m = round(float(route_m.length), 1)
        problems += _route_ends(app, city, metric, route_m)
        crossings = _crossings(route, route_m, city, metric, permit_minutes)
        problems += [_crossing_problem(c, app.hours) for c in crossings]
    return CheckReport(tuple(problems), tuple(crossings), length_m, epsg, now, settings)


def checker(settings: PermitSettings, timezone: str,
            metric_epsg: int | None = None
            ) -> Callable[[Mapping[str, Any], Sequence[Fence], Mapping[str, str], datetime],
                          CheckReport]:
    """``check`` over an application row, the fences and plate → company rows a database
    holds: what ``store.permits`` calls at submission and approval."""

    def run(row: Mapping[str, Any], fences: Sequence[Fence], vehicles: Mapping[str, str],
            now: datetime) -> CheckReport:
        return check(Application.from_row(row), CityView.of(fences, vehicles, timezone,
                                                            metric_epsg), settings, now)

    return run


# --- the checks -------------------------------------------------------------------------------

def _name(f: Fence) -> str:
    return f"{f.name} ({f.id})" if f.name else f.id


def _sites(app: Application, city: CityView) -> list[Problem]:
    out = []
    origin = city.fences.get(app.origin)
    if origin is None:
        out.append(Problem("origin_unknown", f"origin {app.origin!r} is not a fence of the city",
                           {"site": app.origin}))
    elif origin.kind != ORIGIN_KIND:
        out.append(Problem("origin_not_construction_site",
                           f"origin {_name(origin)} is a {origin.kind}, not a construction "
                           "site (工地)", {"site": app.origin, "kind": origin.kind}))
    if not app.destinations:
        out.append(Problem("no_destination", "the application names no destination"))
    for d in app.destinations:
        fence = city.fences.get(d)
        if fence is None:
            out.append(Problem("destination_unknown",
                               f"destination {d!r} is not a fence of the city", {"site": d}))
        elif fence.kind not in DESTINATION_KINDS:
            out.append(Problem("destination_not_disposal",
                               f"destination {_name(fence)} is a {fence.kind}, not a disposal "
                               "site (消纳场) or transfer dock (中转码头)",
                               {"site": d, "kind": fence.kind}))
    if len(set(app.destinations)) != len(app.destinations):
        out.append(Problem("destination_duplicate", "a destination is named twice",
                           {"destinations": list(app.destinations)}))
    return out


_NOT_OPEN = {"closed": "closed", "full": "full", "licence_expired": "past its licence"}


def _destinations_open(app: Application, city: CityView, now: datetime) -> list[Problem]:
    """Each destination is open now and at ``valid_from`` (when that is later)."""
    out = []
    moments = [now] + ([app.valid_from] if app.valid_from > now else [])
    for d in dict.fromkeys(app.destinations):
        fence = city.fences.get(d)
        if fence is None or fence.kind not in DESTINATION_KINDS:
            continue  # destination_unknown / destination_not_disposal
        for at in moments:
            status = fence.status_at(int(at.timestamp() * 1000), city.timezone)
            if status != "open":
                when = "now" if at is now else f"at valid_from {at.isoformat()}"
                where: dict[str, Any] = {"site": d, "status": status, "at": at.isoformat()}
                if fence.licence_expires is not None:
                    where["licence_expires"] = fence.licence_expires.isoformat()
                out.append(Problem("destination_not_open",
                                   f"destination {_name(fence)} is {_NOT_OPEN[status]} {when}",
                                   where))
                break
    return out


def _vehicles(app: Application, city: CityView) -> list[Problem]:
    out = []
    if not app.plates:
        out.append(Problem("no_vehicles", "the application names no vehicle"))
    seen: set[str] = set()
    for plate in app.plates:
        if plate in seen:
            out.append(Problem("vehicle_duplicate", f"{plate} is named twice", {"plate": plate}))
            continue
        seen.add(plate)
        company = city.vehicles.get(plate)
        if company is None:
            out.append(Problem("vehicle_unknown", f"{plate} is not a registered vehicle",
                               {"plate": plate}))
        elif company != app.company_id:
            out.append(Problem("vehicle_other_company",
                               f"{plate} belongs to company {company}, not to the applicant "
                               f"{app.company_id}", {"plate": plate, "company": company}))
    return out


def _corridor(app: Application, settings: PermitSettings) -> list[Problem]:
    where = {"corridor_m": app.corridor_m, "min_m": settings.corridor_min_m,
             "max_m": settings.corridor_max_m}
    if app.corridor_m < settings.corridor_min_m:
        return [Problem("corridor_too_narrow",
                        f"corridor half-width {app.corridor_m:g} m is below the minimum "
                        f"{settings.corridor_min_m:g} m", where)]
    if app.corridor_m > settings.corridor_max_m:
        return [Problem("corridor_too_wide",
                        f"corridor half-width {app.corridor_m:g} m is above the maximum "
                        f"{settings.corridor_max_m:g} m", where)]
    return []


def _validity(app: Application, settings: PermitSettings, now: datetime) -> list[Problem]:
    where = {"valid_from": app.valid_from.isoformat(), "valid_to": app.valid_to.isoformat()}
    if app.valid_to <= app.valid_from:
        return [Problem("validity_backwards", "valid_to is not after valid_from", where)]
    out = []
    days = (app.valid_to - app.valid_from) / timedelta(days=1)
    if days > settings.max_validity_days:
        out.append(Problem("validity_too_long",
                           f"valid for {days:.1f} days, more than the maximum "
                           f"{settings.max_validity_days}", {**where, "days": round(days, 2)}))
    if app.valid_to <= now:
        out.append(Problem("validity_over", f"the validity ended at {app.valid_to.isoformat()}, "
                           "before the approval", where))
    elif app.valid_from < now:
        out.append(Problem("validity_starts_before_approval",
                           "valid_from is in the past: the permit applies from its approval on",
                           where, "warning"))
    return out


def _hours(app: Application, timezone: str, problems: list[Problem]) -> tuple[W.Interval, ...]:
    """The local minutes the permit may be used (hours ∩ a short validity's span)."""
    try:
        minutes = W.hours_minutes(app.hours)
    except ValueError as e:
        problems.append(Problem("hours_invalid", str(e), {"hours": app.hours}))
        return W.ALL_DAY
    if not minutes:
        problems.append(Problem("hours_empty", f"hours {app.hours!r} cover no time of day",
                                {"hours": app.hours}))
        return W.ALL_DAY
    if app.valid_to > app.valid_from:
        minutes = W.intersect(minutes, W.span_minutes(app.valid_from, app.valid_to, timezone))
    return minutes


_local = threading.local()


def _projector(epsg: int) -> Projector:
    """One Projector per EPSG code and thread: building one costs ~0.1 s (pyproj), and the
    API checks in its thread pool."""
    cache = _local.__dict__.setdefault("projectors", {})
    if epsg not in cache:
        cache[epsg] = Projector(epsg)
    return cache[epsg]


class _Metric:
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    def shape(self, geometry: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geometry, lambda xy: np.column_stack(
            self.projector.to_metric(xy[:, 0], xy[:, 1])))

    def lonlat(self, point: shapely.Point) -> tuple[float, float]:
        lon, lat = self.projector.to_lonlat([point.x], [point.y])
        return round(float(lon[0]), 7), round(float(lat[0]), 7)


def _route_ends(app: Application, city: CityView, metric: _Metric,
                route_m: BaseGeometry) -> list[Problem]:
    out = []
    first = shapely.Point(app.route.coords[0])
    last = shapely.Point(app.route.coords[-1])
    origin = city.fences.get(app.origin)
    if origin is not None and origin.kind == ORIGIN_KIND and not origin.geometry.covers(first):
        d = float(shapely.distance(shapely.Point(route_m.coords[0]), metric.shape(origin.geometry)))
        out.append(Problem("route_start_outside_origin",
                           f"the route starts {d:.0f} m outside its origin {_name(origin)}",
                           {"point": list(first.coords[0]), "site": origin.id,
                            "distance_m": round(d, 1)}))
    dests = [city.fences[d] for d in app.destinations
             if d in city.fences and city.fences[d].kind in DESTINATION_KINDS]
    if dests and not any(f.geometry.covers(last) for f in dests):
        end_m = shapely.Point(route_m.coords[-1])
        distances = {f.id: round(float(shapely.distance(end_m, metric.shape(f.geometry))), 1)
                     for f in dests}
        nearest = min(dests, key=lambda f: distances[f.id])
        out.append(Problem("route_end_outside_destination",
                           f"the route ends outside every destination, "
                           f"{distances[nearest.id]:.0f} m from the nearest, {_name(nearest)}",
                           {"point": list(last.coords[0]), "distance_m": distances}))
    return out


def _crossings(route: BaseGeometry, route_m: BaseGeometry, city: CityView, metric: _Metric,
               permit_minutes: Sequence[W.Interval]) -> list[Crossing]:
    """Each stretch of the route inside each restricted zone, ordered by zone id then along
    the route."""
    near = route.buffer(_PREFILTER_DEG, quad_segs=2)
    out = []
    for zone in sorted((f for f in city.fences.values() if f.kind == ZONE_KIND),
                       key=lambda f: f.id):
        if not near.intersects(zone.geometry):
            continue
        inside = route_m.intersection(metric.shape(zone.geometry))
        if inside.is_empty:
            continue
        spans = []
        for part in shapely.get_parts(inside):
            ends = [float(route_m.project(shapely.Point(c))) for c in part.coords]
            spans.append([min(ends), max(ends)])
        spans.sort()
        merged: list[list[float]] = []
        for a, b in spans:  # a stretch split at a vertex is one crossing
            if merged and a <= merged[-1][1] + 1e-6:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        try:
            restricted = W.zone_minutes(zone.windows)
        except ValueError:
            restricted = W.ALL_DAY  # an unreadable window: assume the worst
        overlap = tuple(W.text(W.intersect(restricted, permit_minutes)))
        for a, b in merged:
            out.append(Crossing(zone.id, zone.name, metric.lonlat(route_m.interpolate(a)),
                                metric.lonlat(route_m.interpolate(b)), round(b - a, 1),
                                tuple(zone.windows), overlap))
    return out


def _crossing_problem(c: Crossing, hours: str | None) -> Problem:
    zone = f"{c.zone_name} ({c.zone_id})" if c.zone_name else c.zone_id
    windows = ", ".join(c.windows) if c.windows else "all day"
    where = c.as_dict()
    if c.overlap:
        return Problem("restricted_zone_crossing",
                       f"the route crosses restricted zone {zone} for {c.length_m:.0f} m, "
                       f"restricted {windows}, while the permit may be used "
                       f"({hours or 'any hour'}) at {', '.join(c.overlap)}", where)
    return Problem("restricted_zone_outside_window",
                   f"the route crosses restricted zone {zone} for {c.length_m:.0f} m, but only "
                   f"outside its windows ({windows}; permit hours {hours or 'any hour'})",
                   where, "warning")
