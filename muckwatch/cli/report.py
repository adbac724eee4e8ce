"""``report``: one offline HTML file of fences, corridors, violations and scores (the work is
in ``muckwatch.report``)."""

from __future__ import annotations

import argparse

from muckwatch.cli.common import CommandTable, UserError, connect


def register(table: CommandTable) -> None:
    table.add("report", "one offline HTML file: map of fences, corridors and violations, "
              "violations per hour, credit scores",
              "muckwatch report --since 24h -o report.html", _arguments, report)


def _arguments(rep: argparse.ArgumentParser) -> None:
    rep.add_argument("--since", default="24h",
                     help="how far back: 24h, 7d, 90m or a date such as 2026-11-30 "
                          "(default 24h)")
    rep.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    rep.add_argument("--city", help="city bundle directory (default: [city] dir)")


def report(args, settings) -> int:
    from pathlib import Path

    from domain.city import load_city
    from muckwatch.locations import city_dir
    from muckwatch.report import parse_since, write

    try:
        since = parse_since(args.since)
    except ValueError as e:
        raise UserError(str(e)) from None
    city = load_city(args.city or city_dir(settings.city.dir))
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: directory {out.parent} does not exist")
    with connect(settings) as conn:
        n = write(conn, city, since, out)
    print(f"wrote {out} ({n} violations since {since:%Y-%m-%d %H:%M} UTC)")
    return 0
