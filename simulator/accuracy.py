"""How right are the rules? Violations found vs the simulator's ground truth, per rule.

Ground truth (``truth.jsonl``, written by the simulator) has one line per injected offence —
``{"rule", "device", "plate", "start_ts", "end_ts"}`` — and one per near-miss that must *not*
be flagged, with ``"negative": true``. Violations are the JSONL that ``muckwatch replay``
prints (or rows read from the database).

Matching: a violation matches a truth entry with the same rule and device whose start lies
within ``tolerance_s`` of the violation's start (default 60 s: a debounced rule opens up to one
reporting interval after the true start, and the truth may be rounded to the interval);
pairs are matched greedily, closest starts first, each used once. A violation with no
positive match is a false positive (and, if it overlaps a near-miss of its rule and device,
counted as a flagged near-miss of the rule); a positive truth entry with no match is a false
negative. Per noise class (a near-miss's ``kind``), a near-miss is flagged when *any* false
positive of its device overlaps it (± the tolerance).

A truth file may start with a summary line, ``{"summary": {"compliant_truck_hours": …}}``:
then false positives are also given per 1,000 compliant truck-hours, per rule and overall.
Truth files without it are read as before. Lines ``{"receipt": …}`` are the site operators'
receipts (``read_receipts``), not truth rows.
"""

from __future__ import annotations

import bisect
import json
import math
import statistics
from collections.abc import Sequence
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

    @property
    def p95_start_error_s(self) -> float | None:
        if not self.start_errors_s:
            return None
        ordered = sorted(self.start_errors_s)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    @property
    def max_start_error_s(self) -> float | None:
        return max(self.start_errors_s) if self.start_errors_s else None


@dataclass
class KindAccuracy:
    """Near-misses of one noise class (``kind``) and how many any false positive overlaps."""

    kind: str
    near_misses: int = 0
    flagged: int = 0


@dataclass
class Report:
    rules: dict[str, RuleAccuracy]
    kinds: dict[str, KindAccuracy]
    truck_hours: float | None = None  # compliant truck-hours, from the truth's summary

    def per_1000_h(self, false_positives: int) -> float | None:
        if not self.truck_hours:
            return None
        return false_positives / self.truck_hours * 1000

    @property
    def false_positives(self) -> int:
        return sum(r.false_positives for r in self.rules.values())


class AccuracyError(ValueError):
    """A truth or violations line is unusable; says which and why."""


def read_truth(path: str | Path) -> tuple[list[dict], dict | None]:
    """The truth rows and the summary line (None if the file has none); the site operators'
    receipts (``{"receipt": …}`` lines, ``read_receipts``) are left out."""
    rows = read_jsonl(path, ("rule", "device", "start_ts"), allow_summary=True)
    summary = next((r["summary"] for r in rows if "summary" in r), None)
    return [r for r in rows if "summary" not in r and "receipt" not in r], summary


def read_receipts(path: str | Path) -> list[dict]:
    """The receipts of a truth file, in the order written: ``site``, ``plate``, ``device``,
    ``received_at`` (ISO 8601), ``received_ms``, ``volume_m3`` (optional), ``arrived_ts``
    (device time of the arrival; null for a forged receipt); ``missing: true`` marks an
    arrival the operator recorded nothing for, ``forged: true`` a receipt for an arrival
    that never happened."""
    rows = read_jsonl(path, (), allow_summary=True)
    return [r["receipt"] for r in rows if isinstance(r.get("receipt"), dict)]


def read_jsonl(path: str | Path, required: tuple[str, ...],
               allow_summary: bool = False) -> list[dict]:
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
        if allow_summary and isinstance(row, dict) and (isinstance(row.get("summary"), dict)
                                                         or isinstance(row.get("receipt"), dict)):
            rows.append(row)
            continue
        missing = [k for k in required if k not in row]
        if missing:
            raise AccuracyError(f"{path}:{n}: missing {', '.join(missing)}")
        rows.append(row)
    return rows


def score(truth: list[dict], violations: list[dict],
          tolerance_s: float = 60.0) -> dict[str, RuleAccuracy]:
    """Per rule: TP, FP, FN, near-misses flagged (see the module's docstring)."""
    return evaluate(truth, violations, tolerance_s).rules


def evaluate(truth: list[dict], violations: list[dict], tolerance_s: float = 60.0,
             truck_hours: float | None = None) -> Report:
    tolerance_ms = tolerance_s * 1000
    truth = [t for t in truth if "summary" not in t]  # a truth file's summary line
    rules = sorted({t["rule"] for t in truth} | {v["rule"] for v in violations})
    out = {r: RuleAccuracy(r, start_errors_s=[]) for r in rules}
    kinds: dict[str, KindAccuracy] = {}
    positives = [t for t in truth if not t.get("negative")]
    negatives = [t for t in truth if t.get("negative")]
    by_key: dict[tuple[str, str], list[int]] = {}
    for j, t in enumerate(positives):
        by_key.setdefault((t["rule"], t["device"]), []).append(j)
    for n in negatives:
        out[n["rule"]].near_misses += 1
        kind = n.get("kind") or "near_miss"
        kinds.setdefault(kind, KindAccuracy(kind)).near_misses += 1
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
    # near-misses per device, by start, for the overlap tests
    near: dict[str, list[tuple[int, int, int]]] = {}
    for k, n in enumerate(negatives):
        near.setdefault(n["device"], []).append(
            (n["start_ts"] - int(tolerance_ms), (n.get("end_ts") or n["start_ts"])
             + int(tolerance_ms), k))
    starts = {}
    longest = {}
    for device, rows in near.items():
        rows.sort()
        starts[device] = [r[0] for r in rows]
        longest[device] = max(r[1] - r[0] for r in rows)
    flagged_kind: set[int] = set()
    for i, v in enumerate(violations):
        if i in used_v:
            continue
        acc = out[v["rule"]]
        acc.false_positives += 1
        spans = near.get(v["device"])
        if not spans:
            continue
        end = v.get("end_ts") or v["start_ts"]
        lo = bisect.bisect_left(starts[v["device"]], v["start_ts"] - longest[v["device"]])
        hi = bisect.bisect_right(starts[v["device"]], end)
        same_rule = False
        for a, b, k in spans[lo:hi]:
            if a <= end and v["start_ts"] <= b:
                flagged_kind.add(k)
                same_rule |= negatives[k]["rule"] == v["rule"]
        if same_rule:
            acc.near_misses_flagged += 1
    for k in flagged_kind:
        kinds[negatives[k].get("kind") or "near_miss"].flagged += 1
    for j, t in enumerate(positives):
        if j not in used_t:
            out[t["rule"]].false_negatives += 1
    return Report(out, dict(sorted(kinds.items())), truck_hours)


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
    return _columns(rows)


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def full_table(report: Report, markdown: bool = False) -> str:
    """Per rule: TP, FP, FN, precision, recall, start-time error (median, p95, max), false
    violations per 1,000 compliant truck-hours; a total row; then near-misses flagged per
    noise class."""
    head = ("rule", "TP", "FP", "FN", "precision", "recall", "start error median",
            "p95", "max", "FP per 1000 truck-h", "near-misses flagged")

    def rate(fp: int) -> str:
        value = report.per_1000_h(fp)
        return "-" if value is None else f"{value:.3f}"
    rows = [head]
    for r in report.rules.values():
        rows.append((r.rule, str(r.true_positives), str(r.false_positives),
                     str(r.false_negatives), f"{r.precision:.3f}", f"{r.recall:.3f}",
                     _s(r.median_start_error_s), _s(r.p95_start_error_s),
                     _s(r.max_start_error_s), rate(r.false_positives),
                     f"{r.near_misses_flagged} of {r.near_misses}"))
    tp = sum(r.true_positives for r in report.rules.values())
    fp = report.false_positives
    fn = sum(r.false_negatives for r in report.rules.values())
    errors = [e for r in report.rules.values() for e in (r.start_errors_s or [])]
    total = RuleAccuracy("all rules", tp, fp, fn, start_errors_s=errors)
    rows.append(("all rules", str(tp), str(fp), str(fn), f"{total.precision:.3f}",
                 f"{total.recall:.3f}", _s(total.median_start_error_s),
                 _s(total.p95_start_error_s), _s(total.max_start_error_s), rate(fp),
                 f"{sum(r.near_misses_flagged for r in report.rules.values())} of "
                 f"{sum(r.near_misses for r in report.rules.values())}"))
    kinds = [("near-miss class", "near-misses", "flagged (any rule)")]
    kinds += [(k.kind, str(k.near_misses), str(k.flagged)) for k in report.kinds.values()]
    if markdown:
        return _markdown(rows) + "\n\n" + _markdown(kinds)
    hours = "" if report.truck_hours is None else \
        f"\ncompliant truck-hours: {report.truck_hours:,.1f}"
    return _columns(rows) + hours + "\n\n" + _columns(kinds)


def _markdown(rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)
