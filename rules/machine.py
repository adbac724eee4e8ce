"""The debounce state machine every duration-based rule shares.

Per vehicle and rule, fixes arrive in device-time order with a condition:

* ``ON``       — the offence condition holds (e.g. > half-width off the corridor);
* ``OFF``      — it clearly does not (e.g. back inside 0.8 × half-width);
* ``NEUTRAL``  — the hysteresis band: not an offence, but not clear enough to close one
  (it resets a pending start, keeps an open violation open);
* unknown fixes (poor GNSS, a jump, a missing sensor) are removed before the machine sees
  them: they neither open nor close anything.

A violation opens once the condition held for at least ``open_s`` seconds *and* ``open_n``
consecutive fixes, with its start at the first ON fix; it closes once the condition has been
OFF for ``close_s`` seconds, with its end at the first OFF fix. The machine walks *runs* of
equal conditions, not fixes: the moment within a run when both thresholds are met is found
with one ``searchsorted``, so the Python work per batch is proportional to condition
changes, not to fixes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

OFF, ON, NEUTRAL = 0, 1, 2
IDLE, PENDING, OPEN, CLOSING = 0, 1, 2, 3


class Debounce(NamedTuple):
    open_s: float
    open_n: int
    close_s: float = 0.0


@dataclass(slots=True)
class MachineState:
    """Serialisable per-(vehicle, rule) state."""

    phase: int = IDLE
    start_ts: int = 0
    start_lon: float = 0.0
    start_lat: float = 0.0
    count: int = 0
    peak: float = float("nan")
    emitted_peak: float = float("nan")
    close_ts: int = 0
    close_lon: float = 0.0
    close_lat: float = 0.0
    context: int = -1  # e.g. the permit or zone the violation belongs to

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MachineState:
        return cls(**data)


class Transition(NamedTuple):
    kind: str  # "opened", "updated", "closed"
    start_ts: int
    start_lon: float
    start_lat: float
    end_ts: int | None
    end_lon: float | None
    end_lat: float | None
    peak: float
    context: int


def _nanmax(a: float, values: np.ndarray) -> float:
    if len(values) == 0 or np.all(np.isnan(values)):
        return a
    m = float(np.nanmax(values))
    return m if np.isnan(a) else max(a, m)


def feed(
    state: MachineState,
    debounce: Debounce,
    ts: np.ndarray,
    cond: np.ndarray,
    measure: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    context: np.ndarray,
) -> list[Transition]:
    """Advance ``state`` over one vehicle's known fixes (sorted by ts); return transitions."""
    out: list[Transition] = []
    n = len(ts)
    if n == 0:
        return out
    bounds = np.flatnonzero(np.diff(cond)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [n]]).tolist()
    open_ms = debounce.open_s * 1000
    close_ms = debounce.close_s * 1000
    for i, j in zip(starts, ends, strict=True):
        c = int(cond[i])
        if c == ON:
            if state.phase == IDLE:
                state.phase = PENDING
                state.start_ts = int(ts[i])
                state.start_lon, state.start_lat = float(lon[i]), float(lat[i])
                state.count = 0
                state.peak = float("nan")
                state.context = int(context[i])
            if state.phase == PENDING:
                by_count = i + max(debounce.open_n - state.count - 1, 0)
                by_time = i + int(np.searchsorted(ts[i:j], state.start_ts + open_ms))
                k = max(by_count, by_time)
                if k < j:
                    state.peak = _nanmax(state.peak, measure[i:k + 1])
                    state.phase = OPEN
                    out.append(Transition("opened", state.start_ts, state.start_lon,
                                          state.start_lat, None, None, None, state.peak,
                                          state.context))
                    state.emitted_peak = state.peak
                    state.peak = _nanmax(state.peak, measure[k + 1:j])
                else:
                    state.count += j - i
                    state.peak = _nanmax(state.peak, measure[i:j])
            elif state.phase in (OPEN, CLOSING):
                state.phase = OPEN
                state.peak = _nanmax(state.peak, measure[i:j])
        elif c == OFF:
            if state.phase == PENDING:
                state.phase = IDLE
            elif state.phase == OPEN:
                state.phase = CLOSING
                state.close_ts = int(ts[i])
                state.close_lon, state.close_lat = float(lon[i]), float(lat[i])
            if state.phase == CLOSING:
                k = i + int(np.searchsorted(ts[i:j], state.close_ts + close_ms))
                if k < j:
                    out.append(Transition("closed", state.start_ts, state.start_lon,
                                          state.start_lat, state.close_ts, state.close_lon,
                                          state.close_lat, state.peak, state.context))
                    state.phase = IDLE
        else:  # NEUTRAL
            if state.phase == PENDING:
                state.phase = IDLE
            elif state.phase == CLOSING:
                state.phase = OPEN
    if state.phase in (OPEN, CLOSING) and not _same(state.peak, state.emitted_peak):
        out.append(Transition("updated", state.start_ts, state.start_lon, state.start_lat,
                              None, None, None, state.peak, state.context))
        state.emitted_peak = state.peak
    return out


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b
