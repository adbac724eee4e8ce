"""RESTRICTED_ZONE: inside a restricted zone during one of its local-time windows."""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation


class RestrictedZone(Rule):
    name = "RESTRICTED_ZONE"
    settings = "restricted"
    context_kind = "zone"
    evidence = "the track entering and leaving the zone while its window was active"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        return Condition(np.where(f.zone >= 0, ON, OFF), x.known, np.zeros(len(f)), f.zone)
