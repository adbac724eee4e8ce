"""Per-fix facts the rules need, computed for a whole batch at once.

Everything here depends on one fix alone (its position, time, sensors, memberships and the
reference data), so it is computed with numpy over the batch as it arrives, before fixes are
held back for reordering. What depends on a vehicle's history (GNSS jumps, trip state,
"loaded" without a load sensor) is decided later, in device-time order, by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from muckwatch.batches import FixBatch
from rules.events import Memberships
from rules.reference import Reference, in_windows
from rules.settings import RuleSettings


@dataclass
class Facts:
    """One row per fix; columns are numpy arrays of equal length."""

    device: np.ndarray  # object
    vehicle: np.ndarray  # int64, -1 unknown terminal
    ts: np.ndarray  # int64 ms
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray  # NaN unknown
    lid: np.ndarray  # -1 unknown
    lift: np.ndarray
    load: np.ndarray
    load_kg: np.ndarray
    static_ok: np.ndarray  # bool: enough satellites and a usable HDOP
    permit: np.ndarray  # int64, -1 none valid now
    site: np.ndarray  # fence index of the site the fix is in, -1 none
    in_site: np.ndarray  # bool: inside any construction/disposal/dock fence
    tip_allowed: np.ndarray  # bool: inside a site where this fix's permit allows tipping
    in_origin: np.ndarray  # bool: inside the permit's origin site
    in_destination: np.ndarray  # bool: inside one of the permit's destinations
    zone: np.ndarray  # fence index of an active restricted zone the fix is in, -1 none
    speed_limit: np.ndarray  # km/h in force at the fix
    route_m: np.ndarray  # distance to the permit's corridor centreline, NaN without permit
    half_width_m: np.ndarray  # the corridor's half-width, NaN without permit

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index) -> Facts:
        return Facts(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Facts]) -> Facts:
        return Facts(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                        for f in fields(Facts)})


def compute_facts(fixes: FixBatch, memberships: Memberships, ref: Reference,
                  settings: RuleSettings) -> Facts:
    n = len(fixes)
    vehicle = ref.vehicle_of(fixes.device)
    minute = ref.local_minutes(fixes.ts)
    permit = ref.permit_at(vehicle, fixes.ts, minute)

    # memberships → per-fix site / zone / limit, by fence index
    member_fix = memberships.fix_index
    member_fence = ref.fence_indices(memberships.fence_id)
    keep = member_fence >= 0
    member_fix, member_fence = member_fix[keep], member_fence[keep]
    kind = ref.fence_kind[member_fence] if len(member_fence) else np.zeros(0, object)
    is_site = np.isin(kind, ("construction_site", "disposal_site", "transfer_dock"))
    site = np.full(n, -1, np.int64)
    site[member_fix[is_site][::-1]] = member_fence[is_site][::-1]  # first site per fix
    in_site = site >= 0

    # tipping allowed: a site of the fix's permit (origin or destination); without a permit
    # any disposal site or dock (the missing permit is NO_PERMIT's business)
    tip_allowed = np.zeros(n, bool)
    in_origin = np.zeros(n, bool)
    in_destination = np.zeros(n, bool)
    site_fix, site_fence = member_fix[is_site], member_fence[is_site]
    p = permit[site_fix]
    permitted = p >= 0
    pf, ff, pk = site_fix[permitted], site_fence[permitted], p[permitted]
    tip_allowed[pf[ref.permit_site_has(pk, ff, "allowed")]] = True
    in_origin[pf[ref.permit_origin[pk] == ff]] = True
    in_destination[pf[ref.permit_site_has(pk, ff, "destination")]] = True
    unpermitted = site_fix[p < 0]
    receiving = np.isin(ref.fence_kind[site_fence[p < 0]], ("disposal_site", "transfer_dock"))
    tip_allowed[unpermitted[receiving]] = True

    # restricted zones whose local-time window is active now
    zone = np.full(n, -1, np.int64)
    is_zone = kind == "restricted_zone"
    for fence in np.unique(member_fence[is_zone]).tolist():
        fx = member_fix[is_zone & (member_fence == fence)]
        active = in_windows(minute[fx], ref.zone_windows.get(fence, []))
        zone[fx[active]] = fence

    # speed limit: the lowest limit of any fence the fix is in, else the global one
    limit = np.full(n, settings.speed_limit_kmh)
    has_limit = ~np.isnan(ref.fence_speed_limit[member_fence]) if len(member_fence) else \
        np.zeros(0, bool)
    np.minimum.at(limit, member_fix[has_limit], ref.fence_speed_limit[member_fence[has_limit]])

    route_m = ref.corridors.distance_m(permit, fixes.lon, fixes.lat)
    half = np.where(permit >= 0, ref.corridors.half_width_m[np.maximum(permit, 0)], np.nan) \
        if len(ref.permit_ids) else np.full(n, np.nan)
    static_ok = ((fixes.sats < 0) | (fixes.sats >= settings.min_sats)) & \
        (np.isnan(fixes.hdop) | (fixes.hdop <= settings.max_hdop))
    return Facts(
        device=fixes.device, vehicle=vehicle, ts=fixes.ts, lon=fixes.lon, lat=fixes.lat,
        speed=fixes.speed.astype(np.float64), lid=fixes.lid, lift=fixes.lift, load=fixes.load,
        load_kg=fixes.load_kg.astype(np.float64), static_ok=static_ok, permit=permit,
        site=site, in_site=in_site, tip_allowed=tip_allowed, in_origin=in_origin,
        in_destination=in_destination, zone=zone, speed_limit=limit, route_m=route_m,
        half_width_m=half,
    )
