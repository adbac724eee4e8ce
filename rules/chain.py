"""The rules, in the order the engine runs them: one named handler per rule (one module
each), all through the same debounce machine, plus SIGNAL_LOSS, which fires on gaps."""

from __future__ import annotations

from rules.no_permit import NoPermit
from rules.off_route import OffRoute
from rules.overspeed import Overspeed
from rules.restricted_zone import RestrictedZone
from rules.rule import Rule
from rules.signal_loss import SignalLoss
from rules.unauthorised_dump import UnauthorisedDump, UnauthorisedDumpByLoad
from rules.uncovered_load import UncoveredLoad

MACHINE_RULES: tuple[Rule, ...] = (
    OffRoute(), UnauthorisedDump(), UnauthorisedDumpByLoad(), UncoveredLoad(),
    RestrictedZone(), NoPermit(), Overspeed(),
)
SIGNAL_LOSS = SignalLoss()
BY_KEY: dict[str, Rule] = {r.machine_key: r for r in MACHINE_RULES}
RULE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(
    [r.name for r in MACHINE_RULES] + [SIGNAL_LOSS.name]))


def severity(rule: str, peak: float, settings) -> int:
    """A rule's severity from its own measure."""
    handler = SIGNAL_LOSS if rule == SIGNAL_LOSS.name else \
        next(r for r in MACHINE_RULES if r.name == rule)
    return handler.severity(peak, settings)
