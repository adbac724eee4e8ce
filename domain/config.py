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
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from domain.settings import Settings


class ConfigError(ValueError):
    """The config file or an override is wrong; the message names the key and the problem."""


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
    validate(settings)
    return settings


class PartitionSpecError(ConfigError):
    """A partition set in the config that does not parse or is out of range."""


def parse_partition_set(spec: str, count: int) -> tuple[int, ...]:
    """``"0-3,8"`` → (0, 1, 2, 3, 8); empty → all ``count`` partitions."""
    if count <= 0:
        raise PartitionSpecError(
            f"[ingest] partitions = {spec!r} needs [mqtt] partitions > 0 (the number of "
            "topic partitions publishers use)")
    if not spec.strip():
        return tuple(range(count))
    chosen: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise PartitionSpecError(
                f"[ingest] partitions: {part.strip()!r} is not a partition or a range like 0-7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi or hi >= count:
            raise PartitionSpecError(
                f"[ingest] partitions: {part.strip()!r} is outside 0-{count - 1} "
                f"([mqtt] partitions = {count})")
        chosen.update(range(lo, hi + 1))
    return tuple(sorted(chosen))


def parse_schedule(text: str) -> tuple[float, ...]:
    """``[alerts] retry_schedule_s``: '0,5,300' → (0.0, 5.0, 300.0), the delay before each
    attempt."""
    try:
        delays = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"[alerts] retry_schedule_s must be comma-separated seconds, not "
                          f"{text!r}") from None
    if not delays or any(d < 0 for d in delays):
        raise ConfigError(f"[alerts] retry_schedule_s needs at least one delay ≥ 0, not {text!r}")
    return delays


def _host_port(value: str, where: str, *, optional: bool) -> None:
    if optional and not value:
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65_535:  # 0: any free port
        raise ConfigError(f"{where} = {value!r}: expected host:port"
                          + (" or \"\" (off)" if optional else ""))


def validate(settings: Settings) -> None:
    """Every check that spans keys, or that a type alone cannot express, in one place and at
    load time: a mistake ends ``muckwatch run`` (or any command) with one line naming the
    key, never with a traceback from deep inside the component that trips over it."""
    mqtt, ingest, alerts = settings.mqtt, settings.ingest, settings.alerts
    if not 0 < mqtt.port < 65_536:
        raise ConfigError(f"[mqtt] port = {mqtt.port}: must be 1-65535")
    if ingest.batch_max < 1:
        raise ConfigError(f"[ingest] batch_max = {ingest.batch_max}: must be at least 1")
    if ingest.batch_wait_ms < 0:
        raise ConfigError(f"[ingest] batch_wait_ms = {ingest.batch_wait_ms}: must be ≥ 0")
    if not ingest.batch_max < mqtt.receive_maximum <= 65_535:
        raise ConfigError(
            f"[mqtt] receive_maximum = {mqtt.receive_maximum}: must exceed [ingest] batch_max "
            f"({ingest.batch_max}) and be at most 65535 — acks wait for the commit, so a "
            "smaller in-flight window stalls delivery")
    if mqtt.protocol not in ("5", "3.1.1"):
        raise ConfigError(f"[mqtt] protocol = {mqtt.protocol!r}: must be \"5\" or \"3.1.1\"")
    for item in filter(None, (x.strip() for x in mqtt.hosts.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ConfigError(f"[mqtt] hosts: {item!r} is not host:port")
    if mqtt.partitions < 0:
        raise ConfigError(f"[mqtt] partitions = {mqtt.partitions}: must be 0 (none) or more")
    if mqtt.partitions and mqtt.share_group:
        raise ConfigError("[mqtt] partitions and [mqtt] share_group are two ways to spread "
                          "vehicles over workers: set one of them")
    if ingest.partitions and not mqtt.partitions:
        raise ConfigError(f"[ingest] partitions = {ingest.partitions!r} needs [mqtt] "
                          "partitions > 0 (how many topic partitions the publishers use)")
    if mqtt.partitions:
        parse_partition_set(ingest.partitions, mqtt.partitions)
    if mqtt.share_group and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", mqtt.share_group):
        raise ConfigError(f"[mqtt] share_group = {mqtt.share_group!r}: letters, digits, "
                          "'_', '.', '-' only (it is a topic level)")
    parse_schedule(alerts.retry_schedule_s)
    if not 0 <= alerts.jitter < 1:
        raise ConfigError(f"[alerts] jitter = {alerts.jitter}: must be in [0, 1)")
    if alerts.max_in_flight < 1:
        raise ConfigError(f"[alerts] max_in_flight = {alerts.max_in_flight}: must be ≥ 1")
    _host_port(settings.gateway.listen, "[gateway] listen", optional=False)
    _host_port(settings.observability.listen, "[observability] listen", optional=True)
    _host_port(settings.api.listen, "[api] listen", optional=False)
    api = settings.api
    if api.max_upload_bytes < 1 or api.max_attachments < 0 or api.pool_size < 1:
        raise ConfigError("[api] max_upload_bytes and pool_size must be ≥ 1, "
                          "max_attachments ≥ 0")
    if api.webhook_secret and not api.webhook_secret.startswith("whsec_"):
        raise ConfigError("[api] webhook_secret must start with 'whsec_' (Standard Webhooks)")
    if settings.scoring.unreviewed_after_days < 0:
        raise ConfigError(f"[scoring] unreviewed_after_days = "
                          f"{settings.scoring.unreviewed_after_days}: must be ≥ 0")
    permits = settings.permits
    if not 0 < permits.corridor_min_m <= permits.corridor_max_m:
        raise ConfigError(f"[permits] corridor_min_m = {permits.corridor_min_m} and "
                          f"corridor_max_m = {permits.corridor_max_m}: need 0 < min ≤ max")
    if permits.max_validity_days < 1:
        raise ConfigError(f"[permits] max_validity_days = {permits.max_validity_days}: "
                          "must be ≥ 1")
    if settings.observability.log_format not in ("text", "json"):
        raise ConfigError(f"[observability] log_format = "
                          f"{settings.observability.log_format!r}: must be \"text\" or \"json\"")
    rules = settings.rules
    for f in fields(rules):
        value = getattr(rules, f.name)
        if isinstance(value, int | float) and value < 0:
            raise ConfigError(f"[rules] {f.name} = {value}: must be ≥ 0")
        if f.name.endswith("_fixes") and value < 1:
            raise ConfigError(f"[rules] {f.name} = {value}: must be at least 1")


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
