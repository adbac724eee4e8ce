"""The long-running services and their tools: ``run`` (the ingest), ``gateway`` (JT/T 808 →
MQTT) and ``jt808 decode``."""

from __future__ import annotations

import argparse
import json

from muckwatch.cli.common import CommandTable, UserError, run_until_signal


def register(table: CommandTable) -> None:
    table.add("run", "run the ingest service (MQTT → pipeline → database)",
              "MUCKWATCH_DSN=postgresql://… muckwatch run --city data/sample-city",
              _run_arguments, run)
    table.add("gateway", "JT/T 808 terminals over TCP → wire format v1 on MQTT",
              "muckwatch gateway --listen 0.0.0.0:6808 --mqtt mqtt://127.0.0.1:1883",
              _gateway_arguments, gateway)
    table.add("jt808", "JT/T 808 tools: decode a frame to JSON",
              "muckwatch jt808 decode '7E 0200 …  7E'", _jt808_arguments, jt808)


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--city", help="city bundle directory (default: [city] dir)")


def run(args, settings) -> int:
    import asyncio

    from domain.city import load_city
    from domain.config import load_settings
    from muckwatch.locations import city_dir
    from muckwatch.service import IngestService

    city = load_city(args.city or city_dir(settings.city.dir))
    service = IngestService(settings, city, reload_settings=lambda: load_settings(args.config))
    stats = asyncio.run(service.run())
    print(stats.as_json(), flush=True)
    return 0


def _gateway_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="host:port (default: [gateway] listen)")
    p.add_argument("--mqtt", help="broker URL (default: the [mqtt] section)")


def gateway(args, settings) -> int:
    from gateway.mqtt import BrokerUnavailable
    from gateway.server import serve
    from ingest.receiver import BrokerError

    async def work(stop) -> None:
        stats = await serve(settings, args.listen, args.mqtt, stop)
        print(stats.as_json(), flush=True)

    try:
        run_until_signal(work)
    except BrokerUnavailable as e:
        raise BrokerError(str(e)) from None
    except ValueError as e:
        raise UserError(str(e)) from None
    return 0


def _jt808_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["decode"])
    p.add_argument("hex", nargs="+", help="the frame in hex (7E flags and spaces optional)")


def jt808(args, settings) -> int:
    from gateway.codec import CodecError, describe

    try:
        print(json.dumps(describe(" ".join(args.hex)), ensure_ascii=False, indent=2))
    except CodecError as e:
        raise UserError(f"not a valid JT/T 808 frame: {e}") from None
    return 0
