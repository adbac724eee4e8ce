"""Offline work on tracks: ``simulate`` (a fleet and its ground truth), ``replay`` (the rules
over a track file) and ``accuracy`` (precision and recall against the truth)."""

from __future__ import annotations

import argparse
import json
import sys

from muckwatch.cli.common import CommandTable, UserError, connect


def register(table: CommandTable) -> None:
    table.add("replay", "run geofence + rules over a TRACK.jsonl offline; violations as JSONL",
              "muckwatch replay track.jsonl --city data/sample-city > violations.jsonl",
              _replay_arguments, replay)
    table.add("simulate", "a fleet with injected offences and near-misses, and their truth",
              "muckwatch simulate --trucks 300 --duration 120 --scenario mixed --seed 1 "
              "--truth truth.jsonl --out track.jsonl", _simulate_arguments, simulate)
    table.add("accuracy", "precision and recall per rule against the simulator's ground truth",
              "muckwatch accuracy truth.jsonl violations.jsonl   |   "
              "muckwatch accuracy truth.jsonl --db", _accuracy_arguments, accuracy)


def _replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("track", help="JSONL, one wire-format v1 fix per line, with 'dev'")
    p.add_argument("--city", help="city bundle directory (default: [city] dir)")


def replay(args, settings) -> int:
    from tqdm import tqdm

    from domain.city import load_city
    from muckwatch.locations import city_dir
    from muckwatch.replay import TrackError, read_track
    from muckwatch.replay import replay as run_replay

    city = load_city(args.city or city_dir(settings.city.dir))
    bar = tqdm(unit=" lines", desc="replaying", file=sys.stderr, disable=None)

    def counted(batches):
        for batch in batches:
            bar.update(len(batch))
            yield batch
    try:
        violations, counts = run_replay(city, counted(read_track(args.track)), settings.rules)
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


def _simulate_arguments(sim: argparse.ArgumentParser) -> None:
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


def _options(args):
    """MixedOptions from the arguments; a value out of range is a UserError."""
    import time

    from simulator.episodes import RULES
    from simulator.mixed import MixedOptions, parse_duration

    if not 1 <= args.interval <= 30:
        raise UserError(f"--interval must be 1–30 s, not {args.interval:g}")
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
    return MixedOptions(
        trucks=args.trucks, minutes=minutes, interval_s=args.interval, step_s=args.step,
        jitter=args.jitter, seed=args.seed, start_ms=start_ms, noise_m=args.noise_m,
        skew_share=args.skew_share, tunnel_share=args.tunnel_share,
        blind_share=args.blind_share, duplicate_rate=args.duplicate_rate,
        per_rule=0 if compliant else args.per_rule, rates={} if compliant else rates,
        near_misses=not (compliant or args.no_near_misses))


def simulate(args, settings) -> int:
    """Plan the scenario, stream it to a file, a broker or a gateway with a progress bar over
    simulated time, print a summary."""
    import time
    from pathlib import Path

    from tqdm import tqdm

    from domain.city import load_city
    from muckwatch import simulation
    from muckwatch.locations import city_dir
    from simulator.episodes import EpisodeError
    from simulator.mixed import MixedScenario

    options = _options(args)
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
            sent = simulation.to_file(scenario, args.out, args.truth, progress=bar)
            where = args.out
        elif args.jt808:
            host, _, port = args.jt808.rpartition(":")
            if not port.isdigit():
                raise UserError(f"--jt808 wants HOST:PORT, not {args.jt808!r}")
            try:
                sent = simulation.to_jt808(scenario, host or "127.0.0.1", int(port), args.truth,
                                           start_ms=options.start_ms, speed=args.speed)
            except OSError as e:
                raise UserError(f"cannot talk to the gateway at {args.jt808}: {e}") from None
            where = f"the JT/T 808 gateway at {args.jt808} ({sent.connections} terminals, " \
                f"{sent.refused} refused)"
        else:
            sent = simulation.to_mqtt(scenario, args.mqtt, args.truth, settings.mqtt,
                                      start_ms=options.start_ms, speed=args.speed,
                                      rate=args.max_rate, progress=bar)
            where = args.mqtt
    finally:
        bar.close()
    wall = time.monotonic() - t0
    span = f"{options.minutes / 1440:g} days" if options.minutes >= 1440 else \
        f"{options.minutes:g} min"
    print(f"simulated {len(scenario.fleet)} compliant trucks and {scenario.planned} scripted "
          f"episodes for {span} at {options.interval_s:g} s ± {options.jitter:.0%}: "
          f"{sent.fixes} fixes in {sent.messages} messages "
          f"({sent.batches} blind-area batches) to {where} in {wall:.1f} s "
          f"({sent.messages / max(wall, 1e-9):,.0f} messages/s)", file=sys.stderr)
    if args.mqtt and args.speed > 0:
        print(f"paced at {args.speed:g}× real time; fell behind by at most "
              f"{sent.max_lag_s:.2f} s", file=sys.stderr)
    print(f"truth: {sent.written['offences']} offences, {sent.written['near_misses']} "
          f"near-misses in {args.truth}", file=sys.stderr)
    return 0


def _accuracy_arguments(acc: argparse.ArgumentParser) -> None:
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


def accuracy(args, settings) -> int:
    from simulator.accuracy import AccuracyError, evaluate, full_table, read_jsonl, read_truth

    if (args.violations is None) == (not args.db):
        raise UserError("give either a violations JSONL file or --db")
    try:
        truth, summary = read_truth(args.truth)
        if args.db:
            from muckwatch.simulation import truth_window
            from store.violations import violations_between

            try:
                since, until = truth_window(truth, args.since, args.until)
            except ValueError:
                raise UserError(f"{args.truth} is empty: give --since and --until") from None
            with connect(settings) as conn:
                found = violations_between(conn, since, until)
        else:
            found = read_jsonl(args.violations, ("rule", "device", "start_ts"))
    except AccuracyError as e:
        raise UserError(str(e)) from None
    hours = (summary or {}).get("compliant_truck_hours")
    print(full_table(evaluate(truth, found, args.tolerance_s, hours)))
    return 0
