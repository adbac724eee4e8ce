"""OVERLOAD: the weighed load above the vehicle's rated load × (1 + ``overload_tolerance``),
sustained while moving (超载).

Needs both a weighing sensor (``load_kg``) and a rated load in the registry; a truck without
either is never judged. Standing still (on a weighbridge, loading) neither opens nor closes
it: the load is judged on the road. Its peak is the percentage over the rated load.
"""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import NEUTRAL, OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation


class Overload(Rule):
    name = "OVERLOAD"
    settings = "overload"
    evidence = "the weighed load over the rated load while driving; peak = % over rated"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        rated = f.rated_kg
        weighed = ~np.isnan(f.load_kg) & (rated > 0)
        over_pct = np.where(weighed, (f.load_kg / np.where(rated > 0, rated, 1.0) - 1) * 100,
                            0.0)
        over = over_pct > s.overload_tolerance * 100
        c = np.where(over, np.where(x.moving, ON, NEUTRAL), OFF)
        known = x.known & weighed & (x.speed_known | ~over)
        return Condition(c, known, over_pct, x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        if peak > s.overload_grave_ratio * 100:
            return 3
        return 2 if peak > 2 * s.overload_tolerance * 100 else 1
