"""The event type that travels from rules to store and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ViolationEvent:
    """One step of a violation's life. ``id`` is deterministic (device, rule, start time), so a
    replay of the same data produces the same ids and the store can upsert by it."""

    id: str
    phase: Phase
    rule: str
    device_id: str
    start_ts: int  # epoch ms, device time
    end_ts: int | None
    start_lon: float
    start_lat: float
    end_lon: float | None = None
    end_lat: float | None = None
    peak: float | None = None
    severity: int = 1
    late: bool = False
    plate: str | None = None
    company_id: str | None = None
    permit_id: str | None = None
