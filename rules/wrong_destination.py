"""WRONG_DESTINATION: tipping (or, without a lift sensor, the load falling) in an open
disposal site or transfer dock that none of the permits the leg is judged against names
(擅自改变消纳场所).

The spoil reached a licensed site, so this is not UNAUTHORISED_DUMP (the city knows where
it went), but it is not where the job declared: the site's receipts, the manifest and the
job's reconciliation no longer add up. A truck judged against no permit may tip in any open
site (the missing permit is NO_PERMIT's business); a closed, full or unlicensed site
receives nothing, so tipping there stays UNAUTHORISED_DUMP. Debounced like the dump rule.
"""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON, Debounce
from rules.rule import Condition, Rule
from rules.situation import Situation


class WrongDestination(Rule):
    """Judged by the lift sensor."""

    name = "WRONG_DESTINATION"
    settings = "dump"
    evidence = "the stop inside a site the permit does not name, the lift rising and falling"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        raised = f.lift == 1
        c = np.where(raised & x.stationary & x.wrong_site, ON, OFF)
        known = x.known & (f.lift >= 0) & (x.speed_known | ~raised)
        return Condition(c, known, np.zeros(len(f)), x.permit)


class WrongDestinationByLoad(WrongDestination):
    """Judged by the load sensor, for terminals without a lift sensor: a sustained drop."""

    key = "WRONG_DESTINATION/load"
    evidence = "the stop inside a site the permit does not name, the load falling"

    def debounce(self, s: RuleSettings) -> Debounce:
        return Debounce(s.dump_open_s, max(s.dump_open_fixes, s.dump_load_fixes),
                        s.dump_close_s, s.dump_close_fixes)

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        c = np.where(x.load_dropped & x.stationary & x.wrong_site, ON, OFF)
        has_load = (f.load >= 0) | ~np.isnan(f.load_kg)
        known = x.known & (f.lift < 0) & has_load & (x.speed_known | ~x.load_dropped)
        return Condition(c, known, np.zeros(len(f)), x.permit)
