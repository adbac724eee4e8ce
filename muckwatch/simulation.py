"""Where ``muckwatch simulate`` sends a planned scenario (a track file, a broker, a JT/T 808
gateway) and which database window ``muckwatch accuracy --db`` compares with the truth.

Out of the CLI so that the command modules only parse, call and print; every target writes
the ground truth as it goes and returns the same kind of summary.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from domain.settings import MqttSettings
from ingest.receiver import BrokerError
from simulator.mixed import MixedScenario, TruthWriter
from simulator.publish import MqttPublisher, PublishError, stream

# with --db and no --since/--until: violations this long before the first truth entry and
# after the last one (an offence's violation may start before or outlast its truth window)
WINDOW_MARGIN_MS = 1_800_000


@dataclass
class Delivered:
    """What a scenario run delivered: fixes, messages and blind-area batches, the truth
    counts, how far a paced run fell behind real time, and (JT/T 808) how many terminals
    connected and were refused."""

    messages: int
    fixes: int
    batches: int
    written: dict[str, int] = field(default_factory=dict)
    max_lag_s: float = 0.0
    connections: int = 0
    refused: int = 0


def to_file(scenario: MixedScenario, out: str, truth: str, progress=None) -> Delivered:
    """A TRACK.jsonl for ``muckwatch replay``, and the truth beside it."""
    summary = scenario.write(out, truth, progress=progress)
    return Delivered(summary["messages"], summary["fixes"], summary["batches"],
                     scenario.written)


def to_jt808(scenario: MixedScenario, host: str, port: int, truth: str, *, start_ms: int,
             speed: float) -> Delivered:
    """One TCP connection per truck to the JT/T 808 gateway at ``host:port`` (OSError when
    it cannot be reached)."""
    from simulator.jt808 import stream_jt808

    with TruthWriter(truth, scenario.summary()) as writer:
        sent = asyncio.run(stream_jt808(scenario.deliveries(truth=writer), host, port,
                                        start_ms=start_ms, speed=speed))
    return Delivered(sent.messages, sent.fixes, sent.batches, writer.counts,
                     connections=sent.connections, refused=sent.refused)


def to_mqtt(scenario: MixedScenario, url: str, truth: str, mqtt: MqttSettings, *,
            start_ms: int, speed: float, rate: float, progress=None) -> Delivered:
    """Publish live to the broker at ``url`` (mqtt://host:port or host:port; a clustered
    broker's nodes comma-separated, mqtt://h1:p1,h2:p2,…) on the topics ``mqtt``
    configures; a broker that fails is a BrokerError."""
    nodes = []
    for part in url.split(","):
        parsed = urlparse(part if "://" in part else f"mqtt://{part}")
        nodes.append((parsed.hostname or "127.0.0.1", parsed.port or 1883))
    publisher = MqttPublisher(*nodes[0], client_id=f"muckwatch-simulate-{time.time_ns()}",
                              partitions=mqtt.partitions, nodes=nodes)
    try:
        publisher.connect()
        with TruthWriter(truth, scenario.summary()) as writer:
            result = stream(scenario.deliveries(truth=writer), publisher, start_ms=start_ms,
                            speed=speed, rate=rate, progress=progress, root=mqtt.topic_root)
    except PublishError as e:
        raise BrokerError(str(e)) from None
    finally:
        publisher.close()
    return Delivered(result.messages, result.fixes, result.batches, writer.counts,
                     result.max_lag_s)


def truth_window(truth: list[dict], since: int | None, until: int | None) -> tuple[int, int]:
    """The epoch-ms window of violations to compare with ``truth``: the given bounds, else
    WINDOW_MARGIN_MS around the truth's own span. Raises ValueError if the truth is empty and
    a bound is missing."""
    if not truth and (since is None or until is None):
        raise ValueError("the truth is empty")
    if since is None:
        since = min(t["start_ts"] for t in truth) - WINDOW_MARGIN_MS
    if until is None:
        until = max(t.get("end_ts") or t["start_ts"] for t in truth) + WINDOW_MARGIN_MS
    return since, until
