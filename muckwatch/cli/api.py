"""The HTTP API: ``serve`` (review, appeals, cases, published views; docs/api.md) and
``accounts`` (tokens for it: add, list, revoke, rotate). The work is in ``api`` and
``store.accounts``."""

from __future__ import annotations

import argparse
import sys

from muckwatch.cli.common import CommandTable, UserError, connect


def register(table: CommandTable) -> None:
    table.add("serve", "the HTTP API beside `muckwatch run`, on the same database",
              "muckwatch serve --listen 127.0.0.1:8088", _serve_arguments, serve)
    table.add("accounts", "API accounts and their bearer tokens (shown once, stored hashed)",
              "muckwatch accounts add officer-d01 --role officer --district D01",
              _accounts_arguments, accounts)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="host:port (default [api] listen)")
    p.add_argument("--city", help="city bundle directory: its time zone, and the roads "
                                  "and extent the console draws (default [city] dir)")


def city_timezone(directory: str) -> str:
    """The bundle's time zone from city.toml (the API needs nothing else of the city)."""
    import tomllib
    from pathlib import Path

    path = Path(directory) / "city.toml"
    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("timezone",
                                                                        "Asia/Shanghai"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist (--city or [city] dir)") from None


def serve(args, settings) -> int:
    from pathlib import Path

    import uvicorn

    from api.app import ApiConfig, create_app
    from muckwatch.locations import city_dir

    api = settings.api
    host, _, port = (args.listen or api.listen).rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--listen {args.listen!r}: expected host:port")
    city = Path(args.city or city_dir(settings.city.dir))
    config = ApiConfig(dsn=settings.database.dsn, timezone=city_timezone(str(city)),
                       city_dir=city, offline_after_s=settings.rules.signal_loss_s,
                       stopped_below_kmh=settings.rules.moving_kmh,
                       uploads_dir=Path(api.uploads_dir), max_upload_bytes=api.max_upload_bytes,
                       max_attachments=api.max_attachments, webhook_secret=api.webhook_secret,
                       pool_size=api.pool_size, permits=settings.permits,
                       media=settings.media,
                       command_timeout_s=settings.terminal.command_timeout_s,
                       evidence_s=settings.rules.evidence_s)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=host.strip("[]"),
                                           port=int(port), log_level="info", access_log=False,
                                           proxy_headers=False,
                                           # open live-map streams end with the server
                                           timeout_graceful_shutdown=3))
    server.run()
    return 0


def _accounts_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="create an account; prints its token once")
    add.add_argument("id", help="account name, e.g. officer-d01")
    add.add_argument("--role", required=True,
                     choices=["officer", "supervisor", "company", "association", "public",
                              "analyst", "site_operator"])
    add.add_argument("--company", help="company id (company accounts)")
    add.add_argument("--district", action="append", default=[],
                     help="district fence id an officer works in (repeat)")
    add.add_argument("--site", action="append", default=[],
                     help="disposal site or transfer dock a site_operator records receipts "
                          "at (repeat)")
    sub.add_parser("list", help="accounts, roles and scopes (never tokens)")
    for name, text in (("revoke", "revoke an account: its token stops working at once"),
                       ("rotate", "a new token for an account; the old one stops working")):
        sub.add_parser(name, help=text).add_argument("id")


def accounts(args, settings) -> int:
    from store import accounts as store

    with connect(settings) as conn:
        try:
            if args.action == "add":
                token = store.add_account(conn, args.id, args.role, company=args.company,
                                          districts=tuple(args.district),
                                          sites=tuple(args.site))
                print(token)
                print(f"account {args.id} ({args.role}) created; the token above is shown "
                      "only now", file=sys.stderr)
            elif args.action == "rotate":
                print(store.rotate_token(conn, args.id))
            elif args.action == "revoke":
                if not store.revoke(conn, args.id):
                    raise UserError(f"no active account {args.id!r}")
                print(f"account {args.id} revoked")
            else:
                for a in store.list_accounts(conn):
                    scope = a.company_id or ",".join(a.districts or a.sites) or "-"
                    state = f"revoked {a.revoked_at:%Y-%m-%d %H:%M}" if a.revoked_at else "active"
                    print(f"{a.id}\t{a.role}\t{scope}\t{state}")
        except ValueError as e:
            raise UserError(str(e)) from None
    return 0
