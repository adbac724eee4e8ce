"""RESTRICTED_ZONE: inside a restricted zone during one of its local-time windows."""

from __future__ import annotations

import numpy as np

from rules.machine import OFF, ON, Debounce
from rules.rule import Condition, Rule
from rules.settings import RuleSettings
from rules.situation import Situation


class RestrictedZone(Rule):
    name = "RESTRICTED_ZONE"
    context_kind = "zone"
    evidence = "the track entering and leaving the zone while its window was active"

    def debounce(self, s: RuleSettings) -> Debounce:
        return Debounce(s.restricted_open_s, s.restricted_open_fixes, s.restricted_close_s,
                        s.restricted_close_fixes)

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        return Condition(np.where(f.zone >= 0, ON, OFF), x.known, np.zeros(len(f)), f.zone)
