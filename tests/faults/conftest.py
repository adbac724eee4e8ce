"""Helpers for the fault tests: a simulated fleet published through MQTT, and the fixes it
must leave in the database."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _simulate(port: int, root: str, start: int, trucks: int, minutes: float,
              wait: bool = True, speed: float = 0.0):
    """``muckwatch simulate`` (compliant fleet, 1 s reports) to the broker at ``port`` under
    topic root ``root``; returns the finished process, or the running one if not ``wait``."""
    args = [sys.executable, "-m", "muckwatch", "simulate", "--scenario", "compliant",
            "--trucks", str(trucks), "--duration", str(minutes), "--interval", "1",
            "--start-ms", str(start), "--mqtt", f"mqtt://127.0.0.1:{port}",
            "--speed", str(speed), "--truth", os.devnull]
    env = {**os.environ, "MUCKWATCH_MQTT_TOPIC_ROOT": root}
    if wait:
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return out
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture
def simulate():
    return _simulate


@pytest.fixture
def expected(city):
    """``expected(start, trucks, minutes)`` → (unique (device, ts) fixes, devices) of the
    scenario ``simulate`` publishes with the same arguments."""
    from simulator.mixed import MixedOptions, MixedScenario

    def fixes(start: int, trucks: int, minutes: float) -> tuple[set, list[str]]:
        scenario = MixedScenario(city, MixedOptions(trucks=trucks, minutes=minutes,
                                                    interval_s=1, per_rule=0,
                                                    near_misses=False, start_ms=start))
        unique = {(d.device, f["ts"]) for d in scenario.deliveries()
                  for f in (d.payload if d.is_batch else [d.payload])}
        return unique, sorted({d for d, _ in unique})
    return fixes
