"""A permit's validity by device time, as the database states it (issue #22): a revocation
moves valid_to earlier, a suspension is a gap — every fix is judged by the permit as it was
when it was recorded (so late data is judged the same as live data)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from muckwatch.live_reference import merge
from rules.reference import Reference

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)


def city_with(city, permit_changes: dict):
    """The sample city with one all-day permit changed as given."""
    p = next(p for p in city.permits if p.hours is None)
    changed = dataclasses.replace(p, **permit_changes)
    return dataclasses.replace(city, permits=[changed]), changed


def valid(ref: Reference, plate: str, ts_ms: np.ndarray) -> np.ndarray:
    vehicle = ref.plates.index(plate)
    slots = ref.permit_slots(np.full(len(ts_ms), vehicle))
    return ref.permits_valid(slots, ts_ms).any(axis=1)


@settings(max_examples=40, deadline=None)
@given(gaps=st.lists(st.tuples(st.integers(-3_600_000, 3_600_000),
                               st.integers(1, 1_800_000)), max_size=3),
       probes=st.lists(st.integers(-4_000_000, 4_000_000), min_size=1, max_size=50))
def test_a_suspended_permit_is_invalid_exactly_inside_its_gaps(city, gaps, probes):
    suspended = tuple((MS + a, MS + a + d) for a, d in gaps)
    c, p = city_with(city, {"valid_from": T0 - timedelta(days=1),
                            "valid_to": T0 + timedelta(days=1), "suspended": suspended})
    ts = MS + np.array(probes, np.int64)
    got = valid(Reference.from_city(c), p.plate, ts)
    expected = [not any(a <= t < b for a, b in suspended) for t in ts.tolist()]
    assert got.tolist() == expected


def test_a_revocation_ends_the_permit_at_its_time(city):
    c, p = city_with(city, {"valid_from": T0 - timedelta(days=1),
                            "valid_to": T0 - timedelta(milliseconds=1)})  # revoked at T0
    got = valid(Reference.from_city(c), p.plate, np.array([MS - 60_000, MS - 1, MS, MS + 1]))
    assert got.tolist() == [True, True, False, False]


def test_database_rows_win_over_the_bundle(city):
    """merge: a database permit replaces the bundle's of the same id, new ones are added,
    ones naming unknown sites are left out; vehicles by plate, a device id moved to another
    plate leaves the old one."""
    first = city.permits[0]
    revoked = dataclasses.replace(first, valid_to=T0)
    extra = dataclasses.replace(city.permits[1], id="A1-NEW")
    stray = dataclasses.replace(city.permits[2], id="A2-STRAY", origin="NOWHERE")
    moved = dataclasses.replace(city.vehicles[0], plate="粤Z00001")
    merged, skipped = merge(city, [revoked, extra, stray], [moved])
    by_id = {p.id: p for p in merged.permits}
    assert by_id[first.id].valid_to == T0 and "A1-NEW" in by_id and "A2-STRAY" not in by_id
    assert skipped == ["A2-STRAY"]
    plates = {v.plate for v in merged.vehicles}
    assert "粤Z00001" in plates and city.vehicles[0].plate not in plates
    assert len(merged.vehicles) == len(city.vehicles)
