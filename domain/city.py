"""The city bundle (docs/city.md): reference data every stage of the pipeline needs.

Loading validates the whole bundle and reports *every* bad row or feature with its id and the
reason, not just the first, because a city's data team fixes them all in one pass. Geometries
drawn in GCJ-02 or BD-09 (AMap, Baidu) are converted to WGS-84 here, once, so nothing
downstream ever sees a Chinese map datum.

Registry properties (issue #22) are optional, with defaults, so older bundles load unchanged:
a site's ``status`` (open / closed / full), ``capacity_m3`` and ``licence_expires``; a
vehicle's ``rated_load_kg``, ``volume_m3``, ``type`` and ``inspection_expires``; a company's
``licence_no`` and ``licence_expires``. A site closed or full, or whose licence has expired,
is no allowed destination (``Fence.closed_intervals``).

Districts (``kind: "district"`` in fences.geojson, issue #21) are administrative areas that
officers and case statistics are scoped to, not fences a truck is judged against: they load
into ``City.districts`` and never into ``City.fences``, which the geofence index and the rules
read.
"""

from __future__ import annotations

import csv
import json
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import shapely
from shapely.geometry.base import BaseGeometry

from domain.coords import SYSTEMS, metric_epsg_for
from domain.geojson import GeometryError, read_area, read_geometry

FENCE_KINDS = ("construction_site", "disposal_site", "transfer_dock", "restricted_zone")
#: The kind of the administrative areas in fences.geojson; not a fence kind (City.districts).
DISTRICT_KIND = "district"
DISTRICT_TYPES = ("Polygon", "MultiPolygon")
SITE_KINDS = ("construction_site", "disposal_site", "transfer_dock")
SITE_STATUSES = ("open", "closed", "full")
#: epoch-ms bounds of a closure that has no start (a bundle's status) or no end yet
NEVER_MS = -(2**62)
FAR_MS = 253_402_300_799_000  # 9999-12-31
_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")


class CityError(ValueError):
    """The bundle has problems; ``problems`` lists each as 'file: id: reason'."""

    def __init__(self, directory: Path, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(
            f"city bundle {directory} has {len(problems)} problem(s):\n  {shown}{more}"
        )


@dataclass(frozen=True, slots=True)
class Fence:
    id: str
    kind: str
    geometry: BaseGeometry  # WGS-84 Polygon or MultiPolygon
    name: str | None = None
    windows: tuple[str, ...] = ()
    speed_limit_kmh: float | None = None
    # the registry, sites only (issue #22)
    status: str | None = None  # 'open' | 'closed' | 'full'; None = not stated (open)
    capacity_m3: float | None = None
    licence_expires: date | None = None  # valid through this day (local time)
    # [from, to) epoch-ms intervals in which the site is closed or full, with that status:
    # the database's history of status changes, or a bundle's status (for ever)
    closures: tuple[tuple[int, int, str], ...] = ()

    def closed_intervals(self, timezone: str) -> list[tuple[int, int, str]]:
        """Every [from, to) epoch-ms interval in which the site receives nothing: closed,
        full, or (from the local midnight after ``licence_expires``) an expired licence."""
        out = list(self.closures)
        if self.licence_expires is not None:
            out.append((licence_end_ms(self.licence_expires, timezone), FAR_MS,
                        "licence_expired"))
        return out

    def status_at(self, ts_ms: int, timezone: str) -> str:
        """'open', 'closed', 'full' or 'licence_expired' at ``ts_ms`` (as the database's
        ``site_status_at``: a closure wins over an expired licence)."""
        found = "open"
        for start, end, status in self.closed_intervals(timezone):
            if start <= ts_ms < end and found in ("open", "licence_expired"):
                found = status
        return found


def licence_end_ms(expires: date, timezone: str) -> int:
    """A licence (or inspection) is valid through its expiry day: it ends at the local
    midnight after it (epoch ms)."""
    end = datetime.combine(expires + timedelta(days=1), time(), ZoneInfo(timezone))
    return int(end.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Permit:
    id: str
    plate: str
    origin: str
    destinations: tuple[str, ...]
    corridor_m: float
    valid_from: datetime
    valid_to: datetime
    route: BaseGeometry  # WGS-84 LineString
    hours: str | None = None
    # [from, to) epoch-ms intervals in which the permit does not apply (suspensions from the
    # database, issue #22); a revocation is a valid_to moved earlier. Bundles have none.
    suspended: tuple[tuple[int, int], ...] = ()
    # the job (出土申报) the permit belongs to: an application issues one permit per plate,
    # all sharing its declared volume (PERMIT_VOLUME_EXCEEDED counts the job's loads). Empty:
    # the permit is its own job (a bundle permit). ``hauled_m3`` is the job's estimated volume
    # already on the manifest when the reference was loaded (the database's; 0 for a bundle).
    job: str = ""
    declared_volume_m3: float | None = None
    hauled_m3: float = 0.0

    @property
    def job_id(self) -> str:
        return self.job or self.id


@dataclass(frozen=True, slots=True)
class Vehicle:
    plate: str
    device_id: str
    company_id: str
    # the registry (issue #22)
    rated_load_kg: float | None = None
    volume_m3: float | None = None
    vehicle_type: str | None = None  # vehicles.csv column ``type``
    inspection_expires: date | None = None  # valid through this day


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    name: str
    # the registry (issue #22)
    licence_no: str | None = None
    licence_expires: date | None = None  # valid through this day


@dataclass(frozen=True)
class City:
    name: str
    timezone: str
    crs: str  # the crs the files were drawn in; everything loaded here is WGS-84
    metric_epsg: int
    fences: list[Fence]
    permits: list[Permit]
    vehicles: list[Vehicle]
    companies: list[Company]
    directory: Path = field(default=Path("."))
    # administrative areas (kind "district"), ordered by id; never in ``fences``
    districts: list[Fence] = field(default_factory=list)

    def vehicle_by_device(self) -> dict[str, Vehicle]:
        return {v.device_id: v for v in self.vehicles}


def parse_window(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` → (start, end) minutes of the local day; end < start crosses midnight."""
    match = _WINDOW.fullmatch(text)
    if not match:
        raise ValueError(f"time window {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2 != 0:
        raise ValueError(f"time window {text!r}: 24:MM is only valid as 24:00")
    return h1 * 60 + m1, h2 * 60 + m2


def _features(path: Path, problems: list[str]) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name}: file is missing")
        return []
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(f"{path.name}: not valid JSON: {e}")
        return []
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        problems.append(f"{path.name}: must be a GeoJSON FeatureCollection")
        return []
    return [f for f in data.get("features", []) if isinstance(f, dict)]


def _csv_rows(path: Path, columns: tuple[str, ...], problems: list[str]) -> list[dict]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                problems.append(f"{path.name}: missing column(s) {', '.join(missing)}")
                return []
            return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    except FileNotFoundError:
        problems.append(f"{path.name}: file is missing")
        return []


def _timestamp(value: object, where: str, problems: list[str]) -> datetime | None:
    if not isinstance(value, str):
        problems.append(f"{where}: must be an ISO 8601 timestamp with offset")
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{where}: {value!r} is not ISO 8601")
        return None
    if parsed.tzinfo is None:
        problems.append(f"{where}: {value!r} has no UTC offset")
        return None
    return parsed


def _date(value: object, where: str, problems: list[str]) -> date | None:
    """An optional ``YYYY-MM-DD`` date (JSON string or CSV cell); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(f"{where}: {value!r} is not a date YYYY-MM-DD")
    return None


def _positive(value: object, where: str, problems: list[str]) -> float | None:
    """An optional positive number: a JSON number, or a CSV cell holding one."""
    if value is None or value == "":
        return None
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or not number > 0 or number == float("inf"):
        problems.append(f"{where}: {value!r} must be a positive number")
        return None
    return number


def _registry(props: dict, kind: str, where: str, problems: list[str]) -> dict:
    """A fence's optional registry properties (sites only): status, capacity_m3,
    licence_expires — and, for a closed or full site, its closure (the bundle has no
    history: it holds at every time)."""
    stated = [k for k in ("status", "capacity_m3", "licence_expires") if props.get(k) is not None]
    if not stated:
        return {}
    if kind not in SITE_KINDS:
        problems.append(f"{where}: {', '.join(stated)} only apply to sites, not a {kind}")
        return {}
    status = props.get("status")
    if status is not None and status not in SITE_STATUSES:
        problems.append(f"{where}: status {status!r} is not one of {', '.join(SITE_STATUSES)}")
        status = None
    if isinstance(props.get("capacity_m3"), str):
        problems.append(f"{where}: capacity_m3 must be a JSON number, not a string")
        capacity = None
    else:
        capacity = _positive(props.get("capacity_m3"), f"{where}: capacity_m3", problems)
    licence = _date(props.get("licence_expires"), f"{where}: licence_expires", problems)
    closures = ((NEVER_MS, FAR_MS, str(status)),) if status in ("closed", "full") else ()
    return {"status": status, "capacity_m3": capacity, "licence_expires": licence,
            "closures": closures}


def _district(feature: dict, props: dict, fid: str, crs: str,
              problems: list[str]) -> Fence | None:
    """A ``kind: "district"`` feature: a named Polygon or MultiPolygon (no Point circles)."""
    where = f"fences.geojson: {fid}"
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: a district needs a name")
        name = None
    try:
        geometry = read_geometry(feature.get("geometry"), DISTRICT_TYPES, crs=crs)
    except GeometryError as e:
        problems.append(f"{where}: {e}")
        return None
    return Fence(fid, DISTRICT_KIND, geometry, name) if name is not None else None


def load_city(directory: str | Path) -> City:
    """Read and validate a bundle; raise CityError listing every problem found."""
    directory = Path(directory)
    problems: list[str] = []
    if not directory.is_dir():
        raise CityError(directory, [f"{directory}: not a directory"])
    meta: dict = {}
    try:
        meta = tomllib.loads((directory / "city.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append("city.toml: file is missing")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"city.toml: {e}")
    timezone = meta.get("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(f"city.toml: unknown timezone {timezone!r}")
    crs = meta.get("crs", "wgs84")
    if crs not in SYSTEMS:
        problems.append(f"city.toml: crs {crs!r} is not one of {', '.join(SYSTEMS)}")
        crs = "wgs84"
    metric_epsg = meta.get("metric_epsg")  # absent: picked from the data below
    if metric_epsg is not None and (isinstance(metric_epsg, bool)
                                    or not isinstance(metric_epsg, int)):
        problems.append("city.toml: metric_epsg must be an integer EPSG code")

    companies = []
    for row in _csv_rows(directory / "companies.csv", ("id", "name"), problems):
        if not row["id"]:
            problems.append("companies.csv: a row has an empty id")
            continue
        where = f"companies.csv: {row['id']}"
        companies.append(Company(
            row["id"], row["name"], row.get("licence_no") or None,
            _date(row.get("licence_expires"), f"{where}: licence_expires", problems)))
    company_ids = {c.id for c in companies}

    vehicles = []
    for row in _csv_rows(directory / "vehicles.csv", ("plate", "device_id", "company_id"),
                         problems):
        where = f"vehicles.csv: {row['plate'] or '(no plate)'}"
        if not row["plate"] or not row["device_id"]:
            problems.append(f"{where}: plate and device_id are required")
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", row["device_id"]):
            problems.append(f"{where}: device_id {row['device_id']!r} is not usable in a topic")
            continue
        if row["company_id"] not in company_ids:
            problems.append(f"{where}: company {row['company_id']!r} is not in companies.csv")
        vehicles.append(Vehicle(
            row["plate"], row["device_id"], row["company_id"],
            _positive(row.get("rated_load_kg"), f"{where}: rated_load_kg", problems),
            _positive(row.get("volume_m3"), f"{where}: volume_m3", problems),
            row.get("type") or None,
            _date(row.get("inspection_expires"), f"{where}: inspection_expires", problems)))
    plates = {v.plate for v in vehicles}

    fences: list[Fence] = []
    districts: list[Fence] = []
    for feature in _features(directory / "fences.geojson", problems):
        props = feature.get("properties") or {}
        fid = props.get("id")
        where = f"fences.geojson: {fid}"
        if not isinstance(fid, str) or not fid:
            problems.append("fences.geojson: a feature has no string id")
            continue
        kind = props.get("kind")
        if kind == DISTRICT_KIND:
            district = _district(feature, props, fid, crs, problems)
            if district is not None:
                districts.append(district)
            continue
        if kind not in FENCE_KINDS:
            problems.append(f"{where}: kind {kind!r} is not one of "
                            f"{', '.join((*FENCE_KINDS, DISTRICT_KIND))}")
            continue
        windows = props.get("windows") or []
        if not isinstance(windows, list):
            problems.append(f"{where}: windows must be a list of 'HH:MM-HH:MM'")
            windows = []
        for w in windows:
            try:
                parse_window(str(w))
            except ValueError as e:
                problems.append(f"{where}: {e}")
        limit = props.get("speed_limit_kmh")
        if limit is not None and (not isinstance(limit, int | float) or limit <= 0):
            problems.append(f"{where}: speed_limit_kmh must be a positive number")
            limit = None
        registry = _registry(props, kind, where, problems)
        try:
            geometry = read_area(feature, props, crs)
        except GeometryError as e:
            problems.append(f"{where}: {e}")
            continue
        fences.append(Fence(fid, kind, geometry, props.get("name"),
                            tuple(str(w) for w in windows),
                            float(limit) if limit is not None else None, **registry))
    kinds = {f.id: f.kind for f in fences}

    permits = []
    for feature in _features(directory / "permits.geojson", problems):
        props = feature.get("properties") or {}
        pid = props.get("id")
        where = f"permits.geojson: {pid}"
        if not isinstance(pid, str) or not pid:
            problems.append("permits.geojson: a feature has no string id")
            continue
        plate = props.get("plate")
        if plate not in plates:
            problems.append(f"{where}: plate {plate!r} is not in vehicles.csv")
        origin = props.get("origin")
        if not isinstance(origin, str) or kinds.get(origin) != "construction_site":
            problems.append(f"{where}: origin {origin!r} is not a construction_site in fences")
        dest = props.get("destination")
        destinations = tuple(dest) if isinstance(dest, list) else (dest,)
        for d in destinations:
            if kinds.get(d) not in ("disposal_site", "transfer_dock"):
                problems.append(f"{where}: destination {d!r} is not a disposal_site or "
                                "transfer_dock in fences")
        corridor = props.get("corridor_m")
        if not isinstance(corridor, int | float) or not 0 < corridor <= 5000:
            problems.append(f"{where}: corridor_m must be a number of metres in (0, 5000]")
            corridor = None
        valid_from = _timestamp(props.get("valid_from"), f"{where}: valid_from", problems)
        valid_to = _timestamp(props.get("valid_to"), f"{where}: valid_to", problems)
        if valid_from and valid_to and valid_to <= valid_from:
            problems.append(f"{where}: valid_to is not after valid_from")
        hours = props.get("hours")
        if hours is not None:
            try:
                parse_window(str(hours))
            except ValueError as e:
                problems.append(f"{where}: hours: {e}")
        try:
            route = read_geometry(feature.get("geometry"), ("LineString",), crs=crs)
        except GeometryError as e:
            problems.append(f"{where}: route: {e}")
            continue
        if corridor is None or valid_from is None or valid_to is None:
            continue
        declared = _positive(props.get("declared_volume_m3"), f"{where}: declared_volume_m3",
                             problems)
        job = props.get("job")
        permits.append(Permit(pid, str(plate), str(origin), tuple(str(d) for d in destinations),
                              float(corridor), valid_from, valid_to, route,
                              str(hours) if hours is not None else None,
                              job=str(job) if job else "", declared_volume_m3=declared))

    for name, ids in (("companies.csv", [c.id for c in companies]),
                      ("vehicles.csv", [v.plate for v in vehicles]),
                      ("vehicles.csv device_id", [v.device_id for v in vehicles]),
                      ("fences.geojson", [f.id for f in (*fences, *districts)]),
                      ("permits.geojson", [p.id for p in permits])):
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                problems.append(f"{name}: {i}: duplicate id")
            seen.add(i)

    if problems:
        raise CityError(directory, problems)
    if metric_epsg is None:
        everything = shapely.union_all([f.geometry for f in fences] + [p.route for p in permits])
        centre = everything.centroid if not everything.is_empty else shapely.Point(114, 22.5)
        metric_epsg = metric_epsg_for(centre.x, centre.y)
    return City(
        name=str(meta.get("name", directory.name)),
        timezone=timezone,
        crs=crs,
        metric_epsg=int(metric_epsg),
        fences=fences,
        permits=permits,
        vehicles=vehicles,
        companies=companies,
        directory=directory,
        districts=sorted(districts, key=lambda d: d.id),
    )
