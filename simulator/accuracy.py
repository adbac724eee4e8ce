"""How right are the rules? Violations found vs the simulator's ground truth, per rule.

Ground truth (``truth.jsonl``, written by the simulator) has one line per injected offence —
``{"rule", "device", "plate", "start_ts", "end_ts"}`` — and one per near-miss that must *not*
be flagged, with ``"negative": true``. Violations are the JSONL that ``muckwatch replay``
prints (or rows read from the database).

Matching: a violation matches a truth entry with the same rule and device whose start lies
within ``tolerance_s`` of the violation's start (default 60 s: a debounced rule opens up to one
reporting interval after the true start, and the truth may be rounded to the interval);
pairs are matched greedily, closest starts first, each used once. A violation with no
positive match is a false positive (and, if it overlaps a near-miss, counted as a flagged
near-miss); a positive truth entry with no match is a false negative.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RuleAccuracy:
    rule: str
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    near_misses: int = 0  # negatives of this rule in the truth
    near_misses_flagged: int = 0
    start_errors_s: list[float] | None = None

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0

    @property
    def median_start_error_s(self) -> float | None:
        return statistics.median(self.start_errors_s) if self.start_errors_s else None


class AccuracyError(ValueError):
    """A truth or violations line is unusable; says which and why."""


def read_jsonl(path: str | Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AccuracyError(f"{path}: file does not exist") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AccuracyError(f"{path}:{n}: not JSON ({e})") from None
        missing = [k for k in required if k not in row]
        if missing:
            raise AccuracyError(f"{path}:{n}: missing {', '.join(missing)}")
        rows.append(row)
    return rows


def score(truth: list[dict], violations: list[dict],
          tolerance_s: float = 60.0) -> dict[str, RuleAccuracy]:
    tolerance_ms = tolerance_s * 1000
    rules = sorted({t["rule"] for t in truth} | {v["rule"] for v in violations})
    out = {r: RuleAccuracy(r, start_errors_s=[]) for r in rules}
    positives = [t for t in truth if not t.get("negative")]
    negatives = [t for t in truth if t.get("negative")]
    by_key: dict[tuple[str, str], list[int]] = {}
    for j, t in enumerate(positives):
        by_key.setdefault((t["rule"], t["device"]), []).append(j)
    for n in negatives:
        out[n["rule"]].near_misses += 1
    candidates = []
    for i, v in enumerate(violations):
        for j in by_key.get((v["rule"], v["device"]), ()):
            error = abs(v["start_ts"] - positives[j]["start_ts"])
            if error <= tolerance_ms:
                candidates.append((error, i, j))
    used_v: set[int] = set()
    used_t: set[int] = set()
    for error, i, j in sorted(candidates):
        if i in used_v or j in used_t:
            continue
        used_v.add(i)
        used_t.add(j)
        acc = out[violations[i]["rule"]]
        acc.true_positives += 1
        assert acc.start_errors_s is not None
        acc.start_errors_s.append(error / 1000)
    for i, v in enumerate(violations):
        if i in used_v:
            continue
        acc = out[v["rule"]]
        acc.false_positives += 1
        end = v.get("end_ts") or v["start_ts"]
        if any(n["device"] == v["device"] and n["rule"] == v["rule"]
               and n["start_ts"] - tolerance_ms <= end
               and v["start_ts"] <= (n.get("end_ts") or n["start_ts"]) + tolerance_ms
               for n in negatives):
            acc.near_misses_flagged += 1
    for j, t in enumerate(positives):
        if j not in used_t:
            out[t["rule"]].false_negatives += 1
    return out


def table(results: dict[str, RuleAccuracy]) -> str:
    head = ("rule", "TP", "FP", "FN", "precision", "recall", "median start error",
            "near-misses flagged")
    rows = [head]
    for r in results.values():
        median = r.median_start_error_s
        rows.append((r.rule, str(r.true_positives), str(r.false_positives),
                     str(r.false_negatives), f"{r.precision:.3f}", f"{r.recall:.3f}",
                     "-" if median is None else f"{median:.1f} s",
                     f"{r.near_misses_flagged} of {r.near_misses}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
