"""The ``muckwatch`` command: one entry point for operators, analysts and testers.

Exit codes: 0 success; 1 a runtime failure (broker or database unreachable, demo check
failed); 2 a user mistake (bad arguments, config, file or city bundle) — reported in one clear
sentence, never a traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys

EXAMPLES = """\
exit codes: 0 success; 1 a runtime failure (broker or database unreachable); 2 a user mistake
(arguments, config, a missing file, a bad city bundle), said in one sentence; 130 interrupted.

examples:
  muckwatch demo                              # the whole system for a minute, then a report
  muckwatch run --config muckwatch.toml       # the ingest service
  muckwatch replay track.jsonl --city data/sample-city > violations.jsonl
  muckwatch db migrate && muckwatch db status
  muckwatch import city data/sample-city
  muckwatch services up                       # private broker + database for poking around
  muckwatch coords convert --from gcj02 --to wgs84 114.0628 22.5401
  muckwatch geofence query data/sample-city/fences.geojson points.csv
  muckwatch config show
"""


class UserError(Exception):
    """A mistake the user can fix; printed as one sentence, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="muckwatch",
        description="Real-time telemetry and geofencing for muck trucks (渣土车).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="TOML config file (default: $MUCKWATCH_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    run = cmd("run", "run the ingest service (MQTT → pipeline → database)",
              "MUCKWATCH_DSN=postgresql://… muckwatch run --city data/sample-city")
    run.add_argument("--city", help="city bundle directory (default: [city] dir)")

    demo = cmd("demo", "private broker + database, simulated trucks for ~1 minute, a report",
               "muckwatch demo --duration 60")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    demo.add_argument("--interval", type=float, default=1.0, help="seconds between fixes")
    demo.add_argument("--trucks", type=int, default=1000, help="at most this many trucks")
    demo.add_argument("--seed", type=int, default=7)

    rep = cmd("replay", "run geofence + rules over a TRACK.jsonl offline; violations as JSONL",
              "muckwatch replay track.jsonl --city data/sample-city > violations.jsonl")
    rep.add_argument("track", help="JSONL, one wire-format v1 fix per line, with 'dev'")
    rep.add_argument("--city", help="city bundle directory (default: [city] dir)")

    sim = cmd("simulate", "a fleet with injected offences and near-misses, and their truth",
              "muckwatch simulate --trucks 300 --duration 120 --scenario mixed --seed 1 "
              "--truth truth.jsonl --out track.jsonl")
    sim.add_argument("--city", help="city bundle directory (default: [city] dir)")
    sim.add_argument("--trucks", type=int, default=100, help="compliant trucks (default 100)")
    sim.add_argument("--interval", type=float, default=5.0,
                     help="seconds between a terminal's reports, 1–30 (default 5)")
    sim.add_argument("--jitter", type=float, default=0.1,
                     help="each interval drawn from ± this share of it (default 0.1)")
    sim.add_argument("--duration", default="30",
                     help="how long: 90s, 45m, 6h, 7d; a bare number is minutes (default 30)")
    sim.add_argument("--days", type=float,
                     help="how many days instead (shifts, night jobs and parking repeat daily)")
    sim.add_argument("--step", type=float, default=1.0,
                     help="motion sub-step in seconds, ≤ the interval (default 1; 2 is faster)")
    sim.add_argument("--scenario", choices=["mixed", "compliant"], default="mixed",
                     help="mixed: offences and near-misses injected; compliant: none")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start-ms", default="1795053600000",
                     help="device time of the start, epoch ms or 'now' "
                          "(default 1795053600000 = 2026-11-19 10:00 +08)")
    sim.add_argument("--per-rule", type=int, default=1,
                     help="offences per rule, each at a random time (default 1)")
    sim.add_argument("--rate", type=float,
                     help="offences per rule per 100 truck-hours instead (Poisson)")
    sim.add_argument("--rule-rate", action="append", default=[], metavar="RULE=R",
                     help="the rate for one rule (repeatable), e.g. OFF_ROUTE=2")
    sim.add_argument("--no-near-misses", action="store_true",
                     help="inject no near-miss (a negative in the truth) next to each offence")
    sim.add_argument("--noise-m", type=float, default=8.0, help="GPS noise σ, m (default 8)")
    sim.add_argument("--skew-share", type=float, default=0.05,
                     help="share of terminals with a skewed clock, up to ±90 s (default 0.05)")
    sim.add_argument("--blind-share", type=float, default=0.1,
                     help="share of trucks passing a 2–8 min blind area (default 0.1)")
    sim.add_argument("--tunnel-share", type=float, default=0.1,
                     help="share of trucks losing GPS for 30–150 s (default 0.1)")
    sim.add_argument("--duplicate-rate", type=float, default=0.005,
                     help="share of messages delivered twice (default 0.005)")
    target = sim.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="TRACK.jsonl to write (for muckwatch replay)")
    target.add_argument("--mqtt", help="publish live instead, e.g. mqtt://127.0.0.1:1883")
    target.add_argument("--jt808", metavar="HOST:PORT",
                        help="or drive a JT/T 808 gateway, one TCP connection per truck")
    sim.add_argument("--speed", type=float, default=0.0,
                     help="with --mqtt/--jt808: 1 = real time, 10 = ten times faster, "
                          "0 = as fast as the broker takes it (default 0)")
    sim.add_argument("--max-rate", type=float, default=0.0,
                     help="with --mqtt: at most this many messages/s (default: no limit)")
    sim.add_argument("--truth", required=True, help="ground truth JSONL to write")

    acc = cmd("accuracy", "precision and recall per rule against the simulator's ground truth",
              "muckwatch accuracy truth.jsonl violations.jsonl   |   "
              "muckwatch accuracy truth.jsonl --db")
    acc.add_argument("truth", help="JSONL: rule, device, start_ts, end_ts[, negative]")
    acc.add_argument("violations", nargs="?", help="JSONL as printed by muckwatch replay")
    acc.add_argument("--db", action="store_true",
                     help="read the violations from the database instead")
    acc.add_argument("--since", type=int,
                     help="with --db: violations starting at or after this epoch ms "
                          "(default: 30 min before the first truth entry)")
    acc.add_argument("--until", type=int,
                     help="with --db: … and before this (default: 30 min after the last)")
    acc.add_argument("--tolerance-s", type=float, default=60.0,
                     help="start times this close match (default 60)")

    al = cmd("alerts", "enforcement webhooks: worker, subscriptions, outbox, replay, verify",
             "muckwatch alerts list --failed")
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

    gw = cmd("gateway", "JT/T 808 terminals over TCP → wire format v1 on MQTT",
             "muckwatch gateway --listen 0.0.0.0:6808 --mqtt mqtt://127.0.0.1:1883")
    gw.add_argument("--listen", help="host:port (default: [gateway] listen)")
    gw.add_argument("--mqtt", help="broker URL (default: the [mqtt] section)")

    br = cmd("broker", "set up a production Mosquitto: passwords, ACL, TLS certificate",
             "muckwatch broker init /etc/mosquitto/muckwatch --hostname mqtt.example.gov.cn")
    br.add_argument("action", choices=["init"])
    br.add_argument("dir", help="directory for mosquitto.conf, passwd, acl and certificates")
    br.add_argument("--hostname", action="append", default=[],
                    help="name or IP terminals connect to (repeat; default 127.0.0.1)")
    dv = cmd("devices", "a terminal's broker credentials: add (or reset) and revoke",
             "muckwatch devices add 粤B0352X --broker-dir /etc/mosquitto/muckwatch")
    dv.add_argument("action", choices=["add", "revoke"])
    dv.add_argument("device", help="device id, or a plate found in the city's vehicles.csv")
    dv.add_argument("--broker-dir", required=True, help="the directory of muckwatch broker init")
    dv.add_argument("--city", help="city bundle, to look plates up (default: [city] dir)")

    jt = cmd("jt808", "JT/T 808 tools: decode a frame to JSON",
             "muckwatch jt808 decode '7E 0200 …  7E'")
    jt.add_argument("action", choices=["decode"])
    jt.add_argument("hex", nargs="+", help="the frame in hex (7E flags and spaces optional)")

    db = cmd("db", "database schema: migrate or show status", "muckwatch db migrate")
    db.add_argument("action", choices=["migrate", "status"])

    sc = cmd("scores", "company credit scores (诚信评定); 'snapshot' stores today's",
             "muckwatch scores --as-of 2026-11-30")
    sc.add_argument("action", nargs="?", choices=["show", "snapshot"], default="show")
    sc.add_argument("--company", help="only this company id")
    sc.add_argument("--as-of", type=_date, help="YYYY-MM-DD (default: now / today)")

    role = cmd("company-role", "create a login role that sees only one company's rows",
               "muckwatch company-role C01 --role company_c01")
    role.add_argument("company")
    role.add_argument("--role", help="role name (default company_<id>)")

    imp = cmd("import", "load reference data into the database", "muckwatch import city DIR")
    imp.add_argument("what", choices=["city"])
    imp.add_argument("dir", help="city bundle directory")

    rep = cmd("report", "one offline HTML file: map of fences, corridors and violations, "
              "violations per hour, credit scores",
              "muckwatch report --since 24h -o report.html")
    rep.add_argument("--since", default="24h",
                     help="how far back: 24h, 7d, 90m or a date such as 2026-11-30 "
                          "(default 24h)")
    rep.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    rep.add_argument("--city", help="city bundle directory (default: [city] dir)")

    svc = cmd("services", "start/stop the private Mosquitto and PostgreSQL used by the demo",
              "muckwatch services up")
    svc.add_argument("action", choices=["up", "down", "status"])

    conf = cmd("config", "show the effective configuration (secrets masked)",
               "MUCKWATCH_MQTT_PORT=1884 muckwatch config show")
    conf.add_argument("action", choices=["show"])

    geo = cmd("geofence", "which fences contain which points (CSV out)",
              "muckwatch geofence query data/sample-city/fences.geojson points.csv > hits.csv")
    geo.add_argument("action", choices=["query"])
    geo.add_argument("fences", help="GeoJSON FeatureCollection of Polygon/MultiPolygon fences "
                     "(or Points with radius_m)")
    geo.add_argument("points", help="CSV with header id,lon,lat (WGS-84)")
    geo.add_argument("--crs", choices=["wgs84", "gcj02", "bd09"], default="wgs84",
                     help="coordinate system the fences were drawn in (default wgs84)")

    coords = cmd("coords", "convert coordinates between WGS-84, GCJ-02 and BD-09",
                 "muckwatch coords convert --from gcj02 --to wgs84 114.0628 22.5401")
    coords.add_argument("action", choices=["convert"])
    coords.add_argument("--from", dest="source", required=True,
                        choices=["wgs84", "gcj02", "bd09"])
    coords.add_argument("--to", dest="target", required=True, choices=["wgs84", "gcj02", "bd09"])
    coords.add_argument("lon", type=float)
    coords.add_argument("lat", type=float)
    return p


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


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
    args = _parser().parse_args(argv)
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
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except (UserError, ConfigError, FileNotFoundError) as e:
        print(f"muckwatch: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # known operational failures get one sentence, others a traceback
        from domain.city import CityError
        from ingest.receiver import BrokerError
        from muckwatch.services import ServiceError
        from store.database import DatabaseError

        if isinstance(e, CityError):
            print(f"muckwatch: {e}", file=sys.stderr)
            return 2
        if isinstance(e, BrokerError | DatabaseError | ServiceError):
            print(f"muckwatch: {e}", file=sys.stderr)
            return 1
        import psycopg

        if isinstance(e, psycopg.OperationalError):
            print(f"muckwatch: database unavailable: {str(e).strip().splitlines()[-1]}",
                  file=sys.stderr)
            return 1
        raise


def city_dir(configured: str) -> str:
    """The configured city directory; a relative default that does not exist here is looked
    up in the source checkout too, so ``muckwatch run`` works from any directory."""
    from pathlib import Path

    from muckwatch.services import REPO_ROOT

    path = Path(configured)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).is_dir():
        return str(REPO_ROOT / path)
    return configured


def _connect(settings):
    import psycopg

    from store.database import DatabaseError, describe_dsn

    try:
        return psycopg.connect(settings.database.dsn,
                               connect_timeout=settings.database.connect_timeout_s)
    except psycopg.OperationalError as e:
        raise DatabaseError(f"cannot connect to PostgreSQL at "
                            f"{describe_dsn(settings.database.dsn)}: "
                            f"{str(e).strip().splitlines()[-1]}") from None


def _dispatch(args: argparse.Namespace, settings) -> int:
    if args.command == "run":
        from domain.city import load_city
        from domain.config import load_settings
        from muckwatch.service import IngestService

        city = load_city(args.city or city_dir(settings.city.dir))
        service = IngestService(settings, city,
                                reload_settings=lambda: load_settings(args.config))
        stats = asyncio.run(service.run())
        print(stats.as_json(), flush=True)
        return 0

    if args.command == "demo":
        from muckwatch.demo import DemoOptions, run_demo

        return run_demo(settings, DemoOptions(duration_s=args.duration,
                                              interval_s=args.interval,
                                              trucks=args.trucks, seed=args.seed))

    if args.command == "replay":
        from domain.city import load_city
        from muckwatch.replay import TrackError, read_track, replay

        city = load_city(args.city or city_dir(settings.city.dir))
        from tqdm import tqdm

        bar = tqdm(unit=" lines", desc="replaying", file=sys.stderr, disable=None)

        def counted(batches):
            for batch in batches:
                bar.update(len(batch))
                yield batch
        try:
            violations, counts = replay(city, counted(read_track(args.track)), settings.rules)
        except TrackError as e:
            raise UserError(str(e)) from None
        except FileNotFoundError:
            raise UserError(f"{args.track}: file does not exist") from None
        finally:
            bar.close()
        for v in violations:
            print(json.dumps(v, ensure_ascii=False), flush=False)
        print(f"replayed {counts['lines']} lines ({counts['fixes']} fixes, "
              f"{counts['rejected']} rejected): {len(violations)} violations", file=sys.stderr)
        return 0

    if args.command == "simulate":
        return _simulate(args, settings)

    if args.command == "accuracy":
        from simulator.accuracy import AccuracyError, evaluate, full_table, read_jsonl, read_truth

        if (args.violations is None) == (not args.db):
            raise UserError("give either a violations JSONL file or --db")
        try:
            truth, summary = read_truth(args.truth)
            if args.db:
                from store.violations import violations_between

                if not truth and (args.since is None or args.until is None):
                    raise UserError(f"{args.truth} is empty: give --since and --until")
                starts = [t["start_ts"] for t in truth]
                ends = [t.get("end_ts") or t["start_ts"] for t in truth]
                since = args.since if args.since is not None else min(starts) - 1_800_000
                until = args.until if args.until is not None else max(ends) + 1_800_000
                with _connect(settings) as conn:
                    found = violations_between(conn, since, until)
            else:
                found = read_jsonl(args.violations, ("rule", "device", "start_ts"))
        except AccuracyError as e:
            raise UserError(str(e)) from None
        hours = (summary or {}).get("compliant_truck_hours")
        print(full_table(evaluate(truth, found, args.tolerance_s, hours)))
        return 0

    if args.command == "alerts":
        return _alerts(args, settings)

    if args.command == "gateway":
        from gateway.mqtt import BrokerUnavailable
        from gateway.server import serve
        from ingest.receiver import BrokerError

        async def run_gateway() -> None:
            import signal

            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            stats = await serve(settings, args.listen, args.mqtt, stop)
            print(stats.as_json(), flush=True)

        try:
            asyncio.run(run_gateway())
        except BrokerUnavailable as e:
            raise BrokerError(str(e)) from None
        except ValueError as e:
            raise UserError(str(e)) from None
        return 0

    if args.command == "broker":
        from pathlib import Path

        from muckwatch import broker

        try:
            passwords = broker.init(Path(args.dir).resolve(), args.hostname or ["127.0.0.1"])
        except broker.BrokerSetupError as e:
            raise UserError(str(e)) from None
        print(f"wrote {args.dir}/mosquitto.conf, passwd, acl, ca.crt, server.crt/key")
        for user, password in passwords.items():
            print(f"  {user}: {password}   (shown once; put it in that service's config)")
        print(f"give the files to the broker's user (chown -R mosquitto {args.dir}), start "
              f"mosquitto -c {args.dir}/mosquitto.conf, and hand terminals {args.dir}/ca.crt")
        return 0

    if args.command == "devices":
        from pathlib import Path

        from muckwatch import broker

        device = args.device
        if not broker.DEVICE_ID.fullmatch(device):  # a plate: look it up in the city
            from domain.city import load_city

            city = load_city(args.city or city_dir(settings.city.dir))
            found = [v.device_id for v in city.vehicles if v.plate == device]
            if not found:
                raise UserError(f"{device!r} is neither a device id nor a plate in "
                                f"{city.directory}/vehicles.csv")
            device = found[0]
        try:
            if args.action == "add":
                password = broker.add_device(Path(args.broker_dir), device)
                print(f"device {device}: user {device}, password {password} (shown once); "
                      f"it may publish only under muck/v1/{device}/. "
                      "Reload the broker: kill -HUP $(pidof mosquitto)")
            elif broker.revoke_device(Path(args.broker_dir), device):
                print(f"device {device} revoked. Reload the broker: kill -HUP $(pidof mosquitto)")
            else:
                raise UserError(f"no device {device!r} in {args.broker_dir}/passwd")
        except broker.BrokerSetupError as e:
            raise UserError(str(e)) from None
        return 0

    if args.command == "jt808":
        from gateway.codec import CodecError, describe

        try:
            print(json.dumps(describe(" ".join(args.hex)), ensure_ascii=False, indent=2))
        except CodecError as e:
            raise UserError(f"not a valid JT/T 808 frame: {e}") from None
        return 0

    if args.command == "db":
        from tqdm import tqdm

        from store.migrate import available_migrations, migrate, status

        with _connect(settings) as conn:
            if args.action == "migrate":
                with tqdm(total=len(available_migrations()), unit=" migrations",
                          desc="migrating", file=sys.stderr, disable=None) as bar:
                    applied = migrate(conn, progress=lambda name: bar.update(1))
                from store.scores import sync_deductions

                try:
                    sync_deductions(conn, settings.scoring.deductions)
                except ValueError as e:
                    raise UserError(str(e)) from None
                print(f"applied migrations: {applied}" if applied else "schema is up to date")
            st = status(conn)
            print(f"mode: {st.mode} ({st.why})")
            print(f"server: PostgreSQL {st.server_version}")
            print(f"applied: {st.applied or 'none'}; pending: {st.pending or 'none'}")
        return 0

    if args.command == "scores":
        from datetime import date

        from store import scores

        with _connect(settings) as conn:
            try:
                scores.sync_deductions(conn, settings.scoring.deductions)
            except ValueError as e:
                raise UserError(str(e)) from None
            if args.action == "snapshot":
                day = args.as_of or date.today()
                n = scores.snapshot(conn, day)
                print(f"stored {n} scores for {day}")
                return 0
            rows = scores.company_scores(conn, scores.as_of_end(args.as_of), args.company)
        if args.company and not rows:
            raise UserError(f"company {args.company!r} not found")
        head = ("company", "name", "vehicles", "violations", "deductions", "score", "grade")
        table = [head] + [tuple(str(x) for x in r) for r in rows]
        widths = [max(_width(r[i]) for r in table) for i in range(len(head))]
        for r in table:
            print("  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip())
        return 0

    if args.command == "company-role":
        from store.scores import create_company_role

        role_name = args.role or f"company_{args.company.lower()}"
        with _connect(settings) as conn:
            try:
                create_company_role(conn, args.company, role_name)
            except ValueError as e:
                raise UserError(str(e)) from None
        print(f"role {role_name} sees only company {args.company}")
        return 0

    if args.command == "import":
        from tqdm import tqdm

        from domain.city import load_city
        from store.reference import import_city

        city = load_city(args.dir)
        with _connect(settings) as conn, tqdm(total=4, unit=" tables", desc="importing",
                                             file=sys.stderr, disable=None) as bar:
            counts = import_city(conn, city, progress=lambda table: bar.update(1))
        print("imported " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        return 0

    if args.command == "report":
        from pathlib import Path

        from domain.city import load_city
        from muckwatch.report import parse_since, write

        try:
            since = parse_since(args.since)
        except ValueError as e:
            raise UserError(str(e)) from None
        city = load_city(args.city or city_dir(settings.city.dir))
        out = Path(args.output)
        if not out.parent.is_dir():
            raise UserError(f"-o {out}: directory {out.parent} does not exist")
        with _connect(settings) as conn:
            n = write(conn, city, since, out)
        print(f"wrote {out} ({n} violations since {since:%Y-%m-%d %H:%M} UTC)")
        return 0

    if args.command == "services":
        return _services(args.action)

    if args.command == "config":
        from domain.config import as_dict, to_toml

        print(to_toml(as_dict(settings, masked=True)), end="")
        return 0

    if args.command == "geofence":
        return _geofence_query(args.fences, args.points, args.crs)

    if args.command == "coords":
        from domain.coords import convert

        lon, lat = convert([args.lon], [args.lat], args.source, args.target)
        print(f"{lon[0]:.8f} {lat[0]:.8f}")
        return 0
    raise UserError(f"unknown command {args.command}")


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _read_points(path: str) -> tuple[list[str], list[float], list[float]]:
    import csv
    import math

    ids: list[str] = []
    lons: list[float] = []
    lats: list[float] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"id", "lon", "lat"} - set(reader.fieldnames or [])
            if missing:
                raise UserError(f"{path}: header must have id,lon,lat (missing "
                                f"{', '.join(sorted(missing))})")
            for row in reader:
                try:
                    lon, lat = float(row["lon"]), float(row["lat"])
                except (TypeError, ValueError):
                    raise UserError(f"{path}:{reader.line_num}: lon/lat must be numbers, got "
                                    f"{row['lon']!r}, {row['lat']!r}") from None
                if not (math.isfinite(lon) and math.isfinite(lat)):
                    raise UserError(f"{path}:{reader.line_num}: lon/lat must be finite")
                ids.append(row["id"])
                lons.append(lon)
                lats.append(lat)
    except FileNotFoundError:
        raise UserError(f"{path}: file does not exist") from None
    return ids, lons, lats


def _geofence_query(fences_path: str, points_path: str, crs: str) -> int:
    """CSV point_id,fence_id, one line per containment, sorted by point id then fence id."""
    import csv

    from geofence.fences import FenceFileError, load_fences
    from geofence.index import FenceIndex

    try:
        fences = load_fences(fences_path, crs)
    except FenceFileError as e:
        raise UserError(str(e)) from None
    ids, lons, lats = _read_points(points_path)
    fix, fence = FenceIndex(fences.geometries).covering(lons, lats)
    rows = sorted(zip([ids[i] for i in fix.tolist()],
                      [fences.ids[j] for j in fence.tolist()], strict=True))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["point_id", "fence_id"])
    out.writerows(rows)
    return 0


def _services(action: str) -> int:
    import os
    import signal

    from muckwatch.services import (
        PrivateMosquitto,
        PrivatePostgres,
        default_run_dir,
        load_state,
        save_state,
    )

    run_dir = default_run_dir()
    state = load_state(run_dir)
    if action == "up":
        broker = PrivateMosquitto(run_dir / "mosquitto").start()
        assert broker.proc is not None
        db = PrivatePostgres(run_dir / "pg").start()
        save_state(run_dir, mqtt_port=broker.port, mosquitto_pid=broker.proc.pid, dsn=db.dsn,
                   pg_port=db.port)
        print(f"mosquitto: {broker.url} (pid {broker.proc.pid})")
        print(f"postgres:  {db.dsn}")
        print(f"psql -h 127.0.0.1 -p {db.port} -U postgres muckwatch")
        print(f"export MUCKWATCH_DSN={db.dsn} MUCKWATCH_MQTT_PORT={broker.port}")
        return 0
    if action == "down":
        if state.get("mosquitto_pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(state["mosquitto_pid"]), signal.SIGTERM)
        PrivatePostgres(run_dir / "pg").stop()
        (run_dir / "services.json").unlink(missing_ok=True)
        print("stopped")
        return 0
    print(json.dumps(state, indent=2) if state else "not running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _simulate(args, settings) -> int:
    """``muckwatch simulate``: plan the scenario, stream it to a file or MQTT with a progress
    bar over simulated time, print a summary."""
    import time
    from pathlib import Path
    from urllib.parse import urlparse

    from tqdm import tqdm

    from domain.city import load_city
    from ingest.receiver import BrokerError
    from simulator.episodes import RULES, EpisodeError
    from simulator.mixed import MixedOptions, MixedScenario, TruthWriter
    from simulator.publish import MqttPublisher, PublishError, stream

    if not 1 <= args.interval <= 30:
        raise UserError(f"--interval must be 1–30 s, not {args.interval:g}")
    from simulator.mixed import parse_duration

    try:
        minutes = args.days * 1440 if args.days is not None else parse_duration(args.duration)
    except ValueError as e:
        raise UserError(f"--duration: {e}") from None
    if not minutes > 0:
        raise UserError("the duration must be more than zero")
    if args.start_ms == "now":
        start_ms = time.time_ns() // 1_000_000
    elif args.start_ms.isdigit():
        start_ms = int(args.start_ms)
    else:
        raise UserError(f"--start-ms must be epoch milliseconds or 'now', not {args.start_ms!r}")
    rates: dict[str, float] = {}
    if args.rate is not None:
        rates = dict.fromkeys(RULES, args.rate)
    for item in args.rule_rate:
        rule, _, value = item.partition("=")
        if rule not in RULES:
            raise UserError(f"--rule-rate: unknown rule {rule!r} (one of {', '.join(RULES)})")
        try:
            rates[rule] = float(value)
        except ValueError:
            raise UserError(f"--rule-rate {item!r}: the rate must be a number") from None
    compliant = args.scenario == "compliant"
    options = MixedOptions(
        trucks=args.trucks, minutes=minutes, interval_s=args.interval, step_s=args.step,
        jitter=args.jitter, seed=args.seed, start_ms=start_ms, noise_m=args.noise_m,
        skew_share=args.skew_share, tunnel_share=args.tunnel_share,
        blind_share=args.blind_share, duplicate_rate=args.duplicate_rate,
        per_rule=0 if compliant else args.per_rule, rates={} if compliant else rates,
        near_misses=not (compliant or args.no_near_misses))
    city = load_city(args.city or city_dir(settings.city.dir))
    try:
        scenario = MixedScenario(city, options)
    except (ValueError, EpisodeError) as e:
        raise UserError(str(e)) from None
    for path in (args.truth, args.out):
        if path and not Path(path).resolve().parent.is_dir():
            raise UserError(f"cannot write {path}: directory {Path(path).parent} does not exist")
    total_s = int(options.minutes * 60)
    bar = tqdm(total=total_s, unit="sim s", desc="simulating", file=sys.stderr,
               disable=None, smoothing=0.1)
    t0 = time.monotonic()
    try:
        if args.out:
            summary = scenario.write(args.out, args.truth, progress=bar)
            where = args.out
            written = scenario.written
        elif args.jt808:
            from simulator.jt808 import stream_jt808

            host, _, port = args.jt808.rpartition(":")
            if not port.isdigit():
                raise UserError(f"--jt808 wants HOST:PORT, not {args.jt808!r}")
            try:
                with TruthWriter(args.truth, scenario.summary()) as truth:
                    sent = asyncio.run(stream_jt808(scenario.deliveries(truth=truth),
                                                    host or "127.0.0.1", int(port),
                                                    start_ms=start_ms, speed=args.speed))
                written = truth.counts
            except OSError as e:
                raise UserError(f"cannot talk to the gateway at {args.jt808}: {e}") from None
            summary = {"messages": sent.messages, "fixes": sent.fixes, "batches": sent.batches}
            where = f"the JT/T 808 gateway at {args.jt808} ({sent.connections} terminals, " \
                f"{sent.refused} refused)"
        else:
            url = urlparse(args.mqtt if "://" in args.mqtt else f"mqtt://{args.mqtt}")
            publisher = MqttPublisher(url.hostname or "127.0.0.1", url.port or 1883,
                                      client_id=f"muckwatch-simulate-{time.time_ns()}",
                                      partitions=settings.mqtt.partitions)
            try:
                publisher.connect()
                with TruthWriter(args.truth, scenario.summary()) as truth:
                    result = stream(scenario.deliveries(truth=truth), publisher,
                                    start_ms=start_ms, speed=args.speed, rate=args.max_rate,
                                    progress=bar, root=settings.mqtt.topic_root)
                written = truth.counts
            except PublishError as e:
                raise BrokerError(str(e)) from None
            finally:
                publisher.close()
            summary = {"messages": result.messages, "fixes": result.fixes,
                       "batches": result.batches}
            where = args.mqtt
    finally:
        bar.close()
    wall = time.monotonic() - t0
    span = f"{options.minutes / 1440:g} days" if options.minutes >= 1440 else \
        f"{options.minutes:g} min"
    print(f"simulated {len(scenario.fleet)} compliant trucks and {scenario.planned} scripted "
          f"episodes for {span} at {options.interval_s:g} s ± {options.jitter:.0%}: "
          f"{summary['fixes']} fixes in {summary['messages']} messages "
          f"({summary['batches']} blind-area batches) to {where} in {wall:.1f} s "
          f"({summary['messages'] / max(wall, 1e-9):,.0f} messages/s)", file=sys.stderr)
    if args.mqtt and args.speed > 0:
        print(f"paced at {args.speed:g}× real time; fell behind by at most "
              f"{result.max_lag_s:.2f} s", file=sys.stderr)
    print(f"truth: {written['offences']} offences, {written['near_misses']} "
          f"near-misses in {args.truth}", file=sys.stderr)
    return 0


def _alerts(args, settings) -> int:
    from alerts import commands as c

    if args.action == "verify":
        import os

        secret = args.secret
        if secret.startswith("env:"):
            secret = os.environ.get(secret[4:], "")
        from pathlib import Path

        body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
        why = c.verify_delivery(secret, args.id, args.timestamp, args.signature, body,
                                args.tolerance_s)
        print("valid" if why is None else f"invalid: {why}")
        return 0 if why is None else 1
    if args.action == "worker":
        import asyncio
        import signal

        from alerts.worker import DeliveryWorker, WorkerOptions

        async def work() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            worker = DeliveryWorker(settings.database.dsn,
                                    WorkerOptions.from_settings(settings.alerts))
            metrics = await worker.run(stop)
            print(json.dumps(metrics.__dict__), file=sys.stderr)

        try:
            asyncio.run(work())
        except ValueError as e:
            raise UserError(str(e)) from None
        return 0
    with _connect(settings) as conn:
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
