"""The product's own MQTT receiver with a consumer that does nothing (issue #26's second
baseline): what ``ingest/receiver.py`` alone takes from the broker — QoS 1, persistent
session, batches of up to 5,000 acked in one write — so the pipeline's rate can be read as
"receiver ceiling × the share the rest of the pipeline leaves".

Run as its own process by ``bench/pipeline.py`` (so it does not share a GIL with the bench):

    .venv/bin/python bench/noop_receiver.py PORT COUNT

prints ``ready`` once subscribed, then one JSON line when COUNT messages arrived (or 300 s
passed): {"received": N, "first": T0, "last": T1} (wall-clock seconds).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.settings import MqttSettings
from ingest.receiver import MqttReceiver
from ingest.wire import subscriptions


async def main(port: int, count: int) -> dict:
    settings = MqttSettings(host="127.0.0.1", port=port, client_id=f"bench-noop-{port}")
    receiver = MqttReceiver(settings, subscriptions(), batch_max=5_000, batch_wait_s=0.02)
    await receiver.start()
    print("ready", flush=True)
    received, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + 300
    try:
        while received < count and time.monotonic() < deadline:
            try:
                batch = await asyncio.wait_for(receiver.next_batch(), 1.0)
            except TimeoutError:
                continue
            if not batch.topics:
                continue
            if not received:
                first = time.time()
            received += len(batch.topics)
            last = time.time()
            receiver.ack(batch)
    finally:
        await receiver.stop()
    return {"received": received, "first": first, "last": last}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))), flush=True)
