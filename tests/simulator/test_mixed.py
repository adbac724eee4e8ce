"""The mixed scenario: deterministic, truth consistent with the track, offences injected at a
rate, offences inside blind areas delivered as late batches."""

from __future__ import annotations

import json

import pytest

from simulator.episodes import RULES
from simulator.mixed import MixedOptions, MixedScenario

START = 1_795_053_600_000


@pytest.fixture(scope="module")
def scenario(city):
    return MixedScenario(city, MixedOptions(trucks=15, minutes=25, seed=4, blind_share=0.3))


@pytest.fixture(scope="module")
def deliveries(scenario):
    return list(scenario.deliveries())


def test_same_seed_same_scenario(city, tmp_path):
    def make(seed):
        s = MixedScenario(city, MixedOptions(trucks=8, minutes=20, seed=seed))
        s.write(tmp_path / f"t{seed}.jsonl", tmp_path / f"truth{seed}.jsonl")
        return (tmp_path / f"t{seed}.jsonl").read_bytes(), \
            (tmp_path / f"truth{seed}.jsonl").read_bytes()

    a = make(3)
    assert make(3) == a
    assert make(4)[0] != a[0]


def test_truth_is_read_off_the_track(scenario, deliveries):
    fixes = {}
    for d in deliveries:
        for f in d.payload if d.is_batch else [d.payload]:
            fixes[(d.device, f["ts"])] = f
    rules = {t["rule"] for t in scenario.truth}
    assert rules == set(RULES)
    assert sum(1 for t in scenario.truth if t.get("negative")) == len(RULES)
    for t in scenario.truth:
        first = fixes[(t["device"], t["start_ts"])]
        assert (t["device"], t["end_ts"]) in fixes
        assert t["what"]
        if t.get("negative"):
            continue
        if t["rule"] == "OVERSPEED":
            assert first["spd"] > 60
        elif t["rule"] == "UNAUTHORISED_DUMP":
            assert first["lift"] == 1
        elif t["rule"] == "UNCOVERED_LOAD":
            assert first["lid"] == 1 and first["load"] == 2 and first["spd"] > 5
        elif t["rule"] == "SIGNAL_LOSS":
            later = sorted(ts for dev, ts in fixes if dev == t["device"] and ts > t["start_ts"])
            assert later[0] - t["start_ts"] > 300_000, "silent for more than 5 minutes"


def test_delivery_order_and_blind_area_batches(scenario, deliveries):
    at = [d.at_ms for d in deliveries]
    assert at == sorted(at)
    batches = [d for d in deliveries if d.is_batch]
    assert batches, "blind areas are delivered as batches"
    for d in batches:
        ts = [f["ts"] for f in d.payload]
        assert ts == sorted(ts) and d.at_ms > ts[-1]
    blind = [t for t in scenario.truth if t.get("blind_area")]
    assert blind, "some offence happens inside a blind area"
    for t in blind:
        carrier = next(d for d in batches if d.device == t["device"])
        assert t["start_ts"] in [f["ts"] for f in carrier.payload]
        live_after = [d for d in deliveries if d.device == t["device"] and not d.is_batch
                      and d.at_ms < carrier.at_ms]
        assert live_after and live_after[0].payload["ts"] > carrier.payload[-1]["ts"], \
            "newer live fixes arrive before the backlog: it is late data"
    lines = [json.loads(d.line()) for d in batches[:3]]
    assert all(isinstance(x, list) and x[0]["dev"] for x in lines)


def test_offences_at_a_rate(city):
    options = MixedOptions(trucks=40, minutes=60, seed=2, per_rule=1,
                           rates={"OVERSPEED": 20.0, "OFF_ROUTE": 0.0}, near_misses=False)
    s = MixedScenario(city, options)
    positives = [t for t in s.truth if not t.get("negative")]
    count = {r: sum(t["rule"] == r for t in positives) for r in RULES}
    assert count["OFF_ROUTE"] == 0
    assert count["UNCOVERED_LOAD"] == 1, "rules without a rate keep per_rule"
    assert 1 <= count["OVERSPEED"] <= 20, "Poisson with mean 8 (20 per 100 truck-hours × 40)"
    assert count["OVERSPEED"] == s.counts["OVERSPEED"]
