"""The GNSS gate: which fixes are "known" — enough satellites, a usable HDOP (``static_ok``)
and no jump faster than ``max_implied_kmh`` from the vehicle's last *good* fix. A fix that
is not known never moves a rule's machine either way (docs/rules.md, time and quality)."""

from __future__ import annotations

import numpy as np

from rules.facts import Facts
from rules.state import VehicleState

_NEVER = -(2**62)


def gnss_known(f: Facts, first: np.ndarray, slot: np.ndarray, starts: np.ndarray,
           ends: np.ndarray, sts: list[VehicleState], max_implied_kmh: float) -> np.ndarray:
    """Known = static quality ok and no jump (> max_implied_kmh from the last good fix).

    Vectorised against the previous fix; vehicles with a jump or a poor fix in this batch
    are re-walked in order, comparing with the last *good* fix."""
    n = len(f)
    good_ts = np.array([st.good_ts for st in sts], np.int64)
    good_lon = np.array([st.good_lon for st in sts])
    good_lat = np.array([st.good_lat for st in sts])
    lon0 = np.empty(n)
    lat0 = np.empty(n)
    t0 = np.empty(n, np.int64)
    lon0[1:], lat0[1:], t0[1:] = f.lon[:-1], f.lat[:-1], f.ts[:-1]
    lon0[first], lat0[first], t0[first] = good_lon[slot[first]], good_lat[slot[first]], \
        good_ts[slot[first]]
    limit = max_implied_kmh / 3.6
    fast = (_implied_speed(lon0, lat0, t0, f.lon, f.lat, f.ts) > limit) & (t0 > _NEVER)
    ok = f.static_ok.copy()
    doubtful = np.zeros(len(sts), bool)
    doubtful[slot[fast | ~ok]] = True
    for i, st in enumerate(sts):
        if doubtful[i]:
            gts, glon, glat = st.good_ts, st.good_lon, st.good_lat
            for k in range(int(starts[i]), int(ends[i])):
                if not ok[k]:
                    continue
                if gts > _NEVER and _implied_speed(glon, glat, gts, f.lon[k], f.lat[k],
                                                   f.ts[k]) > limit:
                    ok[k] = False
                    continue
                gts, glon, glat = int(f.ts[k]), float(f.lon[k]), float(f.lat[k])
            st.good_ts, st.good_lon, st.good_lat = gts, glon, glat
        else:
            k = int(ends[i]) - 1
            st.good_ts, st.good_lon, st.good_lat = int(f.ts[k]), float(f.lon[k]), \
                float(f.lat[k])
    return ok


def _implied_speed(lon0, lat0, t0, lon1, lat1, t1):
    """m/s between two fixes (equirectangular metres: plenty for a 150 km/h jump test)."""
    lat_mid = np.radians((np.asarray(lat0) + np.asarray(lat1)) / 2)
    dx = (np.asarray(lon1) - np.asarray(lon0)) * 111_320.0 * np.cos(lat_mid)
    dy = (np.asarray(lat1) - np.asarray(lat0)) * 110_574.0
    dt = np.maximum((np.asarray(t1) - np.asarray(t0)) / 1000.0, 1e-3)
    return np.hypot(dx, dy) / dt
