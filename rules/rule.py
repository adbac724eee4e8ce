"""What a rule is: a named handler in the engine's chain.

Each rule declares its per-fix condition (vectorised over a round of fixes), its debounce
both ways (``rules.machine``), its severity from its own measure, and what its evidence
shows. The engine runs every rule's condition through the same debounce machine; the rules
themselves hold no state and do no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from domain.settings import RuleSettings
from rules.machine import Debounce
from rules.situation import Situation


@dataclass(frozen=True, slots=True)
class Condition:
    """Per fix: ``cond`` ON/OFF/NEUTRAL (``rules.machine``), ``known`` (may it open or close
    anything), ``measure`` (what the peak is the largest of) and ``context`` (the permit,
    or for RESTRICTED_ZONE the zone, the violation is judged against)."""

    cond: np.ndarray
    known: np.ndarray
    measure: np.ndarray
    context: np.ndarray


class Rule:
    """Base of the rules in the chain (one module each under ``rules/``)."""

    name: ClassVar[str]
    key: ClassVar[str] = ""  # its debounce machine's name in the vehicle state (default: name)
    context_kind: ClassVar[str] = "permit"  # what ``Condition.context`` indexes
    evidence: ClassVar[str] = ""  # what the evidence track shows an officer (docs/rules.md)
    # its thresholds in [rules]: {settings}_open_s, _open_fixes, _close_s, _close_fixes
    settings: ClassVar[str] = ""

    @property
    def machine_key(self) -> str:
        return self.key or self.name

    def debounce(self, s: RuleSettings) -> Debounce:
        """Both directions, from the rule's own keys in ``[rules]``."""
        p = self.settings
        return Debounce(getattr(s, f"{p}_open_s"), getattr(s, f"{p}_open_fixes"),
                        getattr(s, f"{p}_close_s"), getattr(s, f"{p}_close_fixes"))

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        raise NotImplementedError

    def severity(self, peak: float, s: RuleSettings) -> int:
        """1 minor, 2 serious, 3 grave (docs/rules.md)."""
        return 2
