"""What operators watch, from the running ingest: Prometheus /metrics and /healthz over real
HTTP, counters moving with real messages through the real broker; JSON log lines."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devservices.postgres import PrivatePostgres
from domain.wire import fix_message
from muckwatch.observability import Histogram

pytestmark = pytest.mark.e2e


def endpoint(ingest) -> str:
    deadline = time.monotonic() + 10
    while not (m := re.search(r"metrics on (http://[\d.]+:\d+)/metrics",
                              ingest.log_path.read_text())):
        assert time.monotonic() < deadline, "the ingest logs where its metrics are"
        time.sleep(0.05)
    return m.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_what_went_through_and_health_is_ok(ingest, publish, device_id, poll):
    base = endpoint(ingest)
    _, before = get(base + "/metrics")
    now = int(time.time() * 1000)
    for k in range(3):
        publish(f"muck/v1/{device_id}/telemetry", json.dumps(
            fix_message(now - 10_000 + k * 1000, 114.05, 22.55, spd=20)))
    publish(f"muck/v1/{device_id}/telemetry", "{not json")

    def moved() -> bool:
        _, text = get(base + "/metrics")
        bad = 'reason="bad_json"'
        fixes = sample(text, "muckwatch_fixes_total") - sample(before, "muckwatch_fixes_total")
        rejected = sample(text, "muckwatch_rejected_total", bad) - \
            sample(before, "muckwatch_rejected_total", bad)
        return fixes >= 3 and rejected >= 1
    assert poll(moved, timeout_s=20)
    status, text = get(base + "/metrics")
    assert status == 200
    for name in ("muckwatch_messages_total", "muckwatch_batch_seconds_bucket",
                 "muckwatch_batch_messages_count", 'muckwatch_stage_seconds_count{stage="store"}',
                 "muckwatch_backlog_messages", "muckwatch_broker_connected 1",
                 "# TYPE muckwatch_batch_seconds histogram", "muckwatch_media_total",
                 "muckwatch_commands_published_total", "muckwatch_evidence_sealed_total",
                 'muckwatch_dispatch_failures_total{on="database"} 0'):
        assert name in text, name
    buckets = [float(v) for v in re.findall(
        r'^muckwatch_batch_seconds_bucket\{le="[^"]+"\} (\d+)$', text, re.MULTILINE)]
    assert buckets == sorted(buckets) and buckets[-1] == sample(text,
                                                                "muckwatch_batch_seconds_count")
    status, body = get(base + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok", body
    assert get(base + "/nope")[0] == 404


def test_health_is_503_when_the_database_is_unreachable(start_ingest, poll):
    """The database goes away under a running ingest (its private cluster is stopped):
    /healthz says so; the ingest itself keeps running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="mw-health-")), port=port).start()
    try:
        env_dsn = {"MUCKWATCH_DSN": pg.dsn}
        subprocess.run([sys.executable, "-m", "muckwatch", "db", "migrate"], check=True,
                       capture_output=True, timeout=120, env={**os.environ, **env_dsn})
        ingest = start_ingest("health-ingest", **env_dsn, MUCKWATCH_MQTT_TOPIC_ROOT="health/v1")
        base = endpoint(ingest)
        assert get(base + "/healthz")[0] == 200
        pg.stop()
        status, body = get(base + "/healthz")
        assert status == 503, body
        answer = json.loads(body)
        assert answer["status"] == "degraded" and answer["database"].startswith("unavailable")
        assert answer["broker"] == "ok"
        assert ingest.proc.poll() is None
    finally:
        pg.stop()


def test_json_logs_are_one_object_per_line(start_ingest):
    ingest = start_ingest("json-log-ingest", MUCKWATCH_OBSERVABILITY_LOG_FORMAT="json",
                          MUCKWATCH_MQTT_TOPIC_ROOT="jsonlog/v1")
    lines = [line for line in ingest.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any("ingest running" in r["message"] for r in records)
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)


def test_histogram_buckets_are_cumulative():
    h = Histogram((0.01, 0.1, 1.0))
    for v in (0.005, 0.05, 0.05, 5.0):
        h.observe(v)
    lines = h.lines("x")
    assert lines[:4] == ['x_bucket{le="0.01"} 1', 'x_bucket{le="0.1"} 3', 'x_bucket{le="1"} 3',
                         'x_bucket{le="+Inf"} 4']
    assert lines[-1] == "x_count 4"
