"""The phases of a compliant truck's day and the timings of its cycle.

Shared by the fleet's motion (``fleet_motion``), its job decisions (``fleet_jobs``) and its
reports (``fleet_report``): kept apart from all three so none of them imports another just
for a constant, and a phase means the same everywhere (the reports' ``phase`` column too).
"""

from __future__ import annotations

import numpy as np

# phases of a truck's day
LOADING, OUTBOUND, TIPPING, RETURNING, TRANSFER, PARKED = 0, 1, 2, 3, 4, 5
MOVING_PHASES = (OUTBOUND, RETURNING, TRANSFER)
LOADING_S = (60.0, 180.0)
TIPPING_S = (60.0, 180.0)
SPEED_KMH = (25.0, 45.0)
PARKED_REPORT_S = (60.0, 300.0)  # a parked terminal reports this seldom
LEG_MARGIN_S = 900.0  # a job is started only if its permit stays valid this much longer


def is_moving(phase: np.ndarray) -> np.ndarray:
    return (phase == OUTBOUND) | (phase == RETURNING) | (phase == TRANSFER)
