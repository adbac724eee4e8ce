"""What terminals report besides fixes, through the batch writer into a real PostgreSQL:
alarm words of unpositioned reports, and command states that only ever move forward."""

from __future__ import annotations

import asyncio

import psycopg

from domain.batches import CommandStates, DeviceStatus, FixBatch, Rejects, TerminalAlarms
from store.database import Store

T0 = 1_790_000_000_000


def write(dsn: str, *, alarms: TerminalAlarms | None = None,
          states: CommandStates | None = None):
    async def go():
        store = Store(dsn)
        try:
            return await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), [],
                                     alarms=alarms, command_states=states)
        finally:
            await store.close()
    return asyncio.run(go())


def states(*rows: tuple) -> CommandStates:
    """(device, id, state, ts[, detail[, result]]) each."""
    out = CommandStates()
    for device, command_id, state, ts, *rest in rows:
        out.device.append(device)
        out.command_id.append(command_id)
        out.state.append(state)
        out.ts.append(ts)
        out.detail.append(rest[0] if rest else None)
        out.result.append(rest[1] if len(rest) > 1 else None)
        out.received_ms.append(ts + 100)
    return out


def queue(db: psycopg.Connection, device: str, command_id: str, state: str = "queued") -> None:
    db.execute("INSERT INTO terminal_commands (id, device_id, kind, requested_by, state,"
               " timeout_s) VALUES (%s, %s, 'position', 'tester', %s, 60)",
               (command_id, device, state))


def command(db: psycopg.Connection, command_id: str) -> tuple:
    return db.execute(
        "SELECT state, detail, result, (extract(epoch FROM sent_at) * 1000)::bigint,"
        " (extract(epoch FROM answered_at) * 1000)::bigint FROM terminal_commands"
        " WHERE id = %s", (command_id,)).fetchone()


def test_alarm_words_are_stored_once(dsn, db, device_id):
    alarms = TerminalAlarms([device_id, device_id], [T0, T0 + 1000], [0x20, 0x130],
                            [T0 + 50, T0 + 1050])
    first = write(dsn, alarms=alarms)
    again = write(dsn, alarms=alarms)  # a redelivery
    assert (first.alarms_inserted, first.alarms_duplicate) == (2, 0)
    assert (again.alarms_inserted, again.alarms_duplicate) == (0, 2)
    rows = db.execute("SELECT (extract(epoch FROM ts) * 1000)::bigint, alarm,"
                      " (extract(epoch FROM received_at) * 1000)::bigint FROM terminal_alarms"
                      " WHERE device_id = %s ORDER BY ts", (device_id,)).fetchall()
    assert rows == [(T0, 0x20, T0 + 50), (T0 + 1000, 0x130, T0 + 1050)]


def test_command_states_move_forward_only(dsn, db, device_id):
    c = f"c-{device_id}"
    queue(db, device_id, c, "published")
    report = write(dsn, states=states((device_id, c, "sent", T0)))
    assert (report.command_states_applied, report.command_states_stale) == (1, 0)
    assert command(db, c) == ("sent", None, None, T0, None)
    # a late 'published' (and the 'sent' again, redelivered) change nothing
    report = write(dsn, states=states((device_id, c, "published", T0 + 1),
                                      (device_id, c, "sent", T0 + 2)))
    assert (report.command_states_applied, report.command_states_stale) == (0, 2)
    assert command(db, c) == ("sent", None, None, T0, None)
    report = write(dsn, states=states(
        (device_id, c, "delivered", T0 + 900, "terminal answered 0x0201",
         {"ts": T0 + 800, "lon": 114.05, "lat": 22.54, "spd": 12.5, "alarm": 0})))
    assert report.command_states_applied == 1
    assert command(db, c) == ("delivered", "terminal answered 0x0201",
                              {"ts": T0 + 800, "lon": 114.05, "lat": 22.54, "spd": 12.5,
                               "alarm": 0}, T0, T0 + 900)
    # a final state never changes: not by another final one, not by a 'timeout' after it
    report = write(dsn, states=states((device_id, c, "failed", T0 + 950, "result 1"),
                                      (device_id, c, "timeout", T0 + 60_000)))
    assert (report.command_states_applied, report.command_states_stale) == (0, 2)
    assert command(db, c)[:2] == ("delivered", "terminal answered 0x0201")
    assert db.execute("SELECT updated_at >= created_at FROM terminal_commands WHERE id = %s",
                      (c,)).fetchone()[0]


def test_states_of_one_batch_apply_in_arrival_order(dsn, db, device_id):
    a, b = f"a-{device_id}", f"b-{device_id}"
    queue(db, device_id, a, "published")
    queue(db, device_id, b, "published")
    report = write(dsn, states=states(
        (device_id, a, "sent", T0), (device_id, a, "unsupported", T0 + 5, "result 3"),
        # out of order: the final state first, the 'sent' after it is stale
        (device_id, b, "delivered", T0 + 7), (device_id, b, "sent", T0 + 3)))
    assert (report.command_states_applied, report.command_states_stale,
            report.command_states_unknown) == (3, 1, 0)
    assert command(db, a) == ("unsupported", "result 3", None, T0, T0 + 5)
    assert command(db, b) == ("delivered", None, None, None, T0 + 7)


def test_unknown_commands_and_other_devices_commands_are_ignored_and_counted(
        dsn, db, device_id):
    c = f"c-{device_id}"
    queue(db, device_id, c, "published")
    report = write(dsn, states=states(("another-device", c, "failed", T0),
                                      (device_id, f"nope-{device_id}", "sent", T0),
                                      (device_id, c, "sent", T0)))
    assert (report.command_states_applied, report.command_states_unknown,
            report.command_states_stale) == (1, 2, 0)
    assert command(db, c)[0] == "sent"
    assert db.execute("SELECT count(*) FROM terminal_commands WHERE id = %s",
                      (f"nope-{device_id}",)).fetchone()[0] == 0
