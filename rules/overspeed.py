"""OVERSPEED: faster than the limit in force — the lowest ``speed_limit_kmh`` of the fences
the truck is in, else the global muck-truck limit. The measure is km/h *over that limit*, so
the severity is judged against the zone's own limit (55 km/h in a 30 km/h zone is grave)."""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation


class Overspeed(Rule):
    name = "OVERSPEED"
    settings = "overspeed"
    evidence = "speed above the limit in force; peak = km/h over that limit"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        over = f.speed - f.speed_limit
        c = np.where(over > 0, ON, OFF)
        return Condition(c, x.known & x.speed_known, over, x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 2 if peak > s.overspeed_grave_kmh else 1
