"""The debounce machine and engine state: batch boundaries and restarts change nothing."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.machine import NEUTRAL, OFF, ON, Debounce, MachineState, feed

DEBOUNCE = Debounce(open_s=60, open_n=3, close_s=30, close_n=3)


def run(cond, ts, cuts):
    state = MachineState()
    out = []
    bounds = [0, *sorted(set(cuts)), len(ts)]
    for a, b in itertools.pairwise(bounds):
        if b <= a:
            continue
        sl = slice(a, b)
        n = b - a
        out += [t for t in feed(state, DEBOUNCE, ts[sl], cond[sl], np.arange(a, b, dtype=float),
                                np.zeros(n), np.zeros(n), np.zeros(n, np.int64))
                if t.kind != "updated"]
    return out, state.phase


conditions = st.lists(st.sampled_from([OFF, ON, NEUTRAL]), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(conditions, st.lists(st.integers(1, 30), min_size=120, max_size=120),
       st.lists(st.integers(0, 120), max_size=10))
def test_batch_boundaries_never_change_the_transitions(cond, steps, cuts):
    cond = np.array(cond, np.int64)
    ts = np.cumsum(np.array(steps[:len(cond)], np.int64) * 1000)
    whole = run(cond, ts, [])
    assert run(cond, ts, [c for c in cuts if c < len(cond)]) == whole


def reference_machine(cond, ts, d: Debounce):
    """The debounce rules of docs/rules.md, one fix at a time (an independent re-statement
    of what ``feed`` does run by run)."""
    phase, out = "idle", []
    start = close_ts = count = normal = 0
    for c, t in zip(cond.tolist(), ts.tolist(), strict=True):
        if c == ON:
            if phase == "idle":
                phase, start, count = "pending", t, 0
            elif phase == "paused":
                phase, count = "pending", 0
            if phase == "pending":
                count += 1
                if count >= d.open_n and t - start >= d.open_s * 1000:
                    phase = "open"
                    out.append(("opened", start))
            else:
                phase = "open"
        elif c == OFF or phase in ("pending", "paused"):
            if phase in ("pending", "open"):
                phase = "paused" if phase == "pending" else "closing"
                close_ts, normal = t, 0
            if phase == "paused":
                normal += 1
                if normal >= d.close_n or t - close_ts >= d.close_s * 1000:
                    phase = "idle"
            elif phase == "closing":
                normal += 1
                if normal >= d.close_n and t - close_ts >= d.close_s * 1000:
                    phase = "idle"
                    out.append(("closed", start, close_ts))
        elif phase == "closing":
            phase = "open"
    return out


@settings(max_examples=400, deadline=None)
@given(conditions, st.lists(st.integers(1, 30), min_size=120, max_size=120),
       st.sampled_from([DEBOUNCE, Debounce(10, 2, 10, 2), Debounce(15, 3, 10, 2),
                        Debounce(0, 1, 0, 1)]))
def test_feed_agrees_with_the_fix_by_fix_statement_of_the_rules(cond, steps, debounce):
    cond = np.array(cond, np.int64)
    ts = np.cumsum(np.array(steps[:len(cond)], np.int64) * 1000)
    n = len(cond)
    got = [(t.kind, t.start_ts) + ((t.end_ts,) if t.kind == "closed" else ())
           for t in feed(MachineState(), debounce, ts, cond, np.zeros(n), np.zeros(n),
                         np.zeros(n), np.zeros(n, np.int64)) if t.kind != "updated"]
    assert got == reference_machine(cond, ts, debounce)


@settings(max_examples=300, deadline=None)
@given(st.integers(6, 60), st.integers(0, 59), st.integers(1, 30),
       st.sampled_from([OFF, NEUTRAL]))
def test_a_one_report_flicker_neither_opens_nor_splits(length, where, step, normal):
    """Debounces as the rules use them (open_n ≥ 2, close_n ≥ 2)."""
    d = Debounce(10, 2, 10, 2)
    length = max(length, 30 // step + 4)  # the offence comfortably exceeds the open debounce
    ts = np.arange(length, dtype=np.int64) * step * 1000
    quiet = np.full(length, normal, np.int64)
    k = where % length
    blip = quiet.copy()
    blip[k] = ON
    assert reference_machine(blip, ts, d) == [] == \
        [t for t in feed(MachineState(), d, ts, blip, *([np.zeros(length)] * 3),
                         np.zeros(length, np.int64))]
    offence = np.full(length, ON, np.int64)
    offence[k] = normal
    whole = reference_machine(np.full(length, ON, np.int64), ts, d)
    assert len([t for t in reference_machine(offence, ts, d) if t[0] == "opened"]) == \
        len([t for t in whole if t[0] == "opened"]) == 1


def test_engine_state_survives_snapshot_and_restore(city):
    """Restart in the middle of a detour: the restored engine finishes the same violation."""
    import json

    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.replay import final_violations
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference
    from simulator.scenarios import example_detour

    track = example_detour(city, 1_795_053_600_000)
    lines = track.lines()
    geofence, sequencer, decoder = GeofenceStage.for_city(city), Sequencer(), WireDecoder()
    reference = Reference.from_city(city)

    def batches():
        for i in range(0, len(lines), 25):
            chunk = lines[i:i + 25]
            topics = [f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in chunk]
            raw = RawBatch(topics, [x.encode() for x in chunk], np.zeros(len(chunk), np.int64))
            fixes = sequencer.sequence(decoder.decode(raw, now_ms=2**62).fixes)
            yield fixes, geofence.classify(fixes)

    def evaluate(restart_at: int | None):
        engine = RuleEngine(reference)
        events = []
        for k, (fixes, memberships) in enumerate(batches()):
            if k == restart_at:
                events += engine.flush()  # a clean shutdown processes what it held …
                saved = json.loads(json.dumps(engine.snapshot()))  # … then saves the state
                engine = RuleEngine(reference)
                engine.restore(saved)
            events += engine.evaluate(fixes, memberships)
        return final_violations(events + engine.flush())

    uninterrupted = evaluate(None)
    assert [v["rule"] for v in uninterrupted] == ["OFF_ROUTE"]
    for restart in (5, 9, 12):
        assert evaluate(restart) == uninterrupted


def test_hand_over_mid_detour_to_a_new_engine_gives_the_same_violations(city):
    """A crash or rebalance in the middle of a detour: the new owner restores the JSON
    snapshot (without the old owner's flush) and is fed everything stored so far again —
    the held fixes are evaluated, the already evaluated ones are recognised as repeats —
    then the rest of the stream. The violations, ids included, are the uninterrupted ones."""
    import json

    import orjson

    from domain.batches import FixBatch
    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.replay import final_violations
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference
    from simulator.scenarios import example_detour

    lines = example_detour(city, 1_795_053_600_000).lines()
    geofence, sequencer, decoder = GeofenceStage.for_city(city), Sequencer(), WireDecoder()
    reference = Reference.from_city(city)
    batches = []
    for i in range(0, len(lines), 25):
        chunk = lines[i:i + 25]
        topics = [f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in chunk]
        raw = RawBatch(topics, [x.encode() for x in chunk], np.zeros(len(chunk), np.int64))
        batches.append(sequencer.sequence(decoder.decode(raw, now_ms=2**62).fixes))

    def evaluate(hand_over_at: int | None):
        engine, events = RuleEngine(reference), []
        for k, fixes in enumerate(batches):
            if k == hand_over_at:
                saved = orjson.loads(orjson.dumps(engine.snapshot()))
                engine = RuleEngine(reference)
                engine.import_states(saved)
                seen = FixBatch.concat(batches[:k])
                events += engine.evaluate(seen, geofence.classify(seen))
            events += engine.evaluate(fixes, geofence.classify(fixes))
        return final_violations(events + engine.flush()), engine

    uninterrupted, _ = evaluate(None)
    assert [v["rule"] for v in uninterrupted] == ["OFF_ROUTE"]
    for k in range(1, len(batches)):
        resumed, engine = evaluate(k)
        assert resumed == uninterrupted, k
        assert engine.dropped_late > 0 or k == 1


def test_redelivered_fixes_open_nothing_new(city):
    """QoS 1 redelivers a whole detour after it was evaluated: no second violation."""
    import json

    from domain.events import ViolationEvent
    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference
    from simulator.scenarios import example_detour

    lines = example_detour(city, 1_795_053_600_000).lines()
    geofence, decoder = GeofenceStage.for_city(city), WireDecoder()
    topics = [f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in lines]
    raw = RawBatch(topics, [x.encode() for x in lines], np.zeros(len(lines), np.int64))
    fixes = Sequencer().sequence(decoder.decode(raw, now_ms=2**62).fixes)
    engine = RuleEngine(Reference.from_city(city))
    first = engine.evaluate(fixes, geofence.classify(fixes)) + engine.flush()
    assert any(isinstance(e, ViolationEvent) for e in first)
    again = engine.evaluate(fixes, geofence.classify(fixes)) + engine.flush()
    assert again == []
    assert engine.dropped_late == len(fixes)


def test_data_older_than_anything_seen_is_evaluated_however_many_gaps_came_since(city):
    """A vehicle first seen today, with many reporting gaps since, then yesterday's track
    arrives (a terminal's old backlog, a replay): that is new data, evaluated from scratch —
    not a repeat of something already evaluated."""
    import json

    from domain.batches import FixBatch
    from domain.events import Phase, ViolationEvent
    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference
    from simulator.scenarios import example_detour

    lines = example_detour(city, 1_795_053_600_000).lines()
    geofence, decoder = GeofenceStage.for_city(city), WireDecoder()
    raw = RawBatch([f"muck/v1/{json.loads(x)['dev']}/telemetry" for x in lines],
                   [x.encode() for x in lines], np.zeros(len(lines), np.int64))
    detour = Sequencer().sequence(decoder.decode(raw, now_ms=2**62).fixes)
    engine = RuleEngine(Reference.from_city(city))
    later = int(detour.ts[-1]) + 86_400_000
    n = 2 * engine.max_gap_snapshots
    today = FixBatch.from_columns(  # parked, reporting every 2 minutes: a gap each time
        device=np.full(n, detour.device[0], object),
        ts=later + 120_000 * np.arange(n), lon=np.full(n, detour.lon[0]),
        lat=np.full(n, detour.lat[0]), speed=np.zeros(n), received=np.zeros(n, np.int64))
    engine.evaluate(today, geofence.classify(today))
    engine.flush()
    events = engine.evaluate(detour, geofence.classify(detour)) + engine.flush()
    opened = [e for e in events if isinstance(e, ViolationEvent) and e.phase == Phase.OPENED]
    assert [(e.rule, e.late) for e in opened] == [("OFF_ROUTE", True)]
    assert engine.dropped_late == 0


def test_exported_state_names_permits_by_id_so_another_city_order_restores_it(city):
    import dataclasses

    import orjson

    from rules.engine import RuleEngine
    from rules.reference import Reference

    engine = RuleEngine(Reference.from_city(city))
    engine.restore({"dev1": {"machines": {"OFF_ROUTE": {"phase": 2, "context": 3}},
                             "leg": {"phase": 3, "permits": [3, 5], "origin": 2}}})
    exported = orjson.loads(orjson.dumps(engine.export_states(["dev1"])))
    assert exported["dev1"]["leg"]["permits"] == [city.permits[3].id, city.permits[5].id]
    assert exported["dev1"]["leg"]["origin"] == city.fences[2].id
    assert exported["dev1"]["machines"]["OFF_ROUTE"]["peak"] is None  # NaN is JSON null
    other = RuleEngine(Reference.from_city(
        dataclasses.replace(city, permits=list(reversed(city.permits)))))
    other.import_states(exported, now_ms=123)
    st = other.vehicles["dev1"]
    assert other.ref.permit_ids[st.machines["OFF_ROUTE"].context] == city.permits[3].id
    assert [other.ref.permit_ids[k] for k in st.leg.permits] == \
        [city.permits[3].id, city.permits[5].id]
    assert np.isnan(st.machines["OFF_ROUTE"].peak) and st.last_received == 123


def test_swap_reference_keeps_open_violations_on_their_permit(city, tmp_path):
    import dataclasses

    from rules.engine import RuleEngine
    from rules.reference import Reference

    engine = RuleEngine(Reference.from_city(city))
    engine.restore({"dev1": {"machines": {"OFF_ROUTE": {"phase": 2, "context": 3}},
                             "leg": {"phase": 3, "permits": [3]}}})
    wanted = city.permits[3].id
    reordered = dataclasses.replace(city, permits=list(reversed(city.permits)))
    engine.swap_reference(Reference.from_city(reordered))
    st = engine.vehicles["dev1"]
    assert engine.ref.permit_ids[st.machines["OFF_ROUTE"].context] == wanted
    assert [engine.ref.permit_ids[k] for k in st.leg.permits] == [wanted]


def test_sweep_opens_signal_loss_for_a_silent_truck_and_the_next_fix_closes_it(city):
    import json

    from domain.events import Phase
    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference
    from simulator.scenarios import TruckTrack

    permit = city.permits[0]
    device = next(v.device_id for v in city.vehicles if v.plate == permit.plate)
    t = TruckTrack(city, device, 1_795_053_600_000, interval_s=5)
    route = t.route(permit.id)
    t.drive(t.part(route, 0.2, 0.4), 35, lid=0, lift=0, load=2)
    last = t.fixes[-1]["ts"]
    t.silence(900)
    t.drive(t.part(route, 0.6, 0.7), 35, lid=0, lift=0, load=2)
    engine = RuleEngine(Reference.from_city(city))
    geofence, sequencer, decoder = GeofenceStage.for_city(city), Sequencer(), WireDecoder()

    def feed(fixes_json, now):
        raw = RawBatch([f"muck/v1/{device}/telemetry"] * len(fixes_json),
                       [json.dumps(f).encode() for f in fixes_json],
                       np.full(len(fixes_json), now, np.int64))
        fixes = sequencer.sequence(decoder.decode(raw, now_ms=now).fixes)
        return engine.evaluate(fixes, geofence.classify(fixes), now_ms=now)

    before = [f for f in t.fixes if f["ts"] <= last]
    after = [f for f in t.fixes if f["ts"] > last]
    events = feed(before, last + 11_000)
    # silence is counted on the wall clock from the arrival of the last fix (last + 11 s)
    assert engine.sweep(last + 200_000) == []  # silent 3 min: not yet
    assert engine.sweep(last + 305_000) == []  # 294 s since it arrived
    opened = engine.sweep(last + 312_000)
    assert [(e.rule, e.phase, e.start_ts) for e in opened] == [("SIGNAL_LOSS", Phase.OPENED,
                                                                 last)]
    events = feed(after, after[-1]["ts"] + 11_000)
    closed = [e for e in events if e.rule == "SIGNAL_LOSS"]
    assert [(e.phase, e.start_ts, e.end_ts) for e in closed] == [
        (Phase.CLOSED, last, after[0]["ts"])]


def test_a_terminal_clock_running_behind_is_not_silence(city):
    """A terminal whose clock is 2 minutes behind delivers every fix on time: by its device
    time it has been silent 7 minutes when it has really been silent 5; SIGNAL_LOSS opens
    only after 5 minutes of wall-clock silence."""
    import json

    from ingest.wire import RawBatch, WireDecoder
    from muckwatch.stages import GeofenceStage, Sequencer
    from rules.engine import RuleEngine
    from rules.reference import Reference
    from simulator.scenarios import TruckTrack

    permit = city.permits[0]
    device = next(v.device_id for v in city.vehicles if v.plate == permit.plate)
    t = TruckTrack(city, device, 1_795_053_600_000, interval_s=5)
    t.drive(t.part(t.route(permit.id), 0.2, 0.4), 35, lid=0, lift=0, load=2)
    skew = 120_000
    engine = RuleEngine(Reference.from_city(city))
    geofence, sequencer, decoder = GeofenceStage.for_city(city), Sequencer(), WireDecoder()
    for f in t.fixes:  # one message at a time, each arriving when it was made
        now = f["ts"] + skew
        raw = RawBatch([f"muck/v1/{device}/telemetry"], [json.dumps(f).encode()],
                       np.array([now], np.int64))
        fixes = sequencer.sequence(decoder.decode(raw, now_ms=now).fixes)
        engine.evaluate(fixes, geofence.classify(fixes), now_ms=now)
        engine.sweep(now)
    arrived = t.fixes[-1]["ts"] + skew
    assert engine.sweep(arrived + 240_000) == []
    opened = engine.sweep(arrived + 301_000)
    assert [(e.rule, e.start_ts) for e in opened] == [("SIGNAL_LOSS", t.fixes[-1]["ts"])]


def test_every_rule_in_the_chain_is_documented_with_its_evidence_and_thresholds():
    from pathlib import Path

    from domain.settings import RuleSettings
    from rules.chain import EVENT_RULES, MACHINE_RULES

    text = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()
    for rule in (*MACHINE_RULES, *EVENT_RULES):
        assert f"`{rule.name}`" in text and rule.evidence in text, rule.name
    for rule in MACHINE_RULES:
        d = rule.debounce(RuleSettings())
        assert d.open_n >= 2 and d.close_n >= 2 and d.close_s > 0, \
            f"{rule.machine_key}: a one-report flicker must neither open nor split it"
