"""The ``muckwatch`` command: one entry point for operators, analysts and testers.

Exit codes: 0 success; 1 a runtime failure (broker or database unreachable, demo check
failed); 2 a user mistake (bad arguments, config, file or city bundle) — reported in one clear
sentence, never a traceback; 130 interrupted.

Each command group is a module (``run``, ``services``, ``simulate``, ``alerts``, ``broker``,
``db``, ``report``, ``config``, ``geo``, ``api``) that registers its commands' parsers and
handlers in one ``CommandTable``; ``main`` parses, loads the settings and calls the handler
the table holds for the command. The modules parse, call, print and map errors; the work is
elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import sys

from muckwatch.cli import (
    alerts,
    api,
    broker,
    config,
    db,
    evidence,
    geo,
    office,
    permits,
    report,
    run,
    services,
    simulate,
    terminal,
)
from muckwatch.cli.common import CommandTable, Failure, UserError

__all__ = ["Failure", "UserError", "main"]

EXAMPLES = """\
exit codes: 0 success; 1 a runtime failure (broker or database unreachable); 2 a user mistake
(arguments, config, a missing file, a bad city bundle), said in one sentence; 130 interrupted.

examples:
  muckwatch demo                              # the whole system for a minute, then a report
  muckwatch run --config muckwatch.toml       # the ingest service
  muckwatch replay track.jsonl --city data/sample-city > violations.jsonl
  muckwatch db migrate && muckwatch db status
  muckwatch serve                             # the HTTP API (docs/api.md)
  muckwatch accounts add officer-d01 --role officer --district D01
  muckwatch permits approve 12 --by officer-wang   # permits with a life cycle (docs/permits.md)
  muckwatch import city data/sample-city
  muckwatch services up                       # private broker + database for poking around
  muckwatch coords convert --from gcj02 --to wgs84 114.0628 22.5401
  muckwatch geofence query data/sample-city/fences.geojson points.csv
  muckwatch config show
"""

GROUPS = (run, services, simulate, alerts, broker, db, report, config, geo, api, permits,
          office, terminal, evidence)
# the order `muckwatch --help` lists the commands in (groups register theirs together)
HELP_ORDER = ("run", "serve", "accounts", "permits", "office", "demo", "replay", "simulate",
              "accuracy", "alerts", "terminal", "evidence", "gateway", "broker", "devices",
              "jt808", "db", "scores", "company-role", "import", "report", "services", "config",
              "geofence", "coords")


def command_table() -> CommandTable:
    table = CommandTable()
    for group in GROUPS:
        group.register(table)
    return table


def _parser(table: CommandTable) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="muckwatch",
        description="Real-time telemetry and geofencing for muck trucks (渣土车).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="TOML config file (default: $MUCKWATCH_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    unlisted = len(HELP_ORDER)
    for c in sorted(table.commands.values(),
                    key=lambda c: HELP_ORDER.index(c.name) if c.name in HELP_ORDER else unlisted):
        c.arguments(sub.add_parser(c.name, help=c.help, description=c.help,
                                   epilog=f"example:\n  {c.example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    return p


def _log_format(fmt: str) -> None:
    """[observability] log_format: "text" (the default) or "json" (one object per line)."""
    from domain.config import ConfigError

    if fmt == "json":
        from muckwatch.observability import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    elif fmt != "text":
        raise ConfigError(f"[observability] log_format must be \"text\" or \"json\", not {fmt!r}")


def main(argv: list[str] | None = None) -> int:
    table = command_table()
    args = _parser(table).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # one line per webhook POST is noise; the worker logs failures and the metrics count all
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    from domain.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config)
        _log_format(settings.observability.log_format)
        handler = table.handlers.get(args.command)
        if handler is None:
            raise UserError(f"unknown command {args.command}")
        return handler(args, settings)
    except KeyboardInterrupt:
        return 130
    except (UserError, ConfigError, FileNotFoundError) as e:
        print(f"muckwatch: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # known operational failures get one sentence, others a traceback
        from domain.city import CityError
        from ingest.receiver import BrokerError
        from store.database import DatabaseError

        if isinstance(e, CityError):
            print(f"muckwatch: {e}", file=sys.stderr)
            return 2
        if isinstance(e, BrokerError | DatabaseError | Failure):
            print(f"muckwatch: {e}", file=sys.stderr)
            return 1
        import psycopg

        if isinstance(e, psycopg.OperationalError):
            print(f"muckwatch: database unavailable: {str(e).strip().splitlines()[-1]}",
                  file=sys.stderr)
            return 1
        raise
