"""A site closed in the database applies to a running ingest by device time (issue #22): a
disposal site closed at T makes a truck tipping there after T an UNAUTHORISED_DUMP — also in
late data sent after the closure — and a truck tipping there before T, or in a site still
open, nothing. Real broker, real database, the real `muckwatch run` process."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from domain.wire import encode_batch, fix_message
from store.reference import import_city
from tests.conftest import mosquitto_pub, wait_for
from tests.muckwatch.test_live_reference import single_permit_trucks

pytestmark = pytest.mark.e2e


def tipping(site, start: datetime) -> list[dict]:
    """Stands inside the site: 20 s loaded, 90 s tipping, 30 s empty; a fix every 10 s."""
    p = site.geometry.representative_point()
    fixes = []
    for k in range(14):
        lift, load = (1, 2) if 2 <= k < 11 else (0, 2 if k < 2 else 0)
        ts = int((start + timedelta(seconds=10 * k)).timestamp() * 1000)
        fixes.append(fix_message(ts, round(p.x, 7), round(p.y, 7), spd=0.0, lid=lift,
                                 lift=lift, load=load, sats=12, hdop=0.8))
    return fixes


def dumps(conn, device: str) -> list[datetime]:
    return [r[0] for r in conn.execute(
        "SELECT start_ts FROM violations WHERE device_id = %s AND rule = 'UNAUTHORISED_DUMP'"
        " AND state <> 'retracted' ORDER BY start_ts", (device,)).fetchall()]


def test_a_site_closure_applies_by_device_time(broker, fresh_database, start_ingest, city):
    dsn = fresh_database()
    with psycopg.connect(dsn) as conn:
        import_city(conn, city)
    proc = start_ingest("test-site-closure", MUCKWATCH_DSN=dsn)
    trucks = single_permit_trucks(city)
    by_dest: dict[str, list] = {}
    for v, p in trucks:
        by_dest.setdefault(p.destinations[0], []).append((v, p))
    closed_site, pair = next((d, ts) for d, ts in sorted(by_dest.items()) if len(ts) >= 2)
    (after_v, _), (before_v, _) = pair[:2]
    open_v, open_p = next((v, p) for v, p in trucks if closed_site not in p.destinations)
    fences = {f.id: f for f in city.fences}
    t_close = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO site_status_changes (site_id, status, from_ts, reason,"
                     " changed_by) VALUES (%s, 'closed', %s, 'test', 'test')",
                     (closed_site, t_close))
    assert wait_for(lambda: proc.log_path.read_text().count("reference data from the database")
                    >= 2, timeout_s=15), proc.log_path.read_text()[-2000:]
    scenes = [(after_v, closed_site, t_close + timedelta(minutes=5)),
              (before_v, closed_site, t_close - timedelta(minutes=5)),
              (open_v, open_p.destinations[0], t_close + timedelta(minutes=5))]
    for v, site_id, start in scenes:
        fixes = tipping(fences[site_id], start)
        # sent now, recorded around the closure half an hour ago: late data
        mosquitto_pub(broker, f"muck/v1/{v.device_id}/telemetry/batch", encode_batch(fixes))
        last = fixes[-1]
        mosquitto_pub(broker, f"muck/v1/{v.device_id}/telemetry",
                      json.dumps({**last, "ts": last["ts"] + 10_000}))
    devices = [v.device_id for v, _, _ in scenes]
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert wait_for(lambda: conn.execute(
            "SELECT count(DISTINCT device_id) FROM telemetry WHERE device_id = ANY(%s)",
            (devices,)).fetchone()[0] == 3, timeout_s=30)
        time.sleep(3)  # the last batch's rules and writes
        got = wait_for(lambda: dumps(conn, after_v.device_id), timeout_s=20)
        start = scenes[0][2] + timedelta(seconds=20)  # the first raised fix
        assert len(got) == 1 and start <= got[0] <= start + timedelta(seconds=20), got
        assert dumps(conn, before_v.device_id) == []
        assert dumps(conn, open_v.device_id) == []
        other = conn.execute("SELECT device_id, rule FROM violations WHERE device_id = ANY(%s)"
                             " AND rule <> 'UNAUTHORISED_DUMP'", (devices,)).fetchall()
        assert other == [], other
