"""The event type that travels from rules to store and alerts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

# Every rule's name, in the order of docs/rules.md — the one list the store (scoring), alerts
# (subscriptions) and reports read; rules/chain.py implements each of them (a test holds the
# two equal).
RULES = ("OFF_ROUTE", "UNAUTHORISED_DUMP", "UNCOVERED_LOAD", "RESTRICTED_ZONE", "NO_PERMIT",
         "OVERSPEED", "SIGNAL_LOSS", "WRONG_DESTINATION", "TRIP_NOT_CLOSED", "OVERLOAD",
         "PERMIT_VOLUME_EXCEEDED", "TERMINAL_TAMPER")
# the unit of each rule's peak (its own measure); rules without one have a peak of 0
PEAK_UNITS = {"OFF_ROUTE": "m", "OVERSPEED": "km/h", "UNCOVERED_LOAD": "km/h",
              "SIGNAL_LOSS": "s", "TRIP_NOT_CLOSED": "s", "OVERLOAD": "%",
              "PERMIT_VOLUME_EXCEEDED": "m3", "TERMINAL_TAMPER": "alarm bits"}


class Phase(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"
    RETRACTED = "retracted"  # late data showed it did not happen (e.g. backfill fills a gap)


@dataclass(frozen=True, slots=True)
class Memberships:
    """Fence memberships of a batch: fix ``fix_index[k]`` is inside fence ``fence_id[k]``."""

    fix_index: np.ndarray
    fence_id: np.ndarray  # object array of fence ids


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
    fence_id: str | None = None  # the restricted zone, for RESTRICTED_ZONE
    evidence: tuple | None = None  # ((ts, lon, lat, speed, lid, lift, load), …)

    @property
    def state(self) -> str:
        """The violation's state after this event — ``violations.state`` and the webhook's
        ``violation.state``, derived here once: retracted, closed once it has an end, else
        open."""
        if self.phase == Phase.RETRACTED:
            return "retracted"
        return "closed" if self.end_ts is not None else "open"


@dataclass(frozen=True, slots=True)
class TripEvent:
    """A truck left its permit's origin (``arrived_ts`` None) or reached a destination."""

    id: str
    device_id: str
    plate: str | None
    company_id: str | None
    permit_id: str | None
    origin: str | None
    left_ts: int
    destination: str | None = None
    arrived_ts: int | None = None
    late: bool = False
    # the manifest (issue #22): on departure the load's estimated volume, how it was
    # estimated ('load_sensor' or 'rated') and the weighed load; on arrival the transfer
    # docks the leg passed, (dock id, entered ms, left ms or None)
    volume_m3: float | None = None
    volume_source: str | None = None
    load_kg: float | None = None
    transfers: tuple = ()
