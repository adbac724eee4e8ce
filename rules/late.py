"""Late data against the live state: what a blind-area backfill, evaluated on a copy of the
state saved where the gap began, changes about the violations the live stream already
reported — merged, re-dated to their real start, closed at the data's end, or retracted
(docs/rules.md, late data). The engine runs the late fixes; this decides what they mean."""

from __future__ import annotations

import numpy as np

from domain.events import Phase
from rules.chain import BY_KEY
from rules.emit import SIGNAL_LOSS, EventMaker
from rules.machine import CLOSING, IDLE, OPEN, OPEN_PHASES, PAUSED, PENDING
from rules.state import VehicleState

_NEVER = -(2**62)


def reconcile_late(device: str, live: VehicleState, temp: VehicleState, gap_end: int | None,
                   last_ts: int, last_lon: float, last_lat: float, emit: EventMaker) -> list:
    """The machines still open (or closing) when the late data ends, against ``live``: the
    live stream may have closed or re-opened the same violation after the gap."""
    events: list = []
    for key, m in temp.machines.items():
        if m.phase not in OPEN_PHASES:  # neither OPEN nor CLOSING at the end of late data
            continue
        rule = BY_KEY[key].name
        live_m = live.machine(key)
        closed_live = next((c for c in live.recent_closed
                            if c[0] == rule and c[1] == gap_end), None)
        if gap_end is not None and closed_live is not None:
            # the live stream saw the end of this violation after the blind area
            _, live_start, live_end, end_lon, end_lat, live_peak, lon0, lat0 = \
                closed_live
            events.append(emit.violation(device, rule, Phase.RETRACTED, live_start,
                                         live_end, lon0, lat0, None, None, live_peak,
                                         m.context, True))
            events.append(emit.violation(device, rule, Phase.CLOSED, m.start_ts, live_end,
                                         m.start_lon, m.start_lat, end_lon, end_lat,
                                         _nanmax_pair(m.peak, live_peak), m.context, True))
            continue
        if gap_end is not None and live_m.phase in OPEN_PHASES and \
                live_m.start_ts == gap_end:
            # the live stream re-opened this violation when the truck reappeared:
            # it is the same one, which really started inside the blind area
            events.append(emit.violation(device, rule, Phase.RETRACTED, live_m.start_ts,
                                         None, live_m.start_lon, live_m.start_lat, None,
                                         None, live_m.peak, live_m.context, True))
            live_m.start_ts, live_m.start_lon, live_m.start_lat = \
                m.start_ts, m.start_lon, m.start_lat
            live_m.peak = _nanmax_pair(live_m.peak, m.peak)
            continue
        if live_m.phase in OPEN_PHASES and live_m.start_ts == m.start_ts:
            continue  # merged with the live violation by earlier late fixes
        if gap_end is not None and live_m.phase in OPEN_PHASES and \
                live_m.start_ts < gap_end and m.start_ts > live_m.start_ts:
            # the live stream opened a violation whose run began before the gap; in order
            # the late data ended that run inside the gap (closing it, or — a run still
            # pending at the gap — abandoning it: then the live one never happened) and
            # began this one, which the live fixes after the gap continue
            if not any(c[0] == rule and c[1] == live_m.start_ts for c in temp.recent_closed):
                events.append(emit.violation(device, rule, Phase.RETRACTED, live_m.start_ts,
                                             None, live_m.start_lon, live_m.start_lat, None,
                                             None, live_m.peak, live_m.context, True))
            live_m.start_ts, live_m.start_lon, live_m.start_lat = \
                m.start_ts, m.start_lon, m.start_lat
            live_m.peak = _nanmax_pair(live_m.peak, m.peak)
            live_m.emitted_peak = m.emitted_peak
            live_m.context = m.context
            continue
        if gap_end is not None and live_m.phase in (PENDING, PAUSED) and m.phase == 2 and \
                live_m.start_ts <= gap_end:
            # the live stream's pending run (not yet debounced, nothing emitted) — begun
            # when the truck reappeared, or bridged over the gap from a fix before it —
            # continues this violation: it stays open, from its real start. A run the
            # live stream had paused (normal fixes since) is this violation closing: those
            # fixes count towards its close, as they would have in order
            live_m.phase = CLOSING if live_m.phase == PAUSED else OPEN
            live_m.start_ts, live_m.start_lon, live_m.start_lat = \
                m.start_ts, m.start_lon, m.start_lat
            live_m.peak = _nanmax_pair(live_m.peak, m.peak)
            live_m.emitted_peak = m.emitted_peak
            live_m.context = m.context
            continue
        if gap_end is not None and live_m.phase == IDLE and live_m.start_ts == gap_end and \
                live_m.close_ts > live_m.start_ts:
            # the live stream began a run at the first fix after the gap and abandoned it
            # (too short to open on its own): in order it continued this violation, which
            # ended at that run's first normal fix
            events.append(emit.violation(device, rule, Phase.CLOSED, m.start_ts,
                                         live_m.close_ts, m.start_lon, m.start_lat,
                                         live_m.close_lon, live_m.close_lat,
                                         _nanmax_pair(m.peak, live_m.peak), m.context, True))
            continue
        # still open when the late data ends: in order, the live fixes after the gap
        # would have closed it at the first of them
        end_ts = m.close_ts if m.phase == 3 else gap_end or last_ts
        events.append(emit.violation(device, rule, Phase.CLOSED, m.start_ts, end_ts,
                                     m.start_lon, m.start_lat, last_lon,
                                     last_lat, m.peak, m.context, True))
    return events


def retract_filled_gaps(device: str, live: VehicleState, late_ts: np.ndarray,
                        signal_loss_s: float, emit: EventMaker) -> list:
    """A SIGNAL_LOSS whose gap the late fixes fill was a link outage, not a GNSS one.

    A long backlog comes as several messages (≤ 200 fixes each, oldest first), so each
    period remembers how far from its start the late fixes have covered it without a
    silence of ``signal_loss_s`` (``reach``); it is retracted once that reaches its
    end."""
    events = []
    limit = signal_loss_s * 1000
    kept = []
    for period in live.signal_periods:
        start, end, lon, lat, reach = period
        reach = max(int(reach), start)
        inside = late_ts[(late_ts > reach) & (late_ts < end)]
        if len(inside):
            steps = np.diff(np.concatenate([[reach], inside]))
            broken = np.flatnonzero(steps > limit)
            if len(broken) == 0:
                reach = int(inside[-1])
            elif broken[0] > 0:
                reach = int(inside[broken[0] - 1])
        if end - reach > limit:
            kept.append((start, end, lon, lat, reach))
            continue
        events.append(emit.violation(device, SIGNAL_LOSS, Phase.RETRACTED, start, end,
                                     lon, lat, None, None, (end - start) / 1000, -1, True))
    live.signal_periods = kept
    return events


def prune_gaps(gaps: list, keep: int) -> None:
    """Drop the oldest gap snapshots, but never the one before the vehicle's first fix: data
    older than anything seen is new data to evaluate from scratch, not a repeat."""
    initial = gaps[0] if gaps[0][0] == _NEVER else None
    del gaps[:-keep]
    if initial is not None and gaps[0] is not initial:
        gaps[0] = initial


def late_windows(state: dict) -> list[tuple[int, int]]:
    """The device-time gaps (exclusive bounds) in which an exported state still accepts
    late fixes."""
    return [(int(a), int(b)) for a, b, _ in state.get("gaps", [])]




def _nanmax_pair(a: float, b: float) -> float:
    return b if np.isnan(a) else a if np.isnan(b) else max(a, b)
