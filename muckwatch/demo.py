"""``muckwatch demo``: the whole system on one machine for about a minute, then a report.

It starts a private Mosquitto (from the repository's mosquitto.conf) and a private PostgreSQL
cluster (or uses ``MUCKWATCH_DSN``), migrates, loads the sample city, runs ``muckwatch run`` as
a real separate process, drives the sample city's trucks along their permit routes through the
broker — plus one blind-area backfill batch, duplicate deliveries, one malformed message per
rejection reason and an offender for each of the seven rules — stops the ingest with SIGTERM,
checks that every valid fix landed exactly once, prints what happened (and the rules' accuracy
against the offenders' truth) and shuts down everything it started.

The demo starts private services by design, so it takes them from ``devservices`` (the only
runtime-side module besides ``muckwatch services`` that does); it never imports the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devservices.common import ServiceError, default_run_dir
from devservices.mosquitto import PrivateMosquitto
from devservices.postgres import PrivatePostgres
from domain.city import load_city
from domain.settings import Settings
from domain.wire import encode_batch, encode_fix
from muckwatch.demo_api import ApiProcess, api_port, officer_token, review_and_open_case
from muckwatch.demo_manifest import (
    Haul,
    accounts,
    apply_and_approve,
    arrival_of,
    haul_track,
    plan_haul,
    receipt_and_manifest,
)
from muckwatch.locations import city_dir
from simulator.accuracy import score, table
from simulator.episodes import demo_offenders
from simulator.faults import bad_messages
from simulator.fleet import PARKED, Fleet
from simulator.publish import MqttPublisher
from store.migrate import migrate, status
from store.reference import import_city
from store.violations import violations_between


@dataclass
class DemoOptions:
    duration_s: float = 60.0
    interval_s: float = 1.0
    trucks: int = 1000
    seed: int = 7
    keep: bool = True  # on a terminal, keep the API up after the report until Enter
    # a permit applied for and approved through the API, and a truck's haul under it from
    # site to receipt (the demo runs on until the truck is there: about 90 s)
    manifest: bool = True


def say(text: str) -> None:
    print(text, flush=True)


class IngestProcess:
    """``muckwatch run`` in its own process, as an operator would start it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "run"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )
        self._stderr_lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for line in self.proc.stderr:
                log.write(line)
                log.flush()
                self._stderr_lines.append(line)
                if "ingest running" in line:
                    self._ready.set()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError("muckwatch run did not start:\n"
                                   + "".join(self._stderr_lines[-20:]))

    def stop(self) -> dict:
        """SIGTERM, then the summary line it prints on a clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        if self.proc.returncode != 0:
            raise ServiceError(f"muckwatch run exited with {self.proc.returncode}:\n"
                               + "".join(self._stderr_lines[-20:]))
        return json.loads(out.strip().splitlines()[-1])


def run_demo(settings: Settings, options: DemoOptions) -> int:
    run_dir = default_run_dir()
    city = load_city(city_dir(settings.city.dir))
    broker = PrivateMosquitto(run_dir / "mosquitto")
    database: PrivatePostgres | None = None
    ingest: IngestProcess | None = None
    api: ApiProcess | None = None
    external_dsn = os.environ.get("MUCKWATCH_DSN")
    try:
        broker.start()
        say(f"● Mosquitto      {broker.url}  (config: mosquitto.conf, data: {broker.run_dir})")
        if external_dsn:
            dsn = external_dsn
            say("● PostgreSQL     MUCKWATCH_DSN (your server)")
        else:
            database = PrivatePostgres(run_dir / "pg").start()
            dsn = database.dsn
            say(f"● PostgreSQL     {dsn}  (private cluster in {database.run_dir})")
        with psycopg.connect(dsn) as conn:
            applied = migrate(conn)
            st = status(conn)
            loaded = import_city(conn, city)
            # a fresh start: rule state that an earlier ingest saved for these trucks (on a
            # database shared with other runs) would be restored, and its device times
            # would make the demo's fixes look like repeats already evaluated
            forgotten = conn.execute("DELETE FROM rule_state WHERE device_id = ANY(%s)",
                                     ([v.device_id for v in city.vehicles],)).rowcount
        say(f"● Schema         migrations applied now: {applied or 'none (up to date)'}; "
            f"mode: {st.mode} ({st.why})")
        say(f"● City           {city.name}: " + ", ".join(f"{n} {k}" for k, n in loaded.items())
            + (f"; saved rule state of {forgotten} trucks cleared" if forgotten else ""))

        env = {**os.environ, "MUCKWATCH_DSN": dsn, "MUCKWATCH_MQTT_HOST": "127.0.0.1",
               "MUCKWATCH_MQTT_PORT": str(broker.port), "MUCKWATCH_CITY_DIR": str(city.directory),
               "MUCKWATCH_MQTT_CLIENT_ID": "muckwatch-demo-ingest"}
        ingest = IngestProcess(env, run_dir / "ingest.log")
        ingest.wait_ready()
        say(f"● Ingest         muckwatch run (pid {ingest.proc.pid}), log: {ingest.log_path}")
        api = ApiProcess(env, api_port(settings.api.listen), run_dir / "serve.log")
        api.wait_ready()
        say(f"● API            muckwatch serve {api.url} (pid {api.proc.pid}), "
            f"log: {api.log_path}")

        token = officer_token(dsn)
        haul = plan_haul(city) if options.manifest else None
        if haul is not None:
            company_token, operator_token = accounts(dsn, haul.company, haul.destination)
            say(f"● Permit         {haul.company} applies, the officer approves "
                "(through the API)")
            permit, steps = apply_and_approve(api.url, company_token, token, haul)
            for line in steps:
                say("  " + line)
        sent = drive_fleet(city, broker, options, haul)
        summary = ingest_until_landed(dsn, sent, timeout_s=60)
        stats = ingest.stop()
        ingest = None
        report(dsn, sent, stats, summary, database)
        say("")
        say("People act on it (through the HTTP API, as the officer demo-officer)")
        for line in review_and_open_case(api.url, token, sent["first_ts"]):
            say("  " + line)
        if haul is not None:
            say("")
            say(f"The manifest (电子联单): {haul.plate} on {permit}, as the operator of "
                f"{haul.destination} and the officer see it")
            arrived = arrival_of(dsn, haul, sent["first_ts"])
            lines = receipt_and_manifest(api.url, operator_token, token, haul, arrived) \
                if arrived is not None else ["✗ the haul's arrival is not on the manifest"]
            for line in lines:
                say("  " + line)
        say("")
        say(f"  console      {api.url}/console/#token={token}")
        say("               (as the officer: live map, review queue, playback; "
            "docs/console.md)")
        if haul is not None:
            say(f"  company      {api.url}/console/#token={company_token}   ({haul.company})")
        say(f"  public       {api.url}/console/#/public   (no login)")
        say(f"  API          {api.url}   (OpenAPI: {api.url}/openapi.json, docs/api.md)")
        say(f"  officer      {token}")
        say(f"  try          curl -H 'Authorization: Bearer {token}' {api.url}/v1/review/queue")
        if options.keep and sys.stdin.isatty():
            # the live map should be live: the ingest again, and the fleet driving on
            ingest = IngestProcess(env, run_dir / "ingest-console.log")
            ingest.wait_ready()
            fleet = keep_driving(env, broker, sent["trucks"], run_dir)
            say(f"  the console and the API stay up, {sent['trucks']} simulated trucks "
                "driving on (with offences), until you press Enter (or Ctrl-C)")
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input()
            fleet.terminate()
            fleet.wait(10)
            with contextlib.suppress(ServiceError, OSError):  # Ctrl-C reached it too
                ingest.stop()
            ingest = None
        else:
            say("  later        muckwatch services up, then MUCKWATCH_DSN=… muckwatch serve: "
                "the same API again (the token stays valid until revoked)")
        ok = summary["landed"] == sent["unique_fixes"]
        if not ok:
            say(f"✗ expected {sent['unique_fixes']} new rows, found {summary['landed']}")
        return 0 if ok else 1
    finally:
        if ingest is not None and ingest.proc.poll() is None:
            ingest.proc.kill()
        if api is not None:
            api.stop()
        broker.stop()
        if database is not None:
            database.stop()
        say("● Stopped        everything the demo started")


def keep_driving(env: dict[str, str], broker: PrivateMosquitto, trucks: int,
                 run_dir: Path) -> subprocess.Popen:
    """``muckwatch simulate`` in real time (offences and near-misses at a few per hour per
    rule) for as long as the demo stays up, so the console's live map shows moving trucks."""
    log = (run_dir / "simulate-console.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "muckwatch", "simulate", "--trucks", str(max(trucks, 1)),
         "--interval", "1", "--duration", "12h", "--start-ms", "now", "--speed", "1",
         "--scenario", "mixed", "--rate", "5", "--mqtt", broker.url,
         "--truth", str(run_dir / "simulate-console-truth.jsonl")],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def drive_fleet(city, broker: PrivateMosquitto, options: DemoOptions,
                haul: Haul | None = None) -> dict[str, int]:
    """Real-time trucks: one fix per truck per interval, as live terminals would send;
    ``haul``: the truck of the demo's approved permit, driven from its site to its disposal
    site (the demo runs on until it is there)."""
    started_at = time.time() - 1.0  # wall clock, for this run's rows (ingest time)
    start_ms = time.time_ns() // 1_000_000 - int(options.interval_s * 1000)
    fleet = Fleet(city, trucks=options.trucks, start_ms=start_ms, seed=options.seed,
                  interval_s=options.interval_s, jitter=0.0)
    publisher = MqttPublisher("127.0.0.1", broker.port).connect()
    ticks = max(1, int(options.duration_s / options.interval_s))
    # offenders' tracks begin before the demo (their terminals send what they buffered
    # first), each early enough that its rule's debounce — NO_PERMIT's two minutes, too — has
    # run out by the end of the demo; SIGNAL_LOSS's truck went silent 6 minutes before it
    working = {d: p for d, p, parked in zip(fleet.device.tolist(), fleet.permit_id,
                                            (fleet.phase == PARKED).tolist(), strict=True)
               if not parked}  # a parked truck may hold no permit valid now
    episodes = demo_offenders(city, working, start_ms, ticks * options.interval_s,
                              options.interval_s) if len(fleet) > 10 else []
    offenders = [e.track for e in episodes]
    if haul is not None:  # it starts now: its permit applies from its approval
        offenders.append(haul_track(city, haul, start_ms + int(options.interval_s * 1000),
                                    options.interval_s))
    first_ts = min([start_ms, *(t.fixes[0]["ts"] for t in offenders if t.fixes)])
    sent_upto = dict.fromkeys(range(len(offenders)), 0)
    offender_devices = {t.device for t in offenders}
    in_fleet = len(offender_devices & set(fleet.device.tolist()))
    say(f"● Simulator      {len(fleet) - in_fleet} trucks on their permit routes and "
        f"{len(episodes)} offenders ({', '.join(e.truth['rule'] for e in episodes)})"
        + (f", {haul.plate} hauling {haul.origin} → {haul.destination}" if haul else "") + ", "
        f"one fix every {options.interval_s:g} s for {options.duration_s:g} s")
    # the first truck drives through a 'tunnel': its fixes are held and sent as one backfill
    blind_device = next(d for d in fleet.device.tolist() if d not in offender_devices)
    blind_from, blind_to = ticks // 3, ticks // 3 + max(2, ticks // 6)
    held: list[dict] = []
    unique = messages = duplicates = 0
    for device in fleet.device.tolist():
        publisher.status(device, online=True)
    t0 = time.monotonic()
    for k in range(ticks):
        tick = fleet.advance(options.interval_s)
        fixes = tick.wire_fixes()
        for device, fix in fixes:
            if device in offender_devices:
                continue
            if device == blind_device and blind_from <= k < blind_to:
                held.append(fix)
                continue
            publisher.telemetry(device, encode_fix(fix))
            messages += 1
            unique += 1
        for n, track in enumerate(offenders):
            pending = track.fixes
            while sent_upto[n] < len(pending) and pending[sent_upto[n]]["ts"] <= fleet.now_ms:
                publisher.telemetry(track.device, encode_fix(pending[sent_upto[n]]))
                sent_upto[n] += 1
                messages += 1
                unique += 1
        if k == blind_to:
            publisher.batch(blind_device, encode_batch(held))
            messages += 1
            unique += len(held)
        if k % 10 == 5 and fixes:  # a terminal that resends its last fix (lost PUBACK)
            device, fix = fixes[-1]
            publisher.telemetry(device, encode_fix(fix))
            messages += 1
            duplicates += 1
        if k == ticks // 2:
            for bad in bad_messages(fleet.device[-1], "000000000000", fleet.now_ms):
                publisher.publish(bad.topic, bad.payload)
                messages += 1
        if sys.stdout.isatty():
            print(f"\r  publishing… {k + 1}/{ticks} ticks, {messages} messages", end="",
                  flush=True)
        # real-time pacing: tick k is due at (k + 1) intervals after the start
        delay = t0 + (k + 1) * options.interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    # the haul may need longer than the fleet's run: its truck goes on alone, in real time
    while any(sent_upto[n] < len(t.fixes) for n, t in enumerate(offenders)):
        now_ms = time.time_ns() // 1_000_000
        for n, track in enumerate(offenders):
            pending = track.fixes
            while sent_upto[n] < len(pending) and pending[sent_upto[n]]["ts"] <= now_ms:
                publisher.telemetry(track.device, encode_fix(pending[sent_upto[n]]))
                sent_upto[n] += 1
                messages += 1
                unique += 1
        if sys.stdout.isatty():
            print(f"\r  publishing… the haul's truck, {messages} messages", end="", flush=True)
        time.sleep(options.interval_s / 2)
    if sys.stdout.isatty():
        print()
    for device in fleet.device.tolist():
        publisher.status(device, online=False)
    publisher.flush()
    publisher.close()
    return {"messages": messages + 2 * len(fleet), "unique_fixes": unique,
            "started_at": started_at, "first_ts": first_ts,
            "duplicates": duplicates, "bad": len(bad_messages("a", "b", 0)),
            "backfill": len(held), "trucks": len(fleet),
            "vehicles": len(fleet) + len(offender_devices) - in_fleet,
            "last_ts": max([fleet.now_ms, *(t.fixes[-1]["ts"] for t in offenders if t.fixes)]),
            "truth": [e.truth for e in episodes]}


def _row(row: tuple | None) -> tuple:
    """An aggregate's one row (never None: an aggregate without GROUP BY always returns one)."""
    if row is None:
        raise RuntimeError("an aggregate query returned no row")
    return row


def ingest_until_landed(dsn: str, sent: dict, timeout_s: float) -> dict[str, float]:
    """Wait until this run's fixes (device time within the run) are all in telemetry.

    Counting by this run's device-time window keeps the check exact even when the broker
    still held messages of an earlier, interrupted demo for the ingest's persistent session."""
    t0 = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            count = _row(conn.execute(
                "SELECT count(*) FROM telemetry WHERE ts BETWEEN"
                " timestamptz 'epoch' + %s * interval '1 millisecond' AND"
                " timestamptz 'epoch' + %s * interval '1 millisecond'"
                " AND received_at >= to_timestamp(%s)",
                (sent["first_ts"], sent["last_ts"], sent["started_at"])).fetchone())[0]
            # the trucks' final 'offline' announcements are the last messages sent
            offline = _row(conn.execute(
                "SELECT count(*) FROM device_status WHERE NOT online"
                " AND changed_at >= to_timestamp(%s)", (sent["started_at"],)).fetchone())[0]
            done = count >= sent["unique_fixes"] and offline >= sent["trucks"]
            if done or time.monotonic() - t0 > timeout_s:
                return {"landed": count, "waited_s": time.monotonic() - t0}
            time.sleep(0.2)


def report(dsn, sent, stats, summary, database) -> None:
    landed = summary["landed"]
    with psycopg.connect(dsn) as conn:
        rejects = conn.execute(
            "SELECT reason, count(*) FROM dead_letter WHERE received_at >= to_timestamp(%s)"
            " GROUP BY reason ORDER BY reason", (sent["started_at"],)).fetchall()
        violations = conn.execute(
            "SELECT rule, count(*) FROM violations WHERE start_ts >= timestamptz 'epoch'"
            " + %s * interval '1 millisecond' AND state <> 'retracted'"
            " GROUP BY rule ORDER BY rule", (sent["first_ts"],)).fetchall()
        online = _row(conn.execute("SELECT count(*) FILTER (WHERE online), count(*)"
                                   " FROM device_status WHERE changed_at >= to_timestamp(%s)",
                                   (sent["started_at"],)).fetchone())
        trips = _row(conn.execute(
            "SELECT count(*) FROM trips WHERE left_at >= timestamptz 'epoch'"
            " + %s * interval '1 millisecond'", (sent["first_ts"],)).fetchone())[0]
        found = violations_between(conn, sent["first_ts"], sent["last_ts"] + 1)
    say("")
    say("What happened")
    say(f"  published       {sent['messages']:>8} messages by {sent['vehicles']} trucks "
        f"({sent['backfill']} fixes in one backfill batch, {sent['duplicates']} resent, "
        f"{sent['bad']} malformed)")
    say(f"  ingest received {stats['messages']:>8} messages in {stats['batches']} batches")
    say(f"  telemetry rows  {landed:>8} new (expected {sent['unique_fixes']}; duplicates "
        f"skipped: {stats['duplicates']})")
    say(f"  rejected        {stats['rejected']:>8} → dead_letter: "
        + ", ".join(f"{r} {n}" for r, n in rejects))
    say(f"  device status   {online[1]:>8} devices ({online[0]} online now)")
    say("  violations      " + (", ".join(f"{r} {n}" for r, n in violations)
                              if violations else "       0"))
    say(f"  trips           {trips:>8} started")
    say("")
    say("Accuracy (violations in the database vs the simulator's truth; every other truck "
        "is compliant)")
    for line in table(score(sent["truth"], found)).splitlines():
        say("  " + line)
    say("")
    say("Look at it")
    if database is not None:
        say("  .venv/bin/muckwatch services up   # starts the private broker and database "
            "again and prints the psql line")
    else:
        say("  psql \"$MUCKWATCH_DSN\"")
    say("  SELECT device_id, count(*), min(ts), max(ts) FROM telemetry GROUP BY 1 LIMIT 10;")
    say("  SELECT reason, detail FROM dead_letter ORDER BY id DESC LIMIT 20;")
    say("  SELECT rule, plate, start_ts, end_ts, state, peak FROM violations ORDER BY start_ts;")
    say("  muckwatch db status")
