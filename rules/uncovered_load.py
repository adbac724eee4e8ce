"""UNCOVERED_LOAD: the lid open while loaded and moving outside every site (mud and dust
on the roads)."""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation


class UncoveredLoad(Rule):
    name = "UNCOVERED_LOAD"
    settings = "uncovered"
    evidence = "lid open, load on, speed above 5 km/h, on the road; peak = top speed"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        c = np.where((f.lid == 1) & (x.loaded == 1) & x.moving & ~f.in_site, ON, OFF)
        known = x.known & (((f.lid >= 0) & (x.loaded >= 0) & x.speed_known) | (f.lid == 0)
                           | (x.loaded == 0) | f.in_site)
        return Condition(c, known, f.speed, x.permit)
