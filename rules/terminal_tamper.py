"""TERMINAL_TAMPER: the terminal itself says it is being blinded — GNSS module fault, GNSS
antenna cut or disconnected, main power cut (JT/T 808 alarm bits 4, 5 and 8, the wire
format's ``alarm``) — sustained while the truck is not known to stand still (屏蔽/断电).

A terminal that never reports its alarm word is never judged. Standing still (speed known and
below ``moving_kmh``) neither opens nor closes it: a truck in a workshop with its battery off
is maintenance, not evasion. A cut antenna often leaves the speed unknown — that counts as
not standing still. Peak = the tamper bits raised (≥ 256 when the main power was cut).
"""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import NEUTRAL, OFF, ON
from rules.rule import Condition, Rule
from rules.situation import Situation

GNSS_FAULT, ANTENNA_CUT, POWER_CUT = 1 << 4, 1 << 5, 1 << 8
TAMPER_BITS = GNSS_FAULT | ANTENNA_CUT | POWER_CUT


class TerminalTamper(Rule):
    name = "TERMINAL_TAMPER"
    settings = "tamper"
    evidence = ("the terminal's GNSS-fault, antenna-cut or power-cut alarm while driving; "
                "peak = the alarm bits (≥ 256: power cut)")

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        alarm = x.facts.alarm
        reported = alarm >= 0
        bits = np.where(reported, alarm & TAMPER_BITS, 0)
        tampered = bits != 0
        c = np.where(tampered, np.where(x.stationary, NEUTRAL, ON), OFF)
        return Condition(c, reported, bits.astype(np.float64), x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 3 if int(peak) & POWER_CUT else 2
