"""Synthetic districts (片区, issue #21): the city divided into administrative areas that
officers, review queues and case statistics are scoped to — never fences a truck is judged
against (docs/city.md, ``kind: "district"``).

Why a Voronoi split: real district borders follow rivers, hills and old village lines that the
hand-drawn map does not have; cells around one seed per district (the mean of the map's named
areas in it, simulator.citymap.AREAS) give plausible, compact areas in the right places. The
cells tile the padded bounding box of every site, permit route and road, with no gaps and no
overlaps: they are cut from one noded linework snapped to the published 6-decimal grid, so
neighbours share their border vertex for vertex.

Districts use no random numbers: the rest of the city is the same bytes with or without them,
and the same roads and sites always give the same districts. They are drawn in lon/lat
directly (an equirectangular frame around the city's latitude for the Voronoi distances) —
administrative outlines, not surveyed ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely import MultiPoint, Polygon, box
from shapely.geometry.base import BaseGeometry

from simulator.citycoords import PUBLISHED_DECIMALS
from simulator.citymap import AREAS, SHENZHEN_BBOX

#: (id, name, the map's districts whose areas place its seed). 盐田区 is too small for a
#: district of its own here and goes with 罗湖区.
DISTRICTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("D01", "南山片区", ("南山区",)),
    ("D02", "福田片区", ("福田区",)),
    ("D03", "罗湖盐田片区", ("罗湖区", "盐田区")),
    ("D04", "宝安片区", ("宝安区",)),
    ("D05", "光明片区", ("光明区",)),
    ("D06", "龙华片区", ("龙华区",)),
    ("D07", "龙岗片区", ("龙岗区",)),
    ("D08", "坪山片区", ("坪山区",)),
)
#: Margin around everything the districts must cover, degrees (~1 km); then cut to the city box.
PAD_DEG = 0.01
_GRID = 10.0 ** -PUBLISHED_DECIMALS


@dataclass(frozen=True)
class District:
    id: str
    name: str
    geom: Polygon  # WGS-84, on the published grid, exterior counter-clockwise


def _seeds() -> list[tuple[float, float]]:
    seeds = []
    for _, _, members in DISTRICTS:
        points = [(lon, lat) for _, district, lon, lat, _ in AREAS if district in members]
        seeds.append((sum(p[0] for p in points) / len(points),
                      sum(p[1] for p in points) / len(points)))
    return seeds


def _extent(covered: Sequence[BaseGeometry]) -> Polygon:
    """The padded bounding box of ``covered`` (lon/lat), cut to the city box, on the grid."""
    lon0, lat0, lon1, lat1 = shapely.total_bounds(np.array(covered, dtype=object))
    lon0 = max(lon0 - PAD_DEG, SHENZHEN_BBOX[0])
    lat0 = max(lat0 - PAD_DEG, SHENZHEN_BBOX[1])
    lon1 = min(lon1 + PAD_DEG, SHENZHEN_BBOX[2])
    lat1 = min(lat1 + PAD_DEG, SHENZHEN_BBOX[3])
    return box(*np.round((lon0, lat0, lon1, lat1), 3).tolist())


def draw_districts(covered: Sequence[BaseGeometry]) -> list[District]:
    """Voronoi districts tiling the padded box around ``covered`` (lon/lat geometries: sites,
    permit routes, roads); ValueError if the tiling misses any of them or is not a partition."""
    extent = _extent(covered)
    k = math.cos(math.radians(extent.centroid.y))  # east-west degrees are shorter
    seeds = _seeds()
    cells = shapely.voronoi_polygons(
        shapely.affinity.scale(MultiPoint(seeds), k, 1, origin=(0, 0)),
        extend_to=shapely.affinity.scale(extent, k, 1, origin=(0, 0)))
    frame = shapely.affinity.scale(extent, k, 1, origin=(0, 0))
    borders = [shapely.intersection(c.boundary, frame) for c in cells.geoms]
    lines = shapely.affinity.scale(shapely.union_all([*borders, frame.boundary]), 1 / k, 1,
                                   origin=(0, 0))
    lines = shapely.set_precision(lines, _GRID)  # snap-rounded and noded: shared vertices
    faces = [f for f in shapely.get_parts(shapely.polygonize(shapely.get_parts(lines)))
             if extent.covers(f.representative_point())]
    districts = []
    for (did, name, _), seed in zip(DISTRICTS, seeds, strict=True):
        mine = [f for f in faces if f.covers(shapely.Point(seed))]
        if len(mine) != 1:
            raise ValueError(f"district {did}: {len(mine)} cells hold its seed")
        face = shapely.transform(shapely.geometry.polygon.orient(mine[0], 1.0),
                                 lambda xy: np.round(xy, PUBLISHED_DECIMALS))
        districts.append(District(did, name, face))
    check_districts(districts, extent, covered)
    return districts


def check_districts(districts: Sequence[District], extent: Polygon,
                    covered: Sequence[BaseGeometry]) -> None:
    """The districts are valid, do not overlap, fill ``extent`` and cover ``covered``."""
    geoms = [d.geom for d in districts]
    for d in districts:
        if not d.geom.is_valid or d.geom.is_empty:
            raise ValueError(f"district {d.id}: {shapely.is_valid_reason(d.geom)}")
    union = shapely.union_all(geoms)
    overlap = sum(g.area for g in geoms) - union.area
    if overlap > 1e-12 or abs(union.area - extent.area) > 1e-12:
        raise ValueError(f"districts are not a partition of {extent.bounds}: overlap "
                         f"{overlap:.3g} deg², gap {extent.area - union.area:.3g} deg²")
    missed = [i for i, g in enumerate(covered) if not union.covers(g)]
    if missed:
        raise ValueError(f"{len(missed)} geometries lie outside every district, e.g. "
                         f"{covered[missed[0]].bounds}")
