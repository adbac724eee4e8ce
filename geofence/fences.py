"""Fence files: a GeoJSON FeatureCollection → fences with ids, every problem listed
(geometry reading and its strictness: ``domain.geojson``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from domain.geojson import GeometryError, read_area


class FenceFileError(ValueError):
    """A fences file has problems; ``problems`` lists each as '<id>: <reason>'."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path} has {len(problems)} bad feature(s):\n  {shown}{more}")


@dataclass(frozen=True)
class FenceSet:
    """Fences of one file: ids, WGS-84 geometries and each feature's properties."""

    ids: list[str]
    geometries: list[BaseGeometry]
    properties: list[dict]


def load_fences(path: str | Path, crs: str = "wgs84") -> FenceSet:
    """Every feature of a GeoJSON FeatureCollection as a fence; FenceFileError lists all
    problems (id and reason), not just the first."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FenceFileError(path, ["file does not exist"]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FenceFileError(path, [f"not valid JSON: {e}"]) from None
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise FenceFileError(path, ["not a GeoJSON FeatureCollection"])
    ids, geometries, props, problems = [], [], [], []
    seen: set[str] = set()
    for k, feature in enumerate(data.get("features") or []):
        p = (feature or {}).get("properties") or {} if isinstance(feature, dict) else {}
        fid = p.get("id", (feature or {}).get("id") if isinstance(feature, dict) else None)
        label = str(fid) if fid is not None else f"feature #{k}"
        if fid is None or str(fid) == "":
            problems.append(f"{label}: has no id")
            continue
        if str(fid) in seen:
            problems.append(f"{label}: duplicate id")
            continue
        seen.add(str(fid))
        try:
            geometry = read_area(feature, p, crs)
        except GeometryError as e:
            problems.append(f"{label}: {e}")
            continue
        ids.append(str(fid))
        geometries.append(geometry)
        props.append(p)
    if problems:
        raise FenceFileError(path, problems)
    return FenceSet(ids, geometries, props)
