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

    sim = cmd("simulate", "a compliant fleet plus one offender per rule, with ground truth",
              "muckwatch simulate --trucks 100 --duration 30 --out track.jsonl "
              "--truth truth.jsonl")
    sim.add_argument("--city", help="city bundle directory (default: [city] dir)")
    sim.add_argument("--trucks", type=int, default=100, help="compliant trucks (default 100)")
    sim.add_argument("--interval", type=float, default=5.0, help="seconds between fixes")
    sim.add_argument("--duration", type=float, default=30.0, help="minutes (default 30)")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start-ms", type=int, default=1_795_053_600_000,
                     help="device time of the start, epoch ms (default 2026-11-19 10:00 +08)")
    sim.add_argument("--per-rule", type=int, default=1,
                     help="offenders per rule, each at a random time (default 1)")
    target = sim.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="TRACK.jsonl to write (for muckwatch replay)")
    target.add_argument("--mqtt", help="publish live instead, e.g. mqtt://127.0.0.1:1883")
    sim.add_argument("--rate", type=float, default=0.0,
                     help="with --mqtt: at most this many messages/s (default: no limit)")
    sim.add_argument("--truth", required=True, help="ground truth JSONL to write")

    acc = cmd("accuracy", "precision and recall per rule against the simulator's ground truth",
              "muckwatch accuracy truth.jsonl violations.jsonl")
    acc.add_argument("truth", help="JSONL: rule, device, start_ts, end_ts[, negative]")
    acc.add_argument("violations", help="JSONL as printed by muckwatch replay")
    acc.add_argument("--tolerance-s", type=float, default=60.0,
                     help="start times this close match (default 60)")

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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from muckwatch.config import ConfigError, load_settings

    try:
        settings = load_settings(args.config)
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except (UserError, ConfigError, FileNotFoundError) as e:
        print(f"muckwatch: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # known operational failures get one sentence, others a traceback
        from ingest.receiver import BrokerError
        from muckwatch.city import CityError
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
        from muckwatch.city import load_city
        from muckwatch.service import IngestService

        city = load_city(args.city or city_dir(settings.city.dir))
        service = IngestService(settings, city)
        stats = asyncio.run(service.run())
        print(stats.as_json(), flush=True)
        return 0

    if args.command == "demo":
        from muckwatch.demo import DemoOptions, run_demo

        return run_demo(settings, DemoOptions(duration_s=args.duration,
                                              interval_s=args.interval,
                                              trucks=args.trucks, seed=args.seed))

    if args.command == "replay":
        from muckwatch.city import load_city
        from muckwatch.replay import TrackError, read_track, replay

        city = load_city(args.city or city_dir(settings.city.dir))
        try:
            violations, counts = replay(city, read_track(args.track), settings.rules)
        except (TrackError, FileNotFoundError) as e:
            raise UserError(str(e)) from None
        for v in violations:
            print(json.dumps(v, ensure_ascii=False), flush=False)
        print(f"replayed {counts['lines']} lines ({counts['fixes']} fixes, "
              f"{counts['rejected']} rejected): {len(violations)} violations", file=sys.stderr)
        return 0

    if args.command == "simulate":
        from ingest.receiver import BrokerError
        from muckwatch.city import load_city
        from simulator.mixed import generate

        city = load_city(args.city or city_dir(settings.city.dir))
        scenario = generate(city, trucks=args.trucks, minutes=args.duration,
                            interval_s=args.interval, seed=args.seed,
                            per_rule=args.per_rule, start_ms=args.start_ms)
        if args.out:
            scenario.write(args.out, args.truth)
            print(f"wrote {len(scenario.lines)} fixes to {args.out} and {len(scenario.truth)} "
                  f"offences to {args.truth}", file=sys.stderr)
            return 0
        from urllib.parse import urlparse

        from simulator.mixed import publish
        from simulator.publish import PublishError

        url = urlparse(args.mqtt if "://" in args.mqtt else f"mqtt://{args.mqtt}")
        with open(args.truth, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in scenario.truth)
        try:
            sent = publish(scenario, url.hostname or "127.0.0.1", url.port or 1883,
                           rate=args.rate, progress=lambda n, total: print(
                               f"\rpublished {n}/{total}", end="", file=sys.stderr))
        except PublishError as e:
            raise BrokerError(str(e)) from None
        print(f"\npublished {sent} fixes to {args.mqtt}; {len(scenario.truth)} offences in "
              f"{args.truth}", file=sys.stderr)
        return 0

    if args.command == "accuracy":
        from simulator.accuracy import AccuracyError, read_jsonl, score, table

        try:
            truth = read_jsonl(args.truth, ("rule", "device", "start_ts"))
            found = read_jsonl(args.violations, ("rule", "device", "start_ts"))
        except AccuracyError as e:
            raise UserError(str(e)) from None
        print(table(score(truth, found, args.tolerance_s)))
        return 0

    if args.command == "db":
        from store.migrate import migrate, status

        with _connect(settings) as conn:
            if args.action == "migrate":
                applied = migrate(conn)
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
        from muckwatch.city import load_city
        from store.reference import import_city

        city = load_city(args.dir)
        with _connect(settings) as conn:
            counts = import_city(conn, city)
        print("imported " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        return 0

    if args.command == "services":
        return _services(args.action)

    if args.command == "config":
        from muckwatch.config import as_dict, to_toml

        print(to_toml(as_dict(settings, masked=True)), end="")
        return 0

    if args.command == "geofence":
        return _geofence_query(args.fences, args.points, args.crs)

    if args.command == "coords":
        from geofence.coords import convert

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
