"""``config show``: the effective settings (file ← environment), secrets masked."""

from __future__ import annotations

import argparse

from muckwatch.cli.common import CommandTable


def register(table: CommandTable) -> None:
    table.add("config", "show the effective configuration (secrets masked)",
              "MUCKWATCH_MQTT_PORT=1884 muckwatch config show", _arguments, config)


def _arguments(conf: argparse.ArgumentParser) -> None:
    conf.add_argument("action", choices=["show"])


def config(args, settings) -> int:
    from domain.config import as_dict, to_toml

    print(to_toml(as_dict(settings, masked=True)), end="")
    return 0
