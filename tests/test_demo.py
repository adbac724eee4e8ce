"""`make demo`'s job, shortened: everything starts, every valid fix lands once, each of the
seven rules finds its offender, all stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
# the demo's offenders: one per rule of the live fleet (the manifest's rules need hours of
# hauling, which a minute's demo does not have; make accuracy scores them)
DEMO_RULES = ("OVERSPEED", "UNAUTHORISED_DUMP", "UNCOVERED_LOAD", "RESTRICTED_ZONE",
              "OFF_ROUTE", "SIGNAL_LOSS", "NO_PERMIT")


@pytest.mark.parametrize("database", ["private", "MUCKWATCH_DSN"])
def test_short_demo_reports_and_cleans_up(run_dir, dsn, database):
    demo_dir = run_dir / f"demo-{database}"
    env = {**os.environ, "MUCKWATCH_RUN_DIR": str(demo_dir)}
    if database == "MUCKWATCH_DSN":
        env["MUCKWATCH_DSN"] = dsn
        stale_rule_state(dsn)
    else:
        env.pop("MUCKWATCH_DSN", None)
    if "MUCKWATCH_TEST_CITY" in os.environ:
        env["MUCKWATCH_CITY_DIR"] = os.environ["MUCKWATCH_TEST_CITY"]
    # the private run shows the paperwork too (a permit approved through the API, a haul
    # under it from site to receipt: ~90 s more); the shared database's run skips it
    manifest = database == "private"
    args = ["--duration", "6"] + ([] if manifest else ["--no-manifest"])
    out = subprocess.run([sys.executable, "-m", "muckwatch", "demo", *args],
                         capture_output=True, text=True, timeout=400, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for line in ("● Mosquitto", "● PostgreSQL", "● Schema", "● City", "● Ingest",
                 "● Simulator", "What happened", "telemetry rows", "dead_letter:",
                 "Accuracy", "precision", "Look at it", "● API", "People act on it",
                 "→ 200 confirmed", "POST /v1/cases → 201", "→ 200 dispatched",
                 "officer      mwt_", "/openapi.json", "● Stopped"):
        assert line in text, line
    assert "✗" not in text
    if manifest:
        for line in ("● Permit", "POST /v1/permits/applications → 201",
                     "/decision → 200 approved: permit A", "The manifest (电子联单)",
                     "POST /v1/receipts → 201", "status received"):
            assert line in text, (line, text)
        assert "hauling" in text.split("● Simulator", 1)[1].splitlines()[0]
    else:
        assert "● Permit" not in text
    # every rule has its offender, found (TP 1, FN 0) even in a six-second demo
    accuracy = text.split("Accuracy", 1)[1].split("Look at it", 1)[0]
    # the officer's token was made for this run and works (the API itself has stopped)
    token = text.split("officer      ", 1)[1].split()[0]
    assert token.startswith("mwt_") and len(token) > 40
    # the console's address logs in as that officer
    console = text.split("console      ", 1)[1].split()[0]
    assert console.endswith(f"/console/#token={token}"), console
    assert "/console/#/public" in text
    rows = {line.split()[0]: line.split()[1:4] for line in accuracy.splitlines()[2:]
            if line.strip()}
    for rule in DEMO_RULES:
        assert rule in rows, (rule, accuracy)
        tp, _fp, fn = rows[rule]
        assert (tp, fn) == ("1", "0"), (rule, accuracy)
    # nothing the demo started is left running
    assert processes_mentioning(str(demo_dir)) == []


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


def stale_rule_state(dsn):
    """A shared database keeps what earlier ingests saved for the sample city's trucks —
    here, states that have evaluated up to an hour from now (a simulation replayed faster
    than real time leaves such). Restored, they made the demo's fixes look like repeats
    already evaluated (NO_PERMIT's offender went missing in CI); the demo clears them."""
    import json

    import psycopg

    from domain.city import load_city

    city = load_city(Path(__file__).resolve().parents[1] / "data" / "sample-city")
    later = 4_102_444_800_000  # 2100-01-01
    with psycopg.connect(dsn, autocommit=True) as conn:
        for v in city.vehicles:
            conn.execute(
                "INSERT INTO rule_state (device_id, owner, evaluated_to, received_to, state) "
                "VALUES (%s, 'earlier-test', to_timestamp(%s / 1000.0), now(), %s) "
                "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, "
                "evaluated_to = excluded.evaluated_to",
                (v.device_id, later, json.dumps({"last_ts": later, "good_ts": later})))
