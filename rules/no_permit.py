"""NO_PERMIT: loaded and moving outside sites with no permit that covers it at that device
time (a leg that left under a permit stays covered while it lapses: ``rules.legs``)."""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation


class NoPermit(Rule):
    name = "NO_PERMIT"
    settings = "no_permit"
    evidence = "a loaded truck on the road while none of its permits was valid"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        c = np.where((x.loaded == 1) & x.moving & ~f.in_site & ~x.has_permit, ON, OFF)
        known = x.known & (((x.loaded >= 0) & x.speed_known) | x.has_permit | f.in_site
                           | (x.loaded == 0))
        return Condition(c, known, np.zeros(len(f)), x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 3
