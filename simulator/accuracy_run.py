"""``make accuracy``: a week of the sample city through the rules, scored against the truth.

Simulates the sample city for ``--days`` with ``--trucks`` compliant trucks (offences and
near-misses at ``--rate`` per rule per 100 truck-hours, every noise class on), replays the
track with ``muckwatch replay``, scores it with ``simulator.accuracy`` and writes
``docs/accuracy.md``: per rule TP, FP, FN, precision, recall, start-time error, false
violations per 1,000 compliant truck-hours, near-misses flagged per noise class, the
timings and the exact commands to reproduce it.

Usage: ``python -m simulator.accuracy_run [--days 7] [--trucks 150] [--out docs/accuracy.md]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from simulator.accuracy import evaluate, full_table, read_jsonl, read_truth

TARGETS = "precision ≥ 0.99 and recall ≥ 0.99 per rule; ≤ 0.1 false violations per 1,000 " \
    "compliant truck-hours"


def _run(args: list[str], stdout=None) -> float:
    t0 = time.monotonic()
    print("$ muckwatch " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "muckwatch", *args], check=True, stdout=stdout)
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.accuracy_run",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--trucks", type=int, default=150)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", default=".run/accuracy", help="where the track and truth go")
    p.add_argument("--out", default="docs/accuracy.md")
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    track, truth_path, found = work / "track.jsonl", work / "truth.jsonl", work / "violations.jsonl"
    simulate = ["simulate", "--city", "data/sample-city", "--days", f"{a.days:g}",
                "--trucks", str(a.trucks), "--interval", f"{a.interval:g}", "--step", "2",
                "--rate", f"{a.rate:g}", "--seed", str(a.seed), "--truth", str(truth_path),
                "--out", str(track)]
    replay = ["replay", str(track), "--city", "data/sample-city"]
    t_sim = _run(simulate)
    with open(found, "wb") as f:
        t_replay = _run(replay, stdout=f)
    t0 = time.monotonic()
    truth, summary = read_truth(truth_path)
    violations = read_jsonl(found, ("rule", "device", "start_ts"))
    report = evaluate(truth, violations, 60.0, (summary or {}).get("compliant_truck_hours"))
    t_score = time.monotonic() - t0
    print(full_table(report))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "rules"], capture_output=True,
                           text=True).stdout.strip()
    with open(track, "rb") as f:
        fixes = sum(1 for _ in f)
    s = summary or {}
    near = sum(1 for t in truth if t.get("negative"))
    offences = len(truth) - near
    text = f"""# Accuracy, measured

`make accuracy` simulates the sample city (`data/sample-city`) for {a.days:g} days, replays the
track through the rules engine offline and scores the violations against the simulator's
ground truth (docs/simulator.md). Targets: {TARGETS}. The scoring is strict: a violation that
matches no offence of its rule and device (start within 60 s) is a false positive, whatever
caused it.

Run on commit `{commit}`{" with uncommitted changes under rules/" if dirty else ""}, 2 cores:
{s.get("compliant_trucks")} compliant trucks ({s.get("compliant_truck_hours", 0):,.0f} compliant
truck-hours) reporting every {a.interval:g} s, {offences} offences and {near} near-misses in
the truth, {fixes:,} messages.
Simulate {t_sim:.0f} s, replay {t_replay:.0f} s, score {t_score:.0f} s.

## Per rule

{full_table(report, markdown=True)}

Near-miss classes: `near_miss` are the scripted look-alikes of each rule (docs/simulator.md);
the rest is the compliant fleet's noise, each occurrence a row in the truth. "Flagged" counts
near-misses that any false positive of the same truck overlaps (± 60 s).

The manifest's rules (issue #22): OFF_ROUTE's offences include the drive of each
WRONG_DESTINATION episode (offence and near miss) to a site the permit does not name
(`"during"` in the truth); PERMIT_VOLUME_EXCEEDED has as many near misses as the sample
city has small jobs a run can take to exactly their declared volume (each only once), and
OVERLOAD as many offences as its weighing episode trucks have time for.

## Reproduce

```sh
make accuracy
# or step by step:
muckwatch {" ".join(simulate)}
muckwatch {" ".join(replay)} > {found}
muckwatch accuracy {truth_path} {found}
```
"""
    Path(a.out).write_text(text, encoding="utf-8")
    print(f"wrote {a.out}", file=sys.stderr)
    print(json.dumps({"simulate_s": round(t_sim), "replay_s": round(t_replay)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
