"""What one ``Fleet.advance`` returns: the reports as columns, and their wire encoding.

Kept apart from the simulation so that its consumers (the demo, the mixed scenario, the
benchmarks) see one small record type — a column per field, one row per report — and the
rule for turning a row into a wire-format v1 message (sensors a terminal lacks left out) sits
in one place, next to the columns it encodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domain.wire import fix_message


@dataclass(frozen=True, slots=True)
class FleetTick:
    """The reports of the trucks whose terminals reported during one ``advance``, one row
    each, in report order."""

    truck: np.ndarray  # index of the truck in the fleet
    device: np.ndarray  # object array of device ids
    ts: np.ndarray  # epoch ms, device time (a skewed clock included)
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray
    heading: np.ndarray
    lid: np.ndarray
    lift: np.ndarray  # -1: the terminal has no lift sensor (key left out)
    load: np.ndarray  # -1: no load-level sensor (key left out)
    load_kg: np.ndarray  # NaN: no weighing sensor
    sats: np.ndarray
    hdop: np.ndarray
    seq: np.ndarray
    phase: np.ndarray  # the truck's phase when it reported
    permit: np.ndarray  # index into Fleet.permits of the job it works (-1 none)

    def __len__(self) -> int:
        return len(self.truck)

    @classmethod
    def concat(cls, ticks: list[FleetTick]) -> FleetTick:
        names = cls.__dataclass_fields__
        if not ticks:
            kinds = {"device": object, "truck": np.int64, "ts": np.int64, "seq": np.int64,
                     "phase": np.int8, "permit": np.int64}
            return cls(**{n: np.zeros(0, kinds.get(n, float)) for n in names})
        if len(ticks) == 1:
            return ticks[0]
        return cls(**{n: np.concatenate([getattr(t, n) for t in ticks]) for n in names})

    def wire_fixes(self) -> list[tuple[str, dict]]:
        """(device id, wire-format v1 object) per report."""
        columns = zip(
            self.device.tolist(), self.ts.tolist(), self.lon.round(7).tolist(),
            self.lat.round(7).tolist(), self.speed.round(1).tolist(),
            self.heading.round(0).tolist(), self.lid.tolist(), self.lift.tolist(),
            self.load.tolist(), self.sats.tolist(), self.hdop.round(1).tolist(),
            self.seq.tolist(), strict=True,
        )
        out = [
            (dev, fix_message(ts, lon, lat, spd=spd, hdg=hdg, lid=lid, lift=lift, load=load,
                              sats=sats, hdop=hdop, seq=seq))
            for dev, ts, lon, lat, spd, hdg, lid, lift, load, sats, hdop, seq in columns
        ]
        odd = np.flatnonzero((self.lift < 0) | (self.load < 0) | ~np.isnan(self.load_kg))
        if len(odd):
            kg = self.load_kg.round(0)
            for r in odd.tolist():
                fix = out[r][1]
                if fix["lift"] < 0:
                    del fix["lift"]
                if fix["load"] < 0:
                    del fix["load"]
                if not np.isnan(kg[r]):
                    fix["load_kg"] = float(kg[r])
        return out
