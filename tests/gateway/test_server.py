"""The gateway as users run it: ``muckwatch gateway`` as a process, a real TCP client speaking
JT/T 808 (register → auth → reports → blind-area batch), the fixes through the real broker
and ingest into the database; bad frames answered and survived; sensor mappings."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway import codec
from gateway.codec import Location
from gateway.sensors import MappingError, SensorMapping, Source, to_fix
from gateway.terminal import Terminal, replies

pytestmark = pytest.mark.e2e


def start_gateway(broker, log_path, **env: str) -> tuple[subprocess.Popen, int]:
    """``muckwatch gateway`` on a free loopback port; returns the process and the port."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "gateway", "--listen", "127.0.0.1:0",
             "--mqtt", f"mqtt://127.0.0.1:{broker.port}"],
            stdout=subprocess.PIPE, stderr=log, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while not (m := re.search(r"listening on 127.0.0.1:(\d+)", log_path.read_text())):
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)
    return proc, int(m.group(1))


@pytest.fixture(scope="module")
def gateway_port(broker, run_dir):
    log_path = run_dir / "gateway.log"
    proc, port = start_gateway(broker, log_path, MUCKWATCH_GATEWAY_LID="io:8",
                               MUCKWATCH_GATEWAY_LIFT="io:9")
    yield port
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log_path.read_text()
    stats = json.loads(out)
    assert stats["bad_frames"] == 1 and stats["unsupported"] == 1, out
    assert stats["open_connections"] == 0


class Client:
    def __init__(self, port: int, terminal: Terminal) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.t = terminal
        self.buffer = bytearray()

    def send(self, frame: bytes, expect: int = 1) -> list[tuple[int, bytes]]:
        self.sock.sendall(frame)
        got: list[tuple[int, bytes]] = []
        while len(got) < expect:
            self.buffer += self.sock.recv(65536)
            got += replies(self.buffer)
        return got

    def general(self, frame: bytes) -> int:
        [(msg_id, body)] = self.send(frame)
        assert msg_id == codec.PLATFORM_REPLY
        return codec.decode_general_reply(body)[2]


def loc(at: datetime, k: int, io: int = 0) -> Location:
    return Location(alarm=0x0120, status=0x0302, lat=22.55 + k * 1e-4, lon=114.05, altitude_m=10,
                    speed_kmh=30.0, direction=90, time=at.replace(microsecond=0),
                    extras={0x2A: io.to_bytes(2, "big"), 0x31: bytes([11])})


@pytest.mark.parametrize("protocol", ["2011", "2013", "2019"])
def test_register_auth_reports_and_a_blind_area_batch_reach_the_database(
        gateway_port, ingest, db, poll, protocol):
    phone = "0" + "".join(random.choice("0123456789") for _ in range(11))
    device = phone.lstrip("0").rjust(12, "0")
    c = Client(gateway_port, Terminal(phone, 1 if protocol == "2019" else None,
                                      legacy_2011=protocol == "2011"))
    [(msg_id, body)] = c.send(c.t.register())
    serial, result, code = codec.decode_register_reply(body)
    assert (msg_id, serial, result) == (codec.REGISTER_REPLY, c.t.serial, 0) and code
    assert c.general(c.t.authenticate("wrong")) == codec.FAIL
    assert c.general(c.t.authenticate(code)) == codec.OK
    now = datetime.now(UTC)
    live = [now - timedelta(seconds=30 - 10 * k) for k in range(3)]
    for k, at in enumerate(live):
        assert c.general(c.t.location(loc(at, k, io=0x0100))) == codec.OK  # lid open
    blind = [now - timedelta(minutes=10, seconds=-5 * k) for k in range(5)]
    assert c.general(c.t.batch([loc(at, k, io=0x0200) for k, at in enumerate(blind)])) == 0
    assert c.general(c.t.heartbeat()) == codec.OK

    def rows():
        db.rollback()
        return db.execute("SELECT count(*) FILTER (WHERE NOT backfill),"
                          " count(*) FILTER (WHERE backfill), max(lid), max(lift), max(load),"
                          " max(sats) FROM telemetry WHERE device_id = %s",
                          (device,)).fetchone()
    assert poll(lambda: rows()[:2] == (3, 5), timeout_s=30), rows()
    assert rows()[2:] == (1, 1, 2, 11), "lid io:8, lift io:9, load from status bits 8–9"
    db.rollback()
    alarms = db.execute("SELECT DISTINCT alarm FROM telemetry WHERE device_id = %s",
                        (device,)).fetchall()
    assert alarms == [(0x0120,)], "the alarm word as the terminal sent it"
    assert c.general(c.t.logout()) == codec.OK
    assert c.sock.recv(10) == b"", "the gateway closes after a logout"

    def history():
        db.rollback()
        return [r[0] for r in db.execute("SELECT online FROM device_status_changes"
                                         " WHERE device_id = %s ORDER BY at", (device,))]
    # authenticated → online, logged out → offline: announced on the status topic, kept by
    # the ingest as device_status and its history
    assert poll(lambda: history() == [True, False], timeout_s=30), history()
    db.rollback()
    assert db.execute("SELECT online FROM device_status WHERE device_id = %s",
                      (device,)).fetchone() == (False,)


def test_bad_frames_are_answered_and_the_connection_lives_on(gateway_port):
    c = Client(gateway_port, Terminal("013900000001"))
    [(_, body)] = c.send(c.t.register())
    code = codec.decode_register_reply(body)[2]
    assert c.general(c.t.authenticate(code)) == codec.OK
    good = c.t.heartbeat()
    broken = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:]  # check byte off by one bit
    [(msg_id, body)] = c.send(broken)
    assert msg_id == codec.PLATFORM_REPLY
    assert codec.decode_general_reply(body)[2] == codec.BAD_MESSAGE
    assert c.general(c.t.frame(0x0F0F, b"??")) == codec.UNSUPPORTED
    c.sock.sendall(b"garbage without any flag")
    assert c.general(c.t.heartbeat()) == codec.OK, "still serving this connection"
    other = Client(gateway_port, Terminal("013900000002"))
    assert other.general(other.t.location(loc(datetime.now(UTC), 0))) == codec.FAIL, \
        "reports before authentication are refused"


def test_subpackaged_batch_is_reassembled(gateway_port, ingest, db, poll):
    t = Terminal("013900000003")
    c = Client(gateway_port, t)
    [(_, body)] = c.send(t.register())
    assert c.general(t.authenticate(codec.decode_register_reply(body)[2])) == codec.OK
    now = datetime.now(UTC)
    body = codec.encode_batch(1, [loc(now - timedelta(minutes=20, seconds=-k), k)
                                  for k in range(4)])
    parts = [body[i:i + 40] for i in range(0, len(body), 40)]
    for index, part in enumerate(parts, 1):
        t.serial += 1
        frame = codec.encode_frame(codec.Header(codec.BATCH, t.phone, t.serial,
                                                package_total=len(parts),
                                                package_index=index), part)
        c.sock.sendall(frame)
    answers = c.send(b"", expect=1)
    assert codec.decode_general_reply(answers[0][1])[2] == codec.OK

    def backfill():
        db.rollback()
        return db.execute("SELECT count(*) FROM telemetry WHERE device_id = %s AND backfill",
                          ("013900000003",)).fetchone()[0]
    assert poll(lambda: backfill() == 4, timeout_s=30)


def test_sensor_sources():
    at = datetime(2026, 11, 19, tzinfo=UTC)
    base = Location(0, 0x0002 | (1 << 12), 22.5, 114.0, 0, 12.0, 400, at,
                    {0x2A: (0b10).to_bytes(2, "big"), 0x2B: (700 << 16 | 20).to_bytes(4, "big"),
                     0xE1: b"\x04"})
    assert Source.parse("status:12", "x").read(base) == 1
    assert Source.parse("!status:12", "x").read(base) == 0
    assert Source.parse("io:1", "x").read(base) == 1
    assert Source.parse("analog:1>500", "x").read(base) == 1
    assert Source.parse("analog:0>500", "x").read(base) == 0
    assert Source.parse("extra:0xE1:2", "x").read(base) == 1
    assert Source.parse("signal:3", "x").read(base) is None, "no 0x25 item: unknown"
    fix = to_fix(base, 7, SensorMapping.parse("io:1", "extra:0xE1:2"))
    assert (fix["lid"], fix["lift"], fix["hdg"], fix["seq"]) == (1, 1, 40, 7)
    assert "load" in fix and fix["load"] == 0
    assert to_fix(Location(0, 0, 0, 0, 0, 0, 0, at), 1, SensorMapping()) is None, \
        "no position: no fix"
    for bad in ("io:99", "lid", "analog:2>1", "extra:E1:1"):
        with pytest.raises(MappingError):
            Source.parse(bad, "x")


def test_the_simulator_speaks_jt808_through_the_gateway(gateway_port, ingest, db, poll,
                                                        tmp_path):
    """muckwatch simulate --jt808: each truck registers, authenticates and reports on its own
    connection; blind areas go as 0x0704 batches; every fix lands once, sensors included."""
    from pathlib import Path

    from domain.city import load_city
    from simulator.mixed import MixedOptions, MixedScenario

    start = 1_793_000_000_000  # 2026-10-26 10:13 +08: no other test uses these device times
    out = subprocess.run(
        [sys.executable, "-m", "muckwatch", "simulate", "--trucks", "6", "--duration", "6",
         "--scenario", "compliant", "--blind-share", "0.5", "--tunnel-share", "0",
         "--duplicate-rate", "0", "--start-ms", str(start), "--jt808",
         f"127.0.0.1:{gateway_port}", "--truth", str(tmp_path / "truth.jsonl")],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "6 terminals, 0 refused" in out.stderr, out.stderr
    city = load_city(Path(__file__).resolve().parents[2] / "data" / "sample-city")
    scenario = MixedScenario(city, MixedOptions(
        trucks=6, minutes=6, per_rule=0, near_misses=False, blind_share=0.5,
        tunnel_share=0, duplicate_rate=0, start_ms=start))
    deliveries = list(scenario.deliveries())
    fixes = {(d.device, f["ts"] // 1000) for d in deliveries
             for f in (d.payload if d.is_batch else [d.payload])}
    batched = sum(d.fixes for d in deliveries if d.is_batch)
    assert batched, "some trucks passed a blind area"
    devices = sorted({d for d, _ in fixes})

    def stored():
        db.rollback()
        return db.execute(
            "SELECT count(*), count(*) FILTER (WHERE backfill), max(lid), max(load)"
            " FROM telemetry WHERE device_id = ANY(%s) AND ts BETWEEN to_timestamp(%s / 1000.0)"
            " AND to_timestamp(%s / 1000.0)", (devices, start - 120_000,
                                               start + 7 * 60_000)).fetchone()
    assert poll(lambda: stored()[0] == len(fixes), timeout_s=60), (stored(), len(fixes))
    assert stored()[1] == batched and stored()[3] == 2


def test_a_broker_outage_is_answered_fail_and_the_gateway_recovers(run_dir):
    """Nothing the gateway answered 'ok' is lost: with the broker down a report gets 'fail'
    (the terminal sends it again); when the broker is back, reports go through again."""
    from devservices.mosquitto import PrivateMosquitto

    broker = PrivateMosquitto(run_dir / "gw-outage-broker").start()
    log_path = run_dir / "gateway-outage.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "gateway", "--listen", "127.0.0.1:0",
             "--mqtt", f"mqtt://127.0.0.1:{broker.port}"], stdout=subprocess.PIPE,
            stderr=log, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, "MUCKWATCH_GATEWAY_PUBLISH_TIMEOUT_S": "2"})
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"listening on 127.0.0.1:(\d+)", log_path.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        c = Client(int(m.group(1)), Terminal("013900000004"))
        [(_, body)] = c.send(c.t.register())
        assert c.general(c.t.authenticate(codec.decode_register_reply(body)[2])) == codec.OK
        report = loc(datetime.now(UTC), 0)
        assert c.general(c.t.location(report)) == codec.OK
        broker.stop()
        assert c.general(c.t.location(report)) == codec.FAIL
        broker.start()
        deadline = time.monotonic() + 30
        while c.general(c.t.location(report)) != codec.OK:
            assert time.monotonic() < deadline, "the gateway reconnects to the broker"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        broker.stop()
    stats = json.loads(out)
    assert stats["publish_failures"] >= 1 and stats["fixes"] >= 2


def test_devices_file_maps_phones_and_can_refuse_unknown_terminals(tmp_path):
    from gateway.server import Directory, device_for_phone

    (tmp_path / "devices.csv").write_text(
        "phone,device_id,model\n013812345678,TRUCK-7,ZT-808A\n# a comment\n013800000002,T2\n")
    d = Directory.load(str(tmp_path / "devices.csv"), allow_unknown=False)
    assert d.lookup("013812345678") == ("TRUCK-7", "ZT-808A")
    assert d.lookup("00000000013812345678") == ("TRUCK-7", "ZT-808A"), "2019 phone, same id"
    assert d.lookup("013800000002") == ("T2", "")
    assert d.lookup("013899999999") is None
    assert Directory(allow_unknown=True).lookup("00000000013899999999") == \
        ("013899999999", "")
    assert device_for_phone("000000000000") == "000000000000"
    (tmp_path / "bad.csv").write_text("not-a-phone,X\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: expected phone,device_id"):
        Directory.load(str(tmp_path / "bad.csv"), allow_unknown=True)


def test_gateway_publishes_on_the_vehicles_topic_partition(broker, run_dir):
    """With [mqtt] partitions = P the gateway puts the partition level in the topic, so the
    vehicle reaches the one worker that consumes its partition (docs/scaling.md)."""
    from domain.wire import partition_topic

    root = f"gwp{os.getpid()}/v1"
    watcher = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-v",
         "-t", f"{root}/#", "-C", "6", "-W", "30"], stdout=subprocess.PIPE, text=True)
    proc, port = start_gateway(broker, run_dir / "gateway-partitions.log",
                               MUCKWATCH_MQTT_PARTITIONS="8", MUCKWATCH_MQTT_TOPIC_ROOT=root,
                               MUCKWATCH_GATEWAY_CLIENT_ID=f"gw-partitions-{os.getpid()}")
    try:
        time.sleep(0.3)  # mosquitto_sub has subscribed
        phones = ["013800000001", "013800000002"]
        for phone in phones:
            c = Client(port, Terminal(phone, None))
            [(_, body)] = c.send(c.t.register())
            assert c.general(c.t.authenticate(codec.decode_register_reply(body)[2])) == codec.OK
            assert c.general(c.t.location(loc(datetime.now(UTC), 0))) == codec.OK
            c.sock.close()
        out, _ = watcher.communicate(timeout=40)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        if watcher.poll() is None:
            watcher.kill()
    topics = sorted(line.split(" ", 1)[0] for line in out.splitlines())
    devices = [p.lstrip("0").rjust(12, "0") for p in phones]
    # each terminal: online, its fix, offline — the status on the same partition
    assert topics == sorted([partition_topic(root, d, 8) for d in devices]
                            + [partition_topic(root, d, 8, "status") for d in devices] * 2)
    assert all("/p/" in t for t in topics)


def test_a_model_padded_on_the_left_finds_its_sensor_mapping(broker, ingest, db, poll, run_dir,
                                                            tmp_path):
    """Firmware that pads its model with zero bytes on the left still matches its
    [[gateway.models]] entry, so its lid and lift bits are read, not dropped."""
    config = tmp_path / "gateway.toml"
    config.write_text('[[gateway.models]]\nmodel = "ZT-808"\nlid = "io:8"\nlift = "io:9"\n',
                      encoding="utf-8")
    proc, port = start_gateway(broker, run_dir / "gateway-models.log",
                               MUCKWATCH_CONFIG=str(config),
                               MUCKWATCH_GATEWAY_CLIENT_ID=f"gw-models-{os.getpid()}")
    try:
        phone = "0" + "".join(random.choice("0123456789") for _ in range(11))
        device = phone.lstrip("0").rjust(12, "0")
        c = Client(port, Terminal(phone, legacy_2011=True))
        [(_, body)] = c.send(c.t.register(model="\x00ZT-808", maker=" MUCK"))
        _, result, code = codec.decode_register_reply(body)
        assert result == 0 and c.general(c.t.authenticate(code)) == codec.OK
        at = datetime.now(UTC) - timedelta(seconds=5)
        assert c.general(c.t.location(loc(at, 0, io=0x0300))) == codec.OK

        def sensors():
            db.rollback()
            return db.execute("SELECT lid, lift FROM telemetry WHERE device_id = %s",
                              (device,)).fetchall()
        assert poll(lambda: sensors(), timeout_s=30) == [(1, 1)]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    stats = json.loads(out)
    assert stats["registrations"] == {"2011": 1}


def test_a_dropped_connection_or_silence_announces_the_terminal_offline(broker, ingest, db,
                                                                        poll, run_dir):
    proc, port = start_gateway(broker, run_dir / "gateway-idle.log",
                               MUCKWATCH_GATEWAY_IDLE_TIMEOUT_S="1.5",
                               MUCKWATCH_GATEWAY_CLIENT_ID=f"gw-idle-{os.getpid()}")
    try:
        devices = []
        clients = []
        for _ in range(2):
            phone = "0" + "".join(random.choice("0123456789") for _ in range(11))
            devices.append(phone.lstrip("0").rjust(12, "0"))
            c = Client(port, Terminal(phone))
            [(_, body)] = c.send(c.t.register())
            assert c.general(c.t.authenticate(codec.decode_register_reply(body)[2])) == 0
            clients.append(c)
        clients[0].sock.close()  # the link breaks
        # the second terminal connects again before its old connection timed out: the old
        # session's timeout must not announce the reconnected terminal offline
        again = Client(port, Terminal(clients[1].t.phone))
        [(_, body)] = again.send(again.t.register())
        assert again.general(again.t.authenticate(codec.decode_register_reply(body)[2])) == 0

        def states():
            db.rollback()
            return dict(db.execute("SELECT device_id, array_agg(online ORDER BY at)"
                                   " FROM device_status_changes WHERE device_id = ANY(%s)"
                                   " GROUP BY device_id", (devices,)).fetchall())
        for _ in range(8):  # 3 s: the old session times out meanwhile, the new one lives on
            assert again.general(again.t.heartbeat()) == codec.OK
            time.sleep(0.4)
        assert poll(lambda: states().get(devices[0]) == [True, False], timeout_s=30), states()
        # (two "online" in one ingest batch may be kept as one: the same state)
        assert False not in states()[devices[1]], "no offline while it is connected again"
        # now the new connection falls silent too: offline, once
        assert poll(lambda: states()[devices[1]][-1] is False, timeout_s=30), states()
        assert states()[devices[1]].count(False) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert json.loads(out)["status_failures"] == 0
