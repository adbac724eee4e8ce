"""``alerts``: enforcement webhooks — the delivery worker, subscriptions, the outbox, replay
and signature verification (the work is in ``alerts.commands`` and ``alerts.worker``)."""

from __future__ import annotations

import argparse
import json
import sys

from muckwatch.cli.common import CommandTable, UserError, connect, run_until_signal


def register(table: CommandTable) -> None:
    table.add("alerts", "enforcement webhooks: worker, subscriptions, outbox, replay, verify",
              "muckwatch alerts list --failed", _arguments, alerts)


def _arguments(al: argparse.ArgumentParser) -> None:
    alc = al.add_subparsers(dest="action", required=True, metavar="ACTION")
    alc.add_parser("worker", help="deliver due alerts until SIGTERM (besides muckwatch run's)")
    alc.add_parser("sync", help="copy the config file's [[alerts.subscriptions]] to the table")
    sb = alc.add_parser("subscribe", help="add or replace a subscription; prints its secret")
    sb.add_argument("id")
    sb.add_argument("url")
    sb.add_argument("--secret", help="whsec_… (default: a new random one)")
    sb.add_argument("--rule", action="append", default=[], help="only this rule (repeat)")
    sb.add_argument("--min-severity", type=int, default=1)
    sb.add_argument("--company", action="append", default=[], help="only this company")
    sb.add_argument("--zone", action="append", default=[], help="only this restricted zone")
    sb.add_argument("--event", action="append", default=[],
                    help="opened, updated, closed, retracted (default all but updated)")
    for name, text in (("enable", "switch a subscription on (e.g. after a 410)"),
                       ("disable", "switch a subscription off")):
        alc.add_parser(name, help=text).add_argument("id")
    alc.add_parser("subscriptions", help="list the subscriptions (secrets not shown)")
    ls = alc.add_parser("list", help="recent outbox rows")
    ls.add_argument("--failed", action="store_true", help="only failed, dead or retrying")
    ls.add_argument("--subscription")
    ls.add_argument("--limit", type=int, default=50)
    rp = alc.add_parser("replay", help="send alerts again, with the same webhook ids")
    rp.add_argument("--since", required=True, help="created at or after: ISO 8601 or epoch ms")
    rp.add_argument("--until", help="… and before")
    rp.add_argument("--subscription")
    rp.add_argument("--violation")
    alc.add_parser("stats", help="delivery metrics per subscription")
    vf = alc.add_parser("verify", help="check a delivery's signature (for receivers)")
    vf.add_argument("--secret", required=True, help="whsec_… (or env:NAME)")
    vf.add_argument("--id", required=True, help="the webhook-id header")
    vf.add_argument("--timestamp", required=True, help="the webhook-timestamp header")
    vf.add_argument("--signature", required=True, help="the webhook-signature header")
    vf.add_argument("--body", default="-", help="file with the raw body (default stdin)")
    vf.add_argument("--tolerance-s", type=int, default=300,
                    help="accept timestamps this far from now (default 300)")


def alerts(args, settings) -> int:
    if args.action == "verify":
        return _verify(args)
    if args.action == "worker":
        return _worker(settings)
    from alerts import commands as c

    with connect(settings) as conn:
        try:
            if args.action == "sync":
                ids = c.sync_config(conn, settings.alerts.subscriptions)
                print(f"synced {len(ids)} subscription(s): {', '.join(ids) or '-'}")
            elif args.action == "subscribe":
                secret = c.subscribe(conn, args.id, args.url, args.secret, args.rule,
                                     args.min_severity, args.company, args.zone, args.event)
                print(f"subscription {args.id} → {args.url}")
                if not args.secret:
                    print(f"secret (give it to the receiver; shown once): {secret}")
            elif args.action in ("enable", "disable"):
                if not c.set_enabled(conn, args.id, args.action == "enable"):
                    raise UserError(f"no subscription {args.id!r}")
                print(f"subscription {args.id} {args.action}d")
            elif args.action == "subscriptions":
                c.print_table(c.subscriptions_table(conn))
            elif args.action == "list":
                c.print_table(c.list_rows(conn, args.failed, args.subscription, args.limit))
            elif args.action == "replay":
                since = c.parse_time(args.since)
                until = c.parse_time(args.until) if args.until else None
                n = c.replay(conn, since, until, args.subscription, args.violation)
                print(f"queued {n} alert(s) again (same webhook ids)")
            elif args.action == "stats":
                c.print_table(c.stats(conn))
        except (c.SubscriptionError, ValueError) as e:
            raise UserError(str(e)) from None
    return 0


def _verify(args) -> int:
    """Exit 0 for a valid signature, 1 for an invalid one (says why)."""
    import os
    from pathlib import Path

    from alerts.commands import verify_delivery

    secret = args.secret
    if secret.startswith("env:"):
        secret = os.environ.get(secret[4:], "")
    body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    why = verify_delivery(secret, args.id, args.timestamp, args.signature, body,
                          args.tolerance_s)
    print("valid" if why is None else f"invalid: {why}")
    return 0 if why is None else 1


def _worker(settings) -> int:
    from alerts.worker import DeliveryWorker, WorkerOptions

    async def work(stop) -> None:
        worker = DeliveryWorker(settings.database.dsn,
                                WorkerOptions.from_settings(settings.alerts))
        metrics = await worker.run(stop)
        print(json.dumps(metrics.__dict__), file=sys.stderr)

    try:
        run_until_signal(work)
    except ValueError as e:
        raise UserError(str(e)) from None
    return 0
