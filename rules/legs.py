"""Loaded legs, the permits that explain them, and trips.

A truck usually holds several permits (several jobs, day and night ones). A *leg* begins when
the truck leaves a site that is the origin of one or more of its permits valid there and then:
those permits are the leg's **candidates**, the permits that could explain it. The leg is
judged against them until it arrives in one of their destinations: off route only outside all
their corridors, tipping allowed in any of their origins and destinations. A candidate that
lapses mid-leg (a night permit whose hours end at 06:00 while the truck is still on its way)
keeps covering the leg until ``leg_grace_s`` after the departure: the haul left legally.

A truck whose load sensor says it left the origin empty begins no leg (and no trip); one that
becomes loaded away from any origin is judged against every permit valid at the time.

Sites have a boundary hysteresis, and only known fixes (GNSS gate) move a leg: the truck has
left a site once it has been outside for ``site_exit_s`` and ``site_exit_fixes`` fixes and
moved; it has arrived once ``site_enter_fixes`` fixes in a row were inside. A truck waiting
at the gate while its GPS jitters in and out neither leaves nor arrives, and one 2-satellite
fix at the destination ends no trip.

Phases change only where site membership changes, so the Python walk runs for vehicles at a
site boundary (or waiting out a hysteresis), never for the whole fleet on the road.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from domain.settings import RuleSettings
from rules.facts import Facts, PermitFacts

LOADED_KG = 1000.0  # a weighed load above this counts as loaded

NONE, AT_ORIGIN, LEAVING, EN_ROUTE, ARRIVING, AT_DESTINATION = 0, 1, 2, 3, 4, 5
ON_LEG = (LEAVING, EN_ROUTE, ARRIVING)
# phases judged against the leg's candidates (at the destination too: it tips there under
# the permit it arrived on, even if that lapsed on the way)
JUDGED_BY_LEG = (LEAVING, EN_ROUTE, ARRIVING, AT_DESTINATION)
# loaded implied by the leg for a truck without a load sensor: 1 loaded, 0 empty, -1 unknown
_LOADED_BY_PHASE = np.array([-1, 0, -1, 1, 1, 0], np.int64)
_NEVER = -(2**62)


@dataclass(slots=True)
class LegState:
    """One vehicle's leg, kept in its ``VehicleState``."""

    phase: int = NONE
    permits: list[int] = field(default_factory=list)  # candidates (or the origin's permits)
    origin: int = -1  # fence index of the site it is leaving / left
    left_ts: int = _NEVER
    pending_ts: int = _NEVER  # first fix of an exit or arrival not yet confirmed
    pending_count: int = 0
    pending_moved: bool = False
    arrive_permit: int = -1  # the candidate whose destination it is arriving in
    arrive_site: int = -1
    code: int = -1  # site-membership code of the last known fix (walk trigger)
    # its load sensor said loaded as it left (TRIP_NOT_CLOSED judges only such legs: a truck
    # without a load sensor may have left empty)
    sure_loaded: bool = False
    # transfer docks it stopped in on the way: [dock id, entered ms, left ms or None]
    transfers: list[list] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {name: getattr(self, name) for name in _LEG_FIELDS}
        out["permits"] = list(self.permits)
        out["transfers"] = [list(t) for t in self.transfers]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> LegState:
        state = cls(**{k: v for k, v in data.items() if k in _LEG_FIELDS})
        state.permits = list(state.permits)
        state.transfers = [list(t) for t in state.transfers]
        return state


_LEG_FIELDS = tuple(f.name for f in fields(LegState))


@dataclass(frozen=True, slots=True)
class TripStep:
    """A trip left its origin (``arrived_ts`` None) or arrived: ``vehicle`` is the index into
    the round's states, ``row`` the fix that confirmed it."""

    vehicle: int
    row: int
    left_ts: int
    permit: int
    origin: int
    arrived_ts: int | None = None
    destination: int = -1
    transfers: tuple[tuple[str, int, int | None], ...] = ()  # docks on the way (arrival)


@dataclass(slots=True)
class LegView:
    """What the rules read of the legs, per fix."""

    loaded: np.ndarray  # loaded implied by the leg (for trucks without a load sensor)
    cover: np.ndarray  # (n, K): the permits this fix is judged against
    trips: list[TripStep]
    # device time the leg left its origin, for fixes on a leg whose load sensor said loaded
    # as it left and that has not arrived yet; -1 elsewhere (TRIP_NOT_CLOSED)
    loaded_since: np.ndarray


def walk_legs(f: Facts, pf: PermitFacts, known: np.ndarray, first: np.ndarray, slot: np.ndarray,
              starts: np.ndarray, ends: np.ndarray, legs: list[LegState],
              settings: RuleSettings, docks: np.ndarray | None = None) -> LegView:
    """Advance every vehicle's leg over its rows (sorted by vehicle, ts). ``docks``: per fix
    the id of the transfer dock it is in, "" none (the manifest's transfers)."""
    if docks is None:
        docks = np.full(len(f), "", object)
    n, width = pf.permit.shape
    at_origin = (pf.origin & pf.valid).any(axis=1)
    at_dest = pf.dest.any(axis=1)
    code = at_origin + 2 * at_dest + 4 * f.in_site
    # a vehicle is walked where its (known) site membership changes, or while it waits out
    # a hysteresis
    code_known = np.where(known, code, -1)
    codes = np.array([lg.code for lg in legs], np.int64)
    phases = np.array([lg.phase for lg in legs], np.int64)
    filled = _forward_fill(code_known, first, codes[slot])
    prev = np.empty(n, np.int64)
    prev[1:] = filled[:-1]
    prev[first] = codes[slot[first]]
    changed = known & (code != prev)
    walk = np.zeros(len(legs), bool)
    walk[slot[changed]] = True
    walk |= (phases == LEAVING) | (phases == ARRIVING)

    phase = phases[slot]
    table = _leg_table(legs, width)[slot]
    left = np.array([lg.pending_ts if lg.phase == LEAVING else lg.left_ts for lg in legs],
                    np.int64)[slot]
    sure = np.array([lg.sure_loaded for lg in legs], bool)[slot]
    trips: list[TripStep] = []
    for i in np.flatnonzero(walk).tolist():
        lg = legs[i]
        for k in range(int(starts[i]), int(ends[i])):
            if known[k]:
                _step(lg, f, pf, k, bool(at_origin[k]), i, settings, trips, str(docks[k]))
                lg.code = int(code[k])
            phase[k] = lg.phase
            left[k] = lg.pending_ts if lg.phase == LEAVING else lg.left_ts
            sure[k] = lg.sure_loaded
            table[k] = -1
            table[k, :len(lg.permits)] = lg.permits[:width]
    # the others kept their code; only a first sight (code -1) learns it
    last_code = filled[ends - 1]
    for i in np.flatnonzero(~walk & (last_code != codes)).tolist():
        legs[i].code = int(last_code[i])

    on_leg = np.isin(phase, JUDGED_BY_LEG)
    in_leg = (pf.permit[:, :, None] == table[:, None, :]).any(axis=2) & \
        (pf.permit >= 0)
    # a candidate covers the leg while valid, and for leg_grace_s after the departure even
    # if it lapsed on the way
    grace = (f.ts - left <= settings.leg_grace_s * 1000)[:, None]
    leg_cover = in_leg & (pf.valid | grace)
    cover = np.where((on_leg & leg_cover.any(axis=1))[:, None], leg_cover, pf.valid)
    en_route = ((phase == EN_ROUTE) | (phase == ARRIVING)) & sure
    return LegView(_LOADED_BY_PHASE[phase], cover, trips, np.where(en_route, left, -1))


def _step(lg: LegState, f: Facts, pf: PermitFacts, k: int, at_origin: bool, vehicle: int,
          settings: RuleSettings, trips: list[TripStep], dock: str = "") -> None:
    """One known fix of one vehicle."""
    t = int(f.ts[k])
    if lg.phase in (EN_ROUTE, ARRIVING):
        _note_transfer(lg, dock, t)
    if at_origin and lg.phase not in (EN_ROUTE, ARRIVING):
        # in a site where a leg of one of its valid permits begins (loading, or back in
        # before an exit was confirmed)
        here = pf.permit[k][pf.origin[k] & pf.valid[k]].tolist()
        if lg.phase in (AT_ORIGIN, LEAVING):  # still (or again) in the sites it loads at
            here = lg.permits + [p for p in here if p not in lg.permits]
        lg.phase, lg.permits, lg.origin = AT_ORIGIN, here, int(f.site[k])
        return
    if lg.phase == AT_ORIGIN:
        lg.phase, lg.pending_ts, lg.pending_count = LEAVING, t, 0
        lg.pending_moved = False
    if lg.phase == LEAVING:
        lg.pending_count += 1
        lg.pending_moved |= bool(f.speed[k] > settings.moving_kmh)
        if t - lg.pending_ts >= settings.site_exit_s * 1000 and lg.pending_moved and \
                lg.pending_count >= settings.site_exit_fixes:
            if _empty(f, k):  # left without a load (its load sensor says so): no haul
                lg.phase, lg.permits = NONE, []
                return
            # the candidates are the permits valid as it leaves (it may have parked in the
            # site overnight since it came in)
            # (and every permit of that site valid now: a night permit whose hours began
            # while the truck stood in the site)
            ok = pf.valid[k] & ((pf.origin_site[k] == lg.origin) | np.isin(pf.permit[k],
                                                                          lg.permits))
            lg.permits = [int(p) for p in pf.permit[k][ok]]
            lg.phase, lg.left_ts = EN_ROUTE, lg.pending_ts
            lg.sure_loaded, lg.transfers = _loaded(f, k), []
            trips.append(TripStep(vehicle, k, lg.left_ts, _first(lg.permits), lg.origin))
        return
    if lg.phase in (EN_ROUTE, ARRIVING):
        into = pf.dest[k] & np.isin(pf.permit[k], lg.permits)
        if not into.any():
            if at_origin:
                # in an origin without having arrived anywhere: still loaded (its sensor
                # says so), it may be passing through another of its sites, so the leg
                # keeps its candidates and gains this site's; otherwise a new leg begins
                lg.phase = AT_ORIGIN if _loaded(f, k) else NONE
                _step(lg, f, pf, k, at_origin, vehicle, settings, trips)
            else:
                lg.phase = EN_ROUTE
            return
        if lg.phase == EN_ROUTE:
            lg.phase, lg.pending_ts, lg.pending_count = ARRIVING, t, 0
            lg.arrive_permit = int(pf.permit[k][into][0])
            lg.arrive_site = int(f.site[k])
        lg.pending_count += 1
        if lg.pending_count >= settings.site_enter_fixes:
            # a dock it arrived in is its destination, not a transfer on the way
            on_way = tuple((str(d), int(a), b) for d, a, b in lg.transfers
                           if not (b is None and d == dock))
            trips.append(TripStep(vehicle, k, lg.left_ts, lg.arrive_permit, lg.origin,
                                  lg.pending_ts, lg.arrive_site, on_way))
            lg.phase, lg.permits = AT_DESTINATION, [lg.arrive_permit]
            lg.sure_loaded, lg.transfers = False, []
        return
    if lg.phase == AT_DESTINATION and not f.in_site[k]:
        lg.phase, lg.permits = NONE, []


def _note_transfer(lg: LegState, dock: str, t: int) -> None:
    """A leg on its way entered (or left) a transfer dock: the manifest lists the docks the
    load passed through, with the device times in and out."""
    last = lg.transfers[-1] if lg.transfers else None
    if dock:
        if last is None or last[0] != dock or last[2] is not None:
            lg.transfers.append([dock, t, None])
            del lg.transfers[:-8]  # a leg through more docks than this is no haul
    elif last is not None and last[2] is None:
        last[2] = t


def merge_late_leg(live: LegState, late: LegState, gap_start: int) -> None:
    """Late fixes (a blind-area backlog) were evaluated on a copy of the state; the live leg
    was judged meanwhile without them. If the live leg still is the one that spans the gap
    (it left before the gap) and the late fixes show the truck on a leg too — it loaded at
    another of its sites in the blind area — the live leg gains those candidates: judged
    against more permits, never fewer, so a blind area can only spare a truck, not accuse
    it."""
    if live.phase not in (EN_ROUTE, ARRIVING) or late.phase not in (*ON_LEG, AT_ORIGIN):
        return
    if live.left_ts > gap_start:
        return  # a new leg began after the gap: the late data is not about it
    live.permits = live.permits + [p for p in late.permits if p not in live.permits]


def _empty(f: Facts, k: int) -> bool:
    """The load sensor (level or weight) says empty; unknown is not empty."""
    return bool(f.load[k] == 0 or f.load_kg[k] <= LOADED_KG)


def _loaded(f: Facts, k: int) -> bool:
    """The load sensor (level or weight) says loaded; unknown is not loaded."""
    return bool(f.load[k] >= 1 or f.load_kg[k] > LOADED_KG)


def _first(permits: list[int]) -> int:
    return permits[0] if permits else -1


def _leg_table(legs: list[LegState], width: int) -> np.ndarray:
    """(vehicles, K) each vehicle's leg permits, -1 padded."""
    out = np.full((len(legs), width), -1, np.int64)
    for i, lg in enumerate(legs):
        if lg.permits:
            out[i, :len(lg.permits)] = lg.permits[:width]
    return out


def _forward_fill(values: np.ndarray, first: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Each row's value, or the last non-negative one before it in its vehicle's rows (or
    ``initial`` for the vehicle), so unknown fixes carry the previous code."""
    n = len(values)
    idx = np.where(values >= 0, np.arange(n), -1)
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    last = np.maximum.accumulate(idx)
    own = last >= group_start
    return np.where(own, values[np.maximum(last, 0)], initial)
