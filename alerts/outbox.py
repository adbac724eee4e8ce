"""From violation events to outbox rows: which subscription gets which event, with what body.

Pure: the rows are written by the store in the same transaction as the violations, so an
alert exists exactly when its violation does (a crash between the two is impossible), and
the webhook id is derived from (violation, event, subscription) — a redelivered MQTT batch
or a replay produces the same ids, which the outbox's unique key absorbs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from alerts.subscriptions import Subscription
from domain.coords import wgs84_to_gcj02
from domain.events import PEAK_UNITS, Phase, ViolationEvent

SCHEMA = "muckwatch.alert.v1"
EVIDENCE_S = 120  # the excerpt: fixes from this long before the start …
EVIDENCE_FIXES = 60  # … to the event, at most this many (the latest)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    webhook_id: str
    subscription_id: str
    violation_id: str
    event: str
    payload: dict
    device_id: str
    evidence_from_ms: int  # the store adds the telemetry excerpt in this window
    evidence_to_ms: int


def webhook_id(violation_id: str, event: str, subscription_id: str, peak=None) -> str:
    """Stable per (violation, event, subscription); an ``updated`` also by its peak."""
    key = f"{violation_id}|{event}|{subscription_id}"
    if event == "updated":
        key += f"|{peak}"
    return "msg_" + hashlib.sha1(key.encode()).hexdigest()[:24]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _place(ms: int | None, lon, lat) -> dict | None:
    if ms is None:
        return None
    if lon is None or lat is None or not (np.isfinite(lon) and np.isfinite(lat)) \
            or (lon == 0 and lat == 0):
        return {"ts": ms, "time": _iso(ms), "lon": None, "lat": None, "gcj02": None}
    glon, glat = wgs84_to_gcj02(np.array([lon]), np.array([lat]))
    return {"ts": ms, "time": _iso(ms), "lon": round(float(lon), 7),
            "lat": round(float(lat), 7),
            "gcj02": {"lon": round(float(glon[0]), 7), "lat": round(float(glat[0]), 7)}}


def payload(e: ViolationEvent, evidence_url: str = "") -> dict:
    """The JSON body (docs/alerts.md); the store adds ``evidence.track``."""
    return {
        "schema": SCHEMA,
        "type": f"violation.{e.phase.value}",
        "occurred_at": _iso(e.end_ts if e.phase == Phase.CLOSED and e.end_ts else e.start_ts),
        "violation": {
            "id": e.id, "rule": e.rule, "severity": e.severity, "state": e.state,
            "late": e.late, "start": _place(e.start_ts, e.start_lon, e.start_lat),
            "end": _place(e.end_ts, e.end_lon, e.end_lat),
            "peak": None if e.peak is None else {"value": round(e.peak, 1),
                                                 "unit": PEAK_UNITS.get(e.rule)},
            "zone": e.fence_id,
        },
        "vehicle": {"device": e.device_id, "plate": e.plate, "company": e.company_id},
        "permit": None if e.permit_id is None else {"id": e.permit_id},
        "evidence": {"url": evidence_url.format(id=e.id) if evidence_url else None,
                     "track": []},
    }


class AlertRouter:
    """Matches events against the subscriptions; ``subscriptions`` can be swapped at any
    time (the ingest reloads them from the table)."""

    def __init__(self, subscriptions: list[Subscription] | None = None,
                 evidence_url: str = "") -> None:
        self.subscriptions = list(subscriptions or [])
        self.evidence_url = evidence_url

    def route(self, events: list) -> list[OutboxRow]:
        rows: list[OutboxRow] = []
        active = [s for s in self.subscriptions if s.enabled]
        if not active:
            return rows
        for e in events:
            if not isinstance(e, ViolationEvent):
                continue
            event = e.phase.value
            wanted = [s for s in active
                      if s.wants(event, e.rule, e.severity, e.company_id, e.fence_id,
                                 e.start_lon, e.start_lat)]
            if not wanted:
                continue
            body = payload(e, self.evidence_url)
            until = e.end_ts if e.end_ts is not None else e.start_ts
            for s in wanted:
                rows.append(OutboxRow(
                    webhook_id(e.id, event, s.id, e.peak), s.id, e.id, event, body,
                    e.device_id, e.start_ts - EVIDENCE_S * 1000, until))
        return rows
