"""`make demo`'s job, shortened: everything starts, every valid fix lands once, each of the
seven rules finds its offender, all stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.episodes import RULES

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("database", ["private", "MUCKWATCH_DSN"])
def test_short_demo_reports_and_cleans_up(run_dir, dsn, database):
    demo_dir = run_dir / f"demo-{database}"
    env = {**os.environ, "MUCKWATCH_RUN_DIR": str(demo_dir)}
    if database == "MUCKWATCH_DSN":
        env["MUCKWATCH_DSN"] = dsn
    else:
        env.pop("MUCKWATCH_DSN", None)
    if "MUCKWATCH_TEST_CITY" in os.environ:
        env["MUCKWATCH_CITY_DIR"] = os.environ["MUCKWATCH_TEST_CITY"]
    out = subprocess.run([sys.executable, "-m", "muckwatch", "demo", "--duration", "6"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for line in ("● Mosquitto", "● PostgreSQL", "● Schema", "● City", "● Ingest",
                 "● Simulator", "What happened", "telemetry rows", "dead_letter:",
                 "Accuracy", "precision", "Look at it", "● Stopped"):
        assert line in text
    assert "✗" not in text
    # every rule has its offender, found (TP 1, FN 0) even in a six-second demo
    accuracy = text.split("Accuracy", 1)[1].split("Look at it", 1)[0]
    rows = {line.split()[0]: line.split()[1:4] for line in accuracy.splitlines()[2:]
            if line.strip()}
    for rule in RULES:
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
