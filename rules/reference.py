"""Reference data the rules need, as arrays: vehicles, sites, zones, permits.

Built once from a city bundle; every per-fix lookup (which permit is valid now, which site
or zone a fix is in, is a zone's window active, is a site closed) is a numpy operation over
the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

from domain.city import SITE_KINDS, City, parse_window
from geofence.corridor import Corridors
from geofence.projection import Projector

_DAY_MIN = 1440


def _window_minutes(windows: tuple[str, ...]) -> list[tuple[int, int]]:
    return [parse_window(w) for w in windows]


def in_windows(minute_of_day: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """Local minute-of-day inside any [start, end) window; end < start crosses midnight;
    no windows means always."""
    if not windows:
        return np.ones(len(minute_of_day), bool)
    inside = np.zeros(len(minute_of_day), bool)
    for start, end in windows:
        if start == end:
            continue
        if start < end:
            inside |= (minute_of_day >= start) & (minute_of_day < end)
        else:
            inside |= (minute_of_day >= start) | (minute_of_day < end)
    return inside


@dataclass
class Reference:
    """Everything rules look up, indexed for arrays."""

    city: City
    timezone: ZoneInfo
    device_ids: np.ndarray  # object array, sorted
    device_vehicle: np.ndarray  # vehicle index per sorted device id
    plates: list[str]
    companies: list[str]
    fence_ids: list[str]
    fence_kind: np.ndarray  # object array of kinds
    fence_speed_limit: np.ndarray  # NaN where none
    zone_windows: dict[int, list[tuple[int, int]]]  # fence index → windows (restricted zones)
    permit_ids: list[str]
    permit_vehicle: np.ndarray
    permit_from_ms: np.ndarray
    permit_to_ms: np.ndarray
    permit_hours: list[list[tuple[int, int]]]
    # suspensions: (permit index, from ms, to ms) rows, [from, to) — few, so checked per row
    permit_gaps: np.ndarray  # (g, 3) int64

    @cached_property
    def fence_index_of(self) -> dict[str, int]:
        """fence id → index into ``fence_ids`` (built once, not per batch)."""
        return {fid: k for k, fid in enumerate(self.fence_ids)}

    def fence_indices(self, ids: np.ndarray) -> np.ndarray:
        """Indices of many fence ids (-1 for ids this reference does not know); one dict
        lookup per distinct id in the batch, not per membership."""
        if not len(ids):
            return np.zeros(0, np.int64)
        unique, inverse = np.unique(ids.astype(str), return_inverse=True)
        index_of = self.fence_index_of
        return np.array([index_of.get(f, -1) for f in unique.tolist()], np.int64)[inverse]
    permit_origin: np.ndarray  # fence index
    permit_allowed: list[set[int]]  # fence indexes where tipping is allowed
    permit_destinations: list[set[int]]
    permits_by_vehicle: dict[int, list[int]]
    corridors: Corridors
    # sites closed, full or with an expired licence: (fence index, from ms, to ms) rows,
    # [from, to) — few, so checked per row (issue #22, docs/permits.md "Registry")
    site_closed: np.ndarray  # (c, 3) int64
    # the registry and the jobs (issue #22): per vehicle index rated load (kg) and volume
    # (m³), NaN unknown; per permit its job's index, per job the declared volume (NaN none)
    # and what the manifest already held of it when the reference was built
    vehicle_rated_kg: np.ndarray
    vehicle_volume_m3: np.ndarray
    permit_job: np.ndarray
    job_ids: list[str]
    job_declared_m3: np.ndarray
    job_hauled_m3: np.ndarray

    @classmethod
    def from_city(cls, city: City) -> Reference:
        vehicles = city.vehicles
        order = np.argsort(np.array([v.device_id for v in vehicles], dtype=object))
        fence_index = {f.id: k for k, f in enumerate(city.fences)}
        plate_vehicle = {v.plate: k for k, v in enumerate(vehicles)}
        permits = [p for p in city.permits if p.plate in plate_vehicle]
        by_vehicle: dict[int, list[int]] = {}
        for k, p in enumerate(permits):
            by_vehicle.setdefault(plate_vehicle[p.plate], []).append(k)
        for ks in by_vehicle.values():
            ks.sort(key=lambda k: (permits[k].valid_from, permits[k].id))
        projector = Projector(city.metric_epsg)
        job_ids = list(dict.fromkeys(p.job_id for p in permits))
        job_index = {j: k for k, j in enumerate(job_ids)}
        declared = np.full(len(job_ids), np.nan)
        hauled = np.zeros(len(job_ids))
        for p in permits:  # the permits of one job share its volume (the first one names it)
            k = job_index[p.job_id]
            if np.isnan(declared[k]) and p.declared_volume_m3:
                declared[k] = p.declared_volume_m3
            hauled[k] = max(hauled[k], p.hauled_m3)
        return cls(
            city=city,
            timezone=ZoneInfo(city.timezone),
            device_ids=np.array([vehicles[k].device_id for k in order], dtype=object),
            device_vehicle=np.asarray(order, np.int64),
            plates=[v.plate for v in vehicles],
            companies=[v.company_id for v in vehicles],
            fence_ids=[f.id for f in city.fences],
            fence_kind=np.array([f.kind for f in city.fences], dtype=object),
            fence_speed_limit=np.array([f.speed_limit_kmh if f.speed_limit_kmh else np.nan
                                        for f in city.fences], np.float64),
            zone_windows={k: _window_minutes(f.windows) for k, f in enumerate(city.fences)
                          if f.kind == "restricted_zone"},
            permit_ids=[p.id for p in permits],
            permit_vehicle=np.array([plate_vehicle[p.plate] for p in permits], np.int64),
            permit_from_ms=np.array([int(p.valid_from.timestamp() * 1000) for p in permits],
                                    np.int64),
            permit_to_ms=np.array([int(p.valid_to.timestamp() * 1000) for p in permits],
                                  np.int64),
            permit_hours=[_window_minutes((p.hours,)) if p.hours else [] for p in permits],
            permit_gaps=np.array([(k, a, b) for k, p in enumerate(permits)
                                  for a, b in p.suspended], np.int64).reshape(-1, 3),
            permit_origin=np.array([fence_index[p.origin] for p in permits], np.int64),
            permit_allowed=[{fence_index[p.origin], *(fence_index[d] for d in p.destinations)}
                            for p in permits],
            permit_destinations=[{fence_index[d] for d in p.destinations} for p in permits],
            permits_by_vehicle=by_vehicle,
            corridors=Corridors([p.route for p in permits], [p.corridor_m for p in permits],
                                projector),
            site_closed=np.array([(k, a, b) for k, f in enumerate(city.fences)
                                  if f.kind in SITE_KINDS
                                  for a, b, _ in f.closed_intervals(city.timezone)],
                                 np.int64).reshape(-1, 3),
            vehicle_rated_kg=np.array([v.rated_load_kg or np.nan for v in vehicles],
                                      np.float64),
            vehicle_volume_m3=np.array([v.volume_m3 or np.nan for v in vehicles], np.float64),
            permit_job=np.array([job_index[p.job_id] for p in permits], np.int64),
            job_ids=job_ids, job_declared_m3=declared, job_hauled_m3=hauled,
        )

    def vehicle_of(self, devices: np.ndarray) -> np.ndarray:
        """Vehicle index per device id; -1 for terminals not in vehicles.csv."""
        if len(self.device_ids) == 0:
            return np.full(len(devices), -1, np.int64)
        at = np.clip(np.searchsorted(self.device_ids, devices), 0, len(self.device_ids) - 1)
        found = self.device_ids[at] == devices
        return np.where(found, self.device_vehicle[at], -1)

    def local_minutes(self, ts_ms: np.ndarray) -> np.ndarray:
        """Minute of the local day (bundle timezone) for each epoch-ms timestamp.

        The UTC offset is looked up once per distinct hour, so DST zones are right too."""
        if len(ts_ms) == 0:
            return np.zeros(0, np.int64)
        hours = ts_ms // 3_600_000
        unique, inverse = np.unique(hours, return_inverse=True)
        offsets = np.array([
            int((datetime.fromtimestamp(int(h) * 3600, self.timezone).utcoffset() or timedelta(0))
                // timedelta(minutes=1)) for h in unique.tolist()], np.int64)
        minutes = ts_ms // 60_000 + offsets[inverse]
        return minutes % _DAY_MIN

    @cached_property
    def vehicle_permits(self) -> np.ndarray:
        """(vehicles + 1, K) permit indices per vehicle, earliest-starting first, padded with
        -1; the last row (all -1) stands for terminals not in vehicles.csv. K is the most
        permits any vehicle holds (at least 1)."""
        width = max([len(ks) for ks in self.permits_by_vehicle.values()] + [1])
        out = np.full((len(self.plates) + 1, width), -1, np.int64)
        for v, ks in self.permits_by_vehicle.items():
            out[v, :len(ks)] = ks
        return out

    def permit_slots(self, vehicle: np.ndarray) -> np.ndarray:
        """(n, K): every permit each fix's vehicle holds, valid or not, -1 padded."""
        table = self.vehicle_permits
        return table[np.where(vehicle >= 0, vehicle, len(table) - 1)]

    def permits_valid(self, slots: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
        """(n, K) bool: permit ``slots[i, k]`` is valid at ``ts_ms[i]`` — inside its validity
        window, not suspended then and, if it has hours, inside them (local time; a window may
        cross midnight). All by device time, so late fixes are judged by the permit as it was
        when they were recorded."""
        if slots.size == 0 or len(self.permit_ids) == 0:
            return np.zeros(slots.shape, bool)
        k = np.maximum(slots, 0)
        t = ts_ms[:, None]
        m = self.local_minutes(ts_ms)[:, None]
        ok = (slots >= 0) & (t >= self.permit_from_ms[k]) & (t <= self.permit_to_ms[k])
        h0, h1 = self._hours[k, 0], self._hours[k, 1]
        in_hours = np.where(h0 < h1, (m >= h0) & (m < h1), (m >= h0) | (m < h1))
        ok &= (h0 < 0) | (h0 == h1) | in_hours
        for permit, start, end in self.permit_gaps.tolist():  # suspended: not valid then
            ok &= ~((slots == permit) & (t >= start) & (t < end))
        return ok

    @cached_property
    def _hours(self) -> np.ndarray:
        """(permits, 2) allowed hours as local minutes of the day; (-1, -1) for all day."""
        return np.array([h[0] if h else (-1, -1) for h in self.permit_hours],
                        np.int64).reshape(-1, 2)

    def permit_site_has(self, permit: np.ndarray, fence: np.ndarray, which: str) -> np.ndarray:
        """Is ``fence`` one of ``permit``'s allowed (origin + destinations) or destination
        sites, pairwise over arrays."""
        key = f"_{which}_keys"
        keys = self.__dict__.get(key)
        n_fences = len(self.fence_ids)
        if keys is None:
            sets = self.permit_allowed if which == "allowed" else self.permit_destinations
            keys = np.sort(np.array([k * n_fences + f for k, fs in enumerate(sets) for f in fs],
                                    np.int64))
            self.__dict__[key] = keys
        if len(keys) == 0:
            return np.zeros(len(permit), bool)
        q = permit.astype(np.int64) * n_fences + fence
        at = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        return keys[at] == q

    @cached_property
    def fence_receiving(self) -> np.ndarray:
        """Per fence index: a disposal site or transfer dock (where spoil may be received)."""
        return np.isin(self.fence_kind, ("disposal_site", "transfer_dock"))

    @cached_property
    def _dock_ids(self) -> np.ndarray:
        return np.array([fid if kind == "transfer_dock" else "" for fid, kind in
                         zip(self.fence_ids, self.fence_kind.tolist(), strict=True)] + [""],
                        dtype=object)

    def dock_ids(self, site: np.ndarray) -> np.ndarray:
        """Per fix the id of the transfer dock its site is, "" for none (manifest
        transfers)."""
        return self._dock_ids[np.where(site >= 0, site, len(self.fence_ids))]

    def sites_closed(self, fence: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
        """Is site ``fence[i]`` closed (closed, full or its licence expired) at device time
        ``ts_ms[i]``; False for -1 and for sites never closed. By device time, so a late fix
        is judged by the site as it was when the fix was recorded."""
        out = np.zeros(len(fence), bool)
        if not len(self.site_closed) or not len(fence):
            return out
        at = np.flatnonzero(np.isin(fence, self.site_closed[:, 0]))
        if not len(at):
            return out
        fx, t = fence[at], ts_ms[at]
        hit = np.zeros(len(at), bool)
        for site, start, end in self.site_closed.tolist():
            hit |= (fx == site) & (t >= start) & (t < end)
        out[at] = hit
        return out

    def is_site(self, fence: np.ndarray) -> np.ndarray:
        return np.isin(self.fence_kind[fence], SITE_KINDS)
