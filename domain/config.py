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
