"""Settings: one TOML file plus ``MUCKWATCH_*`` environment overrides, documented defaults.

Every knob is a field below, so ``muckwatch config show`` and docs/config.md list the same
set. An environment variable ``MUCKWATCH_<SECTION>_<KEY>`` (e.g. ``MUCKWATCH_MQTT_PORT=1884``)
overrides the file; ``MUCKWATCH_DSN`` is a short alias for ``MUCKWATCH_DATABASE_DSN``.
Secrets (passwords, DSN passwords) are masked whenever settings are printed or logged.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, get_type_hints

from rules.settings import RuleSettings


class ConfigError(ValueError):
    """The config file or an override is wrong; the message names the key and the problem."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "muckwatch-ingest"
    username: str = ""
    password: str = ""
    topic_root: str = "muck/v1"
    keepalive_s: int = 30
    # persistent session: the broker keeps our QoS 1 queue this long while we are away
    session_expiry_s: int = 86_400
    # in-flight window; must exceed ingest.batch_max because acks wait for the commit
    receive_maximum: int = 65_535
    # topic partitions P: publishers use muck/v1/p/{k}/{device}/… with k = CRC-32(device) mod
    # P, each worker consumes [ingest] partitions (docs/scaling.md); 0 = no partition level
    partitions: int = 0
    # EMQX shared subscription: subscribe as $share/{group}/… and let the broker's hash
    # strategy spread vehicles over the workers of the group; empty = not shared
    share_group: str = ""


@dataclass(frozen=True)
class DatabaseSettings:
    dsn: str = "postgresql://postgres@127.0.0.1:5432/muckwatch"
    connect_timeout_s: int = 10


@dataclass(frozen=True)
class IngestSettings:
    batch_max: int = 5_000  # messages per batch
    batch_wait_ms: int = 20  # flush a partial batch after this long (latency ≤ this + work)
    max_payload_bytes: int = 65_536
    max_future_s: int = 600  # device clocks may run ahead by this much
    retry_backoff_max_s: float = 30.0  # database unavailable: retry the batch, capped backoff
    # the topic partitions this worker consumes, e.g. "0-7" or "0,2,4"; empty = all of them
    partitions: str = ""
    # rule state of the vehicles that changed is saved this often (and on shutdown), for the
    # worker that takes them over after a crash or a rebalance
    snapshot_s: float = 60.0
    # with [mqtt] share_group: a vehicle silent here this long is re-read from the database
    # when it reappears (the broker may have given it to another worker meanwhile)
    reclaim_after_s: float = 10.0


@dataclass(frozen=True)
class CitySettings:
    dir: str = "data/sample-city"


@dataclass(frozen=True)
class AlertSettings:
    worker: bool = True  # run the webhook delivery worker inside ``muckwatch run``
    timeout_s: float = 15.0  # one delivery attempt
    # delay before attempt 1, 2, …: after the last one fails the alert is dead-lettered
    retry_schedule_s: str = "0,5,300,1800,7200,18000,36000,36000"
    jitter: float = 0.1  # each retry delay ± this share, so receivers are not hit in step
    max_in_flight: int = 4  # concurrent deliveries per subscription
    poll_s: float = 1.0  # how often the worker looks for due alerts
    lease_s: float = 60.0  # a claimed alert is tried again after this if its worker died
    reload_s: float = 30.0  # the ingest re-reads subscriptions from the table this often
    evidence_url: str = ""  # link for receivers, e.g. https://…/violations/{id}
    subscriptions: tuple = ()  # [[alerts.subscriptions]] tables, synced into the table


@dataclass(frozen=True)
class GatewaySettings:
    listen: str = "127.0.0.1:6808"  # JT/T 808 terminals connect here (host:port)
    client_id: str = "muckwatch-gateway"  # its MQTT client id (broker: the [mqtt] section)
    idle_timeout_s: float = 180.0  # no frame for this long: the connection is closed
    max_frame_bytes: int = 4096  # larger frames are dropped (and counted)
    max_buffer_bytes: int = 65_536  # more unparsed bytes than this: the connection is closed
    publish_timeout_s: float = 10.0  # broker acks slower than this: the terminal gets 'fail'
    auth_secret: str = ""  # keys the auth codes; empty: a random one per start
    allow_unknown: bool = True  # terminals not in devices_file register as their phone
    devices_file: str = ""  # CSV phone,device_id[,model]
    lid: str = ""  # default lid source, e.g. "io:8" (docs/jt808.md); empty: not reported
    lift: str = ""  # default lift source
    models: tuple = ()  # [[gateway.models]] model = "…", lid = "…", lift = "…"


@dataclass(frozen=True)
class ScoringSettings:
    # credit-score deduction points per violation, by rule: severity 1/2/3. Written into the
    # score_deductions table by `muckwatch db migrate` and `muckwatch scores`
    deductions: str = ("UNAUTHORISED_DUMP=10/15/20, NO_PERMIT=6/8/10, OFF_ROUTE=3/5/8, "
                       "RESTRICTED_ZONE=3/5/8, UNCOVERED_LOAD=2/4/6, SIGNAL_LOSS=2/4/6, "
                       "OVERSPEED=1/2/4")


@dataclass(frozen=True)
class ObservabilitySettings:
    listen: str = "127.0.0.1:9108"  # muckwatch run serves /metrics and /healthz here; "" = off
    log_format: str = "text"  # "json": one JSON object per log line, for log shippers


@dataclass(frozen=True)
class Settings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    city: CitySettings = field(default_factory=CitySettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    def with_overrides(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys replaced, e.g. ``with_overrides(mqtt={"port": 1884})``."""
        changed = {}
        for name, values in sections.items():
            changed[name] = replace(getattr(self, name), **values)
        return replace(self, **changed)


_SECRET_KEYS = {"password", "secret", "token"}
_ALIASES = {"MUCKWATCH_DSN": ("database", "dsn")}


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                        "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str and isinstance(value, str):
        return value
    elif kind is tuple:
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected an array of tables ([[…]] in the config file; "
                          "not settable from the environment)")
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults ← TOML file (``path`` or ``$MUCKWATCH_CONFIG``) ← environment overrides."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("MUCKWATCH_CONFIG")
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: {e}") from None

    sections: dict[str, dict[str, Any]] = {}
    hints = get_type_hints(Settings)
    for name, section in data.items():
        if name not in hints:
            raise ConfigError(f"unknown config section [{name}] (known: {', '.join(hints)})")
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = dict(section)

    for var, value in env.items():
        if var in _ALIASES:
            section, key = _ALIASES[var]
        elif var.startswith("MUCKWATCH_") and var.count("_") >= 2:
            section, _, key = var[len("MUCKWATCH_"):].lower().partition("_")
            if section not in hints:
                continue  # MUCKWATCH_CONFIG, MUCKWATCH_RUN_DIR, … are not settings
        else:
            continue
        sections.setdefault(section, {})[key] = value

    settings = Settings()
    for name, values in sections.items():
        section_type = hints[name]
        section_hints = get_type_hints(section_type)
        coerced = {}
        for key, value in values.items():
            if key not in section_hints:
                raise ConfigError(
                    f"unknown key {key!r} in [{name}] (known: {', '.join(section_hints)})"
                )
            coerced[key] = _coerce(value, section_hints[key], f"[{name}] {key}")
        settings = settings.with_overrides(**{name: coerced})
    return settings


def mask_secret(key: str, value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple({k: mask_secret(k, v) for k, v in item.items()} for item in value)
    if any(s in key for s in _SECRET_KEYS) and value and not key.endswith("_env"):
        return "********"
    if isinstance(value, str) and "://" in value:
        return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1********@", value)
    return value


def as_dict(settings: Settings, *, masked: bool = True) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in fields(settings):
        section = getattr(settings, f.name)
        assert is_dataclass(section)
        out[f.name] = {
            sf.name: mask_secret(sf.name, getattr(section, sf.name)) if masked
            else getattr(section, sf.name)
            for sf in fields(section)
        }
    return out


def to_toml(data: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        tables = {k: v for k, v in values.items() if isinstance(v, tuple)}
        for key, value in values.items():
            if key in tables:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | float):
                text = repr(value)
            else:
                text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {text}")
        lines.append("")
        for key, items in tables.items():
            for item in items:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{k} = {json.dumps(v, ensure_ascii=False)}"
                             for k, v in item.items())
                lines.append("")
    return "\n".join(lines)
