"""Rule thresholds: the [rules] section of the config file. Defaults and the reason for each
are in docs/rules.md; every key can be overridden (MUCKWATCH_RULES_<KEY>).

Every rule debounces both ways: ``*_open_s``/``*_open_fixes`` to open, ``*_close_s``/
``*_close_fixes`` back to normal to close (and to abandon a run that has not opened yet)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleSettings:
    # time and quality
    reorder_window_s: float = 10.0  # fixes this close in device time are put in order
    min_sats: int = 4  # fewer satellites: the fix is "unknown"
    max_hdop: float = 5.0  # worse HDOP: "unknown"
    max_implied_kmh: float = 150.0  # faster than this from the last good fix: a jump
    moving_kmh: float = 5.0  # above this a truck is moving, below it "stationary-ish"
    evidence_s: float = 120.0  # evidence track: this long before the start and after the end
    evidence_max_fixes: int = 600
    # sites, legs and trips
    site_exit_s: float = 30.0  # outside a site this long (known fixes, having moved) …
    site_exit_fixes: int = 2  # … and this many fixes before the truck has left it
    site_enter_fixes: int = 2  # known fixes inside before it has arrived
    leg_grace_s: float = 3600.0  # a lapsing permit covers its leg until this long after departure
    # OFF_ROUTE
    off_route_open_s: float = 60.0
    off_route_open_fixes: int = 3
    off_route_close_s: float = 30.0
    off_route_close_fixes: int = 3
    off_route_close_ratio: float = 0.8  # back inside this fraction of the half-width to close
    # UNAUTHORISED_DUMP
    dump_open_s: float = 10.0
    dump_open_fixes: int = 2
    dump_close_s: float = 10.0
    dump_close_fixes: int = 2
    dump_load_drop: float = 0.3  # a load falling by this fraction …
    dump_load_window_s: float = 300.0  # … within this long counts as dumping without a lift
    dump_load_fixes: int = 3  # … held for this many reports while stationary
    # UNCOVERED_LOAD
    uncovered_open_s: float = 30.0
    uncovered_open_fixes: int = 3
    uncovered_close_s: float = 10.0
    uncovered_close_fixes: int = 2
    # RESTRICTED_ZONE
    restricted_open_s: float = 20.0
    restricted_open_fixes: int = 2
    restricted_close_s: float = 10.0
    restricted_close_fixes: int = 2
    # NO_PERMIT
    no_permit_open_s: float = 120.0
    no_permit_open_fixes: int = 3
    no_permit_close_s: float = 30.0
    no_permit_close_fixes: int = 2
    # OVERSPEED
    speed_limit_kmh: float = 60.0  # muck-truck limit where no zone sets one
    overspeed_open_s: float = 15.0
    overspeed_open_fixes: int = 3
    overspeed_close_s: float = 10.0
    overspeed_close_fixes: int = 2
    overspeed_grave_kmh: float = 20.0  # severity 2 when the peak is this far over the limit
    # SIGNAL_LOSS
    signal_loss_s: float = 300.0
