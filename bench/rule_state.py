"""Memory of live rule state: 100,000 vehicles reporting through the rules engine.

Each vehicle sends 30 fixes 10 s apart (a common terminal setting; driving at 30 km/h
somewhere over the sample city; the city's 230 registered trucks plus unregistered terminals)
in batches of 5,000 as the ingest would, through the real geofence stage and all rules,
reorder window on (it holds 10 s of traffic: here ≈ one fix per vehicle). Measured in a fresh
process: resident memory (VmRSS) after loading the city and before the first fix, and after the
last batch, with every vehicle's state live in the engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VEHICLES, FIXES_EACH, BATCH, INTERVAL_S = 100_000, 30, 5_000, 10


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(vehicles: int = VEHICLES) -> dict:
    import gc

    import numpy as np

    sys.path.insert(0, str(REPO))
    from domain.batches import FixBatch
    from domain.city import load_city
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference

    city = load_city(REPO / "data" / "sample-city")
    geofence, sequencer = GeofenceStage.for_city(city), Sequencer()
    engine = RuleEngine(Reference.from_city(city))
    known = [v.device_id for v in city.vehicles]
    devices = np.array(known + [f"T{k:07d}" for k in range(vehicles - len(known))], object)
    rng = np.random.default_rng(5)
    lon0 = rng.uniform(113.85, 114.35, vehicles)
    lat0 = rng.uniform(22.50, 22.75, vehicles)
    heading = rng.uniform(0, 2 * np.pi, vehicles)
    step_lon = 8.3 * INTERVAL_S * np.cos(heading) / (111_320 * 0.92)
    step_lat = 8.3 * INTERVAL_S * np.sin(heading) / 110_570
    start = 1_795_053_600_000
    gc.collect()
    before = rss_mb()
    events = 0
    for second in range(FIXES_EACH):
        ts = np.full(vehicles, start + second * INTERVAL_S * 1000, np.int64)
        for k in range(0, vehicles, BATCH):
            sl = slice(k, k + BATCH)
            n = len(devices[sl])
            fixes = sequencer.sequence(FixBatch.from_columns(
                device=devices[sl], ts=ts[sl], lon=lon0[sl] + second * step_lon[sl],
                lat=lat0[sl] + second * step_lat[sl], speed=np.full(n, 30.0),
                heading=np.degrees(heading[sl]) % 360, lid=np.zeros(n, np.int64),
                lift=np.zeros(n, np.int64), load=np.full(n, 2, np.int64),
                sats=np.full(n, 12, np.int64), hdop=np.full(n, 0.9), received=ts[sl]))
            events += len(engine.evaluate(fixes, geofence.classify(fixes),
                                          now_ms=start + second * INTERVAL_S * 1000))
    gc.collect()
    after = rss_mb()
    held = engine._held
    # the hand-over snapshot of every vehicle (docs/scaling.md): what a worker's shutdown
    # costs, and an upper bound for a periodic one (only vehicles that changed are written)
    import time

    import orjson

    t0 = time.perf_counter()
    states = engine.export_states(list(engine.vehicles))
    text = [orjson.dumps(s) for s in states.values()]
    snapshot_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh = RuleEngine(Reference.from_city(city))
    fresh.import_states({d: orjson.loads(t) for d, t in zip(states, text, strict=True)})
    restore_s = time.perf_counter() - t0
    return {"vehicles": len(engine.vehicles), "fixes": vehicles * FIXES_EACH,
            "snapshot_us": snapshot_s / vehicles * 1e6, "restore_us": restore_s / vehicles * 1e6,
            "snapshot_bytes": sum(map(len, text)) / vehicles,
            "held_fixes": 0 if held is None else len(held),
            "events": events, "rss_before_mb": before, "rss_after_mb": after,
            "state_mb": after - before, "per_vehicle_kb": (after - before) * 1024 / vehicles}


def run() -> dict:
    """In a fresh interpreter, so nothing else this run allocated is counted."""
    out = subprocess.run([sys.executable, __file__, "--measure"], capture_output=True,
                         text=True, timeout=900, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if "--measure" in sys.argv:
        print(json.dumps(measure()))
    else:
        print(run())
