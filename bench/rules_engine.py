"""Rules engine throughput on live-like batches: the simple fleet over the sample city, one
fix per truck per second, each second one batch (geofence memberships computed outside the
timing), all seven rules, trips and the reorder window on."""

from __future__ import annotations

import time
from pathlib import Path

from domain.batches import FixBatch
from domain.city import load_city
from muckwatch.stages import GeofenceStage, Sequencer
from rules.engine import RuleEngine
from rules.reference import Reference
from simulator.fleet import Fleet

REPO = Path(__file__).resolve().parent.parent


def run(seconds: int = 600, start_ms: int = 1_795_053_600_000) -> dict:
    city = load_city(REPO / "data" / "sample-city")
    fleet = Fleet(city, trucks=1000, start_ms=start_ms, seed=1, interval_s=1.0)
    geofence, sequencer = GeofenceStage.for_city(city), Sequencer()
    engine = RuleEngine(Reference.from_city(city))
    batches = []
    for _ in range(seconds):
        tick = fleet.advance(1.0)
        fixes = sequencer.sequence(FixBatch.from_columns(
            device=tick.device, ts=tick.ts, lon=tick.lon, lat=tick.lat,
            speed=tick.speed, heading=tick.heading, lid=tick.lid, lift=tick.lift,
            load=tick.load, sats=tick.sats, hdop=tick.hdop, received=tick.ts))
        batches.append((fixes, geofence.classify(fixes), fleet.now_ms))
    events = 0
    t0 = time.perf_counter()
    for fixes, memberships, now in batches:
        events += len(engine.evaluate(fixes, memberships, now_ms=now))
    elapsed = time.perf_counter() - t0
    total = sum(len(b[0]) for b in batches)
    return {"trucks": len(fleet), "fixes": total, "seconds": elapsed,
            "rate": total / elapsed, "events": events}


if __name__ == "__main__":
    print(run())
