"""Daily time windows as sets of minutes: does a permit's hours meet a restricted zone's
windows, and when.

Windows are local wall-clock times that repeat every day (docs/city.md, "Time windows"):
``"HH:MM-HH:MM"``, start inclusive, end exclusive, an end before the start crosses midnight,
``24:00`` is the end of the day. A window whose start equals its end is empty (the rules
skip it too); a zone with no windows at all is restricted all day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from domain.city import parse_window

DAY_MIN = 1440
Interval = tuple[int, int]  # [start, end) minutes of the local day, 0 ≤ start < end ≤ 1440
ALL_DAY: tuple[Interval, ...] = ((0, DAY_MIN),)


def intervals(start: int, end: int) -> list[Interval]:
    """One window as 0, 1 or 2 non-wrapping intervals."""
    if start == end:
        return []
    if start < end:
        return [(start, end)]
    return [x for x in ((start, DAY_MIN), (0, end)) if x[0] < x[1]]


def normalise(parts: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sorted, merged, non-empty intervals."""
    out: list[list[int]] = []
    for a, b in sorted(p for p in parts if p[0] < p[1]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def window_minutes(text: str) -> tuple[Interval, ...]:
    """``"22:00-06:00"`` → ((0, 360), (1320, 1440)); ValueError if it does not parse."""
    return normalise(intervals(*parse_window(text)))


def zone_minutes(windows: Sequence[str]) -> tuple[Interval, ...]:
    """When a restricted zone is restricted: the union of its windows, all day without any."""
    if not windows:
        return ALL_DAY
    return normalise(p for w in windows for p in intervals(*parse_window(w)))


def hours_minutes(hours: str | None) -> tuple[Interval, ...]:
    """When a permit may be used: its hours, all day without them."""
    return ALL_DAY if hours is None else window_minutes(hours)


def span_minutes(valid_from: datetime, valid_to: datetime, timezone: str) -> tuple[Interval, ...]:
    """The local minutes a validity shorter than a day covers (all day for a day or more): a
    one-night permit meets a zone only if that night does."""
    if valid_to - valid_from >= timedelta(days=1):
        return ALL_DAY
    tz = ZoneInfo(timezone)
    start = valid_from.astimezone(tz)
    end = valid_to.astimezone(tz)
    a = start.hour * 60 + start.minute
    b = end.hour * 60 + end.minute + (1 if end.second or end.microsecond else 0)
    if end.date() == start.date():
        return normalise([(a, max(b, a + 1))])
    return normalise([(a, DAY_MIN), (0, b)])


def intersect(x: Sequence[Interval], y: Sequence[Interval]) -> tuple[Interval, ...]:
    return normalise((max(a, c), min(b, d)) for a, b in x for c, d in y)


def text(parts: Sequence[Interval]) -> list[str]:
    """Intervals back to ``"HH:MM-HH:MM"``; a pair joined across midnight reads as one."""
    parts = list(normalise(parts))
    if len(parts) >= 2 and parts[0][0] == 0 and parts[-1][1] == DAY_MIN \
            and parts != [ALL_DAY[0]]:
        first, last = parts.pop(0), parts.pop()
        parts.append((last[0], first[1]))  # wraps: start > end
    return [f"{_hhmm(a)}-{_hhmm(b)}" for a, b in parts]


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
