"""TRIP_NOT_CLOSED: a loaded leg that has reached none of its permits' destinations
``trip_close_s`` after it left its origin — a load that left a site and arrived nowhere
(the manifest line stays open; the spoil may be on a roadside).

Judged only for legs whose load sensor said loaded as the truck left (``LegView
.loaded_since``): a truck without one may have left empty, and an accusation needs the
load. It opens at the first known fixes past the deadline (``trip_open_fixes`` of them) and
closes when the leg ends — arrival at a destination, or back in an origin. Its peak is the
time since departure (s). A terminal that falls silent on the leg is caught by the engine's
sweep (``RuleEngine.sweep``): once silent longer than ``signal_loss_s`` and past the deadline
by its clock, the violation opens at the deadline, and the next fixes continue or close it.
"""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON, Debounce
from rules.rule import Condition, Rule
from rules.situation import Situation


class TripNotClosed(Rule):
    name = "TRIP_NOT_CLOSED"
    evidence = "the departure, the track since, no arrival; peak = seconds since departure"

    def debounce(self, s: RuleSettings) -> Debounce:
        return Debounce(0.0, s.trip_open_fixes, 10.0, max(2, s.site_enter_fixes))

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        since = x.loaded_since
        age_s = np.where(since >= 0, (f.ts - since) / 1000.0, 0.0)
        c = np.where((since >= 0) & (age_s > s.trip_close_s), ON, OFF)
        return Condition(c, x.known, age_s, x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 3 if peak > 2 * s.trip_close_s else 2
