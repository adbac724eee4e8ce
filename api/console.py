"""The monitoring console (issue #23): its static pages, and what they ask besides the
review, appeals and published endpoints — the city's map layers, permit corridors and one
violation laid out for review (track, start / peak / end, corridor).

The pages are plain ES modules in ``console/web``; MapLibre GL and uPlot come from
``console/node_modules`` (pinned in ``console/package.json``, installed by ``npm ci`` at
set-up time), so nothing is fetched from elsewhere at run time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.auth import Principal, need
from api.mapdata import CityMap, corridors, peak_mark
from domain.events import RULES
from store import console as store
from store import live, review
from store.review import NotFound

log = logging.getLogger("muckwatch.api.console")
router = APIRouter(tags=["console"])

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
TRACK_MARGIN = timedelta(seconds=120)  # the evidence window around a violation
_VENDOR = {"maplibre-gl": "maplibre-gl/dist", "uplot": "uplot/dist"}


def mount_console(app: FastAPI, console_dir: Path = CONSOLE_DIR) -> None:
    """Serve ``/console/`` (pages) and ``/console/vendor/<lib>/`` (the pinned libraries)."""
    modules = console_dir / "node_modules"
    for name, sub in _VENDOR.items():
        folder = modules / sub
        if folder.is_dir():
            app.mount(f"/console/vendor/{name}", StaticFiles(directory=folder), name=name)
        else:
            log.warning("console: %s is missing (run `make setup`); the console's maps "
                        "will not load", folder)
    web = console_dir / "web"
    if web.is_dir():
        app.mount("/console", StaticFiles(directory=web, html=True), name="console")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/console/favicon.svg")


def _city(request: Request) -> CityMap:
    return request.app.state.city_map


def _company(who: Principal) -> str | None:
    return who.company if who.role == "company" else None


@router.get("/v1/console/config", summary="What the console needs to start: city, time zone, "
                                          "extent, thresholds, filter lists")
def config(request: Request, who: Principal = Depends(need("me.read"))) -> dict:
    city, settings = _city(request), request.app.state.config
    with request.app.state.db.transaction() as conn:
        lists = store.filter_lists(conn, _company(who))
    return {"city": city.name, "timezone": settings.timezone, "bbox": list(city.bbox),
            "offline_after_s": settings.offline_after_s,
            "stopped_below_kmh": settings.stopped_below_kmh, "rules": list(RULES), **lists}


@router.get("/v1/map/layers", summary="Fences, roads and the corridors of permits in force")
def layers(request: Request, who: Principal = Depends(need("map.read"))) -> dict:
    city = _city(request)
    with request.app.state.db.transaction() as conn:
        fences = store.fences(conn)
        permits = store.permits_now(conn, datetime.now(UTC), _company(who))
    return {"fences": fences, "roads": city.roads,
            "corridors": corridors(permits, city.projector)}


@router.get("/v1/map/corridors", summary="One permit's corridor and route")
def corridor(permit: str, request: Request, who: Principal = Depends(need("map.read"))) -> dict:
    with request.app.state.db.transaction() as conn:
        row = store.permit(conn, permit, _company(who))
    if row is None:
        raise NotFound(f"no permit {permit!r}")
    return corridors([row], _city(request).projector, with_routes=True)


@router.get("/v1/console/violations/{violation_id}",
            summary="One violation laid out for review: track, start / peak / end, corridor")
def violation(violation_id: str, request: Request,
              who: Principal = Depends(need("violations.read"))) -> dict:
    city = _city(request)
    with request.app.state.db.transaction() as conn:
        found = review.get_violation(conn, who.scope, violation_id, evidence=True)
        start, end = found["start_ts"], found["end_ts"]
        since = start - TRACK_MARGIN
        until = (end or min(datetime.now(UTC), start + timedelta(hours=2))) + TRACK_MARGIN
        track = live.read_track(conn, found["plate"], since, until) if found["plate"] else None
        permit = store.permit(conn, found["permit_id"]) if found["permit_id"] else None
    evidence = found.pop("evidence") or []
    if track is not None and track["rows"]:
        columns, rows = track["columns"], track["rows"]
    else:  # telemetry past its retention: the evidence kept with the violation
        columns = ("ts", "lon", "lat", "speed_kmh", "lid", "lift", "load")
        rows = [(e["ts"], e["lon"], e["lat"], e["spd"], e["lid"], e["lift"], e["load"])
                for e in evidence if isinstance(e, dict)]
    start_ms = int(start.timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000) if end is not None else None
    marks = {
        "start": {"ts": start_ms, "lon": found["start_lon"], "lat": found["start_lat"]},
        "peak": peak_mark(found["rule"], tuple(columns), rows, start_ms, end_ms,
                          permit["route"] if permit else None, city.projector),
        "end": ({"ts": end_ms, "lon": found["end_lon"], "lat": found["end_lat"]}
                if end_ms is not None else None),
    }
    return {**found, "track": {"columns": list(columns), "rows": rows}, "marks": marks,
            "corridor": corridors([permit], city.projector, with_routes=True)
            if permit else None}
