"""China's map coordinate systems: WGS-84 ↔ GCJ-02 ↔ BD-09, vectorised over numpy arrays.

Why: terminals report WGS-84, but fences drawn on AMap/Tencent maps come in GCJ-02 and on
Baidu maps in BD-09, offset by hundreds of metres. Everything inside muckwatch is WGS-84, so
fences are converted once, at import.

The forward GCJ-02 transform is the public Krasovsky-based formula, applied only inside China's
bounding box (outside it positions pass through unchanged, as the public algorithm does). Its
one-step inverse is off by metres, so the inverse iterates ``wgs += gcj - forward(wgs)`` until
the round trip is below a micro-degree fraction (≪ 1 cm).
"""

from __future__ import annotations

import numpy as np

_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0

SYSTEMS = ("wgs84", "gcj02", "bd09")


def out_of_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The public algorithm's rectangle: 72.004–137.8347 E, 0.8293–55.8271 N."""
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    d_lat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
             + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
             + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
             + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0)
    d_lon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
             + (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
             + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
             + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0)
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    d_lon = (d_lon * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return d_lon, d_lat


def wgs84_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    d_lon, d_lat = _delta(lon, lat)
    outside = out_of_china(lon, lat)
    return np.where(outside, lon, lon + d_lon), np.where(outside, lat, lat + d_lat)


def _invert(forward, lon, lat, start, tol_deg: float, max_iter: int):
    """Fixed-point inverse of ``forward``: x += target − forward(x) until below tol."""
    x_lon, x_lat = start
    for _ in range(max_iter):
        f_lon, f_lat = forward(x_lon, x_lat)
        e_lon, e_lat = lon - f_lon, lat - f_lat
        x_lon = x_lon + e_lon
        x_lat = x_lat + e_lat
        if np.all(np.abs(e_lon) < tol_deg) and np.all(np.abs(e_lat) < tol_deg):
            break
    return x_lon, x_lat


def gcj02_to_wgs84(lon, lat, *, tol_deg: float = 1e-10, max_iter: int = 30):
    """Iterated inverse: converges to < 1e-10° (≈ 0.01 mm) in a handful of steps."""
    gcj_lon = np.asarray(lon, np.float64)
    gcj_lat = np.asarray(lat, np.float64)
    outside = out_of_china(gcj_lon, gcj_lat)
    w_lon, w_lat = _invert(wgs84_to_gcj02, gcj_lon, gcj_lat, (gcj_lon.copy(), gcj_lat.copy()),
                           tol_deg, max_iter)
    return np.where(outside, gcj_lon, w_lon), np.where(outside, gcj_lat, w_lat)


def gcj02_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02_approx(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(lon, np.float64) - 0.0065
    y = np.asarray(lat, np.float64) - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_gcj02(lon, lat, *, tol_deg: float = 1e-10, max_iter: int = 30):
    """The public one-step inverse is off by ~0.1 m; refine it like the GCJ-02 inverse."""
    bd_lon = np.asarray(lon, np.float64)
    bd_lat = np.asarray(lat, np.float64)
    return _invert(gcj02_to_bd09, bd_lon, bd_lat, _bd09_to_gcj02_approx(bd_lon, bd_lat),
                   tol_deg, max_iter)


def convert(lon, lat, source: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Any of the six directions among wgs84, gcj02 and bd09."""
    for name in (source, target):
        if name not in SYSTEMS:
            raise ValueError(f"unknown coordinate system {name!r} (use one of {SYSTEMS})")
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    if source == target:
        return lon.copy(), lat.copy()
    if source == "bd09":
        lon, lat = bd09_to_gcj02(lon, lat)
        source = "gcj02"
    elif source == "wgs84":
        lon, lat = wgs84_to_gcj02(lon, lat)
        source = "gcj02"
    # now in gcj02
    if target == "gcj02":
        return lon, lat
    if target == "bd09":
        return gcj02_to_bd09(lon, lat)
    return gcj02_to_wgs84(lon, lat)


_GK_FIRST_EPSG = 4534  # CGCS2000 / 3-degree Gauss-Kruger CM 75E
_GK_FIRST_CM = 75


def metric_epsg_for(lon: float, lat: float) -> int:
    """The CGCS2000 3° Gauss-Krüger zone (China) or UTM zone (elsewhere) containing a point."""
    if not out_of_china(np.array([lon]), np.array([lat]))[0]:
        cm = round(lon / 3.0) * 3
        cm = min(max(cm, _GK_FIRST_CM), 135)
        return _GK_FIRST_EPSG + (cm - _GK_FIRST_CM) // 3
    zone = int((lon + 180) // 6) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone
