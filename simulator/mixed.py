"""The mixed scenario: a compliant fleet, scripted offences and near-misses with their ground
truth, and the ways real terminals deliver — the input of ``muckwatch accuracy``.

* The compliant fleet (``simulator.fleet``) works its permits (several per truck, a job per
  loaded leg, shifts and parking with ``daily``) and carries the noise that must *not* become
  a violation (``simulator.fleet.Noise``), each occurrence written to the truth as a
  near-miss with its ``kind``. Per truck and per two hours of the run, ``tunnel_share`` of the
  trucks lose GPS for 30–150 s (those fixes never exist) and ``blind_share`` pass a 2–8
  minute blind area (no mobile network) whose fixes are held by the terminal and delivered
  as **one batch** on the batch topic 5–60 s after it ends. ``duplicate_rate`` of the
  messages are delivered twice (a resend after a lost PUBACK).
* Offences and near-misses (``simulator.episodes``) are injected per rule, either
  ``per_rule`` of each or at a **rate** (offences per 100 truck-hours of the compliant fleet,
  drawn from a Poisson distribution), at random times over the whole run, by trucks set
  aside for them (each truck one episode at a time, a loaded one starting at its permit's
  origin and ending tipped at its destination). Every ``blind_episode_every``-th offence is
  committed inside a blind area and reaches the system only as a late batch.
* Every loaded arrival at a disposal site or dock becomes the site operator's receipt, a
  ``{"receipt": …}`` line of the truth (docs/simulator.md "Receipts"): 1–10 minutes after
  the arrival, ``receipt_missing_share`` of them never recorded, and now and then a forged
  one for a truck that never came.

Deliveries are produced in delivery order as simulated time advances, episodes are built only
shortly before they start and the truth is written as it happens, so the same stream feeds a
TRACK.jsonl file or live MQTT, for a week or for tens of thousands of trucks, without holding
the scenario in memory.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from domain.city import City
from domain.wire import TOPIC_ROOT, partition_topic
from simulator.cityregistry import episode_job
from simulator.episodes import RULES, Episode, EpisodeError, Episodes, Profile
from simulator.episodes_manifest import (
    JobLedger,
    detour_estimate_m,
    detour_estimates,
    detour_m,
    lead_s,
    route_ok,
    valid_for_s,
)
from simulator.fleet import Fleet, Noise, full_load_kg, permit_valid_until

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
    flicker_rate: float = 0.0  # share of fixes with a lid flicker (on top of noise)
    skew_share: float = 0.05
    tunnel_share: float = 0.1
    blind_share: float = 0.1
    duplicate_rate: float = 0.005
    per_rule: int = 1
    rates: dict[str, float] = field(default_factory=dict)  # rule → per 100 truck-hours
    near_misses: bool = True
    blind_episode_every: int = 4
    noise: Noise = field(default_factory=Noise)
    daily: bool = True  # shifts, night-only jobs at night, parking between shifts
    no_lift_share: float = 0.1  # terminals without a lift sensor
    weighing_share: float = 0.1  # terminals that weigh the load instead of a level
    step_s: float = 1.0  # motion sub-step
    episode_gap_s: float = 1800.0  # an episode truck rests this long between episodes
    # receipts (the site operators'): share of arrivals with none, forged ones per receipt
    receipt_missing_share: float = 0.02
    receipt_forged_share: float = 0.01


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


_UNITS = {"s": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0, "d": 1440.0}


def parse_duration(text: str) -> float:
    """``90s``, ``45m``, ``6h``, ``7d`` → minutes; a bare number is minutes."""
    text = str(text).strip().lower()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):] or "m"
    if unit not in _UNITS:
        raise ValueError(f"{text!r}: the unit must be s, m, h or d")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a number with a unit (90s, 45m, 6h, 7d)") from None
    return value * _UNITS[unit]


_WINDOW_MS = 7_200_000  # tunnels and blind areas: per truck, per two hours of the run
_MIN_ROUTE_M = 5000.0  # episodes prefer routes at least this long
_EPISODE_MS = 35 / 3.6  # an episode truck's speed on its route, m/s
_HAUL_STOPS_S = 420.0  # loading, into the site, tipping, back into the origin
_SHORT_ROUTE_M = 2000.0  # and take none shorter (half of it outlasts every debounce)
EPISODE_WEIGHING_SHARE = 0.2  # episode trucks that weigh their load, at the least
_END_MARGIN_MS = 120_000  # an offence must begin this long before the run ends


@dataclass(frozen=True)
class _Planned:
    begin_ms: int
    rule: str
    negative: bool
    k: int
    n: int  # its number in the plan (seeds the episode)


class MixedScenario:
    """Plan a scenario (trucks, when which episode happens) up front; build episodes and
    stream deliveries and truth on demand."""

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
        self._no_permit = [v.device_id for v in city.vehicles if v.plate not in with_permit]
        if not self._no_permit:
            counts["NO_PERMIT"] = 0
        self.counts = counts
        self.fleet = Fleet(city, trucks=o.trucks, start_ms=o.start_ms, seed=o.seed,
                           interval_s=o.interval_s, jitter=o.jitter, noise_m=o.noise_m,
                           jump_rate=o.jump_rate, flicker_rate=o.flicker_rate,
                           skew_share=o.skew_share, noise=o.noise, daily=o.daily,
                           no_lift_share=o.no_lift_share, weighing_share=o.weighing_share,
                           step_s=o.step_s)
        n_fleet = len(self.fleet)
        if n_fleet < o.trucks:
            raise ValueError(f"the city has {n_fleet} trucks with a permit valid now or later "
                             f"today; {o.trucks} compliant asked")
        self.truck_hours = n_fleet * o.minutes / 60
        # the episode trucks: vehicles with a permit that are not in the compliant fleet
        tz = ZoneInfo(city.timezone)
        self._tz = tz
        busy = set(self.fleet.device.tolist())
        by_plate = {v.plate: v.device_id for v in city.vehicles}
        pool: dict[str, list] = {}
        for p in city.permits:
            device = by_plate.get(p.plate)
            if device is not None and device not in busy:
                pool.setdefault(device, []).append(p)
        self._pool = pool
        self._plates = {v.device_id: v.plate for v in city.vehicles}
        scripted = sum(counts.values()) - counts["NO_PERMIT"]
        if scripted and not pool:
            raise ValueError(f"the city has {len(busy)} trucks with a permit, all of them in "
                             f"the compliant fleet: none is left for the {scripted} scripted "
                             "episodes (ask for fewer --trucks)")
        # the trucks of the small jobs (simulator.cityregistry): PERMIT_VOLUME_EXCEEDED only
        self._small = {device for device, permits in pool.items()
                       if any(episode_job(p.declared_volume_m3) for p in permits)}
        vehicles = {v.device_id: v for v in city.vehicles}
        profiles = np.random.default_rng(o.seed + 300)
        self._profile = {}
        for device in [*pool, *self._no_permit]:
            has_lift = profiles.random() >= o.no_lift_share
            # OVERLOAD needs weighing terminals among the episode trucks
            weighs = profiles.random() < max(o.weighing_share, EPISODE_WEIGHING_SHARE) \
                and device not in self._small  # a small job's loads: by the body volume
            v = vehicles[device]
            rated = v.rated_load_kg
            full = float(full_load_kg(profiles.uniform(24e3, 32e3),
                                      np.nan if rated is None else rated))
            self._profile[device] = Profile(has_lift, weighs, full, rated, v.volume_m3)
        seconds = o.minutes * 60
        latest = max(60.0, seconds - 900.0)
        plan = []
        for rule in RULES:
            for k in range(counts[rule]):
                for negative in ((False, True) if o.near_misses else (False,)):
                    begin = o.start_ms + int(rng.uniform(60.0, latest) * 1000)
                    # TRIP_NOT_CLOSED: the track begins 2 h before its moment
                    plan.append((begin - int(lead_s(rule, negative) * 1000), rule, negative, k))
        plan.sort()
        self._plan = [_Planned(b, r, neg, k, n) for n, (b, r, neg, k) in enumerate(plan)]
        self.planned = len(self._plan)
        self._truth: list[dict] | None = None
        self.written: dict[str, int] = {}

    @property
    def end_ms(self) -> int:
        return self.options.start_ms + int(self.options.minutes * 60_000)

    def summary(self) -> dict:
        """The truth file's first line: what the compliant fleet did, for per-hour rates."""
        o = self.options
        return {"summary": {
            "compliant_truck_hours": round(self.truck_hours, 3),
            "compliant_trucks": len(self.fleet), "start_ms": o.start_ms, "end_ms": self.end_ms,
            "interval_s": o.interval_s, "seed": o.seed, "days": round(o.minutes / 1440, 4)}}

    # --- episodes ---------------------------------------------------------------------------

    def _episodes(self) -> Iterator[tuple[Episode, bool]]:
        """The planned episodes in start order, each built on a truck free at that time with a
        permit valid for the whole of it; an episode no truck can take is left out."""
        o = self.options
        builder = Episodes(self.city, o.interval_s)
        ledger = JobLedger(builder)
        free_at: dict[str, int] = {}
        seq: dict[str, int] = {}
        queue = [(p.begin_ms, p.n, p, 0) for p in self._plan]
        heapq.heapify(queue)
        n_offence = 0
        routes = [p.id for p in self.fleet.permits
                  if _metric_route(self.city, p).length >= _MIN_ROUTE_M] \
            or [p.id for p in self.fleet.permits] or [p.id for p in self.city.permits]
        while queue:
            begin, _, plan, tries = heapq.heappop(queue)
            if begin >= self.end_ms - 60_000:
                continue
            pick = self._pick(plan, begin, free_at, routes, ledger)
            if pick is None:
                if tries < 12:  # try again in 10 minutes
                    heapq.heappush(queue, (begin + 600_000, plan.n, plan, tries + 1))
                continue
            device, permit_id, avoid, volume, begin = pick
            make = builder.near_miss if plan.negative else builder.offence
            try:
                episode = make(plan.rule, device, permit_id, begin, o.seed * 1000 + plan.n,
                               plan.k, profile=self._profile[device], avoid=avoid, plan=volume)
            except EpisodeError:
                continue
            episode.track.fixes = [f for f in episode.track.fixes if f["ts"] < self.end_ms]
            if not episode.track.fixes:
                continue
            last = episode.track.fixes[-1]["ts"]
            start = episode.truth["start_ts"]
            # an offence the run ends too soon after to be seen (a debounce still running, a
            # silence with no fix after it) is left out, track and all
            late = start > self.end_ms - _END_MARGIN_MS \
                or (plan.rule == "SIGNAL_LOSS" and last <= start) \
                or any(x["start_ts"] > self.end_ms - _END_MARGIN_MS for x in episode.extra)
            if start >= self.end_ms or (late and not plan.negative):
                # this truck's route is too long to show it before the run ends: another
                # truck (not this one at this moment), rather than leave the offence out
                if tries < 12:
                    free_at[device] = max(free_at.get(device, 0), begin + 1)
                    heapq.heappush(queue, (begin, plan.n, plan, tries + 1))
                continue
            # the loads the rules count: a departure they see confirmed (30 s outside)
            counted = [d for d in episode.loads if d + 40_000 <= last]
            if counted and episode.job:
                ledger.add(episode.job, len(counted) * float(self._profile[device].volume_m3
                                                             or 0.0))
            if episode.truth["end_ts"] > last:
                episode.truth["end_ts"] = last  # cut off
            for x in episode.extra:
                x["end_ts"] = min(x["end_ts"], last)
            episode.arrivals = [a for a in episode.arrivals if a[1] < self.end_ms]
            free_at[device] = episode.track.fixes[-1]["ts"] + int(o.episode_gap_s * 1000)
            for f in episode.track.fixes:  # the terminal's sequence numbers go on counting
                f["seq"] = seq.get(device, 0)
                seq[device] = f["seq"] + 1
            blind = False
            if not plan.negative:
                blind = (o.blind_episode_every > 0 and plan.rule != "SIGNAL_LOSS"
                         and n_offence % o.blind_episode_every == 1)
                n_offence += 1
            if blind:
                episode.truth["blind_area"] = True
            yield episode, blind

    def _pick(self, plan: _Planned, begin: int, free_at: dict[str, int], routes: list[str],
              ledger: JobLedger):
        builder = ledger.episodes
        """(device, permit id, the truck's other routes valid then, the volume plan) for an
        episode: a truck free then, with a permit valid long enough on a route whose leg
        ends well within 2 hours; PERMIT_VOLUME_EXCEEDED on a small job's truck (only they),
        OVERLOAD on a weighing one with a rated load."""
        if plan.rule == "NO_PERMIT":
            for device in self._no_permit:
                if free_at.get(device, 0) <= begin:
                    return device, routes[(2 * plan.k + plan.negative) % len(routes)], (), \
                        None, begin
            return None
        if plan.rule == "WRONG_DESTINATION":
            return self._detour_pick(plan, begin, free_at, builder)
        volume_rule = plan.rule == "PERMIT_VOLUME_EXCEEDED"
        best = None
        for device, permits in self._pool.items():
            if free_at.get(device, 0) > begin or (device in self._small) != volume_rule:
                continue
            profile = self._profile[device]
            if plan.rule == "OVERLOAD" and not (profile.weighs and profile.rated_kg):
                continue
            hours = valid_for_s(plan.rule) * 1000
            valid = [p for p in permits
                     if (u := permit_valid_until(p, begin, self._tz)) is not None
                     and u >= begin + hours and route_ok(_metric_route(self.city, p).length)]
            # a route long enough that each offence lasts well past its rule's debounce
            valid = [p for p in valid if _metric_route(self.city, p).length >= _MIN_ROUTE_M] \
                or [p for p in valid if _metric_route(self.city, p).length >= _SHORT_ROUTE_M]
            if not valid:
                continue
            if volume_rule:  # the truck and job with the fewest loads to haul
                for p in valid:
                    until = permit_valid_until(p, begin, self._tz) or 0.0
                    x = ledger.plan(device, p, begin, profile.volume_m3, plan.negative)
                    if x is None:
                        continue
                    # an offence's loads within the volume come first: the load over it
                    # falls near the planned time (before the run's start, in a short run)
                    length = _metric_route(self.city, p).length
                    lead = 0 if plan.negative else int((x.hauls - 1) * (
                        2 * length / _EPISODE_MS + _HAUL_STOPS_S) * 1000)
                    key = (x.hauls, length)
                    if (best is None or key < best[4]) and free_at.get(device, 0) <= \
                            begin - lead and until >= begin + 1000 * valid_for_s(plan.rule, x):
                        best = (device, p.id, (), x, key, begin - lead)
                continue
            chosen = valid[(plan.n + len(free_at)) % len(valid)]
            avoid = [(_metric_route(self.city, p), p.corridor_m)
                     for p in permits if p is not chosen
                     and permit_valid_until(p, begin, self._tz) is not None]
            return device, chosen.id, avoid, None, begin
        return (*best[:4], best[5]) if best else None

    def _detour_pick(self, plan: _Planned, begin: int, free_at: dict[str, int], builder):
        """WRONG_DESTINATION: of the free trucks' permits, the one with the shortest way to
        a site it does not name (short episodes, short runs included)."""
        eligible = []
        for device, permits in self._pool.items():
            if free_at.get(device, 0) > begin or device in self._small:
                continue
            for p in permits:
                u = permit_valid_until(p, begin, self._tz)
                if u is not None and u >= begin + valid_for_s(plan.rule) * 1000 and \
                        route_ok(_metric_route(self.city, p).length):
                    eligible.append((device, p))
        detour_estimates(builder, [p for _, p in eligible])  # all at once: a big city
        options = [(detour_estimate_m(builder, p), device, p.id, p) for device, p in eligible]
        options.sort(key=lambda o: o[:3])
        for _, device, pid, p in options[:8]:
            if detour_m(builder, p, begin) < float("inf"):
                return device, pid, (), None, begin
        return None

    @property
    def truth(self) -> list[dict]:
        """The episodes' truth (offences and their near-misses, and the other offences they
        commit on the way; not the fleet's noise)."""
        if self._truth is None:
            self._truth = [row for e, _ in self._episodes() for row in (e.truth, *e.extra)]
        return self._truth

    @property
    def episodes(self) -> list[tuple[Episode, bool]]:
        return list(self._episodes())

    def _scripted(self, episode: Episode, blind: bool) -> list[Delivery]:
        """An episode's fixes, each sent when it is made — or, for an offence inside a blind
        area, held from the track's start until 30 s after the offence (at most its first
        4 minutes) and sent as one batch a minute later."""
        fixes = [{k: v for k, v in f.items() if k != "dev"} for f in episode.track.fixes]
        device = episode.track.device
        out = []
        if blind:
            t = episode.truth
            until = min(t["end_ts"], t["start_ts"] + 240_000) + 30_000
            since = episode.hold_from if episode.hold_from is not None else fixes[0]["ts"]
            held = [f for f in fixes if since <= f["ts"] <= until]
            fixes = [f for f in fixes if not since <= f["ts"] <= until]
            if held:
                out.append(Delivery(min(until + 60_000, self.end_ms), device, held))
        out += [Delivery(f["ts"], device, f) for f in fixes]
        return out

    def scripted_deliveries(self) -> list[Delivery]:
        return [d for e, blind in self._episodes() for d in self._scripted(e, blind)]

    # --- the stream -------------------------------------------------------------------------

    def _windows(self, w: int, truth: Callable[[dict], None] | None) -> None:
        """Tunnels and blind areas of every truck for the ``w``-th two hours of the run."""
        o, fleet = self.options, self.fleet
        plan = np.random.default_rng([o.seed + 100, w])
        a0 = o.start_ms + w * _WINDOW_MS
        span = min(_WINDOW_MS, self.end_ms - a0)
        for i in range(len(fleet)):
            self._tunnel[i] = -1
            self._blind[i] = -1
            skew = int(fleet.skew_ms[i])
            if plan.random() < o.tunnel_share:
                a = a0 + int(plan.uniform(0.05, 0.9) * span)
                self._tunnel[i] = a, a + int(plan.uniform(30, 150) * 1000)
                if truth is not None:
                    truth({"rule": "SIGNAL_LOSS", "device": fleet.device[i],
                           "plate": fleet.plate[i], "start_ts": int(self._tunnel[i, 0]) + skew,
                           "end_ts": int(self._tunnel[i, 1]) + skew,
                           "what": "no GPS for 30–150 s (a tunnel)", "negative": True,
                           "kind": "tunnel"})
            if plan.random() < o.blind_share:
                a = a0 + int(plan.uniform(0.05, 0.8) * span)
                b = a + int(plan.uniform(120, 480) * 1000)
                # sent 5–60 s after it ends; by the end of the scenario at the latest
                self._blind[i] = a, b, min(b + int(plan.uniform(5, 60) * 1000), self.end_ms)
                if truth is not None:
                    truth({"rule": "SIGNAL_LOSS", "device": fleet.device[i],
                           "plate": fleet.plate[i], "start_ts": a + skew, "end_ts": b + skew,
                           "what": "a 2–8 min blind area, its fixes sent as one late batch",
                           "negative": True, "kind": "blind_area"})

    def deliveries(self, step_s: float = 1.0,
                   truth: Callable[[dict], None] | None = None) -> Iterator[Delivery]:
        """Every message of the scenario, in delivery order; ``truth`` (if given) receives
        every truth row as it happens (episodes when they are built, noise as it occurs)."""
        o, fleet = self.options, self.fleet
        n = len(fleet)
        self._tunnel = np.full((n, 2), -1, np.int64)
        self._blind = np.full((n, 3), -1, np.int64)
        window = 0
        self._windows(window, truth)
        queue: list[tuple[int, int, Delivery]] = []
        counter = itertools.count()
        episodes = self._episodes()
        upcoming = next(episodes, None)
        built: list[dict] = []  # the episodes' truth, kept for ``truth`` (small)
        held: dict[tuple[int, int], list[dict]] = {}  # (truck, blind start) → fixes
        duplicate = self._dup_rng = np.random.default_rng(o.seed + 200)
        self._receipt_rng = np.random.default_rng(o.seed + 400)
        fleet.events.clear()
        fleet.arrivals.clear()
        while fleet.now_ms < self.end_ms:
            # episodes are built two minutes before they start
            while upcoming is not None and upcoming[0].track.fixes[0]["ts"] \
                    <= fleet.now_ms + 120_000:
                built += [upcoming[0].truth, *upcoming[0].extra]
                if truth is not None:
                    truth(upcoming[0].truth)
                    for row in upcoming[0].extra:
                        truth(row)
                    track = upcoming[0].track
                    for site, ts, m3 in upcoming[0].arrivals:
                        self._receipt(truth, track.device, site, ts, ts, m3)
                for d in self._scripted(*upcoming):
                    if d.at_ms < fleet.now_ms:  # a leg begun earlier: its buffer goes now
                        d = Delivery(fleet.now_ms, d.device, d.payload)
                    heapq.heappush(queue, (d.at_ms, next(counter), d))
                upcoming = next(episodes, None)
            if fleet.now_ms >= o.start_ms + (window + 1) * _WINDOW_MS:
                window += 1
                self._windows(window, truth)
            tick = fleet.advance(min(step_s, (self.end_ms - fleet.now_ms) / 1000))
            if truth is not None:
                for row in fleet.events:
                    truth(row)
                for i, site, true_ms in fleet.arrivals:
                    m3 = fleet.full_kg[i] / 1800.0 if fleet.weighs[i] else fleet.volume_m3[i]
                    self._receipt(truth, fleet.device[i], site, true_ms,
                                  true_ms + int(fleet.skew_ms[i]),
                                  None if np.isnan(m3) else round(float(m3), 1))
            fleet.events.clear()
            fleet.arrivals.clear()
            true_ms = tick.ts - fleet.skew_ms[tick.truck]
            truck = tick.truck
            tunnel = self._tunnel[truck]
            keep = ~((true_ms >= tunnel[:, 0]) & (true_ms < tunnel[:, 1])) | (tick.phase == 5)
            blind = self._blind[truck]
            in_blind = (true_ms >= blind[:, 0]) & (true_ms < blind[:, 1])
            fixes = tick.wire_fixes()
            for r in np.flatnonzero(keep).tolist():
                device, fix = fixes[r]
                if in_blind[r]:
                    i = int(truck[r])
                    key = (i, int(blind[r, 0]))
                    if key not in held:
                        held[key] = []
                        heapq.heappush(queue, (int(blind[r, 2]), next(counter),
                                               Delivery(int(blind[r, 2]), device, held[key])))
                    held[key].append(fix)
                else:
                    heapq.heappush(queue, (int(true_ms[r]), next(counter),
                                           Delivery(int(true_ms[r]), device, fix)))
            while queue and queue[0][0] <= fleet.now_ms:
                d = heapq.heappop(queue)[2]
                if d.is_batch:
                    sent = next((k for k, v in held.items() if v is d.payload), None)
                    if sent is not None:
                        del held[sent]
                yield from _split(d)
                if duplicate.random() < o.duplicate_rate:
                    yield from _split(d)
        fleet.close()
        if truth is not None:
            for row in fleet.events:
                truth(row)
        fleet.events.clear()
        while queue:  # everything left falls due at the end
            yield from _split(heapq.heappop(queue)[2])
        if self._truth is None and upcoming is None:
            self._truth = built

    # --- the site operators' receipts ----------------------------------------------------

    def _receipt(self, truth: Callable[[dict], None], device: str, site: str, true_ms: int,
                 device_ms: int, m3: float | None) -> None:
        """What the operator of ``site`` records for a load that arrived at ``true_ms``
        (``device_ms`` on the truck's clock): a receipt 1–10 minutes later, with the load's
        volume ± 5 % (most of the time); or none (``missing``: the operator forgot); and
        now and then a forged receipt for a truck that never came (``forged``)."""
        o, rng = self.options, self._receipt_rng
        plate = self._plates.get(device)
        if plate is None:
            return
        row: dict = {"site": site, "plate": plate, "device": device, "arrived_ts": device_ms}
        if rng.random() < o.receipt_missing_share:
            truth({"receipt": {**row, "missing": True}})
        else:
            at = true_ms + int(rng.uniform(60, 600) * 1000)
            row |= {"received_at": self._iso(at), "received_ms": at}
            if m3 is not None and rng.random() < 0.8:
                row["volume_m3"] = round(m3 * float(rng.uniform(0.95, 1.05)), 1)
            truth({"receipt": row})
        if rng.random() < o.receipt_forged_share:
            self._forged(truth, site, true_ms)

    def _forged(self, truth: Callable[[dict], None], site: str, now_ms: int) -> None:
        """A receipt at ``site`` for a truck of the fleet parked elsewhere for hours (between
        its shifts): an arrival that never happened."""
        from simulator.fleet import PARKED

        fleet, rng = self.fleet, self._receipt_rng
        idle = np.flatnonzero((fleet.phase == PARKED) & (fleet.timer > 3 * 3600))
        if not len(idle):
            return
        i = int(idle[int(rng.integers(len(idle)))])
        at = now_ms + int(rng.uniform(60, 1800) * 1000)
        m3 = fleet.volume_m3[i]
        row = {"site": site, "plate": fleet.plate[i], "device": fleet.device[i],
               "arrived_ts": None, "received_at": self._iso(at), "received_ms": at,
               "forged": True}
        if not np.isnan(m3):
            row["volume_m3"] = round(float(m3), 1)
        truth({"receipt": row})

    def _iso(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, self._tz).isoformat(timespec="seconds")

    def write(self, track_path, truth_path=None, progress=None) -> dict[str, int]:
        """TRACK.jsonl (delivery order) and, if given, truth.jsonl (a summary line, then a row
        per offence and near-miss as they happen); ``progress`` (a tqdm bar over simulated
        seconds) advances as it goes. Returns counts for a summary."""
        summary = {"messages": 0, "fixes": 0, "batches": 0}
        start, total_s, shown = self.options.start_ms, int(self.options.minutes * 60), 0
        with open(track_path, "wb") as f, TruthWriter(truth_path, self.summary()) as truth:
            for d in self.deliveries(self.options.step_s, truth=truth):
                f.write(d.line() + b"\n")
                summary["messages"] += 1
                summary["fixes"] += d.fixes
                summary["batches"] += d.is_batch
                if progress is not None and (now_s := min(total_s, (d.at_ms - start) // 1000)) \
                        > shown:
                    progress.update(now_s - shown)
                    shown = now_s
        self.written = truth.counts
        return summary

    def write_truth(self, truth_path) -> None:
        """The episodes' truth alone (no noise: that needs the stream), with the summary."""
        with TruthWriter(truth_path, self.summary()) as truth:
            for row in self.truth:
                truth(row)


class TruthWriter:
    """Writes truth rows as they come (a summary line first); counts offences, near-misses
    and near-misses per kind. ``path`` None: counts only."""

    def __init__(self, path, summary: dict) -> None:
        self.path = path
        self.summary = summary
        self.counts: dict[str, int] = {"offences": 0, "near_misses": 0, "receipts": 0,
                                       "receipts_missing": 0, "receipts_forged": 0}
        self._f: BinaryIO | None = None

    def __enter__(self) -> TruthWriter:
        if self.path is not None:
            self._f = open(self.path, "wb")
            self._f.write(orjson.dumps(self.summary) + b"\n")
        return self

    def __call__(self, row: dict) -> None:
        if "receipt" in row:
            r = row["receipt"]
            key = "receipts_missing" if r.get("missing") else \
                "receipts_forged" if r.get("forged") else "receipts"
        else:
            key = "near_misses" if row.get("negative") else "offences"
        self.counts[key] += 1
        if self._f is not None:
            self._f.write(orjson.dumps(row) + b"\n")

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()


_ROUTES: dict[tuple[int, str], object] = {}


def _metric_route(city: City, permit):
    key = (id(city), permit.id)
    if key not in _ROUTES:
        from simulator.scenarios import TruckTrack

        _ROUTES[key] = TruckTrack(city, "-", 0).route(permit.id)
    return _ROUTES[key]
