"""Pipeline stages that need no broker or database."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.batches import FixBatch
from muckwatch.stages import GeofenceStage, Sequencer


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 20)), min_size=1,
                max_size=60))
def test_sequencer_orders_by_device_time_and_keeps_the_first_copy(rows):
    n = len(rows)
    batch = FixBatch.from_columns(
        device=np.array([d for d, _ in rows], object), ts=[t for _, t in rows],
        lon=np.zeros(n), lat=np.zeros(n), received=np.zeros(n), seq=np.arange(n))
    out = Sequencer().sequence(batch)
    keys = list(zip(out.device.tolist(), out.ts.tolist(), strict=True))
    assert keys == sorted(set(rows)), "sorted by (device, ts), each key once"
    first_seq = {}
    for k, key in enumerate(rows):
        first_seq.setdefault(key, k)
    assert out.seq.tolist() == [first_seq[k] for k in keys], "the first copy wins"


def test_geofence_stage_classifies_and_swaps(city):
    stage = GeofenceStage.for_city(city)
    site = city.fences[0]
    p = site.geometry.representative_point()
    batch = FixBatch.from_columns(device=np.array(["x", "y"], object), ts=[1, 2],
                                  lon=[p.x, 0.0], lat=[p.y, 0.0], received=[0, 0])
    m = stage.classify(batch)
    assert m.fix_index.tolist() == [0] and m.fence_id.tolist() == [site.id]
    other = GeofenceStage([f.id for f in city.fences[1:2]],
                          stage._current[1].__class__([city.fences[1].geometry]))
    stage.swap_from(other)
    assert stage.fence_count == 1
    assert stage.classify(batch).fix_index.tolist() == []
