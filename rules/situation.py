"""What every rule reads of a fix once its vehicle's history is known: the ``Situation``.

Built per round from the batch's facts, the GNSS gate and the legs (``rules.legs``): is the
truck loaded, moving, on which permits is it judged, how far is it from their corridors,
may it tip here. Rules only combine these columns; none of them looks at history itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domain.settings import RuleSettings
from geofence.corridor import Corridors
from rules.facts import Facts, PermitFacts
from rules.legs import LOADED_KG, LegView

__all__ = ["LOADED_KG", "Situation", "situation"]


@dataclass(slots=True)
class Situation:
    """One row per fix of a round (sorted by vehicle, ts)."""

    facts: Facts
    known: np.ndarray  # GNSS gate passed: the fix may open or close something
    loaded: np.ndarray  # 1 loaded, 0 empty, -1 unknown
    speed_known: np.ndarray
    moving: np.ndarray  # faster than ``moving_kmh``
    stationary: np.ndarray  # known and slower than ``moving_kmh``
    has_permit: np.ndarray  # judged against at least one permit
    permit: np.ndarray  # the permit named: the best-fitting one it is judged against, or -1
    route_m: np.ndarray  # metres to the nearest corridor it is judged against (NaN: none)
    off_route: np.ndarray  # outside the corridor of every permit it is judged against
    on_route: np.ndarray  # well inside (``off_route_close_ratio``) at least one of them
    in_leg_site: np.ndarray  # in the origin or a destination of one of those permits
    tip_allowed: np.ndarray  # tipping is allowed here (and now: the site is open)
    # in an open disposal site or dock that none of the permits it is judged against names:
    # tipping here is WRONG_DESTINATION, not UNAUTHORISED_DUMP
    wrong_site: np.ndarray
    loaded_since: np.ndarray  # departure ms of a leg known loaded, not yet arrived; -1
    load_dropped: np.ndarray  # no lift sensor: the load fell, sustained (set by the dump rule)


def situation(f: Facts, pf: PermitFacts, known: np.ndarray, legs: LegView,
              corridors: Corridors, settings: RuleSettings) -> Situation:
    s = settings
    sensor = np.where(f.load >= 1, 1, np.where(f.load == 0, 0, -1))
    kg = np.where(np.isnan(f.load_kg), -1, (f.load_kg > LOADED_KG).astype(np.int64))
    loaded = np.where(sensor >= 0, sensor, np.where(kg >= 0, kg, legs.loaded))
    speed_known = ~np.isnan(f.speed)
    cover = legs.cover
    has_permit = np.asarray(cover.any(axis=1))
    # corridor distance of every permit each fix is judged against (most fixes: one)
    rows, cols = np.nonzero(cover)
    dist = np.full(cover.shape, np.inf)
    ratio = np.full(cover.shape, np.inf)
    if len(rows):
        p = pf.permit[rows, cols]
        dist[rows, cols] = corridors.distance_m(p, f.lon[rows], f.lat[rows])
        ratio[rows, cols] = dist[rows, cols] / corridors.half_width_m[p]
    best = np.argmin(ratio, axis=1)  # the best-fitting corridor (K ≥ 1 columns always)
    rows = np.arange(len(f))
    permit = np.where(has_permit, pf.permit[rows, best], -1)
    route_m = np.where(has_permit, dist.min(axis=1), np.nan)
    best_ratio = ratio[rows, best]
    # in a site of its leg — a destination closed since is still no place to be off route in
    in_leg_site = (cover & (pf.origin | pf.in_dest)).any(axis=1)
    # tipping: in an origin or an open destination of a permit it is judged against; with
    # none, in any open disposal site or dock (the missing permit is NO_PERMIT's business).
    # A site closed, full or past its licence at the fix's device time receives nothing.
    tip_allowed = (cover & (pf.origin | pf.dest)).any(axis=1) | (~has_permit & pf.receiving)
    wrong_site = has_permit & pf.receiving & ~tip_allowed
    return Situation(
        facts=f, known=known, loaded=loaded, speed_known=speed_known,
        moving=np.nan_to_num(f.speed, nan=0.0) > s.moving_kmh,
        stationary=speed_known & (f.speed < s.moving_kmh),
        has_permit=has_permit, permit=permit, route_m=route_m,
        off_route=has_permit & (best_ratio > 1.0),
        on_route=has_permit & (best_ratio < s.off_route_close_ratio),
        in_leg_site=in_leg_site, tip_allowed=tip_allowed, wrong_site=wrong_site,
        loaded_since=legs.loaded_since,
        load_dropped=np.zeros(len(f), bool),
    )
