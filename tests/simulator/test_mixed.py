"""The mixed scenario: deterministic, truth consistent with the track, offences injected at a
rate, offences inside blind areas delivered as late batches."""

from __future__ import annotations

import json

import pytest

from simulator.episodes import RULES
from simulator.fleet import Noise
from simulator.mixed import MixedOptions, MixedScenario, parse_duration

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
            assert first.get("lift") == 1 or (t["kind"] == "load_drop" and "lift" not in first)
        elif t["rule"] == "UNCOVERED_LOAD":
            assert first["lid"] == 1 and first["spd"] > 5
            assert first.get("load") == 2 or first.get("load_kg", 0) > 1000
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
        # (the manifest's episodes hold only from shortly before the offence: the fixes
        # before that went live, in order)
        assert any(d.payload["ts"] > carrier.payload[-1]["ts"] for d in live_after), \
            "newer live fixes arrive before the backlog: it is late data"
    lines = [json.loads(d.line()) for d in batches[:3]]
    assert all(isinstance(x, list) and x[0]["dev"] for x in lines)


def test_offences_at_a_rate(city):
    options = MixedOptions(trucks=40, minutes=60, seed=2, per_rule=1,
                           rates={"OVERSPEED": 20.0, "OFF_ROUTE": 0.0}, near_misses=False)
    s = MixedScenario(city, options)
    positives = [t for t in s.truth if not t.get("negative") and "during" not in t]
    count = {r: sum(t["rule"] == r for t in positives) for r in RULES}
    assert count["OFF_ROUTE"] == 0
    assert count["UNCOVERED_LOAD"] == 1, "rules without a rate keep per_rule"
    assert 1 <= count["OVERSPEED"] <= 20, "Poisson with mean 8 (20 per 100 truck-hours × 40)"
    assert count["OVERSPEED"] == s.counts["OVERSPEED"]


@pytest.mark.parametrize(("text", "minutes"), [("90s", 1.5), ("45m", 45), ("6h", 360),
                                                ("7d", 10080), ("30", 30), ("2.5", 2.5)])
def test_durations_take_a_unit(text, minutes):
    assert parse_duration(text) == minutes


def test_bad_durations_are_refused():
    for text in ("7w", "h", "", "abc"):
        with pytest.raises(ValueError):
            parse_duration(text)


def test_truth_file_has_a_summary_and_every_noise_class(city, tmp_path):
    """Written as it streams: the summary line first (compliant truck-hours), the episodes,
    and a near-miss row with its kind for each noise class."""
    noise = Noise(lift_bounce_per_h=6, lid_flicker_per_h=6, load_spike_per_h=6,
                  kg_spike_per_h=12, speed_spike_per_h=6, bad_gnss_per_h=6,
                  gate_jitter_share=0.3, red_light_truth_share=0.05)
    options = MixedOptions(trucks=20, minutes=parse_duration("14h"), interval_s=20, seed=8,
                           per_rule=1, noise=noise, weighing_share=0.3, no_lift_share=0.3,
                           tunnel_share=0.3, blind_share=0.3, step_s=4.0,
                           start_ms=START - 6 * 3_600_000,  # 04:00: a night, then a day
                           receipt_missing_share=0.1, receipt_forged_share=0.05)
    s = MixedScenario(city, options)
    s.write(tmp_path / "t.jsonl", tmp_path / "truth.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    rows = [r for r in lines if "receipt" not in r]
    summary = rows[0]["summary"]
    assert summary["compliant_truck_hours"] == pytest.approx(len(s.fleet) * 14)
    kinds = {r["kind"] for r in rows[1:]}
    assert {"lift_bounce", "lid_flicker", "load_spike", "kg_spike", "speed_spike", "bad_gnss",
            "gate_jitter", "red_light", "parking", "tunnel", "blind_area", "gnss_jump",
            "offence", "near_miss"} <= kinds
    for r in rows[1:]:
        assert r["rule"] in RULES and r["device"] and r["start_ts"] <= r["end_ts"]
        assert r.get("negative") is (True if r["kind"] not in ("offence", "load_drop")
                                     else None)
    fixes = {}
    for line in (tmp_path / "t.jsonl").read_text().splitlines():
        obj = json.loads(line)
        for f in obj if isinstance(obj, list) else [obj]:
            fixes[(f["dev"], f["ts"])] = f
    single = {"lift_bounce": lambda f: f.get("lift") == 1,
              "lid_flicker": lambda f: f["lid"] == 1,
              "speed_spike": lambda f: f["spd"] > 70}
    checked = 0
    for r in rows[1:]:
        if r["kind"] in single and (r["device"], r["start_ts"]) in fixes:
            assert single[r["kind"]](fixes[(r["device"], r["start_ts"])]), r
            checked += 1
    assert checked > 10
    # the site operators' receipts: one per loaded arrival at a disposal site or dock, 1–10
    # minutes after it (the truck's clock may be 90 s off), some missing, some forged for a
    # truck parked elsewhere all along
    receipts = [r["receipt"] for r in lines if "receipt" in r]
    sites = {f.id: f.kind for f in city.fences}
    assert len(receipts) > 50
    assert all(sites[r["site"]] in ("disposal_site", "transfer_dock") for r in receipts)
    by_device: dict[str, list[dict]] = {}
    for (dev, _), f in fixes.items():
        by_device.setdefault(dev, []).append(f)
    kinds = {"missing": 0, "forged": 0, "genuine": 0}
    for r in receipts:
        if r.get("missing"):
            kinds["missing"] += 1
            assert "received_at" not in r and r["arrived_ts"]
            continue
        assert r["received_at"].endswith("+08:00") and r["plate"]
        if r.get("forged"):
            kinds["forged"] += 1
            assert r["arrived_ts"] is None
            near = [f for f in by_device[r["device"]]
                    if abs(f["ts"] - r["received_ms"]) <= 600_000]
            assert all(f["spd"] == 0 for f in near), "the forged plate's truck stood still"
            continue
        kinds["genuine"] += 1
        assert 60_000 - 90_000 <= r["received_ms"] - r["arrived_ts"] <= 600_000 + 90_000
        assert any(abs(f["ts"] - r["arrived_ts"]) <= 60_000 for f in by_device[r["device"]])
        assert r.get("volume_m3") is None or 5 < r["volume_m3"] < 25
    assert kinds["missing"] and kinds["forged"] and kinds["genuine"] > 40
