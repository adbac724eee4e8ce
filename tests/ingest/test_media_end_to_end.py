"""A photo, an alarm word and a command state through the real broker and ``muckwatch run``
into PostgreSQL and the blob store — published with the stock mosquitto_pub client, as a
gateway or an MQTT terminal would."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from domain.wire import alarm_message, command_message, command_state_message, media_message

pytestmark = pytest.mark.e2e

ROOT = "mediae2e/v1"  # its own root: no other ingest of the session sees these messages


def test_a_300_kb_photo_lands_whole_with_its_row(start_ingest, broker, db, device_id, poll,
                                                  tmp_path):
    media_dir = tmp_path / "media"
    start_ingest("test-media-e2e", MUCKWATCH_MQTT_TOPIC_ROOT=ROOT,
                 MUCKWATCH_MEDIA_DIR=str(media_dir))
    now = time.time_ns() // 1_000_000
    db.execute("INSERT INTO violations (id, rule, device_id, start_ts, state) VALUES"
               " (%s, 'OFF_ROUTE', %s, now() - interval '1 minute', 'open')",
               (f"{device_id}-V", device_id))
    db.execute("INSERT INTO terminal_commands (id, device_id, kind, requested_by, state,"
               " timeout_s) VALUES (%s, %s, 'position', 'tester', 'published', 600)",
               (f"c-{device_id}", device_id))
    photo = b"\xff\xd8\xff\xe0" + os.urandom(300_000) + b"\xff\xd9"
    file = tmp_path / "photo.msg"
    file.write_bytes(media_message(photo, ts=now - 2000, lon=114.0579, lat=22.5431,
                                   media_id=42, event=1, channel=2))
    bad = tmp_path / "bad.msg"
    bad.write_bytes(media_message(b"GIF89a", ts=now, lon=None, lat=None, media_id=43))

    def pub(topic: str, *source: str, data: bytes | None = None) -> None:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                        "-t", f"{ROOT}/{device_id}/{topic}", *source], input=data,
                       check=True, timeout=20)

    pub("media", "-f", str(file))
    pub("media", "-f", str(bad))
    pub("alarm", "-s", data=alarm_message(now - 1000, 0x100))
    pub("command/state", "-s", data=command_state_message(f"c-{device_id}", "sent", ts=now))
    # a command on a topic the ingest's subscription covers: skipped, not dead-lettered
    pub("command", "-s", data=command_message(f"c-{device_id}", "position", {},
                                              deadline_ms=now + 60_000))

    stored = poll(lambda: db.execute(
        "SELECT sha256, bytes, media_type, media_format, event, channel, lon, lat, storage,"
        " violation_id, terminal_id FROM media WHERE device_id = %s", (device_id,)).fetchall())
    sha = hashlib.sha256(photo).hexdigest()
    assert stored == [(sha, len(photo), "image", "jpeg", 1, 2, 114.0579, 22.5431, "local",
                       f"{device_id}-V", 42)]
    assert (media_dir / sha[:2] / f"{sha}.jpeg").read_bytes() == photo
    dead = poll(lambda: db.execute("SELECT reason, detail FROM dead_letter WHERE device_id = %s",
                                   (device_id,)).fetchall())
    assert dead == [("bad_media",
                     "'format' is jpeg but the data does not start with FF D8 (SOI)")]
    assert poll(lambda: db.execute("SELECT alarm FROM terminal_alarms WHERE device_id = %s",
                                   (device_id,)).fetchall()) == [(0x100,)]
    assert poll(lambda: db.execute("SELECT state FROM terminal_commands WHERE id = %s",
                                   (f"c-{device_id}",)).fetchone()[0] == "sent")
