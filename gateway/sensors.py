"""From a JT/T 808 location report to a wire-format v1 fix, lid and lift included.

The national standard encodes the load state (status bits 8–9) but not the lid (密闭) or the
tipper (举升): local specifications put them in status or IO bits, analog inputs or vendor
extra items. Where a terminal model keeps them is configuration — a *source* per sensor:

| source | reads |
|---|---|
| `status:N` | bit N of the status DWORD |
| `io:N` | bit N of extra item 0x2A (IO status WORD) |
| `signal:N` | bit N of extra item 0x25 (extended vehicle signals DWORD) |
| `analog:K>T` | analog input K (0 or 1) of extra item 0x2B above T |
| `extra:0xE1:N` | bit N of vendor extra item 0xE1 (its bytes as a big-endian integer) |
| `""` | not reported: the fix has no such key, and the rules treat it as unknown |

A leading `!` inverts a source (active low). A report missing the item a source needs leaves
that sensor unknown, never "closed".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.wire import fix_message
from gateway.codec import CodecError, Location

_SOURCE = re.compile(r"(!?)(status|io|signal):(\d{1,2})|(!?)analog:([01])>(\d+)"
                     r"|(!?)extra:0x([0-9A-Fa-f]{2}):(\d{1,2})")


class MappingError(ValueError):
    """A sensor source that cannot be parsed; names it."""


@dataclass(frozen=True)
class Source:
    kind: str  # status, io, signal, analog, extra
    bit: int = 0  # bit number, or the analog input
    threshold: int = 0
    item: int = 0
    invert: bool = False

    @classmethod
    def parse(cls, text: str, what: str) -> Source | None:
        text = text.strip()
        if not text:
            return None
        m = _SOURCE.fullmatch(text)
        if not m:
            raise MappingError(f"{what}: {text!r} is not status:N, io:N, signal:N, "
                               "analog:K>T or extra:0xHH:N (optionally with a leading !)")
        if m.group(2):
            source = cls(m.group(2), int(m.group(3)), invert=bool(m.group(1)))
            limit = {"status": 31, "io": 15, "signal": 31}[source.kind]
        elif m.group(5):
            source = cls("analog", int(m.group(5)), int(m.group(6)), invert=bool(m.group(4)))
            limit = 1
        else:
            source = cls("extra", int(m.group(9)), item=int(m.group(8), 16),
                         invert=bool(m.group(7)))
            limit = 63
        if source.bit > limit:
            raise MappingError(f"{what}: bit {source.bit} is out of range for {source.kind}")
        return source

    def read(self, loc: Location) -> int | None:
        if self.kind == "status":
            value = (loc.status >> self.bit) & 1
        elif self.kind == "analog":
            raw = loc.extras.get(0x2B)
            if raw is None or len(raw) != 4:
                return None
            word = int.from_bytes(raw, "big")
            value = int(((word >> (16 * self.bit)) & 0xFFFF) > self.threshold)
        else:
            item = {"io": 0x2A, "signal": 0x25}.get(self.kind, self.item)
            raw = loc.extras.get(item)
            if raw is None or len(raw) * 8 <= self.bit:
                return None
            value = (int.from_bytes(raw, "big") >> self.bit) & 1
        return value ^ 1 if self.invert else value


@dataclass(frozen=True)
class SensorMapping:
    lid: Source | None = None
    lift: Source | None = None

    @classmethod
    def parse(cls, lid: str, lift: str, what: str = "sensor mapping") -> SensorMapping:
        return cls(Source.parse(lid, f"{what} lid"), Source.parse(lift, f"{what} lift"))


def to_fix(loc: Location, serial: int, mapping: SensorMapping) -> dict | None:
    """The wire-format v1 object for a location report, or None if the terminal had no
    position (status bit 1 clear): such a report is acknowledged but carries no fix."""
    if not loc.status & 0x02:
        return None
    ts = int(loc.time.timestamp() * 1000)
    sats = loc.extras.get(0x31)
    return fix_message(
        ts, loc.lon, loc.lat, spd=loc.speed_kmh, hdg=loc.direction % 360, seq=serial,
        load=loc.load, alarm=loc.alarm,
        lid=mapping.lid.read(loc) if mapping.lid is not None else None,
        lift=mapping.lift.read(loc) if mapping.lift is not None else None,
        sats=sats[0] if sats is not None and len(sats) == 1 else None)


__all__ = ["CodecError", "MappingError", "SensorMapping", "Source", "to_fix"]
