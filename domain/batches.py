"""The one batch type that travels from decode to store: a struct of numpy arrays.

Why columns and not a list of objects: every stage after decoding (geofence, rules, store)
works on whole arrays, so a batch of 5,000 fixes costs a handful of numpy calls, not 5,000
Python objects. Unknown sensor values use sentinels so the arrays stay primitive:
NaN for floats, -1 for small integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

UNKNOWN = -1
"""Sentinel for an unknown lid/lift/load/sats/seq value."""

LID_CLOSED, LID_OPEN = 0, 1
LIFT_DOWN, LIFT_RAISED = 0, 1
LOAD_EMPTY, LOAD_HALF, LOAD_FULL = 0, 1, 2

_DTYPES: dict[str, np.dtype] = {
    "device": np.dtype(object),
    "ts": np.dtype(np.int64),
    "lon": np.dtype(np.float64),
    "lat": np.dtype(np.float64),
    "speed": np.dtype(np.float32),
    "heading": np.dtype(np.float32),
    "lid": np.dtype(np.int8),
    "lift": np.dtype(np.int8),
    "load": np.dtype(np.int8),
    "load_kg": np.dtype(np.float32),
    "sats": np.dtype(np.int16),
    "hdop": np.dtype(np.float32),
    "seq": np.dtype(np.int64),
    "alarm": np.dtype(np.int64),  # the terminal's alarm word (JT/T 808 0x0200 DWORD)
    "received": np.dtype(np.int64),
    "backfill": np.dtype(np.bool_),
}


@dataclass(frozen=True, slots=True, eq=False)
class FixBatch:
    """Fixes of many devices, one row per fix, all columns the same length.

    ``ts`` and ``received`` are Unix epoch milliseconds (UTC); ``ts`` is device time.
    ``backfill`` marks fixes that arrived on the blind-area batch topic.
    """

    device: np.ndarray
    ts: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray
    heading: np.ndarray
    lid: np.ndarray
    lift: np.ndarray
    load: np.ndarray
    load_kg: np.ndarray
    sats: np.ndarray
    hdop: np.ndarray
    seq: np.ndarray
    alarm: np.ndarray
    received: np.ndarray
    backfill: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.device)
        for f in fields(self):
            column = getattr(self, f.name)
            if column.dtype != _DTYPES[f.name]:
                raise TypeError(f"FixBatch.{f.name}: dtype {column.dtype}, want {_DTYPES[f.name]}")
            if column.shape != (n,):
                raise ValueError(f"FixBatch.{f.name}: shape {column.shape}, want ({n},)")

    def __len__(self) -> int:
        return len(self.device)

    @classmethod
    def empty(cls) -> FixBatch:
        return cls(**{name: np.empty(0, dtype) for name, dtype in _DTYPES.items()})

    @classmethod
    def from_columns(cls, **columns: object) -> FixBatch:
        """Build from array-likes, casting to the canonical dtypes; missing sensor columns
        are filled with their 'unknown' sentinel."""
        n = len(columns["device"])  # type: ignore[arg-type]
        out = {}
        for name, dtype in _DTYPES.items():
            if name in columns:
                out[name] = np.asarray(columns[name], dtype=dtype)
            elif dtype.kind == "f":
                out[name] = np.full(n, np.nan, dtype)
            elif name == "backfill":
                out[name] = np.zeros(n, dtype)
            elif name in ("lid", "lift", "load", "sats", "seq", "alarm"):
                out[name] = np.full(n, UNKNOWN, dtype)
            else:
                raise ValueError(f"FixBatch.from_columns: column {name!r} is required")
        return cls(**out)

    def take(self, index: np.ndarray) -> FixBatch:
        """Rows selected by an integer index or boolean mask, in that order."""
        return FixBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(batches: list[FixBatch]) -> FixBatch:
        if not batches:
            return FixBatch.empty()
        return FixBatch(
            **{
                name: np.concatenate([getattr(b, name) for b in batches]).astype(dtype, copy=False)
                for name, dtype in _DTYPES.items()
            }
        )

    def device_time_order(self) -> np.ndarray:
        """Index that sorts by (device, ts): the order every per-vehicle stage wants."""
        return np.lexsort((self.ts, self.device.astype(str)))

    def first_per_key(self) -> np.ndarray:
        """Index of the first row of each distinct (device, ts), in original order.

        A terminal that resends a fix (QoS 1 redelivery, backfill overlapping live data)
        produces the same key twice; the first copy wins, as in the database."""
        if len(self) == 0:
            return np.empty(0, np.intp)
        keys = np.rec.fromarrays([self.device.astype(str), self.ts])
        _, first = np.unique(keys, return_index=True)
        return np.sort(first)


@dataclass(slots=True)
class Rejects:
    """Input that was refused: raw bytes kept for the dead-letter table."""

    topic: list[str] = field(default_factory=list)
    device: list[str | None] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    payload: list[bytes] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)

    def add(
        self,
        topic: str,
        device: str | None,
        reason: str,
        detail: str,
        payload: bytes,
        received_ms: int,
    ) -> None:
        self.topic.append(topic)
        self.device.append(device)
        self.reason.append(reason)
        self.detail.append(detail)
        self.payload.append(payload)
        self.received_ms.append(received_ms)

    def __len__(self) -> int:
        return len(self.topic)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.reason:
            out[r] = out.get(r, 0) + 1
        return out


@dataclass(slots=True)
class DeviceStatus:
    """A terminal's online/offline announcement (retained; the offline one is its last will)."""

    device: list[str] = field(default_factory=list)
    online: list[bool] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)


@dataclass(slots=True)
class MediaBatch:
    """Photos (or other items) terminals uploaded: each header's fields and the bytes as sent.
    Few and large, so plain lists (one entry per item): no column here is worth numpy."""

    device: list[str] = field(default_factory=list)
    media_id: list[int] = field(default_factory=list)  # the terminal's multimedia id (DWORD)
    ts: list[int] = field(default_factory=list)  # device time it was taken, epoch ms
    media_type: list[str] = field(default_factory=list)  # image, audio, video
    media_format: list[str] = field(default_factory=list)  # jpeg, …
    event: list[int] = field(default_factory=list)  # why it was taken (0 platform command …)
    channel: list[int] = field(default_factory=list)  # the camera
    lon: list[float | None] = field(default_factory=list)  # None: taken without a position
    lat: list[float | None] = field(default_factory=list)
    command: list[str | None] = field(default_factory=list)  # the capture command's id
    data: list[bytes] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.device)


@dataclass(slots=True)
class TerminalAlarms:
    """Alarm words of location reports that had no position (a fix needs one)."""

    device: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)  # device time, epoch ms
    alarm: list[int] = field(default_factory=list)  # JT/T 808 0x0200 alarm DWORD
    received_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.device)


@dataclass(slots=True)
class CommandStates:
    """What became of commands to terminals, as reported by whoever holds the terminal."""

    device: list[str] = field(default_factory=list)  # from the topic: only its own commands
    command_id: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)  # domain.wire.COMMAND_STATES
    ts: list[int] = field(default_factory=list)  # when it happened, epoch ms
    detail: list[str | None] = field(default_factory=list)
    result: list[dict | None] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.device)
