"""Permits with a life cycle (issue #22, docs/permits.md): ``muckwatch permits apply | list |
check | approve | reject | suspend | resume | revoke | expire``. The work is ``store.permits``
(every change audited, actor ``--by``, role ``operator``) and ``permits.checks``; the
application file is the API's JSON body, validated by the API's own model."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from typing import Any

from muckwatch.cli.common import CommandTable, UserError, connect

APPLICATION_STATES = ("applied", "approved", "rejected", "withdrawn")
PERMIT_STATES = ("active", "suspended", "revoked", "expired")


def register(table: CommandTable) -> None:
    table.add("permits", "permit applications (出土申报) and permits: apply, check, approve or "
              "reject, suspend, resume, revoke, expire",
              "muckwatch permits approve 12 --by officer-wang", _arguments, permits)


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ISO 8601") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. +08:00")
    return value


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--city", help="city bundle directory, for its time zone "
                                  "(default [city] dir)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def by(q: argparse.ArgumentParser, required: bool = False) -> None:
        q.add_argument("--by", required=required,
                       help="who acts, for the audit log (default cli:<user>)")

    q = sub.add_parser("apply", help="submit an application (the API's JSON body) for a company")
    q.add_argument("file", help="JSON: origin, destinations, plates, route (GeoJSON "
                                "LineString), crs, corridor_m, hours, valid_from, valid_to, "
                                "declared_volume_m3")
    q.add_argument("--company", required=True, help="the applying company's id")
    by(q)
    q = sub.add_parser("list", help="applications (or, with --permits, permits), newest first")
    q.add_argument("--permits", action="store_true", help="list permits, not applications")
    q.add_argument("--status", choices=APPLICATION_STATES + PERMIT_STATES)
    q.add_argument("--company")
    q.add_argument("--limit", type=int, default=100)
    q = sub.add_parser("check", help="run the approval checks now and print the report")
    q.add_argument("id", type=int, help="application id")
    q = sub.add_parser("approve", help="approve if the checks pass; one permit per plate")
    q.add_argument("id", type=int)
    q.add_argument("--reason", help="a note kept with the decision")
    by(q, required=True)
    q = sub.add_parser("reject", help="reject an application, saying why")
    q.add_argument("id", type=int)
    q.add_argument("--reason", required=True)
    by(q)
    q = sub.add_parser("suspend", help="suspend a permit from --from (default now) until "
                                       "--until (default: until resumed)")
    q.add_argument("permit")
    q.add_argument("--reason", required=True)
    q.add_argument("--from", dest="from_ts", type=_when)
    q.add_argument("--until", type=_when)
    by(q)
    q = sub.add_parser("resume", help="end a permit's suspension now")
    q.add_argument("permit")
    q.add_argument("--reason")
    by(q)
    q = sub.add_parser("revoke", help="revoke a permit from --at (default now) for good")
    q.add_argument("permit")
    q.add_argument("--reason", required=True)
    q.add_argument("--at", type=_when)
    by(q)
    q = sub.add_parser("expire", help="mark permits whose validity ended 'expired' (and "
                                      "lapsed suspensions 'active'); e.g. daily")
    by(q)


def _checker(args, settings):
    from muckwatch.cli.api import city_timezone
    from muckwatch.locations import city_dir
    from permits.checks import checker

    return checker(settings.permits, city_timezone(args.city or city_dir(settings.city.dir)))


def _apply_fields(path: str) -> dict:
    from pathlib import Path

    from pydantic import ValidationError

    from api.permits import ApplicationBody

    try:
        body = ApplicationBody.model_validate_json(Path(path).read_bytes())
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
                             for err in e.errors())
        raise UserError(f"{path}: {problems}") from None
    fields = body.model_dump(exclude={"route"})
    return {**fields, "route": body.route.model_dump()}


def permits(args, settings) -> int:
    from permits.checks import describe
    from store import permits as store
    from store.review import Conflict, NotFound, Scope

    actor = getattr(args, "by", None) or f"cli:{getpass.getuser()}"
    who: dict[str, Any] = {"actor": actor, "role": "operator"}
    status = 0
    with connect(settings) as conn:
        try:
            with conn.transaction():
                if args.action == "apply":
                    app = store.submit(conn, company_id=args.company, checker=_checker(
                        args, settings), **_apply_fields(args.file), **who)
                    print(f"application {app['id']} submitted for {args.company} "
                          f"({', '.join(app['plates'])})")
                    print(describe(app["check_report"]))
                elif args.action == "list":
                    _list(conn, args, store, Scope())
                elif args.action == "check":
                    print(describe(store.check(conn, Scope(), args.id,
                                               _checker(args, settings)).as_dict()))
                elif args.action in ("approve", "reject"):
                    decision = store.decide(conn, Scope(), args.id, decision=args.action,
                                            reason=args.reason, checker=_checker(args, settings),
                                            **who)
                    if decision.report is not None:
                        print(describe(decision.report))
                    if not decision.ok:  # the report and its audit row are committed
                        print(f"application {args.id} stays applied: reject it or have the "
                              "company apply again", file=sys.stderr)
                        status = 2
                    else:
                        print(f"application {args.id} {decision.application['status']}"
                              + "".join(f"\npermit {p['id']}" for p in decision.permits))
                elif args.action == "expire":
                    done = store.expire(conn, **who)
                    print(f"{len(done['expired'])} permit(s) expired, {len(done['resumed'])} "
                          "suspension(s) ended")
                else:
                    after = _move(conn, args, store, Scope(), who)
                    print(f"permit {after['id']}: {after['status']} from "
                          f"{after['status_changed_at'].isoformat()} (now "
                          f"{after['current_status']})")
        except (ValueError, Conflict, NotFound) as e:
            raise UserError(str(e)) from None
    return status


def _move(conn, args, store, scope, who) -> dict:
    if args.action == "suspend":
        return store.suspend(conn, scope, args.permit, from_ts=args.from_ts, until=args.until,
                             reason=args.reason, **who)[1]
    if args.action == "resume":
        return store.resume(conn, scope, args.permit, reason=args.reason, **who)[1]
    return store.revoke(conn, scope, args.permit, at=args.at, reason=args.reason, **who)[1]


def _list(conn, args, store, scope) -> None:
    if args.permits:
        if args.status in APPLICATION_STATES:
            raise UserError(f"--status {args.status} is an application state; permits are "
                            f"{', '.join(PERMIT_STATES)}")
        for p in store.list_permits(conn, scope, status=args.status, company=args.company,
                                    limit=args.limit):
            print(f"{p['id']}\t{p['plate']}\t{p['company_id']}\t{p['status']}\t"
                  f"{p['current_status']}\t{p['valid_from']:%Y-%m-%d}..{p['valid_to']:%Y-%m-%d}")
        return
    if args.status in PERMIT_STATES:
        raise UserError(f"--status {args.status} is a permit state (add --permits); "
                        f"applications are {', '.join(APPLICATION_STATES)}")
    for a in store.list_applications(conn, scope, status=args.status, company=args.company,
                                     limit=args.limit):
        report = a["check_report"] or {}
        checks = "-" if not report else "ok" if report.get("ok") else \
            f"{report.get('errors')} failed"
        print(f"{a['id']}\t{a['company_id']}\t{a['status']}\t{','.join(a['plates'])}\t"
              f"{a['origin']}->{','.join(a['destinations'])}\tchecks {checks}")
