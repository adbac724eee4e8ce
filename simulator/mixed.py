"""A mixed scenario: a compliant fleet plus trucks that commit one known offence each, with
the ground truth of every offence — the input of ``muckwatch accuracy``.

This is the first, deterministic form of issue #6's simulator: the compliant fleet is the
simple fleet (loading, hauling, tipping at the permitted site), the offenders are scripted
tracks (``TruckTrack``) whose offence start is known to the millisecond.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ingest.wire import encode_fix
from muckwatch.city import City
from simulator.fleet import SimpleFleet
from simulator.scenarios import TruckTrack

RULES = ("OVERSPEED", "UNAUTHORISED_DUMP", "UNCOVERED_LOAD", "RESTRICTED_ZONE", "OFF_ROUTE",
         "NO_PERMIT", "SIGNAL_LOSS")


@dataclass
class Scenario:
    lines: list[str]  # TRACK.jsonl lines, in delivery order
    truth: list[dict]  # ground truth, one dict per offence

    def write(self, track_path, truth_path) -> None:
        with open(track_path, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in self.lines)
        with open(truth_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in self.truth)


def _truth(rule: str, track: TruckTrack, plate: str, offending) -> dict:
    hits = [f for f in track.fixes if offending(f)]
    return {"rule": rule, "device": track.device, "plate": plate, "start_ts": hits[0]["ts"],
            "end_ts": hits[-1]["ts"]}


def _clear_of(route, track: TruckTrack, city: City, metres: float) -> tuple[float, float]:
    """A point ``metres`` beside the route that really is that far from all of it (a route
    that doubles back could pass right by) and not inside any fence."""
    import shapely

    fences = [track.metric(f.geometry) for f in city.fences]
    for fraction in (0.4, 0.3, 0.5, 0.6, 0.2, 0.7, 0.8, 0.1):
        for side in (metres, -metres):
            x, y = track.beside(route, fraction, side)
            point = shapely.Point(x, y)
            if route.distance(point) >= 0.9 * metres and \
                    not any(f.distance(point) < 50 for f in fences):
                return x, y
    raise ValueError("no point clear of the route and the fences")


def generate(city: City, *, trucks: int, minutes: float, interval_s: float = 5.0,
             seed: int = 1, start_ms: int = 1_795_053_600_000, noise_m: float = 8.0,
             jump_rate: float = 0.002, flicker_rate: float = 0.002,
             tunnel_share: float = 0.1, duplicate_rate: float = 0.005,
             per_rule: int = 1) -> Scenario:
    """``trucks`` compliant trucks plus one offender per rule, ``minutes`` long.

    The compliant trucks carry the noise that must *not* turn into violations: GPS noise of
    ``noise_m`` (σ), multipath jumps of ~300 m, single-sample lid flickers; ``tunnel_share``
    of them pass a 4-minute blind area whose fixes are delivered a minute after it ends (as a
    backfill would be), and ``duplicate_rate`` of all fixes are delivered twice. Each rule
    gets ``per_rule`` offenders (NO_PERMIT at most as many as vehicles without a permit),
    each offending once at a random time."""
    with_permit = {p.plate for p in city.permits}
    no_permit = [v for v in city.vehicles if v.plate not in with_permit]
    n_permitted = per_rule * (len(RULES) - 1)
    fleet = SimpleFleet(city, trucks=trucks + n_permitted, start_ms=start_ms, seed=seed,
                        noise_m=noise_m, jump_rate=jump_rate, flicker_rate=flicker_rate)
    if len(fleet) < trucks + n_permitted:
        raise ValueError(f"the city has {len(fleet)} trucks with a permit valid now; "
                         f"{trucks} compliant + {n_permitted} offenders asked")
    plates = {v.device_id: v.plate for v in city.vehicles}
    offenders = dict(list(zip(fleet.device.tolist(), fleet.permit_id,
                              strict=True))[-n_permitted:])
    seconds = minutes * 60
    ticks = int(seconds / interval_s)
    lines = []
    for _ in range(ticks):
        for device, fix in fleet.step(interval_s).wire_fixes(seq=0):
            if device not in offenders:
                lines.append(encode_fix(fix, device=device).decode())
    tracks: list[TruckTrack] = []
    truth: list[dict] = []
    loaded = {"lid": 0, "lift": 0, "load": 2}
    picks = list(offenders.items())
    zones = [f for f in city.fences if f.kind == "restricted_zone"
             and (not f.windows or "00:00-24:00" in f.windows)]
    when = np.random.default_rng(seed + 7)
    jobs = [(rule, k) for rule in RULES
            for k in range(min(per_rule, len(no_permit)) if rule == "NO_PERMIT" else per_rule)]
    taken = 0
    for n, (rule, k) in enumerate(jobs):
        if rule == "NO_PERMIT":
            device, permit_id = no_permit[k].device_id, picks[k % len(picks)][1]
        else:
            device, permit_id = picks[taken]
            taken += 1
        latest = max(60.0, seconds - 900.0)
        begin = start_ms + int(when.uniform(60.0, latest) * 1000) if per_rule > 1 else \
            start_ms + 60_000
        zone = zones[k % len(zones)]
        t = TruckTrack(city, device, begin, interval_s=interval_s, seed=seed + n)
        route = t.route(permit_id)
        if rule == "OVERSPEED":
            t.drive(t.part(route, 0.05, 0.95), 75, **loaded)
            offending = lambda f: f["spd"] > 60  # noqa: E731
        elif rule == "UNAUTHORISED_DUMP":
            p = route.interpolate(0.5, normalized=True)
            t.go_to(p.x, p.y)
            t.dwell(30, **loaded)
            t.dwell(120, lid=1, lift=1, load=2)
            t.dwell(60, lid=0, lift=0, load=0)
            offending = lambda f: f["lift"] == 1  # noqa: E731
        elif rule == "UNCOVERED_LOAD":
            t.drive(t.part(route, 0.1, 0.6), 35, lid=1, lift=0, load=2)
            offending = lambda f: f["lid"] == 1  # noqa: E731
        elif rule == "RESTRICTED_ZONE":
            t.go_to(*t.centre(zone.id))
            t.dwell(180, lid=0, lift=0, load=0)
            offending = lambda f: True  # noqa: E731
        elif rule == "OFF_ROUTE":
            t.go_to(*_clear_of(route, t, city, 400))
            t.dwell(300, **loaded)
            offending = lambda f: True  # noqa: E731
        elif rule == "NO_PERMIT":
            t.drive(t.part(route, 0.1, 0.9), 35, **loaded)
            offending = lambda f: True  # noqa: E731
        else:  # SIGNAL_LOSS: silent for 8 minutes while hauling
            t.drive(t.part(route, 0.05, 0.3), 35, **loaded)
            last = t.fixes[-1]["ts"]
            t.silence(480)
            t.drive(t.part(route, 0.5, 0.8), 35, **loaded)
            offending = lambda f, last=last: f["ts"] == last  # noqa: E731
        t.fixes = [f for f in t.fixes if f["ts"] < start_ms + seconds * 1000]
        tracks.append(t)
        truth.append(_truth(rule, t, plates.get(device), offending))
    merged = [json.loads(line) for line in lines] + [f for t in tracks for f in t.fixes]
    rng = np.random.default_rng(seed + 100)
    compliant = sorted({f["dev"] for f in merged} - {t.device for t in tracks})
    tunnels = {}
    for device in compliant:
        if rng.random() < tunnel_share:
            begin = start_ms + int(rng.uniform(0.1, 0.7) * seconds * 1000)
            tunnels[device] = (begin, begin + 240_000)

    def delivered_at(f: dict) -> int:
        window = tunnels.get(f["dev"])
        if window and window[0] <= f["ts"] < window[1]:
            return window[1] + 60_000  # held by the terminal, sent as a backfill
        return f["ts"]

    merged.sort(key=lambda f: (delivered_at(f), f["ts"]))
    out = []
    for f in merged:
        line = json.dumps(f, ensure_ascii=False)
        out.append(line)
        if rng.random() < duplicate_rate:
            out.append(line)  # a terminal resending after a lost PUBACK
    return Scenario(out, truth)


def publish(scenario: Scenario, host: str, port: int, *, rate: float = 0.0,
            progress=None) -> int:
    """Publish the track to MQTT as terminals would (QoS 1, one topic per device), in
    delivery order; ``rate`` caps messages per second (0: as fast as the broker takes them).
    Returns the number of messages, all acknowledged by the broker."""
    import time

    from simulator.publish import MqttPublisher

    publisher = MqttPublisher(host, port, client_id=f"muckwatch-simulate-{time.time_ns()}")
    publisher.connect()
    t0 = time.monotonic()
    try:
        for n, line in enumerate(scenario.lines, 1):
            device = json.loads(line)["dev"]
            publisher.telemetry(device, line.encode())
            while publisher.unacked > 5_000:  # keep the client's queue bounded
                time.sleep(0.005)
            if rate > 0:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and n % 10_000 == 0:
                progress(n, len(scenario.lines))
        publisher.flush(timeout_s=120)
    finally:
        publisher.close()
    return len(scenario.lines)
