"""The database: ``db migrate | status``, ``import city``, ``scores`` (show, snapshot) and
``company-role``; the work is in ``store``."""

from __future__ import annotations

import argparse
import sys

from muckwatch.cli.common import CommandTable, UserError, connect


def register(table: CommandTable) -> None:
    table.add("db", "database schema: migrate or show status", "muckwatch db migrate",
              _db_arguments, db)
    table.add("scores", "company credit scores (诚信评定); 'snapshot' stores today's",
              "muckwatch scores --as-of 2026-11-30", _scores_arguments, scores)
    table.add("company-role", "create a login role that sees only one company's rows",
              "muckwatch company-role C01 --role company_c01", _role_arguments, company_role)
    table.add("import", "load reference data into the database", "muckwatch import city DIR",
              _import_arguments, import_)


def _db_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["migrate", "status"])


def db(args, settings) -> int:
    from tqdm import tqdm

    from store.migrate import available_migrations, migrate, status

    with connect(settings) as conn:
        if args.action == "migrate":
            with tqdm(total=len(available_migrations()), unit=" migrations",
                      desc="migrating", file=sys.stderr, disable=None) as bar:
                applied = migrate(conn, progress=lambda name: bar.update(1))
            from store.scores import sync_scoring

            try:
                sync_scoring(conn, settings.scoring.deductions,
                             settings.scoring.unreviewed_after_days)
            except ValueError as e:
                raise UserError(str(e)) from None
            print(f"applied migrations: {applied}" if applied else "schema is up to date")
        st = status(conn)
        print(f"mode: {st.mode} ({st.why})")
        print(f"server: PostgreSQL {st.server_version}")
        print(f"applied: {st.applied or 'none'}; pending: {st.pending or 'none'}")
    return 0


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _scores_arguments(sc: argparse.ArgumentParser) -> None:
    sc.add_argument("action", nargs="?", choices=["show", "snapshot"], default="show")
    sc.add_argument("--company", help="only this company id")
    sc.add_argument("--as-of", type=_date, help="YYYY-MM-DD (default: now / today)")


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def scores(args, settings) -> int:
    from datetime import date

    from store import scores as store

    with connect(settings) as conn:
        try:
            store.sync_scoring(conn, settings.scoring.deductions,
                               settings.scoring.unreviewed_after_days)
        except ValueError as e:
            raise UserError(str(e)) from None
        if args.action == "snapshot":
            day = args.as_of or date.today()
            n = store.snapshot(conn, day)
            print(f"stored {n} scores for {day}")
            return 0
        rows = store.company_scores(conn, store.as_of_end(args.as_of), args.company)
    if args.company and not rows:
        raise UserError(f"company {args.company!r} not found")
    head = ("company", "name", "vehicles", "violations", "deductions", "score", "grade")
    table = [head] + [tuple(str(x) for x in r) for r in rows]
    widths = [max(_width(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _role_arguments(role: argparse.ArgumentParser) -> None:
    role.add_argument("company")
    role.add_argument("--role", help="role name (default company_<id>)")


def company_role(args, settings) -> int:
    from store.scores import create_company_role

    role_name = args.role or f"company_{args.company.lower()}"
    with connect(settings) as conn:
        try:
            create_company_role(conn, args.company, role_name)
        except ValueError as e:
            raise UserError(str(e)) from None
    print(f"role {role_name} sees only company {args.company}")
    return 0


def _import_arguments(imp: argparse.ArgumentParser) -> None:
    imp.add_argument("what", choices=["city"])
    imp.add_argument("dir", help="city bundle directory")


def import_(args, settings) -> int:
    from tqdm import tqdm

    from domain.city import load_city
    from store.reference import import_city

    city = load_city(args.dir)
    with connect(settings) as conn, tqdm(total=4, unit=" tables", desc="importing",
                                        file=sys.stderr, disable=None) as bar:
        counts = import_city(conn, city, progress=lambda table: bar.update(1))
    print("imported " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0
