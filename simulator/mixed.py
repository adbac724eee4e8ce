"""The mixed scenario: a compliant fleet, scripted offences and near-misses with their ground
truth, and the ways real terminals deliver — the input of ``muckwatch accuracy``.

* The compliant fleet (``simulator.fleet``) carries the noise that must *not* become a
  violation: GPS noise, multipath jumps, lid flickers, junction stops, jittered reports,
  skewed clocks. ``tunnel_share`` of its trucks lose GPS for 30–150 s (those fixes never
  exist); ``blind_share`` pass a 2–8 minute blind area (no mobile network) whose fixes are
  held by the terminal and delivered as **one batch** on the batch topic 5–60 s after it ends.
  ``duplicate_rate`` of the messages are delivered twice (a resend after a lost PUBACK).
* Offences and near-misses (``simulator.episodes``) are injected per rule, either
  ``per_rule`` of each or at a **rate** (offences per 100 truck-hours of the compliant fleet,
  drawn from a Poisson distribution), each on its own truck at a random time. Every
  ``blind_episode_every``-th offence is committed inside a blind area and reaches the system
  only as a late batch.

Deliveries are produced in delivery order as simulated time advances, so the same stream
feeds a TRACK.jsonl file or live MQTT, for fleets of tens of thousands of trucks, without
holding the scenario in memory.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

from ingest.partitions import partition_topic
from ingest.wire import TOPIC_ROOT
from muckwatch.city import City
from simulator.episodes import RULES, Episode, Episodes
from simulator.fleet import Fleet

__all__ = ["RULES", "Delivery", "MixedOptions", "MixedScenario"]


@dataclass(frozen=True)
class MixedOptions:
    trucks: int = 100  # compliant trucks
    minutes: float = 30.0
    interval_s: float = 5.0
    jitter: float = 0.1
    seed: int = 1
    start_ms: int = 1_795_053_600_000  # 2026-11-19 10:00 +08
    noise_m: float = 8.0
    jump_rate: float = 0.002
    flicker_rate: float = 0.002
    skew_share: float = 0.05
    tunnel_share: float = 0.1
    blind_share: float = 0.1
    duplicate_rate: float = 0.005
    per_rule: int = 1
    rates: dict[str, float] = field(default_factory=dict)  # rule → per 100 truck-hours
    near_misses: bool = True
    blind_episode_every: int = 4


MAX_BATCH_FIXES = 200  # a long blind-area backlog goes as several messages (≈ 26 KB each)


def _split(d: Delivery) -> Iterator[Delivery]:
    """A terminal sends a long backlog in pieces: one message must stay well under the
    ingest's 64 KiB payload limit (8 minutes at 1 Hz would be ≈ 62 KB in one array)."""
    if not d.is_batch or len(d.payload) <= MAX_BATCH_FIXES:
        yield d
        return
    for k in range(0, len(d.payload), MAX_BATCH_FIXES):
        yield Delivery(d.at_ms, d.device, d.payload[k:k + MAX_BATCH_FIXES])


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a terminal sends it: a fix, or a blind-area batch of fixes."""

    at_ms: int  # true time of sending
    device: str
    payload: dict | list[dict]

    @property
    def is_batch(self) -> bool:
        return isinstance(self.payload, list)

    @property
    def fixes(self) -> int:
        return len(self.payload) if isinstance(self.payload, list) else 1

    def topic(self, root: str = TOPIC_ROOT, partitions: int = 0) -> str:
        """The device's topic; with a partition level when ``partitions`` > 0."""
        suffix = "telemetry/batch" if self.is_batch else "telemetry"
        return partition_topic(root, self.device, partitions, suffix)

    def body(self) -> bytes:
        """The MQTT payload."""
        return orjson.dumps(self.payload)

    def line(self) -> bytes:
        """The TRACK.jsonl line: the fix (or the array of fixes) with ``dev`` in each."""
        if isinstance(self.payload, list):
            return orjson.dumps([{**f, "dev": self.device} for f in self.payload])
        return orjson.dumps({**self.payload, "dev": self.device})


class MixedScenario:
    """Plan a scenario (trucks, episodes, truth) up front; stream its deliveries on demand."""

    def __init__(self, city: City, options: MixedOptions) -> None:
        self.options = o = options
        self.city = city
        rng = np.random.default_rng(o.seed + 7)
        counts = {}
        truck_hours = o.trucks * o.minutes / 60
        for rule in RULES:
            rate = o.rates.get(rule)
            counts[rule] = int(rng.poisson(rate * truck_hours / 100)) if rate is not None \
                else o.per_rule
        with_permit = {p.plate for p in city.permits}
        no_permit = [v.device_id for v in city.vehicles if v.plate not in with_permit]
        per_kind = 2 if o.near_misses else 1
        if counts["NO_PERMIT"] * per_kind > len(no_permit):
            counts["NO_PERMIT"] = len(no_permit) // per_kind
        self.counts = counts
        scripted = (sum(counts.values()) - counts["NO_PERMIT"]) * per_kind
        self.fleet = Fleet(city, trucks=o.trucks + scripted, start_ms=o.start_ms, seed=o.seed,
                           interval_s=o.interval_s, jitter=o.jitter, noise_m=o.noise_m,
                           jump_rate=o.jump_rate, flicker_rate=o.flicker_rate,
                           skew_share=o.skew_share)
        if len(self.fleet) < o.trucks + scripted:
            raise ValueError(f"the city has {len(self.fleet)} trucks with a permit valid now; "
                             f"{o.trucks} compliant + {scripted} scripted asked")
        n_fleet = len(self.fleet)
        # scripted trucks are the last ones of the fleet; their fleet reports are dropped
        pool = list(zip(self.fleet.device[n_fleet - scripted:].tolist(),
                        self.fleet.permit_id[n_fleet - scripted:], strict=True))
        self._silenced = np.zeros(n_fleet, bool)
        self._silenced[n_fleet - scripted:] = True
        seconds = o.minutes * 60
        episodes = Episodes(city, o.interval_s)
        self.episodes: list[tuple[Episode, bool]] = []  # (episode, inside a blind area)
        latest = max(60.0, seconds - 900.0)
        n_offence = 0
        for rule in RULES:
            for k in range(counts[rule]):
                for negative in ((False, True) if o.near_misses else (False,)):
                    if rule == "NO_PERMIT":
                        device = no_permit.pop(0)  # drives some compliant truck's route
                        permit_id = self.fleet.permit_id[(2 * k + negative) % o.trucks]
                    else:
                        device, permit_id = pool.pop(0)
                    begin = o.start_ms + int(rng.uniform(60.0, latest) * 1000)
                    seed = o.seed * 1000 + len(self.episodes)
                    make = episodes.near_miss if negative else episodes.offence
                    episode = make(rule, device, permit_id, begin, seed, k)
                    episode.track.fixes = [f for f in episode.track.fixes
                                           if f["ts"] < o.start_ms + seconds * 1000]
                    if episode.track.fixes and \
                            episode.truth["end_ts"] > episode.track.fixes[-1]["ts"]:
                        episode.truth["end_ts"] = episode.track.fixes[-1]["ts"]  # cut off
                    blind = False
                    if not negative:
                        blind = (o.blind_episode_every > 0 and rule != "SIGNAL_LOSS"
                                 and n_offence % o.blind_episode_every == 1)
                        n_offence += 1
                    if blind:
                        episode.truth["blind_area"] = True
                    self.episodes.append((episode, blind))
        self.truth = [e.truth for e, _ in self.episodes
                      if e.track.fixes and e.truth["start_ts"] < o.start_ms + seconds * 1000]

        # the compliant fleet's tunnels (lost fixes) and blind areas (held, sent as a batch)
        plan = np.random.default_rng(o.seed + 100)
        n = n_fleet
        self._tunnel = np.full((n, 2), -1, np.int64)
        self._blind = np.full((n, 3), -1, np.int64)  # from, to, delivered at
        for i in range(n):
            if self._silenced[i]:
                continue
            if plan.random() < o.tunnel_share:
                a = o.start_ms + int(plan.uniform(0.05, 0.9) * seconds * 1000)
                self._tunnel[i] = a, a + int(plan.uniform(30, 150) * 1000)
            if plan.random() < o.blind_share:
                a = o.start_ms + int(plan.uniform(0.05, 0.8) * seconds * 1000)
                b = a + int(plan.uniform(120, 480) * 1000)
                # sent 5–60 s after it ends; by the end of the scenario at the latest
                self._blind[i] = a, b, min(b + int(plan.uniform(5, 60) * 1000), self.end_ms)
        self._dup_rng = np.random.default_rng(o.seed + 200)

    @property
    def end_ms(self) -> int:
        return self.options.start_ms + int(self.options.minutes * 60_000)

    def scripted_deliveries(self) -> list[Delivery]:
        """The episodes' fixes, each sent when it is made — or, for an offence inside a blind
        area, held from the track's start until 30 s after the offence (at most its first
        4 minutes) and sent as one batch a minute later."""
        out = []
        for episode, blind in self.episodes:
            fixes = [{k: v for k, v in f.items() if k != "dev"} for f in episode.track.fixes]
            device = episode.track.device
            if blind:
                t = episode.truth
                until = min(t["end_ts"], t["start_ts"] + 240_000) + 30_000
                held = [f for f in fixes if f["ts"] <= until]
                fixes = [f for f in fixes if f["ts"] > until]
                if held:
                    out.append(Delivery(min(until + 60_000, self.end_ms), device, held))
            out += [Delivery(f["ts"], device, f) for f in fixes]
        return out

    def deliveries(self, step_s: float = 1.0) -> Iterator[Delivery]:
        """Every message of the scenario, in delivery order."""
        o, fleet = self.options, self.fleet
        queue: list[tuple[int, int, Delivery]] = []
        counter = itertools.count()
        for d in self.scripted_deliveries():
            heapq.heappush(queue, (d.at_ms, next(counter), d))
        held: dict[int, list[dict]] = {}
        duplicate = self._dup_rng
        while fleet.now_ms < self.end_ms:
            tick = fleet.advance(min(step_s, (self.end_ms - fleet.now_ms) / 1000))
            true_ms = tick.ts - fleet.skew_ms[tick.truck]
            truck = tick.truck
            keep = ~self._silenced[truck]
            tunnel = self._tunnel[truck]
            keep &= ~((true_ms >= tunnel[:, 0]) & (true_ms < tunnel[:, 1]))
            blind = self._blind[truck]
            in_blind = (true_ms >= blind[:, 0]) & (true_ms < blind[:, 1])
            fixes = tick.wire_fixes()
            for row in np.flatnonzero(keep).tolist():
                device, fix = fixes[row]
                if in_blind[row]:
                    i = int(truck[row])
                    if i not in held:
                        held[i] = []
                        heapq.heappush(queue, (int(blind[row, 2]), next(counter),
                                               Delivery(int(blind[row, 2]), device, held[i])))
                    held[i].append(fix)
                else:
                    heapq.heappush(queue, (int(true_ms[row]), next(counter),
                                           Delivery(int(true_ms[row]), device, fix)))
            while queue and queue[0][0] <= fleet.now_ms:
                d = heapq.heappop(queue)[2]
                yield from _split(d)
                if duplicate.random() < o.duplicate_rate:
                    yield from _split(d)
        while queue:  # everything left falls due at the end
            yield from _split(heapq.heappop(queue)[2])

    def write(self, track_path, truth_path=None, progress=None) -> dict[str, int]:
        """TRACK.jsonl (delivery order) and, if given, truth.jsonl; ``progress`` (a tqdm bar
        over simulated seconds) advances as it goes. Returns counts for a summary."""
        summary = {"messages": 0, "fixes": 0, "batches": 0}
        start, total_s, shown = self.options.start_ms, int(self.options.minutes * 60), 0
        with open(track_path, "wb") as f:
            for d in self.deliveries():
                f.write(d.line() + b"\n")
                summary["messages"] += 1
                summary["fixes"] += d.fixes
                summary["batches"] += d.is_batch
                if progress is not None and (now_s := min(total_s, (d.at_ms - start) // 1000)) \
                        > shown:
                    progress.update(now_s - shown)
                    shown = now_s
        if truth_path is not None:
            self.write_truth(truth_path)
        return summary

    def write_truth(self, truth_path) -> None:
        with open(truth_path, "wb") as f:
            f.writelines(orjson.dumps(t) + b"\n" for t in self.truth)
