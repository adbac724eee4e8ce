"""Runs every configured rule over a batch, per vehicle, in device-time order.

The rule state machines themselves (OFF_ROUTE, UNAUTHORISED_DUMP, …) land with issue #4;
until then the engine is constructed with no rules and therefore emits no events, while the
pipeline wiring around it (geofence memberships in, events out to the store) is the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from muckwatch.batches import FixBatch
from rules.events import ViolationEvent


@dataclass(frozen=True, slots=True)
class Memberships:
    """Fence memberships of a batch: fix ``fix_index[k]`` is inside fence ``fence_id[k]``."""

    fix_index: np.ndarray
    fence_id: np.ndarray  # object array of fence ids


class Rule(Protocol):
    name: str

    def evaluate(self, fixes: FixBatch, memberships: Memberships) -> list[ViolationEvent]: ...


class RuleEngine:
    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules = list(rules)

    def evaluate(self, fixes: FixBatch, memberships: Memberships) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        for rule in self.rules:
            events.extend(rule.evaluate(fixes, memberships))
        return events
