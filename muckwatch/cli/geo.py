"""Geometry tools: ``geofence query`` (which fences contain which points, CSV out) and
``coords convert`` (WGS-84, GCJ-02, BD-09)."""

from __future__ import annotations

import argparse
import sys

from muckwatch.cli.common import CommandTable, UserError

SYSTEMS = ["wgs84", "gcj02", "bd09"]


def register(table: CommandTable) -> None:
    table.add("geofence", "which fences contain which points (CSV out)",
              "muckwatch geofence query data/sample-city/fences.geojson points.csv > hits.csv",
              _geofence_arguments, geofence)
    table.add("coords", "convert coordinates between WGS-84, GCJ-02 and BD-09",
              "muckwatch coords convert --from gcj02 --to wgs84 114.0628 22.5401",
              _coords_arguments, coords)


def _geofence_arguments(geo: argparse.ArgumentParser) -> None:
    geo.add_argument("action", choices=["query"])
    geo.add_argument("fences", help="GeoJSON FeatureCollection of Polygon/MultiPolygon fences "
                     "(or Points with radius_m)")
    geo.add_argument("points", help="CSV with header id,lon,lat (WGS-84)")
    geo.add_argument("--crs", choices=SYSTEMS, default="wgs84",
                     help="coordinate system the fences were drawn in (default wgs84)")


def geofence(args, settings) -> int:
    """CSV point_id,fence_id, one line per containment, sorted by point id then fence id."""
    import csv

    from geofence.fences import FenceFileError
    from muckwatch.geo import PointsFileError, containments

    try:
        rows = containments(args.fences, args.points, args.crs)
    except (FenceFileError, PointsFileError) as e:
        raise UserError(str(e)) from None
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["point_id", "fence_id"])
    out.writerows(rows)
    return 0


def _coords_arguments(coords: argparse.ArgumentParser) -> None:
    coords.add_argument("action", choices=["convert"])
    coords.add_argument("--from", dest="source", required=True, choices=SYSTEMS)
    coords.add_argument("--to", dest="target", required=True, choices=SYSTEMS)
    coords.add_argument("lon", type=float)
    coords.add_argument("lat", type=float)


def coords(args, settings) -> int:
    from domain.coords import convert

    lon, lat = convert([args.lon], [args.lat], args.source, args.target)
    print(f"{lon[0]:.8f} {lat[0]:.8f}")
    return 0
