"""Writing a city bundle (docs/city.md): GeoJSON one feature per line, CSVs, city.toml and a
README, all UTF-8 with ``\n`` line ends so that the same city is the same bytes. Districts
(simulator.citydistricts) follow every fence in fences.geojson: the fences' own lines are the
same with or without them.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import shapely
from shapely import LineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geofence.projection import Projector
from simulator.citycoords import published_xy, to_published
from simulator.citydistricts import District
from simulator.cityfleet import Company, Vehicle
from simulator.citymap import TIMEZONE
from simulator.citypermits import Permit
from simulator.cityregistry import Registry
from simulator.cityroads import Road
from simulator.citysites import Site

FILES = (
    "city.toml",
    "fences.geojson",
    "permits.geojson",
    "vehicles.csv",
    "companies.csv",
    "roads.geojson",
    "README.md",
)


def rings(poly: Polygon) -> list[list[list[float]]]:
    return [shapely.get_coordinates(r).tolist() for r in (poly.exterior, *poly.interiors)]


def geometry(g: BaseGeometry) -> dict:
    """GeoJSON geometry from already-rounded coordinates."""
    if isinstance(g, Polygon):
        return {"type": "Polygon", "coordinates": rings(g)}
    if isinstance(g, MultiPolygon):
        return {"type": "MultiPolygon", "coordinates": [rings(p) for p in g.geoms]}
    return {"type": "LineString", "coordinates": shapely.get_coordinates(g).tolist()}


def feature_collection(features: list[dict]) -> str:
    """One feature per line: diffable, deterministic, UTF-8 (ensure_ascii=False)."""
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    return '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"


def feature(props: dict, geom: dict) -> dict:
    return {"type": "Feature", "properties": props, "geometry": geom}


def fence_feature(s: Site) -> dict:
    props: dict = {"id": s.id, "kind": s.kind, "name": s.name}
    if s.windows is not None:
        props["windows"] = list(s.windows)
    if s.speed_limit_kmh is not None:
        props["speed_limit_kmh"] = s.speed_limit_kmh
    return feature(props, geometry(s.geom))


def district_feature(d: District) -> dict:
    return feature({"id": d.id, "kind": "district", "name": d.name}, geometry(d.geom))


def readme(counts: dict[str, int], seed: int, scale: float, out: str) -> str:
    """The bundle's README: what it is, the command that reproduces it (``--out out``)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items())
    return f"""# Sample city bundle (synthetic Shenzhen)

**Everything here is synthetic.** Roads are a hand-drawn approximation of Shenzhen's arterials and
expressways; sites, zones, companies, plates, device ids and permits are invented. Do not use any
of it for navigation or enforcement. Coordinates are WGS-84 (`crs = "wgs84"` in `city.toml`).

Generated from the repository root with:

```
python -m simulator.citygen --out {out} --seed {seed} --scale {scale:g}
```

The same command reproduces these files byte for byte (`tests/simulator/test_citygen.py` checks
it). The format of every file is described in `docs/city.md`.

| kind | count |
| --- | --- |
{rows}
"""


def _write(out_dir: pathlib.Path, name: str, text: str) -> None:
    (out_dir / name).write_text(text, encoding="utf-8", newline="\n")


def permit_route(proj: Projector, p: Permit) -> LineString:
    """The permit's route as published (WGS-84, rounded)."""
    return LineString(published_xy(proj, p.route_m))


def road_line(proj: Projector, road: Road) -> BaseGeometry:
    """The road's centreline as published (WGS-84, rounded)."""
    return to_published(proj, road[1])


def permit_feature(proj: Projector, p: Permit, registry: Registry | None = None) -> dict:
    ids = [d.id for d in p.destinations]
    props: dict = {"id": p.id, "plate": p.plate, "origin": p.origin.id,
                   "destination": ids[0] if len(ids) == 1 else ids,
                   "corridor_m": p.corridor_m, "valid_from": p.valid[0], "valid_to": p.valid[1]}
    if p.hours:
        props["hours"] = p.hours
    if registry is not None and p.id in registry.declared:
        props["declared_volume_m3"] = registry.declared[p.id]
        if registry.job.get(p.id):
            props["job"] = registry.job[p.id]
    return feature(props, geometry(permit_route(proj, p)))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def vehicles_csv(vehicles: list[Vehicle], registry: Registry | None = None) -> str:
    """vehicles.csv; with a registry, its rated load and volume columns (empty: unknown)."""
    if registry is None:
        return "plate,device_id,company_id\n" + "".join(f"{p},{d},{c}\n"
                                                        for p, d, c in vehicles)
    rows = []
    for p, d, c in vehicles:
        kg, m3 = registry.vehicle.get(p, (None, None))
        rows.append(f"{p},{d},{c},{_number(kg)},{_number(m3)}\n")
    return "plate,device_id,company_id,rated_load_kg,volume_m3\n" + "".join(rows)


def road_feature(proj: Projector, i: int, road: Road) -> dict:
    spec = road[0]
    return feature({"id": f"R{i + 1:02d}", "name": spec.name, "class": spec.cls},
                   geometry(road_line(proj, road)))


def city_toml(seed: int, scale: float, metric_epsg: int) -> str:
    return (
        f"# Synthetic sample city written by simulator.citygen (seed {seed}, scale {scale:g}).\n"
        f'name = "Shenzhen (synthetic sample)"\ntimezone = "{TIMEZONE}"\n'
        f'crs = "wgs84"\nmetric_epsg = {metric_epsg}\n')


def write_bundle(out_dir: pathlib.Path, proj: Projector, *, sites: list[Site],
                 permits: list[Permit], roads: list[Road], companies: list[Company],
                 vehicles: list[Vehicle], toml: str, readme_text: str,
                 districts: Sequence[District] = (), registry: Registry | None = None) -> None:
    """Write every file of FILES; ``sites`` are all fences (zones included) in output order,
    ``districts`` follow them in fences.geojson; ``registry`` adds the vehicles' rated load
    and volume and the permits' declared volume and job."""
    _write(out_dir, "city.toml", toml)
    _write(out_dir, "fences.geojson",
           feature_collection([fence_feature(s) for s in sites]
                              + [district_feature(d) for d in districts]))
    _write(out_dir, "permits.geojson",
           feature_collection([permit_feature(proj, p, registry) for p in permits]))
    _write(out_dir, "roads.geojson",
           feature_collection([road_feature(proj, i, r) for i, r in enumerate(roads)]))
    _write(out_dir, "companies.csv", "id,name\n" + "".join(f"{i},{n}\n" for i, n in companies))
    _write(out_dir, "vehicles.csv", vehicles_csv(vehicles, registry))
    _write(out_dir, "README.md", readme_text)
