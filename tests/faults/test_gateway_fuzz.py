"""Hostile JT/T 808 through the real gateway: 100,000 frames over TCP, interleaved with valid
reports, into the real broker and ingest.

Sixteen terminals send frames that are invalid by construction (a wrong check byte, a length
that lies, truncated or out-of-range bodies, broken BCD times, overrunning extra items, bad
batches, impossible subpackages, unsupported messages, reports under a phone that never
authenticated, invalid escapes, frames shorter than a header, garbage between frames, frames
over the size limit) mixed with valid reports and blind-area batches; every frame's answer is
known in advance and checked, and every valid fix must reach the database. Four more
terminals send location reports with random body bytes (check byte recomputed, so they get
past the framing): each must be answered exactly as the codec decides, and every one answered
'ok' must reach the broker — stored, or dead-lettered by the ingest with a reason."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway import codec
from gateway.codec import Location
from gateway.terminal import Terminal

pytestmark = pytest.mark.e2e
EXACT_TERMINALS, MUTATION_TERMINALS = 16, 4
FRAMES_EACH = 5_000  # 20 terminals × 5,000 = 100,000 frames
VALID_SHARE = 0.25
CHUNK = 200  # frames sent before reading their answers (terminals pipeline too)
NO_REPLY = None


def wrap(raw: bytes) -> bytes:
    return b"\x7e" + codec.escape(raw) + b"\x7e"


def raw_of(frame: bytes) -> bytes:
    return codec.unescape(frame[1:-1])


def with_check(payload: bytes) -> bytes:
    return wrap(payload + bytes([codec.xor(payload)]))


def no_flags(rng: random.Random, n: int) -> bytes:
    """Random bytes without 0x7E, so they never delimit a frame."""
    return bytes(b if b != 0x7E else 0x7F for b in rng.randbytes(n))


@dataclass
class Plan:
    """What one terminal sends and what it must get back."""

    terminal: Terminal
    items: list[tuple[bytes, tuple | None]] = field(default_factory=list)  # frame, answer key
    fix_ts: set[int] = field(default_factory=set)  # ts (ms) of fixes that must be published
    kinds: dict[str, int] = field(default_factory=dict)
    garbage_bytes: int = 0
    oversized_bytes: int = 0

    def add(self, kind: str, frame: bytes, answer: tuple | None) -> None:
        self.items.append((frame, answer))
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def location(at: datetime, k: int) -> Location:
    return Location(alarm=0, status=0x0302, lat=22.5 + (k % 997) * 1e-4, lon=114.05, altitude_m=5,
                    speed_kmh=30.0, direction=90, time=at.replace(microsecond=0),
                    extras={0x31: bytes([9])})


def ts_ms(at: datetime) -> int:
    return int(at.replace(microsecond=0).timestamp() * 1000)


def exact_plan(rng: random.Random, phone: str, now: datetime, version: int | None) -> Plan:
    """Valid reports interleaved with frames that are invalid by construction (2013 frames,
    or 2019 ones with ``version``)."""
    t = Terminal(phone, version)
    stranger = Terminal("0" + phone[1:-1] + str((int(phone[-1]) + 5) % 10), version)
    plan = Plan(t)
    second = 0

    def next_time() -> datetime:
        nonlocal second
        second += 1
        return now - timedelta(seconds=10 + second)

    def answer(term: Terminal, msg_id: int, result: int) -> tuple:
        return (term.phone, term.serial, msg_id, result)

    flag_pending = False  # a 7E left open: garbage next would become a frame
    while len(plan.items) < FRAMES_EACH:
        if not flag_pending and rng.random() < 0.02:
            junk = no_flags(rng, rng.randrange(1, 300))
            plan.garbage_bytes += len(junk)
            plan.add("garbage", junk, NO_REPLY)
        flag_pending = False
        if rng.random() < VALID_SHARE:
            if rng.random() < 0.8:
                at = next_time()
                plan.add("valid_location", t.location(location(at, second)),
                         answer(t, codec.LOCATION, codec.OK))
                plan.fix_ts.add(ts_ms(at))
            else:
                times = [next_time() for _ in range(3)]
                plan.add("valid_batch", t.batch([location(at, second) for at in times]),
                         answer(t, codec.BATCH, codec.OK))
                plan.fix_ts.update(ts_ms(at) for at in times)
            continue
        body = codec.encode_location(location(now - timedelta(hours=2), 0))
        kind = rng.randrange(15)
        if kind == 0:
            raw = bytearray(raw_of(t.location(location(now, 0))))
            raw[-1] ^= rng.randrange(1, 256)
            plan.add("bad_check", wrap(bytes(raw)), answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 1:
            raw = bytearray(raw_of(t.location(location(now, 0))))[:-1]
            props = struct.unpack_from(">H", raw, 2)[0]
            lie = (props & 0x03FF) + rng.randrange(1, 100)
            struct.pack_into(">H", raw, 2, (props & ~0x03FF) | (lie & 0x03FF))
            plan.add("length_lies", with_check(bytes(raw)),
                     answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 2:
            plan.add("short_location", t.frame(codec.LOCATION, body[:rng.randrange(28)]),
                     answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 3:
            bad = bytearray(body)
            if rng.random() < 0.5:
                bad[23] = rng.choice([0x00, 0x13, 0x99])  # month 00, 13 or 99
            else:
                bad[22 + rng.randrange(6)] |= 0x0A  # a non-decimal nibble
            plan.add("bad_time", t.frame(codec.LOCATION, bytes(bad)),
                     answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 4:
            bad = bytearray(body)
            at = rng.choice([8, 12])  # latitude > 90° or longitude > 180°
            struct.pack_into(">I", bad, at, rng.randrange(181_000_000, 2**32))
            plan.add("out_of_range", t.frame(codec.LOCATION, bytes(bad)),
                     answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 5:
            bad = body + bytes([0xE1, rng.randrange(1, 256)])
            plan.add("extra_overruns", t.frame(codec.LOCATION, bad),
                     answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 6:
            good = codec.encode_batch(1, [location(now, 0)])
            bad = rng.choice([bytes([0, 3, 2]) + good[3:],  # type 2
                              bytes([0, 5, 1]) + good[3:],  # says 5 items, has 1
                              good + b"\x00",  # trailing byte
                              good[:2]])  # too short
            plan.add("bad_batch", t.frame(codec.BATCH, bad),
                     answer(t, codec.BATCH, codec.BAD_MESSAGE))
        elif kind == 7:
            t.serial = (t.serial + 1) & 0xFFFF
            total, index = rng.choice([(0, 1), (3, 0), (2, 5), (1000, 1), (65535, 7)])
            props = 0x2000 | len(body) | (0x4000 if version is not None else 0)
            header = struct.pack(">HH", codec.LOCATION, props) + (
                codec.bcd_encode(t.phone, 6) if version is None
                else bytes([version]) + codec.bcd_encode(t.phone, 10)) + \
                struct.pack(">HHH", t.serial, total, index)
            plan.add("impossible_subpackage", with_check(header + body),
                     answer(t, codec.LOCATION, codec.BAD_MESSAGE))
        elif kind == 8:
            msg_id = rng.randrange(0x0F00, 0x1000)
            plan.add("unsupported", t.frame(msg_id, rng.randbytes(rng.randrange(40))),
                     answer(t, msg_id, codec.UNSUPPORTED))
        elif kind == 9:
            plan.add("unauthenticated_phone", stranger.location(location(now, 0)),
                     answer(stranger, codec.LOCATION, codec.FAIL))
        elif kind == 10:
            escaped = t.location(location(now, 0))
            at = rng.randrange(1, len(escaped) - 1)
            plan.add("invalid_escape", escaped[:at] + b"\x7d" + bytes([rng.randrange(3, 0x7D)])
                     + escaped[at:], NO_REPLY)
        elif kind == 11:
            plan.add("shorter_than_header", b"\x7e" + no_flags(rng, rng.randrange(1, 12))
                     .replace(b"\x7d", b"\x7c") + b"\x7e", NO_REPLY)
        elif kind == 12:
            n = rng.randrange(4_200, 12_000)
            plan.oversized_bytes += n
            plan.add("oversized", b"\x7e" + no_flags(rng, n) + b"\x7e", NO_REPLY)
            flag_pending = True
        elif kind == 13:
            plan.add("short_registration", t.frame(codec.REGISTER, rng.randbytes(
                rng.randrange(0, 20))), answer(t, codec.REGISTER, codec.BAD_MESSAGE))
        else:
            plan.add("frame_flags_only", b"\x7e\x7e\x7e", NO_REPLY)
            flag_pending = True
    return plan


def mutation_plan(rng: random.Random, phone: str, now: datetime) -> Plan:
    """Location reports with 1–4 random body bytes: answered as the codec decides."""
    t = Terminal(phone)
    plan = Plan(t)
    for k in range(FRAMES_EACH):
        body = bytearray(codec.encode_location(location(now - timedelta(seconds=10 + k), k)))
        for _ in range(rng.randrange(1, 5)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        try:
            loc = codec.decode_location(bytes(body))
            result = codec.OK
            if loc.status & 0x02:
                plan.fix_ts.add(int(loc.time.timestamp() * 1000))
        except codec.CodecError:
            result = codec.BAD_MESSAGE
        plan.add("ok" if result == codec.OK else "bad", t.frame(codec.LOCATION, bytes(body)),
                 (t.phone, t.serial, codec.LOCATION, result))
    return plan


def drive(port: int, plan: Plan, errors: list[str]) -> None:
    """Register, authenticate, then send the plan CHUNK frames at a time, checking every
    answer against the plan."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        buffer = bytearray()

        def answers(n: int) -> list[tuple]:
            got: list[tuple] = []
            while len(got) < n:
                data = sock.recv(65_536)
                if not data:
                    raise AssertionError(f"{plan.terminal.phone}: the gateway closed the "
                                         f"connection with {n - len(got)} answers missing")
                buffer.extend(data)
                for raw in codec.split_frames(buffer)[0]:
                    frame = codec.decode_frame(raw)
                    if frame.header.msg_id == codec.REGISTER_REPLY:
                        serial, result, code = codec.decode_register_reply(frame.body)
                        got.append((frame.header.phone, serial, codec.REGISTER, result, code))
                    else:
                        serial, msg_id, result = codec.decode_general_reply(frame.body)
                        got.append((frame.header.phone, serial, msg_id, result))
            return got

        t = plan.terminal
        sock.sendall(t.register())
        [(*_, result, code)] = answers(1)
        assert result == 0, f"{t.phone}: registration refused"
        sock.sendall(t.authenticate(code))
        assert answers(1)[0][3] == codec.OK, f"{t.phone}: authentication refused"
        for start in range(0, len(plan.items), CHUNK):
            chunk = plan.items[start:start + CHUNK]
            sock.sendall(b"".join(frame for frame, _ in chunk))
            expected = [a for _, a in chunk if a is not None]
            got = answers(len(expected))
            if sorted(got) != sorted(expected):
                wrong = sorted(set(got) ^ set(expected))[:5]
                raise AssertionError(f"{t.phone}: frames {start}…{start + len(chunk)}: "
                                     f"answers differ from the plan, e.g. {wrong}")
        sock.close()
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")


def test_100000_hostile_frames_through_gateway_broker_and_ingest(
        broker, start_ingest, db, poll, run_dir, capsys):
    root = f"jtfuzz{uuid.uuid4().hex[:6]}/v1"
    ingest = start_ingest(f"jtfuzz-ingest-{root[6:12]}", MUCKWATCH_MQTT_TOPIC_ROOT=root)
    log_path = run_dir / f"gateway-fuzz-{root[6:12]}.log"
    with open(log_path, "w") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "gateway", "--listen", "127.0.0.1:0",
             "--mqtt", f"mqtt://127.0.0.1:{broker.port}"],
            stdout=subprocess.PIPE, stderr=log, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, "MUCKWATCH_MQTT_TOPIC_ROOT": root,
                 "MUCKWATCH_MQTT_CLIENT_ID": f"jtfuzz-gw-{root[6:12]}"})
    deadline = time.monotonic() + 30
    while not (m := re.search(r"listening on 127.0.0.1:(\d+)", log_path.read_text())):
        assert gateway.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)
    port = int(m.group(1))

    rng = random.Random(808)
    now = datetime.now(UTC)
    base = rng.randrange(10**9, 9 * 10**9)
    phones = [f"0{base + 10 * k:011d}"[-12:] for k in range(EXACT_TERMINALS + MUTATION_TERMINALS)]
    plans = [exact_plan(random.Random(rng.random()), p, now, None if k % 2 else 1)
             for k, p in enumerate(phones[:EXACT_TERMINALS])]
    plans += [mutation_plan(random.Random(rng.random()), p, now)
              for p in phones[EXACT_TERMINALS:]]
    total = sum(len(p.items) for p in plans)
    assert total == (EXACT_TERMINALS + MUTATION_TERMINALS) * FRAMES_EACH

    errors: list[str] = []
    threads = [threading.Thread(target=drive, args=(port, p, errors)) for p in plans]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    elapsed = time.monotonic() - t0
    assert not errors, errors[:5]
    assert gateway.poll() is None, "the gateway survived"

    devices = {p.terminal.phone.lstrip("0").rjust(12, "0"): p for p in plans}

    def stored() -> dict[str, set[int]]:
        db.rollback()
        rows = db.execute("SELECT device_id, (extract(epoch FROM ts) * 1000)::bigint"
                          " FROM telemetry WHERE device_id = ANY(%s)", (list(devices),))
        out: dict[str, set[int]] = {d: set() for d in devices}
        for device, ts in rows:
            out[device].add(ts)
        return out

    reasons: dict[str, int] = {}

    def dead() -> dict[str, set[int]]:
        db.rollback()
        out: dict[str, set[int]] = {d: set() for d in devices}
        reasons.clear()
        for device, reason, payload in db.execute(
                "SELECT device_id, reason, payload FROM dead_letter WHERE topic LIKE %s",
                (root + "/%/telemetry%",)):  # not the alarm words of unpositioned reports
            out.setdefault(device, set()).add(orjson.loads(payload)["ts"])
            reasons[reason] = reasons.get(reason, 0) + 1
        return out

    want = sum(len(p.fix_ts) for p in plans)
    def accounted() -> int:
        landed, rejected = stored(), dead()
        return sum(len(landed[d] | rejected.get(d, set())) for d in devices)
    assert poll(lambda: accounted() >= want, timeout_s=180), (accounted(), want)
    landed, rejected = stored(), dead()
    for device, plan in devices.items():
        if plan.kinds.get("valid_location"):
            assert landed[device] == plan.fix_ts and not rejected[device], \
                f"{device}: every valid fix stored, nothing else"
        else:
            assert landed[device] | rejected[device] == plan.fix_ts, \
                f"{device}: every fix answered 'ok' reached the broker and the ingest"
    assert ingest.proc.poll() is None, "the ingest survived"

    gateway.send_signal(signal.SIGTERM)
    out, _ = gateway.communicate(timeout=30)
    assert gateway.returncode == 0, log_path.read_text()[-2000:]
    stats = json.loads(out)
    log_text = log_path.read_text()
    assert "unexpected error" not in log_text and "Traceback" not in log_text

    kinds: dict[str, int] = {}
    for p in plans[:EXACT_TERMINALS]:
        for k, n in p.kinds.items():
            kinds[k] = kinds.get(k, 0) + n
    mutated_bad = sum(p.kinds.get("bad", 0) for p in plans[EXACT_TERMINALS:])
    undecodable = ("bad_check", "length_lies", "short_location", "bad_time", "out_of_range",
                   "extra_overruns", "bad_batch", "impossible_subpackage", "invalid_escape",
                   "shorter_than_header", "short_registration")
    assert stats["bad_frames"] == sum(kinds.get(k, 0) for k in undecodable) + mutated_bad
    assert stats["unsupported"] == kinds["unsupported"]
    garbage = sum(p.garbage_bytes + p.oversized_bytes for p in plans)
    assert stats["dropped_bytes"] >= garbage
    assert stats["open_connections"] == 0
    fixes = sum(len(p.fix_ts) for p in plans)
    with capsys.disabled():
        print(f"\n[jt808 fuzz] {total:,} frames from {len(plans)} terminals in {elapsed:.1f} s "
              f"({total / elapsed:,.0f} frames/s): {fixes:,} fixes published and accounted for "
              f"({sum(map(len, landed.values())):,} stored, "
              f"{sum(map(len, rejected.values())):,} dead-lettered by the ingest: {reasons}); "
              f"gateway counters bad_frames={stats['bad_frames']:,} "
              f"unsupported={stats['unsupported']:,} dropped_bytes={stats['dropped_bytes']:,}; "
              f"by kind {dict(sorted(kinds.items()))}; mutated bodies: "
              f"{sum(p.kinds.get('ok', 0) for p in plans[EXACT_TERMINALS:]):,} decodable, "
              f"{mutated_bad:,} refused")
