"""The rules, in the order the engine runs them: one named handler per rule (one module
each), all through the same debounce machine, plus SIGNAL_LOSS, which fires on gaps."""

from __future__ import annotations

from rules.no_permit import NoPermit
from rules.off_route import OffRoute
from rules.overload import Overload
from rules.overspeed import Overspeed
from rules.restricted_zone import RestrictedZone
from rules.rule import Rule
from rules.signal_loss import SignalLoss
from rules.terminal_tamper import TerminalTamper
from rules.trip_not_closed import TripNotClosed
from rules.unauthorised_dump import UnauthorisedDump, UnauthorisedDumpByLoad
from rules.uncovered_load import UncoveredLoad
from rules.volume import PermitVolumeExceeded
from rules.wrong_destination import WrongDestination, WrongDestinationByLoad

MACHINE_RULES: tuple[Rule, ...] = (
    OffRoute(), UnauthorisedDump(), UnauthorisedDumpByLoad(), UncoveredLoad(),
    RestrictedZone(), NoPermit(), Overspeed(), WrongDestination(), WrongDestinationByLoad(),
    TripNotClosed(), Overload(), TerminalTamper(),
)
SIGNAL_LOSS = SignalLoss()
# fired on events, not through a debounce machine: a gap (SIGNAL_LOSS), a departure that
# takes its job over the declared volume (PERMIT_VOLUME_EXCEEDED)
EVENT_RULES: tuple[SignalLoss | PermitVolumeExceeded, ...] = (SIGNAL_LOSS,
                                                              PermitVolumeExceeded())
BY_KEY: dict[str, Rule] = {r.machine_key: r for r in MACHINE_RULES}
RULE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(
    [r.name for r in MACHINE_RULES] + [r.name for r in EVENT_RULES]))
_BY_NAME: dict[str, Rule | SignalLoss | PermitVolumeExceeded] = {
    r.name: r for r in (*MACHINE_RULES, *EVENT_RULES)}


def severity(rule: str, peak: float, settings) -> int:
    """A rule's severity from its own measure."""
    return _BY_NAME[rule].severity(peak, settings)
