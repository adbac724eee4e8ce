"""Per-fix facts the rules need, computed for a whole batch at once.

Everything here depends on one fix alone (its position, time, sensors, memberships and the
reference data), so it is computed with numpy over the batch as it arrives, before fixes are
held back for reordering. What depends on a vehicle's history (GNSS jumps, the loaded leg and
the permits that explain it, "loaded" without a load sensor) is decided later, in device-time
order, by the engine (``rules.legs``).

A vehicle may hold several permits, so the permit facts (``permit_facts``) are (fixes × K)
matrices, column k being the k-th permit the fix's vehicle holds
(``Reference.vehicle_permits``); they are computed per round for the released fixes only,
so the reorder window does not carry them. So are the sites' closures (issue #22): a
destination closed, full or with an expired licence at the fix's device time is no
destination (``dest``), and a closed disposal site or dock receives nothing (``receiving``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from domain.batches import FixBatch
from domain.events import Memberships
from domain.settings import RuleSettings
from rules.reference import Reference, in_windows

RECEIVING_KINDS = ("disposal_site", "transfer_dock")
SITE_KINDS = ("construction_site", *RECEIVING_KINDS)


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
    alarm: np.ndarray  # the terminal's alarm word, -1 not reported
    static_ok: np.ndarray  # bool: enough satellites and a usable HDOP
    site: np.ndarray  # fence index of the site the fix is in, -1 none
    site2: np.ndarray  # a second site it is in (overlapping fences), -1 none
    in_site: np.ndarray  # bool: inside any construction/disposal/dock fence
    in_receiving: np.ndarray  # bool: inside a disposal site or transfer dock (open or not)
    zone: np.ndarray  # fence index of an active restricted zone the fix is in, -1 none
    speed_limit: np.ndarray  # km/h in force at the fix
    rated_kg: np.ndarray  # the vehicle's rated load (registry), NaN unknown

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index) -> Facts:
        return Facts(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Facts]) -> Facts:
        return Facts(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                        for f in fields(Facts)})


@dataclass(slots=True)
class PermitFacts:
    """(n, K) matrices: column k is the k-th permit the fix's vehicle holds (``receiving``:
    one value per fix). Computed per round for the fixes released to the rules (not carried
    through the reorder window)."""

    permit: np.ndarray  # the vehicle's permits, -1 padded
    valid: np.ndarray  # valid at the fix's device time (validity and hours)
    origin: np.ndarray  # inside the permit's origin site
    origin_site: np.ndarray  # the permit's origin site (fence index), -1 for padding
    dest: np.ndarray  # inside one of the permit's destinations, open at the fix's time
    in_dest: np.ndarray  # inside one of the permit's destinations, open or not
    receiving: np.ndarray  # (n,): inside a disposal site or dock open at the fix's time


def permit_facts(f: Facts, ref: Reference, settings: RuleSettings) -> PermitFacts:
    """Every permit each fix's vehicle holds: validity now and whether the fix is in its
    origin or one of its destinations — open then, or not (corridor distances are measured
    later, only for the permits a fix is judged against: ``rules.situation``)."""
    slots = ref.permit_slots(f.vehicle)
    valid = ref.permits_valid(slots, f.ts)
    origin = np.zeros(slots.shape, bool)
    dest = np.zeros(slots.shape, bool)
    in_dest = np.zeros(slots.shape, bool)
    # receiving: decided by the fix's sites (site, site2); a fix in more overlapping sites
    # than that keeps the membership's answer
    seen = np.zeros(len(f), bool)
    receiving = np.zeros(len(f), bool)
    for site in (f.site, f.site2):
        at = np.flatnonzero(site >= 0)
        if not len(at):
            continue
        closed = ref.sites_closed(site[at], f.ts[at])
        is_receiving = ref.fence_receiving[site[at]]
        seen[at[is_receiving]] = True
        receiving[at[is_receiving & ~closed]] = True
        for k in range(slots.shape[1]):
            p = slots[at, k]
            has = p >= 0
            fx, fence, pk = at[has], site[at[has]], p[has]
            origin[fx[ref.permit_origin[pk] == fence], k] = True
            is_dest = ref.permit_site_has(pk, fence, "destination")
            in_dest[fx[is_dest], k] = True
            dest[fx[is_dest & ~closed[has]], k] = True
    origin_site = np.where(slots >= 0, ref.permit_origin[np.maximum(slots, 0)], -1) \
        if len(ref.permit_ids) else np.full(slots.shape, -1, np.int64)
    return PermitFacts(slots, valid, origin, origin_site, dest, in_dest,
                       np.where(seen, receiving, f.in_receiving))


def compute_facts(fixes: FixBatch, memberships: Memberships, ref: Reference,
                  settings: RuleSettings) -> Facts:
    n = len(fixes)
    vehicle = ref.vehicle_of(fixes.device)
    minute = ref.local_minutes(fixes.ts)

    # memberships → per-fix site / zone / limit, by fence index
    member_fix = memberships.fix_index
    member_fence = ref.fence_indices(memberships.fence_id)
    keep = member_fence >= 0
    member_fix, member_fence = member_fix[keep], member_fence[keep]
    kind = ref.fence_kind[member_fence] if len(member_fence) else np.zeros(0, object)
    is_site = np.isin(kind, SITE_KINDS)
    site = np.full(n, -1, np.int64)
    site[member_fix[is_site][::-1]] = member_fence[is_site][::-1]  # first site per fix
    site2 = np.full(n, -1, np.int64)
    other = is_site & (member_fence != site[member_fix])
    site2[member_fix[other]] = member_fence[other]
    in_receiving = np.zeros(n, bool)
    in_receiving[member_fix[np.isin(kind, RECEIVING_KINDS)]] = True

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

    static_ok = ((fixes.sats < 0) | (fixes.sats >= settings.min_sats)) & \
        (np.isnan(fixes.hdop) | (fixes.hdop <= settings.max_hdop))
    return Facts(
        device=fixes.device, vehicle=vehicle, ts=fixes.ts, lon=fixes.lon, lat=fixes.lat,
        speed=fixes.speed.astype(np.float64), lid=fixes.lid, lift=fixes.lift, load=fixes.load,
        load_kg=fixes.load_kg.astype(np.float64), alarm=fixes.alarm, static_ok=static_ok,
        site=site,
        site2=site2, in_site=site >= 0, in_receiving=in_receiving, zone=zone,
        speed_limit=limit, rated_kg=_per_vehicle(ref.vehicle_rated_kg, vehicle),
    )


def _per_vehicle(values: np.ndarray, vehicle: np.ndarray) -> np.ndarray:
    """A per-vehicle float column per fix; NaN for terminals not in the registry."""
    if not len(values):
        return np.full(len(vehicle), np.nan)
    return np.where(vehicle >= 0, values[np.maximum(vehicle, 0)], np.nan)
