"""Ad-hoc geofence questions asked from the command line: which fences of a GeoJSON file
contain which points of a CSV file.

Out of the CLI so the command only parses and prints; the fence index is the same one the
pipeline uses (``geofence.index.FenceIndex``), so the answers are the pipeline's.
"""

from __future__ import annotations

import csv
import math


class PointsFileError(ValueError):
    """The points CSV cannot be used; the message names the file (and line) and why."""


def read_points(path: str) -> tuple[list[str], list[float], list[float]]:
    """Ids, longitudes and latitudes of a CSV with header id,lon,lat (finite numbers)."""
    ids: list[str] = []
    lons: list[float] = []
    lats: list[float] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"id", "lon", "lat"} - set(reader.fieldnames or [])
            if missing:
                raise PointsFileError(f"{path}: header must have id,lon,lat (missing "
                                      f"{', '.join(sorted(missing))})")
            for row in reader:
                try:
                    lon, lat = float(row["lon"]), float(row["lat"])
                except (TypeError, ValueError):
                    raise PointsFileError(f"{path}:{reader.line_num}: lon/lat must be numbers, "
                                          f"got {row['lon']!r}, {row['lat']!r}") from None
                if not (math.isfinite(lon) and math.isfinite(lat)):
                    raise PointsFileError(f"{path}:{reader.line_num}: lon/lat must be finite")
                ids.append(row["id"])
                lons.append(lon)
                lats.append(lat)
    except FileNotFoundError:
        raise PointsFileError(f"{path}: file does not exist") from None
    return ids, lons, lats


def containments(fences_path: str, points_path: str, crs: str) -> list[tuple[str, str]]:
    """(point id, fence id) for every fence that contains a point, sorted by point id then
    fence id. A bad fences file raises geofence.fences.FenceFileError, a bad points file
    PointsFileError."""
    import numpy as np

    from geofence.fences import load_fences
    from geofence.index import FenceIndex

    fences = load_fences(fences_path, crs)
    ids, lons, lats = read_points(points_path)
    fix, fence = FenceIndex(fences.geometries).covering(np.asarray(lons, dtype=np.float64),
                                                        np.asarray(lats, dtype=np.float64))
    return sorted(zip([ids[i] for i in fix.tolist()],
                      [fences.ids[j] for j in fence.tolist()], strict=True))
