"""``all_events``: every event (violations, retractions, trips) of a track through the real
stages, for the tests that look at more than the folded violations ``muckwatch replay``
prints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.wire import RawBatch, WireDecoder
from muckwatch.stages import GeofenceStage, Sequencer
from rules.engine import RuleEngine
from rules.reference import Reference


def _all_events(city, lines: list[str], batch: int = 50, settings=None) -> list:
    """Decode → sequence → geofence → rules, ``batch`` lines at a time, then flush."""
    decoder, sequencer = WireDecoder(max_future_ms=2**62), Sequencer()
    geofence = GeofenceStage.for_city(city)
    engine = RuleEngine(Reference.from_city(city), settings)
    out: list = []
    for i in range(0, len(lines), batch):
        chunk = lines[i:i + batch]
        topics = [f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in chunk]
        raw = RawBatch(topics, [x.encode() for x in chunk], np.zeros(len(chunk), np.int64))
        fixes = sequencer.sequence(decoder.decode(raw, now_ms=0).fixes)
        out += engine.evaluate(fixes, geofence.classify(fixes), now_ms=None)
    return out + engine.flush()


@pytest.fixture
def all_events():
    return _all_events
