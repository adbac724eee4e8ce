"""The production broker set-up with real clients: no anonymous access, a device writes only
under its own id and reads nothing, the ingest reads, TLS with the CA works and plain TCP to
the TLS port does not, a revoked device is locked out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from devservices.mosquitto import PrivateMosquitto

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secure(run_dir):
    directory = run_dir / "secure-broker"
    out = subprocess.run([sys.executable, "-m", "muckwatch", "broker", "init", str(directory)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ingest_password = next(line.split(": ", 1)[1].split()[0] for line in out.stdout.splitlines()
                           if line.strip().startswith("muckwatch-ingest:"))
    devices = {}
    for device in ("013800000101", "013800000102"):
        added = subprocess.run([sys.executable, "-m", "muckwatch", "devices", "add", device,
                                "--broker-dir", str(directory)], capture_output=True,
                               text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        devices[device] = added.stdout.split("password ", 1)[1].split()[0]
    if os.geteuid() == 0:  # as docs/security.md says: the files belong to the broker's user
        subprocess.run(["chown", "-R", "mosquitto:mosquitto", str(directory)], check=True)
    broker = PrivateMosquitto(directory / "run", conf=directory / "mosquitto.conf").start()
    yield {"broker": broker, "dir": directory, "ingest": ingest_password, "devices": devices,
           "tls_port": broker.more_ports[8883]}
    broker.stop()


def pub(port, topic, *auth, message="{}", extra=()):
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                           "-t", topic, "-m", message, *auth, *extra],
                          capture_output=True, text=True, timeout=20)


class Subscriber:
    """mosquitto_sub collecting what a user may read."""

    def __init__(self, port, user, password, topic="muck/v1/#"):
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-v", "-t", topic,
             "-u", user, "-P", password], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        time.sleep(0.7)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        return out


def test_anonymous_is_refused(secure):
    out = pub(secure["broker"].port, "muck/v1/013800000101/telemetry")
    assert out.returncode != 0 and "not authorised" in (out.stderr + out.stdout).lower()


def test_a_device_writes_only_under_its_own_id_and_reads_nothing(secure):
    port, (a, b) = secure["broker"].port, list(secure["devices"])
    auth_a = ("-u", a, "-P", secure["devices"][a])
    ingest = Subscriber(port, "muckwatch-ingest", secure["ingest"])
    snoop = Subscriber(port, a, secure["devices"][a])  # device A tries to read everything
    try:
        assert pub(port, f"muck/v1/{a}/telemetry", *auth_a, message="own").returncode == 0
        pub(port, f"muck/v1/{b}/telemetry", *auth_a, message="forged")  # silently dropped
        pub(port, f"muck/v1/{b}/telemetry", "-u", b, "-P", secure["devices"][b],
            message="b-own")
        time.sleep(1.0)
    finally:
        seen, snooped = ingest.stop(), snoop.stop()
    assert f"muck/v1/{a}/telemetry own" in seen
    assert f"muck/v1/{b}/telemetry b-own" in seen
    assert "forged" not in seen, "A cannot publish under B's id"
    assert snooped == "", "a device reads nothing, not even its own topic"


def test_tls_with_the_ca_works_and_plain_tcp_to_the_tls_port_does_not(secure):
    a = next(iter(secure["devices"]))
    auth = ("-u", a, "-P", secure["devices"][a])
    tls = pub(secure["tls_port"], f"muck/v1/{a}/telemetry", *auth,
              extra=("--cafile", str(secure["dir"] / "ca.crt")))
    assert tls.returncode == 0, tls.stderr
    plain = pub(secure["tls_port"], f"muck/v1/{a}/telemetry", *auth, extra=("-W", "5"))
    assert plain.returncode != 0


def test_a_revoked_device_is_locked_out_after_a_reload(secure):
    device = list(secure["devices"])[1]
    auth = ("-u", device, "-P", secure["devices"][device])
    assert pub(secure["broker"].port, f"muck/v1/{device}/telemetry", *auth).returncode == 0
    out = subprocess.run([sys.executable, "-m", "muckwatch", "devices", "revoke", device,
                          "--broker-dir", str(secure["dir"])], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "revoked" in out.stdout
    os.kill(secure["broker"].proc.pid, signal.SIGHUP)
    time.sleep(1.0)
    refused = pub(secure["broker"].port, f"muck/v1/{device}/telemetry", *auth)
    assert refused.returncode != 0


def test_provisioning_refuses_what_it_cannot_do(tmp_path, secure):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "muckwatch", *args], capture_output=True,
                              text=True, timeout=60)
    again = run("broker", "init", str(secure["dir"]))
    assert again.returncode == 2 and "already set up" in again.stderr
    unknown = run("devices", "add", "粤Z99999", "--broker-dir", str(secure["dir"]))
    assert unknown.returncode == 2 and "neither a device id nor a plate" in unknown.stderr
    service = run("devices", "revoke", "muckwatch-ingest", "--broker-dir", str(secure["dir"]))
    assert service.returncode == 2
    plate = run("devices", "add", "粤B0352X", "--broker-dir", str(secure["dir"]))
    assert plate.returncode == 0 and "device 014291777871" in plate.stdout
