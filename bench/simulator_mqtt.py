"""Load generation: can one ``muckwatch simulate`` process drive ≥ 20,000 trucks reporting
every 10 s through MQTT (2,000 messages/s)?

Two measurements against a private Mosquitto with a QoS 1 subscriber counting what arrives:

* **capacity**: 20,000 trucks for 2 simulated minutes published as fast as the broker
  acknowledges (``--speed 0``), the messages/s it reaches, and the same stream generated
  without publishing (what the fleet model alone costs);
* **real time**: ``muckwatch simulate --speed 1`` for one minute, as a separate process:
  how far it ever fell behind its schedule and the CPU share it used.

The city is the synthetic one at scale 150 (≈ 22,000 trucks with a permit valid at
10:00), generated once into ``.run/bench/``.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TRUCKS = 20_000
INTERVAL_S = 10.0


class Counter:
    """A QoS 1 subscriber on muck/v1/# that counts messages."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"bench-counter-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("muck/v1/#", qos=1)
        self.client.loop_start()
        time.sleep(0.5)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.count += 1

    def wait_for(self, n: int, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def city_dir() -> Path:
    path = REPO / ".run" / "bench" / "city-150"
    if not (path / "permits.geojson").exists():
        from simulator.citygen import generate_city

        generate_city(path, scale=150.0)
    return path


def run() -> dict:
    from devservices.mosquitto import PrivateMosquitto
    from domain.city import load_city
    from simulator.mixed import MixedOptions, MixedScenario
    from simulator.publish import MqttPublisher, stream

    directory = city_dir()
    city = load_city(directory)
    options = MixedOptions(trucks=TRUCKS, minutes=2, interval_s=INTERVAL_S, per_rule=0,
                           near_misses=False)
    out: dict = {"trucks": TRUCKS, "interval_s": INTERVAL_S}

    t0 = time.perf_counter()
    generated = sum(1 for _ in MixedScenario(city, options).deliveries())
    out["generate_rate"] = generated / (time.perf_counter() - t0)

    run_dir = REPO / ".run" / "bench" / "mosquitto"
    broker = PrivateMosquitto(run_dir)
    broker.start()
    try:
        counter = Counter(broker.port)
        scenario = MixedScenario(city, options)
        publisher = MqttPublisher("127.0.0.1", broker.port, client_id="bench-simulate")
        publisher.connect()
        t0 = time.perf_counter()
        summary = stream(scenario.deliveries(), publisher, start_ms=options.start_ms)
        out["publish_s"] = time.perf_counter() - t0
        publisher.close()
        out["messages"] = summary.messages
        out["publish_rate"] = summary.messages / out["publish_s"]
        out["received"] = counter.wait_for(summary.messages)
        out["needed_rate"] = TRUCKS / INTERVAL_S

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        received_before = counter.count
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "muckwatch", "simulate", "--city", str(directory),
             "--trucks", str(TRUCKS), "--interval", str(INTERVAL_S), "--duration", "1",
             "--scenario", "compliant", "--speed", "1", "--start-ms", "now",
             "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--truth", os.devnull],
            capture_output=True, text=True, timeout=600, cwd=REPO)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        lag = re.search(r"fell behind by at most ([0-9.]+) s", proc.stderr)
        sent = re.search(r"fixes in (\d+) messages", proc.stderr)
        out["realtime_lag_s"] = float(lag.group(1)) if lag else float("nan")
        out["realtime_messages"] = int(sent.group(1)) if sent else 0
        out["realtime_wall_s"] = wall
        out["realtime_cpu_share"] = ((after.ru_utime - before.ru_utime)
                                     + (after.ru_stime - before.ru_stime)) / wall
        out["realtime_received"] = counter.wait_for(
            received_before + out["realtime_messages"]) - received_before
        counter.close()
    finally:
        broker.stop()
    return out


if __name__ == "__main__":
    r = run()
    for k, v in r.items():
        print(f"{k:22} {v:,.2f}" if isinstance(v, float) else f"{k:22} {v:,}")
