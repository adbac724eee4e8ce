"""The whole pipeline against its ceilings, in one run (issue #10).

* **Ceilings.** The same feed — simulated trucks' JSON fixes, one topic per truck — published
  by a C publisher (``bench/cpub.c``, libmosquitto, QoS 1) into a private Mosquitto and
  received by (a) ``mosquitto_sub`` (C) and (b) a bare paho-mqtt subscriber in Python that
  does nothing per message. (``mosquitto_pub -l`` cannot be the publisher: it names one topic,
  and fed from a file at QoS 1 it delivered 3,121 of 50,000 lines here.)
* **Throughput.** ``muckwatch run`` as a separate process — QoS 1, persistent session,
  validation, geofence against the synthetic city at scale 150 (≈ 10,000 fences), all rules,
  telemetry and violations written to a private PostgreSQL, alerts routed to the outbox and
  delivered to a loopback receiver — fed the same way, as fast as the broker takes it. The
  rate is messages published ÷ the time until the last fix is in ``telemetry``, and every
  fix is counted there (zero loss).
* **Latency.** At a steady 5,000 msg/s of background load, probe trucks publish short
  overspeed bursts; publish → violation row (a NOTIFY from a trigger the benchmark adds) and
  publish → webhook at a loopback receiver, p50/p95/p99/max.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BENCH = REPO / ".run" / "bench"
TRUCKS = int(os.environ.get("MUCKWATCH_BENCH_TRUCKS", 2_000))
MINUTES = float(os.environ.get("MUCKWATCH_BENCH_MINUTES", 5))  # 1 Hz: 600,000 messages
CPUB = BENCH / "cpub"


def build_cpub() -> Path:
    return _build("cpub")


def _build(name: str) -> Path:
    """bench/NAME.c compiled against libmosquitto into .run/bench/NAME (when changed)."""
    source, binary = REPO / "bench" / f"{name}.c", BENCH / name
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        BENCH.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source), "-lmosquitto"],
                       check=True)
    return binary


def csub_rate(port: int, lines: Path, messages: int) -> dict:
    """bench/csub.c, a C subscriber that only counts (QoS 1), while cpub publishes."""
    sub = subprocess.Popen([str(_build("csub")), "-p", str(port), "-C", str(messages),
                            "-i", f"bench-csub-{port}"], stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    if sub.stdout.readline().strip() != "ready":
        raise RuntimeError("csub did not start")
    cpub(port, lines, client_id="bench-cpub-csub")
    out = json.loads(sub.stdout.readline())
    sub.wait(timeout=60)
    span = (out["last_ns"] - out["first_ns"]) / 1e9
    return {"csub_rate": (out["received"] - 1) / span if span > 0 else float("nan"),
            "csub_received": out["received"]}


def city_dir() -> Path:
    path = BENCH / "city-150"
    if not (path / "permits.geojson").exists():
        from simulator.citygen import generate_city

        generate_city(path, scale=150.0)
    return path


def feed(path: Path, trucks: int = TRUCKS, minutes: float = MINUTES, root: str = "muck/v1",
         start_ms: int | None = None, seed: int = 3) -> tuple[int, int]:
    """Write the simulated fleet's messages as ``topic<TAB>payload`` lines (delivery order);
    returns (messages, distinct fixes)."""
    from domain.city import load_city
    from simulator.mixed import MixedOptions, MixedScenario

    city = load_city(city_dir())
    start = start_ms if start_ms is not None else \
        (time.time_ns() // 1_000_000 // 1000) * 1000 - int(minutes * 60_000) - 600_000
    options = MixedOptions(trucks=trucks, minutes=minutes, interval_s=1, seed=seed,
                           start_ms=start, per_rule=3, duplicate_rate=0.0)
    messages = 0
    fixes: set[tuple[str, int]] = set()
    with open(path, "wb") as out:
        for d in MixedScenario(city, options).deliveries():
            topic = f"{root}/{d.device}/telemetry" + ("/batch" if d.is_batch else "")
            out.write(topic.encode() + b"\t" + orjson.dumps(d.payload) + b"\n")
            messages += 1
            for f in (d.payload if d.is_batch else [d.payload]):
                fixes.add((d.device, f["ts"]))
    return messages, len(fixes)


def cpub(port: int, lines: Path, rate: float = 0, client_id: str = "bench-cpub",
         wait: bool = True):
    args = [str(build_cpub()), "-p", str(port), "-i", client_id, "-w", "2000"]
    if rate:
        args += ["-r", str(rate)]
    proc = subprocess.Popen(args, stdin=open(lines, "rb"), stdout=subprocess.PIPE,  # noqa: SIM115
                            stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"cpub failed: {err}")
    return json.loads(out)


class PahoCounter:
    """A bare paho-mqtt subscriber: QoS 1, counts, nothing else per message."""

    def __init__(self, port: int, topic: str = "muck/v1/#") -> None:
        self.count = 0
        self.first = self.last = 0.0
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-paho-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        time.sleep(0.5)

    def _on_message(self, client, userdata, message) -> None:
        if not self.count:
            self.first = time.time()
        self.count += 1
        self.last = time.time()

    def wait_for(self, n: int, timeout_s: float = 300.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mosquitto_sub_rate(port: int, lines: Path, messages: int) -> dict:
    """``mosquitto_sub -C N`` (QoS 1) while cpub publishes: messages ÷ (last − first), and
    how many it received (it stops at N, so fewer means some never came)."""
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "muck/v1/#", "-q", "1",
                            "-C", str(messages), "-F", "%U"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    cpub(port, lines, client_id="bench-cpub-c")
    out, _ = sub.communicate(timeout=300)
    stamps = out.split()
    first, last = float(stamps[0]), float(stamps[-1])
    return {"mosquitto_sub_rate": (len(stamps) - 1) / (last - first),
            "mosquitto_sub_received": len(stamps)}


def paho_rate(port: int, lines: Path, messages: int) -> dict:
    """The bare paho subscriber's rate, and how many of ``messages`` it received."""
    counter = PahoCounter(port)
    try:
        cpub(port, lines, client_id="bench-cpub-paho")
        got = counter.wait_for(messages)
        return {"paho_rate": (got - 1) / (counter.last - counter.first),
                "paho_received": got}
    finally:
        counter.close()


def receiver_rate(port: int, lines: Path, messages: int) -> dict:
    """The product's receiver (``ingest/receiver.py``) with a consumer that only acks, in its
    own process (bench/noop_receiver.py): its rate and whether it got every message."""
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "noop_receiver.py"),
                             str(port), str(messages)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("noop receiver did not start")
        cpub(port, lines, client_id="bench-cpub-noop")
        out = json.loads(proc.stdout.readline())
    finally:
        proc.wait(timeout=330)
        end_session(port, f"bench-noop-{port}")  # its queue must not grow during the rest
    span = out["last"] - out["first"]
    return {"receiver_rate": (out["received"] - 1) / span if span > 0 else float("nan"),
            "receiver_received": out["received"]}


def ceilings(port: int, lines: Path, messages: int) -> dict:
    return {**csub_rate(port, lines, messages), **mosquitto_sub_rate(port, lines, messages),
            **paho_rate(port, lines, messages), **receiver_rate(port, lines, messages)}


class Ingest:
    """``muckwatch run`` as a separate process against the private broker and database."""

    def __init__(self, port: int, dsn: str, log: Path, **env: str) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "run"], stdout=subprocess.PIPE,
            stderr=self._log, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "MUCKWATCH_DSN": dsn, "MUCKWATCH_MQTT_PORT": str(port),
                 "MUCKWATCH_MQTT_HOST": "127.0.0.1", "MUCKWATCH_CITY_DIR": str(city_dir()),
                 **env})
        deadline = time.monotonic() + 180
        while "ingest running" not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ingest did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the ingest process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=120)
        self._log.close()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def _profile(ingest: Ingest, name: str, seconds: int) -> subprocess.Popen | None:
    """With MUCKWATCH_BENCH_PROFILE set: py-spy samples the ingest for ``seconds`` into
    .run/bench/NAME (summarise with bench/profile_summary.py)."""
    if not os.environ.get("MUCKWATCH_BENCH_PROFILE"):
        return None
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(ingest.proc.pid),
         "--duration", str(seconds), "--format", "raw", "--output", str(BENCH / name),
         "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def end_session(port: int, client_id: str, protocol: str = "5") -> None:
    """Remove a stopped ingest's persistent session, so the broker does not keep queueing
    the next measurement's messages for it (and saving that queue every 30 s)."""
    if protocol == "3.1.1":  # clean_session = 1 ends the stored session
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True)
        client.connect("127.0.0.1", port)
        client.loop_start()
        time.sleep(0.5)
        client.disconnect()
        client.loop_stop()
        return
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def telemetry_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]


def throughput(port: int, dsn: str, lines: Path, messages: int, fixes: int,
               receiver_url: str, broker_env: dict[str, str] | None = None) -> dict:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        _reset(conn)
        _subscribe(conn, receiver_url)
    broker_env = broker_env or {}
    ingest = Ingest(port, dsn, BENCH / "ingest-throughput.log",
                    MUCKWATCH_MQTT_CLIENT_ID="bench-ingest", **broker_env)
    try:
        profiler = _profile(ingest, "ingest-throughput-profile.txt", 12)
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0, cpu0 = time.time(), ingest.cpu_s()
            published = cpub(port, lines, client_id="bench-cpub-ingest")
            deadline = time.monotonic() + 600
            while (stored := telemetry_count(conn)) < fixes and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed, cpu = time.time() - t0, ingest.cpu_s() - cpu0
            time.sleep(1.0)
            stored = telemetry_count(conn)
            dead = conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
            violations = conn.execute("SELECT count(*) FROM violations").fetchone()[0]
            alerts = conn.execute("SELECT count(*) FROM alert_outbox").fetchone()[0]
        if profiler is not None:
            profiler.wait(timeout=120)
    finally:
        stats = ingest.stop()
        end_session(port, "bench-ingest", broker_env.get("MUCKWATCH_MQTT_PROTOCOL", "5"))
    return {"pipeline_rate": messages / elapsed, "publish_rate": published["published"]
            / published["seconds"], "stored": stored, "fixes": fixes, "dead": dead,
            "violations": violations, "alerts": alerts, "batches": stats.get("batches", 0),
            "pipeline_s": elapsed, "ingest_core_us": cpu / messages * 1e6}


_NOTIFY_TRIGGER = """
CREATE OR REPLACE FUNCTION bench_violation_inserted() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('bench_violation',
                      NEW.device_id || ' ' || (extract(epoch FROM NEW.start_ts) * 1000)::bigint);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS bench_violation_inserted ON violations;
CREATE TRIGGER bench_violation_inserted AFTER INSERT ON violations
    FOR EACH ROW EXECUTE FUNCTION bench_violation_inserted();
"""
PROBE_KMH, LIMIT_OK_KMH = 80.0, 40.0


def _probe_fixes(t0: int, lat: float, seconds: range, kmh: float, lon_at: float,
                 east: bool) -> tuple[list[dict], float]:
    """One fix a second driving east (or west) at ``kmh``; returns the fixes and the last
    longitude. Probes alternate direction so a probe truck stays on its stretch."""
    step = kmh / 3.6 / (111_320 * 0.9239) * (1 if east else -1)  # degrees/s at 22.5° N
    out, lon = [], lon_at
    for k in seconds:
        lon += step
        out.append({"v": 1, "ts": t0 + k * 1000, "lon": round(lon, 7), "lat": lat,
                    "spd": kmh, "hdg": 90 if east else 270, "sats": 12, "hdop": 0.8})
    return out, lon


def latency(port: int, dsn: str, sink: _Sink, probes: int = 150, rate: float = 5_000,
            broker_env: dict[str, str] | None = None) -> dict:
    """Publish → violation row and publish → webhook, p50/p95/p99/max, at ``rate`` msg/s of
    background load. Each probe is an OVERSPEED: 26 s at 80 km/h (the violation opens at the
    fix of second 15, which the fix of second 25 releases from the 10 s reorder window): the
    first 25 fixes go as a burst, the decisive one 50 ms later, alone, as in live traffic; then
    35 s at 40 km/h close it. Latency is measured from publishing the decisive message."""
    import psycopg

    lines = BENCH / "feed-latency.tsv"
    feed(lines, trucks=1_000, minutes=max(3.0, probes * 0.9 / 60 + 1), seed=11)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_NOTIFY_TRIGGER)
        _reset(conn)
        _subscribe(conn, sink.url)
    broker_env = broker_env or {}
    ingest = Ingest(port, dsn, BENCH / "ingest-latency.log",
                    MUCKWATCH_MQTT_CLIENT_ID="bench-ingest-latency", **broker_env)
    notified: dict[tuple[str, int], float] = {}
    listener_ready = threading.Event()

    def listen() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("LISTEN bench_violation")
            listener_ready.set()
            for note in conn.notifies(timeout=probes * 3 + 60):
                device, start = note.payload.split()
                notified.setdefault((device, int(start)), time.time())
                if note.payload == "stop 0":
                    return
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    listener_ready.wait(10)
    publisher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                            client_id="bench-probe")
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    background = cpub(port, lines, rate=rate, client_id="bench-cpub-background", wait=False)
    profiler = _profile(ingest, "ingest-latency-profile.txt", 30)
    published: dict[tuple[str, int], float] = {}
    devices = [f"PROBE{k:02d}" for k in range(3)]
    clock = {d: time.time_ns() // 1_000_000 // 1000 * 1000 - 3 * 3_600_000 for d in devices}
    where = {d: (114.0 + 0.05 * k, 22.6 + 0.01 * k) for k, d in enumerate(devices)}
    phase_start = time.time()
    background_ended: float | None = None  # the load ran out before the probes did
    try:
        time.sleep(3.0)  # background at full rate first
        for n in range(probes):
            if background_ended is None and background.poll() is not None:
                background_ended = time.time()
            device = devices[n % len(devices)]
            t0 = clock[device]
            lon, lat = where[device]
            east = (n // len(devices)) % 2 == 0
            fast, lon = _probe_fixes(t0, lat, range(26), PROBE_KMH, lon, east)
            slow, lon = _probe_fixes(t0, lat, range(26, 61), LIMIT_OK_KMH, lon, east)
            where[device] = (lon, lat)
            clock[device] = t0 + 70_000
            topic = f"muck/v1/{device}/telemetry"
            for fix in fast[:-1]:
                publisher.publish(topic, orjson.dumps(fix), qos=1)
            time.sleep(0.05)  # the decisive message goes alone, as in live traffic
            published[(device, t0)] = time.time()
            publisher.publish(topic, orjson.dumps(fast[-1]), qos=1)
            deadline = time.monotonic() + 5
            while (device, t0) not in notified and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(0.2)
            for fix in slow:
                publisher.publish(topic, orjson.dumps(fix), qos=1)
            time.sleep(0.3)
        time.sleep(2.0)
        if background_ended is None and background.poll() is not None:
            background_ended = time.time()
        phase_s = time.time() - phase_start
    finally:
        background.terminate()
        background.communicate(timeout=30)
        publisher.loop_stop()
        publisher.disconnect()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('bench_violation', 'stop 0')")
        listener.join(timeout=10)
        if profiler is not None:
            profiler.wait(timeout=120)
        stats = ingest.stop()
        end_session(port, "bench-ingest-latency",
                    broker_env.get("MUCKWATCH_MQTT_PROTOCOL", "5"))
    webhook: dict[tuple[str, int], float] = {}
    for body, at in sink.received():
        event = orjson.loads(body)
        if event.get("type") == "violation.opened":
            start = int(dt_ms(event["violation"]["start"]["ts"]))
            webhook.setdefault((event["vehicle"]["device"], start), at)
    to_row = [1000 * (notified[k] - t) for k, t in published.items() if k in notified]
    if os.environ.get("MUCKWATCH_BENCH_DEBUG"):
        print("row latencies in probe order:", [round(x) for x in to_row], file=sys.stderr)
    to_hook = [1000 * (webhook[k] - t) for k, t in published.items() if k in webhook]
    return {"probes": len(published), "rows_seen": len(to_row), "hooks_seen": len(to_hook),
            "row_ms": percentiles(to_row), "hook_ms": percentiles(to_hook),
            "background_rate": rate, "probe_phase_s": phase_s,
            # None: the background load ran for the whole probe phase (else: for how long)
            "background_lasted_s": None if background_ended is None
            else background_ended - phase_start,
            "latency_batches": stats.get("batches", 0),
            "latency_messages": stats.get("messages", 0),
            "latency_stage_ms_max": stats.get("stage_ms_max", {}),
            "latency_stage_ms_mean": {k: v / max(stats.get("batches", 1), 1)
                                      for k, v in stats.get("stage_ms_total", {}).items()},
            "latency_batch_ms_buckets": stats.get("batch_ms_buckets", {})}


def dt_ms(value) -> float:
    """A payload timestamp (ISO 8601 or epoch ms) → epoch ms."""
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"),
                "max": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": ordered[-1]}


def _reset(conn) -> None:
    conn.execute("TRUNCATE telemetry, violations, alert_outbox, dead_letter, trips, rule_state")
    conn.execute("DELETE FROM alert_subscriptions")


def _subscribe(conn, url: str) -> None:
    from alerts.subscriptions import Subscription, save

    save(conn, Subscription.from_config({"id": "bench", "url": url,
                                         "secret": "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZg=="}))


def run() -> dict:
    from devservices.mosquitto import PrivateMosquitto
    from devservices.postgres import PrivatePostgres
    from store.migrate import migrate

    build_cpub()
    lines = BENCH / "feed.tsv"
    t0 = time.perf_counter()
    messages, fixes = feed(lines)
    out: dict = {"messages": messages, "fixes": fixes, "trucks": TRUCKS,
                 "feed_s": time.perf_counter() - t0}
    shutil.rmtree(BENCH / "pipeline-mosquitto", ignore_errors=True)  # no sessions from before
    broker = PrivateMosquitto(BENCH / "pipeline-mosquitto")
    broker.start()
    pg = PrivatePostgres(BENCH / "pipeline-pg")
    pg.start()
    receiver = _Sink()
    try:
        import psycopg

        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            migrate(conn)
        parts = os.environ.get("MUCKWATCH_BENCH_PARTS",
                               "ceilings,throughput,latency,cluster")
        if "ceilings" in parts and not os.environ.get("MUCKWATCH_BENCH_PROFILE"):
            out.update(ceilings(broker.port, lines, messages))
        if "throughput" in parts:
            out.update(throughput(broker.port, pg.dsn, lines, messages, fixes, receiver.url))
            out["ratio_to_paho"] = out["pipeline_rate"] / out.get("paho_rate", float("nan"))
        if "latency" in parts:
            out.update(latency(broker.port, pg.dsn, receiver))
        if "cluster" in parts:
            out["cluster"] = cluster(pg.dsn, lines, messages, fixes, receiver)
    finally:
        receiver.stop()
        pg.stop()
        broker.stop()
    return out


def cluster(dsn: str, lines: Path, messages: int, fixes: int, sink: _Sink) -> dict:
    """The same throughput and latency runs through a 3-node RabbitMQ cluster (issue #25,
    the broker chosen in docs/scaling.md): terminals publish to node 2, the ingest holds a
    persistent MQTT 3.1.1 session on node 1 with every node in its list; every QoS 1 message
    is in a quorum queue on a majority of the nodes before it is acknowledged."""
    from devservices.rabbitmq import PrivateRabbitCluster

    shutil.rmtree(BENCH / "pipeline-rabbitmq", ignore_errors=True)
    rabbit = PrivateRabbitCluster(BENCH / "pipeline-rabbitmq").start()
    try:
        ports = rabbit.mqtt_ports
        env = {"MUCKWATCH_MQTT_PORT": str(ports[0]),
               "MUCKWATCH_MQTT_HOSTS": ",".join(f"127.0.0.1:{p}" for p in ports),
               "MUCKWATCH_MQTT_PROTOCOL": "3.1.1"}
        out = throughput(ports[1], dsn, lines, messages, fixes, sink.url, broker_env=env)
        out.update(latency(ports[1], dsn, sink, probes=100, broker_env=env))
        return out
    finally:
        rabbit.stop()


class _Sink:
    """A loopback webhook receiver that accepts everything and notes when each arrived."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self._received: list[tuple[bytes, float]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink._received.append((body, time.time()))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def received(self) -> list[tuple[bytes, float]]:
        return list(self._received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

if __name__ == "__main__":
    r = run()
    for k, v in r.items():
        if isinstance(v, dict):
            v = "  ".join(f"{q} {x:,.1f}" for q, x in v.items())
            print(f"{k:24} {v}")
        else:
            print(f"{k:24} {v:,.2f}" if isinstance(v, float) else f"{k:24} {v:,}")
