"""OFF_ROUTE: a loaded truck outside the corridor of every permit that could explain its leg."""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import NEUTRAL, OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation

FAR_M = 1000.0  # further than this from every corridor is grave


class OffRoute(Rule):
    name = "OFF_ROUTE"
    settings = "off_route"
    evidence = "the track leaving and rejoining the corridor; peak = metres from the centreline"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        # clear of the corridor only well inside it (hysteresis), so a truck driving along
        # the edge does not flap
        c = np.where(x.off_route, ON, np.where(x.on_route, OFF, NEUTRAL))
        normal = ~x.has_permit | (x.loaded == 0) | x.in_leg_site
        c = np.where(normal, OFF, c)
        known = x.known & ((x.loaded >= 0) | normal)
        return Condition(c, known, x.route_m, x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 3 if peak > FAR_M else 2
