"""SIGNAL_LOSS: a terminal silent for more than ``signal_loss_s`` after a fix that was moving
outside sites (shielding or tampering; tunnels silence a terminal for a minute or two).

Not a debounce-machine rule: it fires on the gap itself. In device time when the next fix
shows the gap; live, by the engine's sweep after ``signal_loss_s`` of wall-clock silence
since the vehicle's newest fix *arrived*. The next fix closes it; a blind-area backfill that
fills the gap retracts it (the terminal was tracking, only its link was down).
"""

from __future__ import annotations

from typing import ClassVar

from domain.settings import RuleSettings

LONG_S = 1800.0  # silent longer than this is grave


class SignalLoss:
    name: ClassVar[str] = "SIGNAL_LOSS"
    context_kind: ClassVar[str] = "none"
    evidence: ClassVar[str] = "the last fixes before the silence and the first after it"

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 3 if peak > LONG_S else 2
