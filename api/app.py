"""The application: configuration in, a FastAPI app out, its routers in one list.

Errors: a store's NotFound is 404 (also for rows outside the caller's scope, so nobody learns
what exists elsewhere), Conflict 409, ValueError 422; FastAPI answers malformed JSON and bad
fields with 422 naming the field. Bodies larger than the configured limit are refused (413)
before they are read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import (
    appeals,
    cases,
    commands,
    console,
    evidence,
    live,
    manifest,
    media,
    permits,
    published,
    registry,
    violations,
)
from api.db import Database
from api.mapdata import CityMap, load_city_map
from domain.settings import MediaSettings, PermitSettings
from store.review import Conflict, NotFound

ROUTERS = (violations.router, appeals.router, cases.router, published.router,
           permits.router, registry.router, manifest.router, live.router, console.router,
           commands.router, media.router, evidence.router)


@dataclass(frozen=True)
class ApiConfig:
    dsn: str
    timezone: str = "Asia/Shanghai"
    uploads_dir: Path = Path(".run/uploads")
    max_upload_bytes: int = 5_242_880
    max_attachments: int = 5
    webhook_secret: str = ""
    pool_size: int = 8
    permits: PermitSettings = field(default_factory=PermitSettings)  # approval checks
    city_dir: Path | None = None  # the bundle the console draws (roads, extent, metric CRS)
    offline_after_s: float = 300.0  # the console shows a truck silent this long as offline
    stopped_below_kmh: float = 5.0  # … and one slower than this as stopped
    console_dir: Path = console.CONSOLE_DIR
    media: MediaSettings = field(default_factory=MediaSettings)  # where photos are kept
    command_timeout_s: float = 60.0  # [terminal]: a command's default timeout
    evidence_s: float = 120.0  # [rules]: the evidence window around a violation

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes * max(self.max_attachments, 1) + 1_048_576


def create_app(config: ApiConfig) -> FastAPI:
    db = Database(config.dsn, timezone=config.timezone, size=config.pool_size)
    live_hub = live.LiveHub(config.dsn)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db.open()
        try:
            yield
        finally:
            await live_hub.close()
            db.close()

    app = FastAPI(title="muckwatch API", version="1", lifespan=lifespan,
                  description="Review, appeals, enforcement cases and published views of "
                              "muck-truck violations (docs/api.md).")
    app.state.db = db
    app.state.config = config
    app.state.live_hub = live_hub
    app.state.city_map = (load_city_map(config.city_dir) if config.city_dir is not None
                          else CityMap(name="", timezone=config.timezone, epsg=4547,
                                       bbox=(73.0, 18.0, 135.0, 54.0),
                                       roads={"type": "FeatureCollection", "features": []}))
    for router in ROUTERS:
        app.include_router(router)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit()
                                   or int(length) > config.max_body_bytes):
            return JSONResponse({"detail": f"request body larger than "
                                           f"{config.max_body_bytes:,} bytes"}, 413)
        return await call_next(request)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(ValueError)
    async def invalid(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
        return {"ok": True}

    console.mount_console(app, config.console_dir)  # after the API routes: /console/…
    return app
