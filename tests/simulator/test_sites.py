"""Trucks load and tip inside the right fence: every permit's route starts inside its origin
and ends inside its destination, and the episodes load and tip well inside them (the compliant
fleet: test_fleet.py) — not where the route meets the fence, nor short of it: make accuracy's
first week had 98 false UNAUTHORISED_DUMP at transfer dock TD03, episode trucks stopping one
reporting step before the end of the route, 7–39 m outside the narrow dock."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from simulator.episodes import RULES, EpisodeError, Episodes

START = 1_790_000_000_000  # 2026-09-21, inside the sample permits' validity
DEEP_M = 20.0  # loading and tipping spots are at least this far inside (GPS noise σ is 8 m)


@pytest.fixture(scope="module")
def metric(city):
    to_metric = pyproj.Transformer.from_crs(4326, city.metric_epsg, always_xy=True)

    def convert(geom):
        return shapely.transform(geom, lambda xy: np.column_stack(
            to_metric.transform(xy[:, 0], xy[:, 1])))
    return to_metric, {f.id: convert(f.geometry) for f in city.fences}


def test_every_route_starts_in_its_origin_and_ends_in_its_destination(city):
    fences = {f.id: f.geometry for f in city.fences}
    wrong = []
    for p in city.permits:
        xy = shapely.get_coordinates(p.route)
        if not fences[p.origin].covers(shapely.Point(xy[0])):
            wrong.append(f"{p.id} starts outside {p.origin}")
        if not fences[p.destinations[0]].covers(shapely.Point(xy[-1])):
            wrong.append(f"{p.id} ends outside {p.destinations[0]}")
    assert not wrong, wrong


@pytest.mark.parametrize("permit_id", ["P0470", "P0001", "P0304"])
def test_episode_legs_load_and_tip_inside_the_right_fence(city, metric, permit_id):
    """Every episode of every rule on a permit (P0470 ends at the narrow dock TD03): loading
    fixes lie inside its origin, tipping fixes other than the offence's own inside its
    destination, ≥ 20 m in."""
    to_metric, fences = metric
    permit = next((p for p in city.permits if p.id == permit_id), None)
    if permit is None:
        pytest.skip(f"the city has no {permit_id}")
    device = next(v.device_id for v in city.vehicles if v.plate == permit.plate)
    origin, destination = fences[permit.origin], fences[permit.destinations[0]]
    builder = Episodes(city, 10.0)
    tipped = 0
    for rule in RULES:
        for make in (builder.offence, builder.near_miss):
            try:
                episode = make(rule, device, permit_id, START, seed=3)
            except EpisodeError:
                continue
            truth = episode.truth
            for f in episode.track.fixes:
                point = shapely.Point(*to_metric.transform(f["lon"], f["lat"]))
                if f.get("load") == 1:  # loading
                    assert origin.contains(point), (rule, f)
                    assert origin.boundary.distance(point) >= DEEP_M, (rule, f)
                elif f.get("lift") == 1 and not truth["start_ts"] <= f["ts"] <= truth["end_ts"]:
                    assert destination.contains(point), (rule, f)
                    assert destination.boundary.distance(point) >= DEEP_M, (rule, f)
                    tipped += 1
    assert tipped > 50
