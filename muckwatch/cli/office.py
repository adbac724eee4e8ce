"""``muckwatch office apply | receipts``: a simulated city's paperwork through the HTTP API
(``muckwatch.office``): every company applies for its jobs, the officer checks and decides;
the disposal sites' operators post the simulator's receipts. Accounts are made in the
database (``[database] dsn``), the requests go to ``--api``."""

from __future__ import annotations

import argparse

from muckwatch.cli.common import CommandTable, UserError


def register(table: CommandTable) -> None:
    table.add("office", "simulate the paperwork through the API: companies apply, the officer "
              "decides, site operators post receipts",
              "muckwatch office apply --api http://127.0.0.1:8088", _arguments, office)


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("apply", help="each job of the city bundle applied for by its company "
                                     "and decided by the officer after the approval checks")
    q.add_argument("--api", required=True, help="the API's base URL (muckwatch serve)")
    q.add_argument("--city", help="city bundle directory (default [city] dir)")
    q.add_argument("--job", action="append", help="only this job (repeatable)")
    q.add_argument("--limit", type=int, help="at most this many applications")
    q = sub.add_parser("receipts", help="post a receipts JSONL (muckwatch simulate "
                                        "--receipts) as each site's operator")
    q.add_argument("file")
    q.add_argument("--api", required=True, help="the API's base URL (muckwatch serve)")


def office(args, settings) -> int:
    import httpx

    from muckwatch import office as work

    try:
        if args.action == "apply":
            from domain.city import CityError, load_city
            from muckwatch.locations import city_dir

            try:
                city = load_city(city_dir(args.city or settings.city.dir))
            except CityError as e:
                raise UserError(str(e)) from None
            report = work.apply_and_decide(args.api, settings.database.dsn, city,
                                           settings.permits.max_validity_days, jobs=args.job,
                                           limit=args.limit)
            print(f"applied {report.applied}, approved {report.approved} "
                  f"({len(report.permits)} permits), rejected {len(report.rejected)}, "
                  f"refused by the API {len(report.refused)}")
            for app_id, why in report.rejected:
                print(f"  rejected application {app_id}: {why}")
            for job, why in report.refused:
                print(f"  refused job {job}: {why}")
            return 0
        report = work.post_receipts(args.api, settings.database.dsn, args.file)
        print(f"receipts {report.receipts} recorded, {report.receipts_replayed} already there, "
              f"{len(report.receipts_refused)} refused")
        for line, why in report.receipts_refused:
            print(f"  line {line}: {why}")
        return 0 if not report.receipts_refused else 1
    except httpx.HTTPError as e:
        raise UserError(f"the API at {args.api}: {e}") from None
