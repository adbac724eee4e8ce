"""``terminal``: commands to a vehicle's terminal from the shell — text to the driver, the
reporting interval, a position query, a photo now — and what became of them (the work is in
``store.commands``; the dispatcher in ``muckwatch run`` sends them)."""

from __future__ import annotations

import argparse
import json
import time

from muckwatch.cli.common import CommandTable, UserError, connect


def register(table: CommandTable) -> None:
    table.add("terminal", "commands to a vehicle's terminal (JT/T 808): send, show, list",
              "muckwatch terminal send 013800000001 --text '您已偏离核准路线' --wait",
              _arguments, terminal)


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = sub.add_parser("send", help="queue one command; prints it (with --wait: its end)")
    send.add_argument("device", help="the vehicle's device id")
    what = send.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="show and read this to the driver (0x8300)")
    what.add_argument("--report-interval", type=int, metavar="S",
                      help="set the reporting interval in seconds (0x8103)")
    what.add_argument("--position", action="store_true", help="ask where it is (0x8201)")
    what.add_argument("--capture", type=int, metavar="CHANNEL",
                      help="take a photo now on this camera channel (0x8801)")
    send.add_argument("--shots", type=int, default=1, help="photos to take (--capture)")
    send.add_argument("--timeout", type=float, metavar="S",
                      help="no answer by then: timeout (default [terminal] command_timeout_s)")
    send.add_argument("--wait", action="store_true",
                      help="wait until it is delivered, failed or timed out; exit 1 unless "
                           "delivered")
    send.add_argument("--by", default="cli", help="who asks (kept with the command)")
    show = sub.add_parser("show", help="one command")
    show.add_argument("id")
    ls = sub.add_parser("list", help="a terminal's commands, newest first")
    ls.add_argument("device")
    ls.add_argument("--limit", type=int, default=20)


def terminal(args, settings) -> int:
    from domain.wire import FINAL_COMMAND_STATES
    from store import commands

    with connect(settings) as conn:
        if args.action == "list":
            for row in commands.for_device(conn, args.device, limit=args.limit):
                print(json.dumps(row, ensure_ascii=False, default=str))
            return 0
        if args.action == "show":
            found = commands.get(conn, args.id)
            if found is None:
                raise UserError(f"no command {args.id!r}")
            print(json.dumps(found, ensure_ascii=False, default=str))
            return 0
        kind, cargs = _command(args)
        timeout = args.timeout or settings.terminal.command_timeout_s
        try:
            row = commands.queue(conn, device_id=args.device, kind=kind, args=cargs,
                                 requested_by=args.by, timeout_s=timeout)
        except (commands.CommandError, commands.NoSuchVehicle) as e:
            raise UserError(str(e)) from None
        conn.commit()
        if not args.wait:
            print(json.dumps(row, ensure_ascii=False, default=str))
            return 0
        deadline = time.monotonic() + timeout + 10
        while row["state"] not in FINAL_COMMAND_STATES and time.monotonic() < deadline:
            time.sleep(0.2)
            row = commands.get(conn, row["id"]) or row
            conn.commit()
        print(json.dumps(row, ensure_ascii=False, default=str))
        return 0 if row["state"] == "delivered" else 1


def _command(args) -> tuple[str, dict]:
    if args.text is not None:
        return "text", {"text": args.text}
    if args.report_interval is not None:
        return "params", {"report_interval_s": args.report_interval}
    if args.position:
        return "position", {}
    return "capture", {"channel": args.capture, "shots": args.shots}
