"""The command dispatcher against a real broker and database: queued commands are published
once and marked, a broker that is down leaves them queued, rules' actions make one command
per violation and kind, and whatever nobody answered ends 'timeout' saying why."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from devservices.mosquitto import PrivateMosquitto
from domain.settings import Settings
from muckwatch.dispatch import CommandDispatcher
from store import commands


@pytest.fixture
def fleet_db(fresh_database) -> str:
    dsn = fresh_database()
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO companies (id, name) VALUES ('C1', 'Spoil Co')")
        conn.execute("INSERT INTO vehicles (plate, device_id, company_id) VALUES"
                     " ('粤B12345', 'D1', 'C1'), ('粤B67890', 'D2', 'C1')")
    return dsn


def settings_for(port: int, dsn: str, **terminal) -> Settings:
    return Settings().with_overrides(
        mqtt={"port": port, "client_id": "test-dispatch"}, database={"dsn": dsn},
        terminal={"poll_s": 0.2, **terminal})


class Listener:
    """A paho subscriber to every terminal's command topic."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe("muck/v1/+/command", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, orjson.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def queue(dsn: str, device: str, kind: str, args: dict, timeout_s: float = 60.0) -> str:
    with psycopg.connect(dsn) as conn:
        return commands.queue(conn, device_id=device, kind=kind, args=args,
                              requested_by="test", timeout_s=timeout_s)["id"]


def states(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT id, state, detail, published_at IS NOT NULL FROM terminal_commands")}


async def _ticks(dispatcher: CommandDispatcher, n: int = 1, *, connect: bool = True) -> None:
    if connect:
        await dispatcher.publisher.connect()
    try:
        for _ in range(n):
            await dispatcher.tick(publish=connect)
    finally:
        if dispatcher._conn is not None:
            await dispatcher._conn.close()
        await dispatcher.publisher.close()


def test_queued_commands_are_published_once_then_marked(broker, fleet_db, poll):
    listener = Listener(broker.port)
    try:
        ids = [queue(fleet_db, "D1", "text", {"text": "请走核准路线"}),
               queue(fleet_db, "D2", "capture", {"channel": 2}),
               queue(fleet_db, "D1", "position", {}, timeout_s=5)]
        dispatcher = CommandDispatcher(settings_for(broker.port, fleet_db))
        asyncio.run(_ticks(dispatcher, 3))
        assert poll(lambda: len(listener.messages) >= 3, 10)
        by_id = {m["id"]: (topic, m) for topic, m in listener.messages}
        assert sorted(by_id) == sorted(ids) and len(listener.messages) == 3  # once each
        topic, text = by_id[ids[0]]
        assert topic == "muck/v1/D1/command" and text["kind"] == "text"
        assert text["args"] == {"text": "请走核准路线", "flags": 12}
        assert by_id[ids[1]][0] == "muck/v1/D2/command"
        assert by_id[ids[1]][1]["args"]["channel"] == 2
        now_ms = datetime.now(UTC).timestamp() * 1000
        assert 0 < by_id[ids[2]][1]["deadline"] - now_ms <= 5_000
        assert all(s[0] == "published" and s[2] for s in states(fleet_db).values())
        assert dispatcher.metrics.published == 3
    finally:
        listener.close()


def test_a_broker_that_is_down_leaves_commands_queued(run_dir, fleet_db):
    own = PrivateMosquitto(run_dir / "mosquitto-dispatch-down").start()
    dispatcher = CommandDispatcher(settings_for(own.port, fleet_db))
    cid = queue(fleet_db, "D1", "position", {})

    async def go() -> None:
        await dispatcher.publisher.connect()
        own.stop()
        await asyncio.sleep(0.5)
        try:
            await dispatcher.tick()
        finally:
            await dispatcher._conn.close()

    asyncio.run(go())
    assert states(fleet_db)[cid][:1] == ("queued",)
    assert dispatcher.metrics.broker_failures == 1 and dispatcher.metrics.published == 0


def _violation(dsn: str, vid: str, *, rule: str = "OFF_ROUTE", age_s: float = 60,
               late: bool = False, state: str = "open", severity: int = 1) -> None:
    start = datetime.now(UTC) - timedelta(seconds=age_s)
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO violations (id, rule, severity, device_id, plate, company_id,"
                     " start_ts, state, late) VALUES (%s, %s, %s, 'D1', '粤B12345', 'C1', %s,"
                     " %s, %s)", (vid, rule, severity, start, state, late))


def test_rule_actions_make_one_command_per_violation_and_kind(broker, fleet_db):
    _violation(fleet_db, "V-NOW")
    _violation(fleet_db, "V-OLD", age_s=3600)  # opened an hour ago: too late to tell
    _violation(fleet_db, "V-LATE", late=True)  # found in backfill
    _violation(fleet_db, "V-SPEED", rule="OVERSPEED")  # no action for this rule
    _violation(fleet_db, "V-MILD", rule="UNCOVERED_LOAD", severity=1)  # below min_severity
    actions = ({"rule": "OFF_ROUTE", "text": "{plate}：您已偏离核准路线（{rule}）",
                "capture_channel": 1, "shots": 2},
               {"rule": "UNCOVERED_LOAD", "capture_channel": 3, "min_severity": 2})
    settings = settings_for(broker.port, fleet_db, on_violation=actions)
    for _ in range(2):  # two workers, or two ticks: still once each
        asyncio.run(_ticks(CommandDispatcher(settings), 2))
    with psycopg.connect(fleet_db) as conn:
        rows = conn.execute("SELECT violation_id, kind, args, requested_by, device_id, state"
                            " FROM terminal_commands ORDER BY kind").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("V-NOW", "capture"), ("V-NOW", "text")]
    assert rows[0][2] == {"channel": 1, "shots": 2, "interval_s": 0, "resolution": 1,
                          "quality": 5}
    assert rows[1][2]["text"] == "粤B12345：您已偏离核准路线（OFF_ROUTE）"
    assert {r[3] for r in rows} == {"rule:OFF_ROUTE"} and {r[4] for r in rows} == {"D1"}
    assert {r[5] for r in rows} == {"published"}


def test_a_bad_action_is_refused_at_start(broker, fleet_db):
    from domain.config import ConfigError

    for bad, says in (({"text": "x"}, "rule is required"),
                      ({"rule": "OFF_ROUTE"}, "a text, a capture_channel or both"),
                      ({"rule": "OFF_ROUTE", "capture_channel": 999}, "channel"),
                      ({"rule": "OFF_ROUTE", "text": "x", "colour": 1}, "unknown key")):
        with pytest.raises(ConfigError, match=says):
            CommandDispatcher(settings_for(broker.port, fleet_db, on_violation=(bad,)))


def test_unanswered_commands_end_timeout_saying_why(broker, fleet_db):
    ids = {s: queue(fleet_db, "D1", "position", {}, timeout_s=1)
           for s in ("queued", "published", "sent", "delivered")}
    fresh = queue(fleet_db, "D2", "position", {}, timeout_s=60)
    with psycopg.connect(fleet_db) as conn:
        for state, cid in ids.items():
            conn.execute("UPDATE terminal_commands SET state = %s, created_at = now() -"
                         " interval '30 seconds' WHERE id = %s", (state, cid))
    asyncio.run(_ticks(CommandDispatcher(settings_for(broker.port, fleet_db)), 1,
                       connect=False))
    got = states(fleet_db)
    assert got[ids["queued"]][:2] == ("timeout", "never published: no dispatcher ran (is "
                                                 "muckwatch run up?)")
    assert got[ids["published"]][:2] == (
        "timeout", "no gateway holds the terminal: it is not connected")
    assert got[ids["sent"]][:2] == ("timeout", "no answer from the terminal")
    assert got[ids["delivered"]][0] == "delivered"
    assert got[fresh][0] == "queued"  # not connected, so not published; not yet timed out
