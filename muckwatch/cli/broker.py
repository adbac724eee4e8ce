"""The production broker: ``broker init`` (passwords, ACL, TLS) and ``devices add | revoke``
(a terminal's credentials); the work is in ``muckwatch.broker``."""

from __future__ import annotations

import argparse

from muckwatch.cli.common import CommandTable, UserError


def register(table: CommandTable) -> None:
    table.add("broker", "set up a production Mosquitto: passwords, ACL, TLS certificate",
              "muckwatch broker init /etc/mosquitto/muckwatch --hostname mqtt.example.gov.cn",
              _broker_arguments, broker)
    table.add("devices", "a terminal's broker credentials: add (or reset) and revoke",
              "muckwatch devices add 粤B0352X --broker-dir /etc/mosquitto/muckwatch",
              _devices_arguments, devices)


def _broker_arguments(br: argparse.ArgumentParser) -> None:
    br.add_argument("action", choices=["init"])
    br.add_argument("dir", help="directory for mosquitto.conf, passwd, acl and certificates")
    br.add_argument("--hostname", action="append", default=[],
                    help="name or IP terminals connect to (repeat; default 127.0.0.1)")


def broker(args, settings) -> int:
    from pathlib import Path

    from muckwatch import broker as setup

    try:
        passwords = setup.init(Path(args.dir).resolve(), args.hostname or ["127.0.0.1"])
    except setup.BrokerSetupError as e:
        raise UserError(str(e)) from None
    print(f"wrote {args.dir}/mosquitto.conf, passwd, acl, ca.crt, server.crt/key")
    for user, password in passwords.items():
        print(f"  {user}: {password}   (shown once; put it in that service's config)")
    print(f"give the files to the broker's user (chown -R mosquitto {args.dir}), start "
          f"mosquitto -c {args.dir}/mosquitto.conf, and hand terminals {args.dir}/ca.crt")
    return 0


def _devices_arguments(dv: argparse.ArgumentParser) -> None:
    dv.add_argument("action", choices=["add", "revoke"])
    dv.add_argument("device", help="device id, or a plate found in the city's vehicles.csv")
    dv.add_argument("--broker-dir", required=True, help="the directory of muckwatch broker init")
    dv.add_argument("--city", help="city bundle, to look plates up (default: [city] dir)")


def devices(args, settings) -> int:
    from pathlib import Path

    from muckwatch import broker as setup

    device = args.device
    if not setup.DEVICE_ID.fullmatch(device):  # a plate: look it up in the city
        from domain.city import load_city
        from muckwatch.locations import city_dir

        city = load_city(args.city or city_dir(settings.city.dir))
        found = [v.device_id for v in city.vehicles if v.plate == device]
        if not found:
            raise UserError(f"{device!r} is neither a device id nor a plate in "
                            f"{city.directory}/vehicles.csv")
        device = found[0]
    try:
        if args.action == "add":
            password = setup.add_device(Path(args.broker_dir), device)
            print(f"device {device}: user {device}, password {password} (shown once); "
                  f"it may publish only under muck/v1/{device}/. "
                  "Reload the broker: kill -HUP $(pidof mosquitto)")
        elif setup.revoke_device(Path(args.broker_dir), device):
            print(f"device {device} revoked. Reload the broker: kill -HUP $(pidof mosquitto)")
        else:
            raise UserError(f"no device {device!r} in {args.broker_dir}/passwd")
    except setup.BrokerSetupError as e:
        raise UserError(str(e)) from None
    return 0
