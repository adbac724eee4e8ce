"""Commands to terminals through the broker: the platform publishes on
``{root}/{device}/command``, the gateway holding the terminal's connection writes the JT/T 808
message, and the states it publishes follow the terminal's answers — sent, then delivered,
failed, unsupported or timeout. A terminal on another gateway instance gets its commands the
same way; expired, malformed and foreign commands are ignored, never fatal."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
import pytest

from domain.wire import command_message, command_topic, split_media
from gateway import codec, commands, media
from gateway.codec import Location
from gateway.server import device_for_phone

pytestmark = pytest.mark.e2e


def final(harness, collector, command_id: str) -> list[dict]:
    return [s for s in harness.states(collector, command_id) if s["state"] != "sent"]


async def answered(harness, collector, command_id: str, timeout_s: float = 10.0) -> dict:
    """The command's final state, once published after its 'sent'."""
    await harness.until(lambda: final(harness, collector, command_id), timeout_s)
    got = harness.states(collector, command_id)
    assert [s["state"] for s in got][:1] == ["sent"], got
    assert len(got) == 2, got
    return got[1]


@pytest.mark.parametrize("version", [None, 1], ids=["2013", "2019"])
def test_text_and_parameters_are_delivered(harness, version):
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (gw, port):
            t = await harness.terminal(port, version=version)
            device = device_for_phone(t.t.phone)
            text = harness.command(collector, device, "text",
                                   {"text": "您已偏离许可路线，请返回"})
            params = harness.command(collector, device, "params",
                                     {"report_interval_s": 30, "heartbeat_s": 60})
            results = [await answered(harness, collector, c) for c in (text, params)]
            await t.close()
            return gw, t, results

    gw, t, (text, params) = asyncio.run(main())
    assert text["state"] == params["state"] == "delivered"
    assert "detail" not in text and "result" not in text
    sent_text, sent_params = t.commands
    assert sent_text.header.msg_id == commands.TEXT
    assert sent_text.header.version == version, "answered in the terminal's protocol"
    assert commands.decode_text(sent_text.body, version is not None).text == \
        "您已偏离许可路线，请返回"
    assert {k: int.from_bytes(v, "big") for k, v in
            commands.decode_params(sent_params.body).items()} == {0x0029: 30, 0x0001: 60}
    assert gw.stats.commands_sent == 2 and gw.stats.command_states == {"sent": 2,
                                                                       "delivered": 2}


def test_a_position_query_is_answered_with_the_location_also_published_as_a_fix(harness):
    where = Location(0x0004, 0x0302, 22.5432, 114.0578, 10, 42.5, 180,
                     datetime(2026, 12, 3, 2, 0, tzinfo=UTC))

    async def main():
        collector = harness.collector()
        async with harness.gateway() as (_gw, port):
            t = await harness.terminal(port, location=where)
            device = device_for_phone(t.t.phone)
            query = harness.command(collector, device, "position")
            state = await answered(harness, collector, query)
            await harness.until(lambda: collector.on("telemetry"))
            await t.close()
            return state, collector

    state, collector = asyncio.run(main())
    ts = int(where.time.timestamp() * 1000)
    assert state["state"] == "delivered"
    assert state["result"] == {"ts": ts, "lon": 114.0578, "lat": 22.5432, "spd": 42.5,
                               "alarm": 4}
    [fix] = [orjson.loads(p) for p in collector.on("telemetry")]
    assert (fix["ts"], fix["lon"], fix["lat"], fix["alarm"]) == (ts, 114.0578, 22.5432, 4)


def test_a_capture_is_delivered_and_its_photo_names_the_command(harness):
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (_gw, port):
            t = await harness.terminal(port, package_bytes=600, drop={2})
            device = device_for_phone(t.t.phone)
            capture = harness.command(collector, device, "capture",
                                      {"channel": 3, "shots": 2})
            state = await answered(harness, collector, capture)
            await harness.until(lambda: len(collector.on("media")) == 2)
            await t.close()
            return state, collector, t, capture

    state, collector, t, capture = asyncio.run(main())
    assert state["state"] == "delivered" and state["result"] == {"media_ids": [1, 2]}
    [sent] = t.commands
    assert media.decode_capture(sent.body) == media.Capture(channel=3, shots=2)
    items = sorted((split_media(p) for p in collector.on("media")), key=lambda i: i[0]["id"])
    assert [(h["id"], h["cmd"], h["channel"], h["event"]) for h, _ in items] == \
        [(1, capture, 3, 0), (2, capture, 3, 0)]
    assert t.resend_requests == [(1, [2]), (2, [2])], "each photo had a package resent"


@pytest.mark.parametrize(("options", "kind", "args", "state", "detail"), [
    ({"results": {commands.TEXT: 1}}, "text", {"text": "x"}, "failed",
     "terminal reported failure"),
    ({"results": {commands.TEXT: 2}}, "text", {"text": "x"}, "failed",
     "terminal says the message was bad"),
    ({"results": {commands.SET_PARAMS: 3}}, "params", {"heartbeat_s": 30}, "unsupported",
     None),
    ({"results": {commands.POSITION_QUERY: 3}}, "position", {}, "unsupported", None),
    ({"results": {media.CAPTURE: 1}}, "capture", {"channel": 1}, "failed",
     "terminal reported failure"),
    ({"capture_result": 2}, "capture", {"channel": 9}, "failed", "no such channel"),
    ({"capture_result": 1}, "capture", {"channel": 1}, "failed",
     "terminal reported failure"),
    ({"legacy_2011": True, "results": {media.CAPTURE: 0}}, "capture", {"channel": 1},
     "delivered", None),
], ids=["text-fail", "text-bad", "params-unsupported", "position-unsupported",
        "capture-0x0001-fail", "capture-no-channel", "capture-fail", "capture-2011"])
def test_the_terminals_other_answers(harness, options, kind, args, state, detail):
    """Refusals by 0x0001 or 0x0805; and a 2011 terminal, which has no 0x0805, delivering a
    capture with its 0x0001."""
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (_gw, port):
            t = await harness.terminal(port, **options)
            command = harness.command(collector, device_for_phone(t.t.phone), kind, args)
            got = await answered(harness, collector, command)
            await t.close()
            return got

    got = asyncio.run(main())
    assert got["state"] == state and got.get("detail") == detail


def test_no_answer_by_the_deadline_is_a_timeout(harness):
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (gw, port):
            t = await harness.terminal(port, answer_commands=False)
            device = device_for_phone(t.t.phone)
            started = time.monotonic()
            command = harness.command(collector, device, "text", {"text": "hello"},
                                      deadline_s=1.0)
            got = await answered(harness, collector, command, timeout_s=5)
            waited = time.monotonic() - started
            # an answer after the timeout changes nothing
            [sent] = t.commands
            t.write(t.t.general_reply(sent.header.serial, sent.header.msg_id, 0))
            assert await t.report() == codec.OK
            await asyncio.sleep(0.2)
            await t.close()
            return got, waited, gw, collector, command

    got, waited, gw, collector, command = asyncio.run(main())
    assert got["state"] == "timeout" and got["detail"] == "no answer from the terminal"
    assert 0.8 < waited < 3.0
    assert len(harness.states(collector, command)) == 2 and not gw.pending


def test_expired_malformed_foreign_and_repeated_commands_are_ignored(harness):
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (gw, port):
            t = await harness.terminal(port)
            device = device_for_phone(t.t.phone)
            expired = harness.command(collector, device, "text", {"text": "late"},
                                      deadline_s=-1)
            topic = command_topic(harness.root, device)
            for bad in (b"not json", b"[1]", b'{"v":1,"id":"x","kind":"fly","deadline":1}',
                        command_message("y", "text", {"text": ""}, deadline_ms=2**41),
                        command_message("z", "params", {"volume": 3}, deadline_ms=2**41),
                        command_message("w", "capture", {"channel": 0}, deadline_ms=2**41)):
                collector.publish(topic, bad)
            nobody = harness.command(collector, "000000000000", "text", {"text": "who?"})
            twice = harness.command(collector, device, "text", {"text": "once"})
            harness.command(collector, device, "text", {"text": "once"}, command_id=twice)
            await answered(harness, collector, twice)
            await asyncio.sleep(0.3)
            assert await t.report() == codec.OK, "the gateway carries on"
            await t.close()
            return gw, collector, t, expired, nobody

    gw, collector, t, expired, nobody = asyncio.run(main())
    assert harness.states(collector, expired) == [] and harness.states(collector, nobody) == []
    assert gw.stats.commands_expired == 1 and gw.stats.bad_commands == 6
    assert len(t.commands) == 1 and gw.stats.commands_sent == 1, "a repeated id is sent once"


def test_a_command_reaches_a_terminal_on_another_gateway(harness):
    """Two gateways on one broker: the command is published once; the gateway holding the
    terminal sends it, the other ignores it."""
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (first, first_port), \
                harness.gateway() as (second, second_port):
            here = await harness.terminal(first_port)
            there = await harness.terminal(second_port)
            a = harness.command(collector, device_for_phone(here.t.phone), "position")
            b = harness.command(collector, device_for_phone(there.t.phone), "text",
                                {"text": "to the second gateway"})
            got = [await answered(harness, collector, c) for c in (a, b)]
            await here.close()
            await there.close()
            return first, second, got, here, there

    first, second, got, here, there = asyncio.run(main())
    assert [g["state"] for g in got] == ["delivered", "delivered"]
    assert first.stats.commands_sent == second.stats.commands_sent == 1
    assert [c.header.msg_id for c in here.commands] == [commands.POSITION_QUERY]
    assert [c.header.msg_id for c in there.commands] == [commands.TEXT]


def test_after_a_broker_restart_commands_still_arrive(run_dir, harness):
    """The subscription is renewed on every reconnection (the session is clean)."""
    from devservices.mosquitto import PrivateMosquitto

    broker = PrivateMosquitto(run_dir / "gw-command-outage").start()
    harness.port = broker.port

    async def main():
        async with harness.gateway() as (gw, port):
            t = await harness.terminal(port)
            broker.stop()
            await harness.until(lambda: not gw.publisher.client.is_connected(), 10)
            broker.start()
            await harness.until(lambda: gw.publisher.client.is_connected(), 15)
            await asyncio.sleep(0.3)  # the SUBACK
            collector = harness.collector()
            command = harness.command(collector, device_for_phone(t.t.phone), "text",
                                      {"text": "still there?"})
            got = await answered(harness, collector, command)
            await t.close()
            return got

    try:
        got = asyncio.run(main())
    finally:
        broker.stop()
    assert got["state"] == "delivered"


def test_the_fleet_simulators_terminals_answer_commands(harness):
    """``muckwatch simulate --jt808``: a truck's terminal answers what the platform sent it
    at its next report — and its report still gets its own answer."""
    from simulator.jt808 import JT808Summary, _Connection

    async def main():
        collector = harness.collector()
        async with harness.gateway() as (_gw, port):
            summary = JT808Summary()
            conn = _Connection("013900000881", summary)
            await conn.open("127.0.0.1", port)
            device = device_for_phone(conn.terminal.phone)
            sent = [harness.command(collector, device, kind, args) for kind, args in
                    (("text", {"text": "hi"}), ("params", {"heartbeat_s": 30}),
                     ("position", {}), ("capture", {"channel": 2}))]
            await harness.until(lambda: all(harness.states(collector, c) for c in sent))
            conn.last = Location(0, 0x0002, 22.5, 114.0, 0, 10.0, 0,
                                 datetime.now(UTC).replace(microsecond=0))
            [(msg_id, body)] = await conn.send(conn.terminal.location(conn.last))
            assert (msg_id, codec.decode_general_reply(body)[2]) == (codec.PLATFORM_REPLY, 0)
            got = [await answered(harness, collector, c) for c in sent]
            await harness.until(lambda: collector.on("media"))
            assert conn.writer is not None
            conn.writer.close()
            return got, collector, summary

    got, collector, summary = asyncio.run(main())
    assert [g["state"] for g in got] == ["delivered"] * 4
    [(header, data)] = [split_media(p) for p in collector.on("media")]
    assert header["cmd"] == got[3]["id"] and header["channel"] == 2 and data[:2] == b"\xff\xd8"
    assert (summary.commands, summary.photos) == (4, 1)
