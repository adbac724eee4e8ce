"""Wire decoding: JSON payloads → a validated FixBatch, against orjson parsing alone.

200,000 single-fix messages from the simulated fleet (topic + payload, as the broker delivers
them), in batches of 5,000 as the ingest takes them: ``WireDecoder.decode`` (topic parsing,
JSON, schema and range checks, columns) vs. ``orjson.loads`` of the same payloads and nothing
else. One core, best of 3.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MESSAGES, BATCH = 200_000, 5_000


def messages() -> tuple[list[str], list[bytes]]:
    from domain.city import load_city
    from simulator.mixed import MixedOptions, MixedScenario

    city = load_city(REPO / "data" / "sample-city")
    options = MixedOptions(trucks=140, minutes=30, interval_s=1, per_rule=0, near_misses=False,
                           blind_share=0.0, duplicate_rate=0.0, start_ms=1_795_053_600_000)
    topics, payloads = [], []
    for d in MixedScenario(city, options).deliveries():
        topics.append(f"muck/v1/{d.device}/telemetry")
        payloads.append(orjson.dumps(d.payload))
        if len(topics) == MESSAGES:
            break
    return topics, payloads


def run() -> dict:
    from ingest.wire import RawBatch, WireDecoder

    topics, payloads = messages()
    n = len(topics)
    now = 1_795_053_600_000 + 3 * 3_600_000
    raws = [RawBatch(topics[k:k + BATCH], payloads[k:k + BATCH],
                     np.full(min(BATCH, n - k), now, np.int64)) for k in range(0, n, BATCH)]
    decoder = WireDecoder()
    best_decode = best_json = float("inf")
    fixes = 0
    for _ in range(3):
        t0 = time.perf_counter()
        for p in payloads:
            orjson.loads(p)
        best_json = min(best_json, time.perf_counter() - t0)
        t0 = time.perf_counter()
        fixes = sum(len(decoder.decode(raw, now).fixes) for raw in raws)
        best_decode = min(best_decode, time.perf_counter() - t0)
    return {"messages": n, "fixes": fixes, "orjson_rate": n / best_json,
            "decode_rate": n / best_decode, "ratio": best_json / best_decode}


if __name__ == "__main__":
    print(run())
