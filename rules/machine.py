"""The debounce state machine every duration-based rule shares, both ways.

Per vehicle and rule, fixes arrive in device-time order with a condition:

* ``ON``       — the offence condition holds (e.g. > half-width off the corridor);
* ``OFF``      — it clearly does not (e.g. back inside 0.8 × half-width);
* ``NEUTRAL``  — the hysteresis band: not an offence, but not clear enough to close one;
* unknown fixes (poor GNSS, a jump, a missing sensor) are removed before the machine sees
  them: they neither open nor close anything.

**Opening** needs the condition to have held for ``open_s`` seconds since the first ON fix
*and* ``open_n`` consecutive ON fixes. **Closing** needs ``close_s`` seconds *and* ``close_n``
fixes back to normal, with the end at the first normal fix. A run still waiting to open is
paused, not abandoned, by a single normal report (a lift switch bouncing back, one reading
under the speed limit): its start is kept and the count of consecutive ON fixes starts again;
``close_n`` normal fixes *or* ``close_s`` seconds of them abandon it. So a one-report flicker
neither opens a violation (``open_n`` ≥ 2) nor splits one (``close_n`` ≥ 2), and two separate
one-report flickers never add up to ``open_n`` consecutive ON fixes.

The machine walks *runs* of equal conditions, not fixes: the moment within a run when both
thresholds are met is found with one ``searchsorted``, so the Python work per batch is
proportional to condition changes, not to fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

OFF, ON, NEUTRAL = 0, 1, 2
IDLE, PENDING, OPEN, CLOSING, PAUSED = 0, 1, 2, 3, 4
OPEN_PHASES = (OPEN, CLOSING)


class Debounce(NamedTuple):
    """Both directions of a rule's debounce (docs/rules.md gives each rule's values)."""

    open_s: float
    open_n: int
    close_s: float = 0.0
    close_n: int = 1


@dataclass(slots=True)
class MachineState:
    """Serialisable per-(vehicle, rule) state."""

    phase: int = IDLE
    start_ts: int = 0
    start_lon: float = 0.0
    start_lat: float = 0.0
    count: int = 0  # consecutive ON fixes of the pending run
    peak: float = float("nan")
    emitted_peak: float = float("nan")
    close_ts: int = 0  # first normal fix of a closing (or paused) stretch
    close_lon: float = 0.0
    close_lat: float = 0.0
    close_count: int = 0  # normal fixes in that stretch
    context: int = -1  # e.g. the permit or zone the violation belongs to

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in _ORDER}

    @classmethod
    def from_dict(cls, data: dict) -> MachineState:
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


_ORDER = tuple(f.name for f in fields(MachineState))
_FIELDS = frozenset(_ORDER)


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


def _settled(ts: np.ndarray, i: int, j: int, since_ts: int, seen: int, need_s_ms: float,
             need_n: int, either: bool = False) -> int:
    """Index in ``[i, j)`` of the fix at which a stretch that began at ``since_ts`` with
    ``seen`` fixes before ``i`` has lasted ``need_s_ms`` and (``either``: or) counted
    ``need_n`` fixes; ``j`` or more if not within this run."""
    by_count = i + max(need_n - seen - 1, 0)
    by_time = i + int(np.searchsorted(ts[i:j], since_ts + need_s_ms))
    return min(by_count, by_time) if either else max(by_count, by_time)


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
            elif state.phase == PAUSED:  # a flicker inside the run: count again, same start
                state.phase = PENDING
                state.count = 0
            if state.phase == PENDING:
                k = _settled(ts, i, j, state.start_ts, state.count, open_ms, debounce.open_n)
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
            else:  # OPEN or CLOSING: a short return to normal did not end it
                state.phase = OPEN
                state.peak = _nanmax(state.peak, measure[i:j])
        elif c == OFF or state.phase in (PENDING, PAUSED):
            # OFF; or NEUTRAL while not yet open (not an offence: it pauses a pending run)
            if state.phase in (PENDING, OPEN):
                state.phase = PAUSED if state.phase == PENDING else CLOSING
                state.close_ts = int(ts[i])
                state.close_lon, state.close_lat = float(lon[i]), float(lat[i])
                state.close_count = 0
            if state.phase in (PAUSED, CLOSING):
                # an open violation closes once normal for close_s *and* close_n fixes; a
                # pending run is abandoned at either (only a one-report flicker is bridged)
                k = _settled(ts, i, j, state.close_ts, state.close_count, close_ms,
                             debounce.close_n, either=state.phase == PAUSED)
                if k >= j:
                    state.close_count += j - i
                elif state.phase == PAUSED:
                    state.phase = IDLE
                else:
                    out.append(Transition("closed", state.start_ts, state.start_lon,
                                          state.start_lat, state.close_ts, state.close_lon,
                                          state.close_lat, state.peak, state.context))
                    state.phase = IDLE
        elif state.phase == CLOSING:  # NEUTRAL: the hysteresis band keeps it open
            state.phase = OPEN
    if state.phase in OPEN_PHASES and not _same(state.peak, state.emitted_peak):
        out.append(Transition("updated", state.start_ts, state.start_lon, state.start_lat,
                              None, None, None, state.peak, state.context))
        state.emitted_peak = state.peak
    return out


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b
