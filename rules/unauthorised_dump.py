"""UNAUTHORISED_DUMP: tipping (or, without a lift sensor, the load falling) while stationary
where tipping is not allowed.

A terminal with a lift sensor is judged by the lift; one without it by its load sensor: the
load has fallen when it is empty (``load`` 0) after having been loaded, or its weight is
``dump_load_drop`` below the most it weighed, within ``dump_load_window_s``. Either way the
debounce needs several reports (``dump_open_fixes``, and ``dump_load_fixes`` for a load
drop), so one bad weight reading or one lift-switch bounce is not a dump.

Where tipping is allowed is ``Situation.tip_allowed``: the origin or an open destination of a
permit the leg is judged against, or — with no permit — any open disposal site or dock. A
site closed, full or past its licence at the fix's device time is not open (issue #22): the
minute after its closure, tipping there is a dump, whenever the fix arrives. Tipping in an
open disposal site or dock its permits do not name is WRONG_DESTINATION instead
(``rules.wrong_destination``): the spoil is where the city can find it.
"""

from __future__ import annotations

import numpy as np

from domain.settings import RuleSettings
from rules.machine import OFF, ON, Debounce
from rules.rule import Condition, Rule
from rules.situation import LOADED_KG, Situation

_NEVER = -(2**62)


class UnauthorisedDump(Rule):
    """Judged by the lift sensor."""

    name = "UNAUTHORISED_DUMP"
    settings = "dump"
    evidence = "the stop, the lift rising and falling, the drive away"

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        raised = f.lift == 1
        c = np.where(raised & x.stationary & ~x.tip_allowed & ~x.wrong_site, ON, OFF)
        known = x.known & (f.lift >= 0) & (x.speed_known | ~raised)
        return Condition(c, known, np.zeros(len(f)), x.permit)

    def severity(self, peak: float, s: RuleSettings) -> int:
        return 3


class UnauthorisedDumpByLoad(UnauthorisedDump):
    """Judged by the load sensor, for terminals without a lift sensor: a sustained drop."""

    key = "UNAUTHORISED_DUMP/load"
    evidence = "the stop, the load falling and staying low, the drive away"

    def debounce(self, s: RuleSettings) -> Debounce:
        return Debounce(s.dump_open_s, max(s.dump_open_fixes, s.dump_load_fixes),
                        s.dump_close_s, s.dump_close_fixes)

    def condition(self, x: Situation, s: RuleSettings) -> Condition:
        f = x.facts
        c = np.where(x.load_dropped & x.stationary & ~x.tip_allowed & ~x.wrong_site, ON, OFF)
        has_load = (f.load >= 0) | ~np.isnan(f.load_kg)
        known = x.known & (f.lift < 0) & has_load & (x.speed_known | ~x.load_dropped)
        return Condition(c, known, np.zeros(len(f)), x.permit)


def load_dropped(st, f, a: int, b: int, allowed: np.ndarray, moving: np.ndarray,
                 s: RuleSettings) -> np.ndarray:
    """Rows ``a:b`` of one lift-less vehicle: has the load fallen (see the module doc)?

    Walks its fixes in order, remembering in its state when the load sensor last said loaded
    (``st.last_loaded_ts``) and the most it weighed lately (``st.max_kg``). Both are taken
    from two reports in a row (the lower of the two), so one spike of a load sensor on an
    empty truck never makes it "was loaded". A drop seen where tipping is allowed, or a truck
    that drives on after it, is spent: the memory is cleared, so the empty truck waiting at
    the next red light after tipping in its disposal site is not "dropping" its load again.
    ``allowed`` and ``moving`` are the rows' own columns (``a:b``)."""
    out = np.zeros(b - a, bool)
    window = s.dump_load_window_s * 1000
    keep = 1 - s.dump_load_drop
    for k in range(a, b):
        t = int(f.ts[k])
        level = int(f.load[k])
        if level >= 0:
            if level >= 1 and st.prev_load >= 1:
                st.last_loaded_ts = t
            elif level == 0 and t - st.last_loaded_ts <= window:
                out[k - a] = True
            st.prev_load = level
        kg = float(f.load_kg[k])
        if kg == kg:  # not NaN
            sure = min(kg, st.prev_kg) if st.prev_kg == st.prev_kg else float("nan")
            st.prev_kg = kg
            if t - st.max_kg_ts > window:
                st.max_kg = float("nan")  # the load it had is too long ago
            if sure == sure and not st.max_kg >= sure:  # NaN or a new maximum
                st.max_kg, st.max_kg_ts = sure, t
            elif kg > keep * st.max_kg:
                st.max_kg_ts = t  # still loaded: the maximum stays current
            if st.max_kg > LOADED_KG and kg <= keep * st.max_kg:
                out[k - a] = True
        if out[k - a] and (allowed[k - a] or moving[k - a]):
            st.last_loaded_ts, st.max_kg = _NEVER, float("nan")  # spent
    return out
