"""The whole loop of evidence and control, every part real and in its own process: a JT/T
808 terminal (the project's simulator) drives too fast through ``muckwatch gateway``; the
ingest (``muckwatch run``) opens OVERSPEED; its dispatcher, following ``[[terminal.
on_violation]]``, tells the driver (0x8300) and fires the camera (0x8801); the terminal
answers and uploads the photo in packages; the photo lands in the blob store, linked to the
violation and its command; ``muckwatch serve`` hands it to an officer and not to another
company; an officer's position query comes back with the terminal's answer; the bundle is
sealed and verifies, and a photo swapped afterwards shows."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from devservices.common import free_port
from domain.city import load_city
from gateway.codec import Location
from gateway.terminal import SimulatedTerminal, tiny_jpeg
from store.reference import import_city
from tests.conftest import SAMPLE_CITY, IngestProcess, create_database, ingest_env, wait_for
from tests.gateway.test_server import start_gateway

pytestmark = pytest.mark.e2e

PHONE = "013912340001"
TEXT = "{plate}：您已超速，请减速慢行"


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muckwatch", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _rows(dsn: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def test_a_violation_fires_the_camera_and_the_photo_becomes_sealed_evidence(
        broker, dsn, run_dir, tmp_path):
    city = load_city(SAMPLE_CITY)
    truck = city.vehicles[0]
    other = next(c.id for c in city.companies if c.id != truck.company_id)
    db = create_database(dsn)
    with psycopg.connect(db) as conn:
        import_city(conn, city)
    media_dir = tmp_path / "media"
    config = tmp_path / "muckwatch.toml"
    config.write_text(f'[[terminal.on_violation]]\nrule = "OVERSPEED"\ntext = "{TEXT}"\n'
                      'capture_channel = 2\n', encoding="utf-8")
    devices = tmp_path / "devices.csv"
    devices.write_text(f"phone,device_id\n{PHONE},{truck.device_id}\n", encoding="utf-8")
    env = ingest_env(broker, db, MUCKWATCH_MQTT_CLIENT_ID="test-terminal-flow",
                     MUCKWATCH_CONFIG=str(config), MUCKWATCH_MEDIA_DIR=str(media_dir),
                     MUCKWATCH_TERMINAL_POLL_S="0.2", MUCKWATCH_RULES_EVIDENCE_S="2",
                     MUCKWATCH_RULES_OVERSPEED_OPEN_S="3", MUCKWATCH_RULES_OVERSPEED_CLOSE_S="3")
    ingest = IngestProcess(env, run_dir / "ingest-terminal-flow.log")
    # two gateway processes, as a city runs them; the terminal is on the second: commands
    # reach it through the broker whichever process it is connected to
    gateways = [start_gateway(broker, run_dir / f"gateway-terminal-flow-{n}.log",
                              MUCKWATCH_GATEWAY_DEVICES_FILE=str(devices),
                              MUCKWATCH_GATEWAY_CLIENT_ID=f"gateway-terminal-flow-{n}")
                for n in (1, 2)]
    port = gateways[1][1]
    api_port = free_port()
    api_env = {**env, "MUCKWATCH_API_LISTEN": f"127.0.0.1:{api_port}",
               "MUCKWATCH_CITY_DIR": str(SAMPLE_CITY)}
    tokens = {}
    for name, args in (("officer", ["--role", "supervisor"]),
                       ("rival", ["--role", "company", "--company", other]),
                       ("owner", ["--role", "company", "--company", truck.company_id])):
        done = _cli(api_env, "accounts", "add", name, *args)
        assert done.returncode == 0, done.stderr
        tokens[name] = {"Authorization": f"Bearer {done.stdout.strip()}"}
    serve_log = (run_dir / "serve-terminal-flow.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "muckwatch", "serve"], env=api_env,
                             stdout=serve_log, stderr=subprocess.STDOUT)
    photo = tiny_jpeg(40_000)  # ≈ 80 packages of 512 bytes
    terminal = SimulatedTerminal(PHONE, photo=photo, package_bytes=512)
    try:
        driver = TerminalThread(terminal, port)
        driver.start()
        assert driver.driven.wait(60), "the terminal did not finish its drive"
        assert driver.error is None, driver.error
        assert terminal.uploaded, "the photo never arrived whole at the gateway"

        # the violation, its two commands, the photo — linked
        vid = wait_for(lambda: (_rows(db, "SELECT id FROM violations WHERE device_id = %s AND"
                                          " rule = 'OVERSPEED'", (truck.device_id,)) or
                                [[None]])[0][0], 15)
        assert vid
        commands = wait_for(lambda: {r[0]: r[1:] for r in _rows(
            db, "SELECT kind, state, args, result, violation_id FROM terminal_commands WHERE"
                " device_id = %s AND violation_id IS NOT NULL", (truck.device_id,))
            if r[1] == "delivered"}, 15)
        assert set(commands) == {"text", "capture"}, commands
        assert commands["text"][1]["text"] == TEXT.replace("{plate}", truck.plate)
        assert commands["capture"][1]["channel"] == 2 and commands["capture"][2]["media_ids"]
        sent_text = [f for f in terminal.commands if f.header.msg_id == 0x8300]
        assert len(sent_text) == 1 and truck.plate.encode("gbk") in sent_text[0].body
        media = wait_for(lambda: _rows(db, "SELECT id, sha256, bytes, violation_id, command_id,"
                                           " channel FROM media WHERE device_id = %s",
                                       (truck.device_id,)), 15)
        assert len(media) == 1, media
        media_id, sha, size, linked, command_id, channel = media[0]
        assert sha == hashlib.sha256(photo).hexdigest() and size == len(photo)
        assert linked == vid and channel == 2
        assert command_id == _rows(db, "SELECT id FROM terminal_commands WHERE kind ="
                                       " 'capture' AND violation_id = %s", (vid,))[0][0]
        stored = next(media_dir.rglob(f"{sha}.*"))
        assert stored.read_bytes() == photo

        # the API: the photo to whoever may see the violation, not to another company
        api = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: _healthy(api), 30)
        listed = httpx.get(f"{api}/v1/violations/{vid}/media", headers=tokens["officer"])
        assert [m["sha256"] for m in listed.json()] == [sha], listed.text
        got = httpx.get(f"{api}/v1/media/{media_id}", headers=tokens["owner"])
        assert got.status_code == 200 and got.content == photo
        assert got.headers["content-type"] == "image/jpeg"
        assert httpx.get(f"{api}/v1/media/{media_id}",
                         headers=tokens["rival"]).status_code == 404
        assert httpx.get(f"{api}/v1/violations/{vid}/media",
                         headers=tokens["rival"]).status_code == 404

        # an officer asks where the truck is: the terminal answers through the gateway
        asked = httpx.post(f"{api}/v1/devices/{truck.device_id}/commands",
                           headers=tokens["officer"], json={"kind": "position"})
        assert asked.status_code == 201, asked.text
        cid = asked.json()["id"]
        answer = wait_for(lambda: (r := httpx.get(f"{api}/v1/commands/{cid}",
                                                  headers=tokens["officer"]).json())
                          ["state"] == "delivered" and r, 15)
        assert answer and abs(answer["result"]["lat"] - terminal.location.lat) < 1e-6

        # sealed once its window is complete; verifies; a swapped photo shows
        sealed = wait_for(lambda: _cli(env, "evidence", "seal", vid).returncode == 0, 30,
                          interval_s=1.0)
        assert sealed, _cli(env, "evidence", "seal", vid).stderr
        ok = _cli(env, "evidence", "verify", vid)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        stored.write_bytes(photo[:-10] + b"\x00" * 8 + photo[-2:])
        bad = _cli(env, "evidence", "verify", vid)
        assert bad.returncode == 1 and "photo" in (bad.stdout + bad.stderr).lower(), bad.stdout
    finally:
        if "driver" in locals():
            driver.stop.set()
            driver.join(20)
        serve.terminate()
        serve.wait(10)
        serve_log.close()
        said = []
        for gateway, _ in gateways:
            gateway.send_signal(signal.SIGTERM)
            said.append(gateway.communicate(timeout=30)[0])
        ingest.stop()
    # the gateway holding the terminal sent all three commands, the other one none
    first, second = (json.loads(out) for out in said)
    assert first["commands_sent"] == 0 and second["commands_sent"] == 3, said
    assert second["media_items"] == 1 and second["media_incomplete"] == 0


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class TerminalThread(threading.Thread):
    """The simulated terminal on its own event loop, connected until the test is done."""

    def __init__(self, terminal: SimulatedTerminal, port: int) -> None:
        super().__init__(daemon=True)
        self.terminal, self.port = terminal, port
        self.driven, self.stop = threading.Event(), threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            await _drive(self.terminal, self.port)
        except BaseException as e:  # reported to the test
            self.error = e
        finally:
            self.driven.set()
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        await self.terminal.close()


async def _drive(terminal: SimulatedTerminal, port: int) -> None:
    """Too fast for 7 s, then slow: OVERSPEED opens (3 s, 3 fixes) and closes; the terminal
    answers what the platform sends meanwhile (text, capture, its photo's upload)."""
    await terminal.connect("127.0.0.1", port)
    lon, lat = 114.0400, 22.5600
    for k in range(25):
        speed = 90.0 if k < 7 else 20.0
        lon += (speed / 3.6) / 103_000
        now = datetime.now(UTC).replace(microsecond=0)
        terminal.location = Location(0, 0x0302, lat, lon, 12, speed, 90, now)
        assert await terminal.report() == 0
        await asyncio.sleep(1.0)
        if terminal.uploaded and k >= 12:
            return
