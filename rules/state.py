"""What the engine remembers about one vehicle, and its JSON form for hand-over.

``VehicleState`` holds the debounce machines, the leg, the GNSS reference, the load memory of
lift-less terminals, SIGNAL_LOSS bookkeeping and the gap snapshots for late data. The JSON
form names permits and fences by id, not by index, so a state survives a different or
reloaded city bundle (docs/scaling.md: hand-over between workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from rules.chain import BY_KEY
from rules.legs import LegState
from rules.machine import MachineState
from rules.reference import Reference

_NEVER = -(2**62)


@dataclass(slots=True)
class VehicleState:
    """Everything the engine remembers about one vehicle; bounded and serialisable.

    Slots and machines created on first use keep 100,000 vehicles in a few hundred MB: most
    vehicles never come near most rules (docs/performance.md)."""

    machines: dict[str, MachineState] = field(default_factory=dict)  # rule key → its machine
    last_ts: int = _NEVER
    last_received: int = _NEVER  # wall clock when the newest live fix arrived
    last_moving_outside: bool = False
    good_ts: int = _NEVER
    good_lon: float = 0.0
    good_lat: float = 0.0
    leg: LegState = field(default_factory=LegState)
    # lift-less terminals (rules.unauthorised_dump.load_dropped): the last load report, when
    # the load sensor last said loaded, the last weight and the most it weighed lately
    prev_load: int = -1
    last_loaded_ts: int = _NEVER
    prev_kg: float = float("nan")
    max_kg: float = float("nan")
    max_kg_ts: int = _NEVER
    signal_open_ts: int | None = None
    # recently closed violations (rule, start, end, end_lon, end_lat, peak, start_lon,
    # start_lat), for late data
    recent_closed: list[tuple] = field(default_factory=list)
    # SIGNAL_LOSS periods reported (start, end, lon, lat, how far a backfill has filled it)
    signal_periods: list[tuple] = field(default_factory=list)
    gaps: list[tuple[int, int, dict]] = field(default_factory=list)

    def machine(self, rule: str) -> MachineState:
        """The rule's machine, created idle on first use."""
        m = self.machines.get(rule)
        if m is None:
            m = self.machines[rule] = MachineState()
        return m

    def busy(self, rule: str) -> bool:
        m = self.machines.get(rule)
        return m is not None and m.phase != 0

    def to_dict(self, gaps: bool = True) -> dict:
        """A plain-dict copy that shares nothing mutable with the state. Gap snapshots are
        never changed in place (a resumed gap gets a new one), so they are shared, not
        copied; ``gaps=False`` leaves them out (a snapshot taken *at* a gap). No deep copy:
        with trucks parked in sites reporting every few minutes a snapshot is taken at most
        fixes, and deep-copying every saved state within it was quadratic."""
        out = {name: getattr(self, name) for name in _SCALAR_FIELDS}
        out["machines"] = {r: m.to_dict() for r, m in self.machines.items()}
        out["leg"] = self.leg.to_dict()
        out["recent_closed"] = list(self.recent_closed)
        out["signal_periods"] = list(self.signal_periods)
        out["gaps"] = list(self.gaps) if gaps else []
        return out

    @classmethod
    def from_dict(cls, data: dict, fresh: bool = False) -> VehicleState:
        """The inverse of ``to_dict``; ``data`` is left as it was (``fresh`` is accepted for
        callers that parsed it just now)."""
        machines = {r: MachineState.from_dict(m) for r, m in data.get("machines", {}).items()
                    if r in BY_KEY}
        leg = data.get("leg")
        state = cls(machines=machines, leg=LegState.from_dict(leg) if leg else LegState(),
                    **{k: data[k] for k in _SCALAR_FIELDS if k in data})
        state.signal_periods = [_padded(p, 5, 0) for p in data.get("signal_periods", [])]
        state.recent_closed = [_padded(c, 8, 0.0) for c in data.get("recent_closed", [])]
        state.gaps = [tuple(g) for g in data.get("gaps", [])]
        return state


def _padded(values, length: int, fill) -> tuple:
    """A tuple of ``length`` (snapshots written before a field was added have fewer)."""
    values = tuple(values)
    return values + (fill,) * (length - len(values))


_FLOAT_FIELDS = ("good_lon", "good_lat", "max_kg", "prev_kg")
_MACHINE_FLOATS = ("start_lon", "start_lat", "peak", "emitted_peak", "close_lon", "close_lat")


def _json_float(x):
    return None if isinstance(x, float) and x != x else x


def shallow_dict(st: VehicleState) -> dict:
    """``to_dict`` without the deep copy: for a state serialised right away (4× faster)."""
    out = {name: getattr(st, name) for name in _STATE_FIELDS}
    out["machines"] = {rule: {name: getattr(m, name) for name in _MACHINE_FIELDS}
                       for rule, m in st.machines.items()}
    out["leg"] = {name: getattr(st.leg, name) for name in _LEG_FIELDS}
    return out


_STATE_FIELDS = tuple(f.name for f in fields(VehicleState))
_SCALAR_FIELDS = tuple(n for n in _STATE_FIELDS if n not in (
    "machines", "leg", "recent_closed", "signal_periods", "gaps"))
_MACHINE_FIELDS = tuple(f.name for f in fields(MachineState))
_LEG_FIELDS = tuple(f.name for f in fields(LegState))


def _is_zone(key: str) -> bool:
    rule = BY_KEY.get(key)
    return rule is not None and rule.context_kind == "zone"


def state_to_json(data: dict, ref: Reference | None) -> dict:
    """``VehicleState.to_dict()`` → JSON: contexts by id, NaN as null (recursively: gaps
    carry whole saved states)."""
    permits = ref.permit_ids if ref is not None else []
    fences = ref.fence_ids if ref is not None else []

    def name(index: int, ids) -> str | None:
        return str(ids[index]) if 0 <= index < len(ids) else None

    out = dict(data)
    out["machines"] = {
        rule: {**{k: _json_float(v) for k, v in m.items()},
               "context": name(m["context"], fences if _is_zone(rule) else permits)}
        for rule, m in data["machines"].items()}
    leg = dict(data["leg"])
    leg["permits"] = [name(k, permits) for k in leg["permits"]]
    leg["arrive_permit"] = name(leg["arrive_permit"], permits)
    leg["origin"] = name(leg["origin"], fences)
    leg["arrive_site"] = name(leg["arrive_site"], fences)
    out["leg"] = leg
    for k in _FLOAT_FIELDS:
        out[k] = _json_float(data[k])
    out["recent_closed"] = [[_json_float(x) for x in c] for c in data["recent_closed"]]
    out["gaps"] = [[a, b, state_to_json(s, ref)] for a, b, s in data["gaps"]]
    return out


def id_indexes(ref: Reference | None) -> tuple[dict, dict]:
    """Permit id → index and fence id → index of this worker's reference."""
    if ref is None:
        return {}, {}
    return ({p: k for k, p in enumerate(ref.permit_ids)},
            {f: k for k, f in enumerate(ref.fence_ids)})


def state_from_json(data: dict, indexes: tuple[dict, dict]) -> dict:
    """The inverse of ``state_to_json`` against this worker's reference (``id_indexes``);
    a permit or zone that no longer exists becomes -1 (the violation keeps its id, loses its
    context)."""
    permits, fences = indexes

    def index(value, ids: dict) -> int:
        if isinstance(value, int):  # a state written before contexts were named
            return value
        return ids.get(value, -1) if value is not None else -1

    def num(x):
        return float("nan") if x is None else x

    out = dict(data)
    out["machines"] = {
        rule: {**m, **{k: num(m[k]) for k in _MACHINE_FLOATS if k in m},
               "context": index(m.get("context"),
                                fences if _is_zone(rule) else permits)}
        for rule, m in data.get("machines", {}).items()}
    if "leg" in data:
        leg = dict(data["leg"])
        leg["permits"] = [k for k in (index(p, permits) for p in leg.get("permits", []))
                          if k >= 0]
        leg["arrive_permit"] = index(leg.get("arrive_permit"), permits)
        leg["origin"] = index(leg.get("origin"), fences)
        leg["arrive_site"] = index(leg.get("arrive_site"), fences)
        out["leg"] = leg
    for k in _FLOAT_FIELDS:
        if k in data:
            out[k] = num(data[k])
    if "recent_closed" in data:
        out["recent_closed"] = [tuple(num(x) if i == 5 else x for i, x in enumerate(c))
                                for c in data["recent_closed"]]
    if "gaps" in data:
        out["gaps"] = [(a, b, state_from_json(s, indexes)) for a, b, s in data["gaps"]]
    return out
