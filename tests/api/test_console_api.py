"""The console's endpoints against a real ``muckwatch serve``: the live map's snapshot and
its stream (a stored fix reaches a subscriber within 2 s; a company sees only its own
trucks), tracks, the city's layers and corridors, a violation laid out for review, and the
console's pages and pinned libraries served from the same origin."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from shapely.geometry import shape

from domain.batches import UNKNOWN, DeviceStatus, FixBatch, Rejects
from store.database import Store


def fixes(device: str, start_ms: int, n: int, *, lon0: float, lat0: float,
          speed: float | np.ndarray = 30.0, step_ms: int = 1000) -> FixBatch:
    ts = start_ms + np.arange(n, dtype=np.int64) * step_ms
    return FixBatch.from_columns(
        device=np.full(n, device, object), ts=ts, lon=lon0 + np.arange(n) * 1e-4,
        lat=np.full(n, lat0), speed=np.broadcast_to(np.asarray(speed, float), (n,)).copy(),
        heading=np.full(n, 90.0), lid=np.zeros(n), lift=np.zeros(n), load=np.full(n, 2),
        load_kg=np.full(n, np.nan), sats=np.full(n, 11), hdop=np.full(n, 0.8),
        seq=np.full(n, UNKNOWN), received=ts + 200, backfill=np.zeros(n, bool))


def store_fixes(dsn: str, batch: FixBatch) -> None:
    async def go():
        store = Store(dsn)
        try:
            await store.write(batch, Rejects(), DeviceStatus(), [])
        finally:
            await store.close()
    asyncio.run(go())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def vehicles(api, sample_city):
    """A vehicle of the company account's company and one of another company."""
    own = api.get("company", "/v1/me").json()["company"]
    mine = next(v for v in sample_city.vehicles if v.company_id == own)
    other = next(v for v in sample_city.vehicles if v.company_id != own)
    return mine, other


def test_the_snapshot_holds_each_trucks_newest_fix_and_a_company_only_its_own(api, vehicles):
    mine, other = vehicles
    t = now_ms()
    store_fixes(api.dsn, fixes(mine.device_id, t - 5000, 5, lon0=114.0, lat0=22.55))
    store_fixes(api.dsn, fixes(other.device_id, t - 5000, 3, lon0=114.1, lat0=22.6))
    body = api.get("supervisor", "/v1/live/positions").json()
    rows = {r[0]: dict(zip(body["columns"], r, strict=True)) for r in body["rows"]}
    assert rows[mine.device_id]["ts"] == t - 1000 and rows[mine.device_id]["plate"] == mine.plate
    assert rows[other.device_id]["company_id"] == other.company_id
    theirs = api.get("company", "/v1/live/positions").json()
    assert {r[2] for r in theirs["rows"]} == {mine.company_id}
    assert api.get("public", "/v1/live/positions").status_code == 403


def _read_events(lines, until, timeout_s: float) -> list[tuple[str, dict]]:
    """Server-sent events from an open stream's lines until ``until(events)`` holds."""
    events: list[tuple[str, dict]] = []
    name = None
    deadline = time.monotonic() + timeout_s
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            if until(events):
                return events
        assert time.monotonic() < deadline, f"no such event in {timeout_s} s: {events[-3:]}"
    return events


def test_a_stored_fix_reaches_the_stream_within_two_seconds(api, vehicles):
    mine, _other = vehicles
    timeout = httpx.Timeout(10.0, read=20.0)
    with httpx.Client(base_url=api.url, timeout=timeout,
                      headers={"Authorization": f"Bearer {api.tokens['officer']}"}) as c, \
            c.stream("GET", "/v1/live/stream") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "event: snapshot"
        snapshot = json.loads(next(lines)[6:])
        assert snapshot["columns"][:4] == ["device_id", "plate", "company_id", "ts"]
        t = now_ms() + 60_000  # newer than anything stored before
        stored_at = time.monotonic()
        store_fixes(api.dsn, fixes(mine.device_id, t, 1, lon0=114.02, lat0=22.56))

        def arrived(events):
            return any(n == "positions" and any(row[0] == mine.device_id and row[3] == t
                                                for row in d["rows"]) for n, d in events)
        _read_events(lines, arrived, timeout_s=10)
        assert time.monotonic() - stored_at < 2.0


def test_a_companys_stream_carries_only_its_own_trucks(api, vehicles):
    mine, other = vehicles
    with httpx.Client(base_url=api.url, timeout=httpx.Timeout(10.0, read=20.0),
                      headers={"Authorization": f"Bearer {api.tokens['company']}"}) as c, \
            c.stream("GET", "/v1/live/stream") as r:
        t = now_ms() + 120_000
        store_fixes(api.dsn, fixes(other.device_id, t, 1, lon0=114.1, lat0=22.6))
        store_fixes(api.dsn, fixes(mine.device_id, t, 1, lon0=114.0, lat0=22.55))

        def mine_arrived(events):
            return any(n == "positions" and any(row[0] == mine.device_id and row[3] == t
                                                for row in d["rows"]) for n, d in events)
        events = _read_events(r.iter_lines(), mine_arrived, timeout_s=10)
    seen = {row[2] for n, d in events if n in ("snapshot", "positions") for row in d["rows"]}
    assert seen == {mine.company_id}


def test_a_track_is_the_fixes_in_the_range_with_its_violations(api, vehicles, sample_city,
                                                               districts):
    mine, other = vehicles
    t0 = now_ms() - 3_600_000
    store_fixes(api.dsn, fixes(mine.device_id, t0, 30, lon0=113.95, lat0=22.52))
    r = api.get("officer", f"/v1/vehicles/{mine.plate}/track",
                params={"since": t0 + 10_000, "until": t0 + 20_000})
    body = r.json()
    assert [row[0] for row in body["rows"]] == list(range(t0 + 10_000, t0 + 20_000, 1000))
    assert body["columns"][:3] == ["ts", "lon", "lat"]
    assert api.get("company", f"/v1/vehicles/{other.plate}/track",
                   params={"since": t0, "until": t0 + 1000}).status_code == 404
    too_long = api.get("officer", f"/v1/vehicles/{mine.plate}/track",
                       params={"since": t0, "until": t0 + 25 * 3_600_000})
    assert too_long.status_code == 422 and "24 hours" in too_long.json()["detail"]
    assert api.get("officer", "/v1/vehicles/NOPE/track",
                   params={"since": t0, "until": t0 + 1000}).status_code == 404


def test_layers_draw_fences_roads_and_the_corridors_of_permits_in_force(api, vehicles):
    layers = api.get("supervisor", "/v1/map/layers").json()
    kinds = {f["properties"]["kind"] for f in layers["fences"]["features"]}
    assert {"construction_site", "disposal_site", "restricted_zone", "district"} <= kinds
    assert layers["roads"]["features"], "the sample city ships roads.geojson"
    in_force = api.sql("SELECT id, route FROM permits WHERE valid_from <= now()"
                       " AND valid_to > now() AND permit_status_at(id, now()) = 'active'")
    corridors = {f["properties"]["permit_id"]: shape(f["geometry"])
                 for f in layers["corridors"]["features"]}
    assert set(corridors) == {pid for pid, _ in in_force}
    for pid, route in in_force[:20]:  # the route lies inside its own corridor
        assert corridors[pid].buffer(1e-6).contains(shape(route))
    mine, _ = vehicles
    own = api.get("company", "/v1/map/layers").json()["corridors"]["features"]
    assert {f["properties"]["company_id"] for f in own} <= {mine.company_id}


def test_a_violation_for_review_has_its_track_marks_and_corridor(api, vehicles, sample_city):
    mine, _ = vehicles
    permit_id = api.sql("SELECT id FROM permits WHERE plate = %s ORDER BY id LIMIT 1",
                        (mine.plate,))[0][0]
    t0 = now_ms() - 7_200_000
    speeds = np.array([40, 50, 72, 95, 88, 70, 50, 40, 30, 20], float)
    store_fixes(api.dsn, fixes(mine.device_id, t0, len(speeds), lon0=114.03, lat0=22.57,
                               speed=speeds, step_ms=5000))
    start = datetime.fromtimestamp((t0 + 10_000) / 1000, UTC)
    vid = f"CV{t0}"
    api.sql("INSERT INTO violations (id, rule, severity, device_id, plate, company_id,"
            " permit_id, start_ts, end_ts, start_lon, start_lat, end_lon, end_lat, peak,"
            " state) VALUES (%s, 'OVERSPEED', 2, %s, %s, %s, %s, %s, %s, 114.0302, 22.57,"
            " 114.0305, 22.57, 95, 'closed')",
            (vid, mine.device_id, mine.plate, mine.company_id, permit_id, start,
             start + timedelta(seconds=15)))
    body = api.get("supervisor", f"/v1/console/violations/{vid}").json()
    assert body["id"] == vid and body["rule"] == "OVERSPEED"
    ts = [row[0] for row in body["track"]["rows"]]
    assert ts[0] == t0 and len(ts) == len(speeds)  # 120 s either side covers it all
    marks = body["marks"]
    assert marks["start"]["ts"] == t0 + 10_000 and marks["end"]["ts"] == t0 + 25_000
    assert marks["peak"]["ts"] == t0 + 15_000 and marks["peak"]["value"] == 95.0
    parts = {f["properties"]["part"] for f in body["corridor"]["features"]}
    assert parts == {"corridor", "route"}
    assert api.get("company2", f"/v1/console/violations/{vid}").status_code == 404


def test_the_console_and_its_pinned_libraries_are_served(api):
    with httpx.Client(base_url=api.url, timeout=10) as c:
        page = c.get("/console/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for path in ("/console/vendor/maplibre-gl/maplibre-gl.mjs",
                     "/console/vendor/maplibre-gl/maplibre-gl-worker.mjs",
                     "/console/vendor/uplot/uPlot.esm.js"):
            assert c.get(path).status_code == 200, path
        assert c.get("/", follow_redirects=False).headers["location"] == "/console/"
    config = api.get(None, "/v1/console/config").json()
    assert config["timezone"] == "Asia/Shanghai" and len(config["bbox"]) == 4
    assert {d["id"] for d in config["districts"]} and "OFF_ROUTE" in config["rules"]


def test_corridor_polygons_are_the_half_width_around_the_route(api):
    pid, route, half = api.sql("SELECT id, route, corridor_m FROM permits ORDER BY id"
                               " LIMIT 1")[0]
    features = api.get("supervisor", "/v1/map/corridors", params={"permit": pid}).json()
    polygon = next(shape(f["geometry"]) for f in features["features"]
                   if f["properties"]["part"] == "corridor")
    # a degree of latitude is ≈ 110.6 km here: the polygon is about 2 × half-width across
    line = shape(route)
    assert polygon.buffer(1e-6).contains(line)
    assert abs(polygon.area / line.length / 2 / (half / 110_600) - 1) < 0.2
    assert api.get("supervisor", "/v1/map/corridors", params={"permit": "NOPE"}
                   ).status_code == 404
