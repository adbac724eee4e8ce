"""The private services: ``services up | down | status`` and ``demo``.

The only CLI module that imports ``devservices`` (the demo starts private services by
design); their ServiceError becomes a Failure here, so the root never imports them.
"""

from __future__ import annotations

import argparse
import json
import sys

from muckwatch.cli.common import CommandTable, Failure


def register(table: CommandTable) -> None:
    table.add("demo", "private broker + database, simulated trucks for ~1 minute, a report",
              "muckwatch demo --duration 60", _demo_arguments, demo)
    table.add("services", "start/stop the private Mosquitto and PostgreSQL used by the demo",
              "muckwatch services up", _services_arguments, services)


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between fixes")
    p.add_argument("--trucks", type=int, default=1000, help="at most this many trucks")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-wait", action="store_true",
                   help="stop at once after the report (on a terminal the demo otherwise "
                        "keeps the API up until Enter)")
    p.add_argument("--no-manifest", action="store_true",
                   help="skip the permit approved through the API and the haul from site to "
                        "receipt (which keeps the demo running for about 90 s)")


def demo(args, settings) -> int:
    from devservices.common import ServiceError
    from muckwatch.demo import DemoOptions, run_demo

    try:
        return run_demo(settings, DemoOptions(duration_s=args.duration,
                                              interval_s=args.interval,
                                              trucks=args.trucks, seed=args.seed,
                                              keep=not args.no_wait,
                                              manifest=not args.no_manifest))
    except ServiceError as e:
        raise Failure(str(e)) from None


def _services_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "down", "status"])


def services(args, settings) -> int:
    from devservices import stack
    from devservices.common import ServiceError, default_run_dir

    run_dir = default_run_dir()
    try:
        if args.action == "up":
            s = stack.up(run_dir)
            if not s.started:
                print("muckwatch: the private services were already running",
                      file=sys.stderr)
            print(f"mosquitto: {s.mqtt_url} (pid {s.mosquitto_pid})")
            print(f"postgres:  {s.dsn}")
            print(f"psql -h 127.0.0.1 -p {s.pg_port} -U postgres muckwatch")
            print(f"export MUCKWATCH_DSN={s.dsn} MUCKWATCH_MQTT_PORT={s.mqtt_port}")
            return 0
        if args.action == "down":
            stack.down(run_dir)
            print("stopped")
            return 0
    except ServiceError as e:
        raise Failure(str(e)) from None
    state = stack.status(run_dir)
    print(json.dumps(state, indent=2) if state else "not running")
    return 0
