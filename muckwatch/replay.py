"""``muckwatch replay TRACK.jsonl --city DIR``: geofence + rules offline, violations as JSONL.

The same stages as the live pipeline (decode → sequence → geofence → rules), with no broker
and no database, so analysts can re-run history with new thresholds and tests can compare
against ground truth. Line order is delivery order: a blind-area backfill written after the
live fixes it precedes is evaluated as late data, exactly as it would be live.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from domain.city import City
from domain.events import Phase, ViolationEvent
from domain.settings import RuleSettings
from ingest.wire import RawBatch, WireDecoder
from muckwatch.stages import GeofenceStage, Sequencer
from rules.engine import RuleEngine
from rules.reference import Reference


class TrackError(ValueError):
    """A track line is unusable; says which line and why."""


def read_track(path: str | Path, batch_lines: int = 2000) -> Iterator[list[tuple[str, bytes]]]:
    """Batches of (topic, payload) from a TRACK.jsonl: a line is one fix object with ``dev``
    (sent on the device's telemetry topic) or an array of them, all of one device (a
    blind-area backfill, sent on its batch topic)."""
    batch: list[tuple[str, bytes]] = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise TrackError(f"{path}:{n}: not JSON") from None
            if isinstance(row, list):
                devices = {f.get("dev") if isinstance(f, dict) else None for f in row}
                if len(devices) != 1 or not isinstance(device := devices.pop(), str) \
                        or not device:
                    raise TrackError(f"{path}:{n}: a batch line is an array of fix objects "
                                     "with one and the same 'dev'")
                batch.append((f"muck/v1/{device}/telemetry/batch", line))
            elif isinstance(row, dict):
                device = row.get("dev")
                if not isinstance(device, str) or not device:
                    raise TrackError(f"{path}:{n}: every line needs 'dev' (the device id)")
                batch.append((f"muck/v1/{device}/telemetry", line))
            else:
                raise TrackError(f"{path}:{n}: not a JSON object or array")
            if len(batch) >= batch_lines:
                yield batch
                batch = []
    if batch:
        yield batch


def replay(city: City, batches: Iterable[list[tuple[str, bytes]]],
           settings: RuleSettings | None = None) -> tuple[list[dict], dict]:
    """Run the stages over the batches; return final violations and counts."""
    decoder = WireDecoder(max_future_ms=2**62)  # history: no clock to be ahead of
    sequencer = Sequencer()
    geofence = GeofenceStage.for_city(city)
    engine = RuleEngine(Reference.from_city(city), settings)
    events: list = []
    counts = {"lines": 0, "fixes": 0, "rejected": 0}
    for batch in batches:
        raw = RawBatch([t for t, _ in batch], [p for _, p in batch],
                       np.zeros(len(batch), np.int64))
        decoded = decoder.decode(raw, now_ms=0)
        fixes = sequencer.sequence(decoded.fixes)
        counts["lines"] += len(batch)
        counts["fixes"] += len(fixes)
        counts["rejected"] += len(decoded.rejects)
        events += engine.evaluate(fixes, geofence.classify(fixes), now_ms=None)
    events += engine.flush()
    return final_violations(events), counts


def final_violations(events: list) -> list[dict]:
    """Fold opened/updated/closed/retracted events into each violation's final record."""
    by_id: dict[str, dict] = {}
    for e in events:
        if not isinstance(e, ViolationEvent):
            continue
        v = by_id.setdefault(e.id, {"id": e.id, "rule": e.rule, "device": e.device_id,
                                    "plate": e.plate, "company": e.company_id,
                                    "permit": e.permit_id, "fence": e.fence_id,
                                    "start_ts": e.start_ts, "end_ts": None, "late": e.late,
                                    "severity": e.severity, "peak": e.peak,
                                    "start_lon": e.start_lon, "start_lat": e.start_lat,
                                    "retracted": False})
        if e.end_ts is not None:
            v["end_ts"] = e.end_ts
        if e.peak is not None and (v["peak"] is None or e.peak > v["peak"]):
            v["peak"] = e.peak
        v["severity"] = max(v["severity"], e.severity)
        if e.phase == Phase.RETRACTED:
            v["retracted"] = True
    out = [v for v in by_id.values() if not v.pop("retracted")]
    out.sort(key=lambda v: (v["start_ts"], v["device"], v["rule"]))
    return out
