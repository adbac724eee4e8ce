"""What an operator watches: Prometheus ``/metrics`` and ``/healthz`` from ``muckwatch run``,
and JSON log lines for log shippers.

The HTTP side is a few lines of asyncio rather than a framework: two GET endpoints on the
event loop the ingest already runs, no thread, no dependency. Metric names follow Prometheus
conventions (``_total`` counters, ``_seconds`` histograms, base units).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# seconds; batch processing and database writes live between a millisecond and a few seconds
SECONDS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SIZE_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for k, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[k] += 1
                break

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{_num(bound)}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{suffix} {_num(self.total)}")
        out.append(f"{name}_count{suffix} {self.count}")
        return out


def _num(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    return repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class IngestMetrics:
    """Counters and histograms the ingest updates once per batch."""

    batch_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    batch_messages: Histogram = field(default_factory=lambda: Histogram(SIZE_BUCKETS))
    stage_seconds: dict[str, Histogram] = field(default_factory=dict)
    violations: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, event) → n

    def observe_batch(self, messages: int, stage_ms: dict[str, float],
                      events_by_rule: dict[tuple[str, str], int]) -> None:
        self.batch_messages.observe(messages)
        self.batch_seconds.observe(sum(stage_ms.values()) / 1000)
        for stage, ms in stage_ms.items():
            self.stage_seconds.setdefault(stage, Histogram(SECONDS_BUCKETS)).observe(ms / 1000)
        for key, n in events_by_rule.items():
            self.violations[key] = self.violations.get(key, 0) + n


def render(stats, metrics: IngestMetrics, *, backlog: int, connected: bool,
           delivery=None, handover=None, dispatch=None) -> str:
    """The Prometheus text exposition of everything the ingest knows about itself."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[str]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)

    metric("muckwatch_messages_total", "counter", "MQTT messages taken off the broker",
           [f"muckwatch_messages_total {stats.messages}"])
    metric("muckwatch_fixes_total", "counter", "valid fixes decoded",
           [f"muckwatch_fixes_total {stats.fixes}"])
    metric("muckwatch_fixes_inserted_total", "counter", "fixes newly stored (not duplicates)",
           [f"muckwatch_fixes_inserted_total {stats.inserted}"])
    metric("muckwatch_rejected_total", "counter", "messages dead-lettered, by reason",
           [f'muckwatch_rejected_total{{reason="{_label(r)}"}} {n}'
            for r, n in sorted(stats.rejects.items())] or ["muckwatch_rejected_total 0"])
    metric("muckwatch_violation_events_total", "counter",
           "violation events emitted, by rule and phase",
           [f'muckwatch_violation_events_total{{rule="{_label(r)}",phase="{_label(p)}"}} {n}'
            for (r, p), n in sorted(metrics.violations.items())]
           or ["muckwatch_violation_events_total 0"])
    metric("muckwatch_alerts_total", "counter", "webhook deliveries queued in the outbox",
           [f"muckwatch_alerts_total {stats.alerts}"])
    metric("muckwatch_db_retries_total", "counter", "batch writes retried (database down)",
           [f"muckwatch_db_retries_total {stats.db_retries}"])
    metric("muckwatch_media_total", "counter", "photos from terminals stored (new rows)",
           [f"muckwatch_media_total {stats.media}"])
    metric("muckwatch_terminal_alarms_total", "counter",
           "alarm words of reports without a position stored",
           [f"muckwatch_terminal_alarms_total {stats.alarms}"])
    metric("muckwatch_command_states_total", "counter",
           "commands moved forward by their gateway's report",
           [f"muckwatch_command_states_total {stats.command_states}"])
    if dispatch is not None:
        metric("muckwatch_commands_published_total", "counter",
               "commands to terminals handed to the broker by this worker's dispatcher",
               [f"muckwatch_commands_published_total {dispatch.published}"])
        metric("muckwatch_command_actions_total", "counter",
               "commands queued by [[terminal.on_violation]] actions",
               [f"muckwatch_command_actions_total {dispatch.actions}"])
        metric("muckwatch_commands_timed_out_total", "counter",
               "commands ended 'timeout' by this dispatcher's sweep",
               [f"muckwatch_commands_timed_out_total {dispatch.expired}"])
        metric("muckwatch_evidence_sealed_total", "counter",
               "evidence bundles sealed when due",
               [f"muckwatch_evidence_sealed_total {dispatch.sealed}"])
        metric("muckwatch_dispatch_failures_total", "counter",
               "dispatcher rounds that failed, by what (retried next round)",
               [f'muckwatch_dispatch_failures_total{{on="broker"}} {dispatch.broker_failures}',
                f'muckwatch_dispatch_failures_total{{on="database"}} '
                f'{dispatch.database_failures}'])
    if handover is not None:
        metric("muckwatch_handover_vehicles_total", "counter",
               "vehicles taken over with the rule state another worker (or an earlier run) saved",
               [f"muckwatch_handover_vehicles_total {handover.restored}"])
        metric("muckwatch_handover_fixes_total", "counter",
               "stored fixes re-evaluated after restoring a vehicle's rule state",
               [f"muckwatch_handover_fixes_total {handover.replayed}"])
        metric("muckwatch_rule_state_snapshots_total", "counter",
               "vehicle rule-state snapshots written with batches",
               [f"muckwatch_rule_state_snapshots_total {handover.snapshots_written}"])
        metric("muckwatch_repeated_fixes_total", "counter",
               "fixes already evaluated that arrived again (redeliveries): stored once, "
               "not evaluated again", [f"muckwatch_repeated_fixes_total {handover.repeats}"])
    metric("muckwatch_batch_messages", "histogram", "messages per batch",
           metrics.batch_messages.lines("muckwatch_batch_messages"))
    metric("muckwatch_batch_seconds", "histogram", "time to process and commit one batch",
           metrics.batch_seconds.lines("muckwatch_batch_seconds"))
    stage_lines: list[str] = []
    for stage, hist in sorted(metrics.stage_seconds.items()):
        stage_lines += hist.lines("muckwatch_stage_seconds", f'stage="{_label(stage)}"')
    metric("muckwatch_stage_seconds", "histogram",
           "time per pipeline stage per batch; stage=\"store\" is the database write",
           stage_lines)
    metric("muckwatch_backlog_messages", "gauge",
           "messages received and waiting for the next batch (the broker holds the rest)",
           [f"muckwatch_backlog_messages {backlog}"])
    metric("muckwatch_broker_connected", "gauge", "1 while the MQTT session is up",
           [f"muckwatch_broker_connected {int(connected)}"])
    if delivery is not None:
        metric("muckwatch_webhook_attempts_total", "counter", "webhook POSTs made",
               [f"muckwatch_webhook_attempts_total {delivery.attempts}"])
        metric("muckwatch_webhook_failures_total", "counter",
               "webhook POSTs that did not succeed (retried later or dead)",
               [f"muckwatch_webhook_failures_total {delivery.failed}"])
        metric("muckwatch_webhook_delivered_total", "counter", "webhooks delivered",
               [f"muckwatch_webhook_delivered_total {delivery.delivered}"])
        metric("muckwatch_webhook_dead_total", "counter", "webhooks given up after the last retry",
               [f"muckwatch_webhook_dead_total {delivery.dead}"])
    metric("muckwatch_uptime_seconds", "gauge", "seconds since the ingest started",
           [f"muckwatch_uptime_seconds {_num(round(time.time() - stats.started_at, 3))}"])
    return "\n".join(lines) + "\n"


Handler = Callable[[], Awaitable[tuple[int, str, str]]]  # → (status, content type, body)


async def serve_http(listen: str, routes: dict[str, Handler]) -> asyncio.AbstractServer:
    """A minimal HTTP/1.1 server for GET ``routes`` (one response per connection)."""
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b""):
                if len(line) > 8192:
                    break
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", "only GET\n"
            elif path in routes:
                status, ctype, body = await routes[path]()
            else:
                status, ctype, body = 404, "text/plain", f"not found; try {', '.join(routes)}\n"
            data = body.encode()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}.get(status, "OK")
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                         + (data if parts and parts[0] != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host or "127.0.0.1", int(port))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 UTC), level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


__all__ = ["Histogram", "IngestMetrics", "JsonFormatter", "render", "serve_http"]
