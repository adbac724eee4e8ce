"""Photos through the gateway: a simulated terminal announces (0x0800) and uploads (0x0801)
a JPEG in subpackages, and what reaches the real broker is checked — once, with the right
bytes and header — whatever the terminal does: packages out of order, repeated, missing
(the gateway asks for exactly those), never completed (asked again, then dropped), floods
of uploads (memory bound), a broker that does not acknowledge. Also the alarm word of a
report without a position, and the upload buffer alone under hypothesis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.wire import partition_topic, split_media
from gateway import codec, media
from gateway.codec import Header, Location
from gateway.server import device_for_phone
from gateway.terminal import Terminal, tiny_jpeg
from gateway.uploads import UploadBuffer

pytestmark = pytest.mark.e2e

WHEN = datetime(2026, 12, 3, 2, 0, 0, tzinfo=UTC)
PLACE = Location(0x0100, 0x0302, 22.551234, 114.051234, 12, 30.5, 90, WHEN)


def test_tiny_jpeg_is_a_jpeg_of_the_size_asked():
    for size in (0, 100, 5000, 70_000):
        data = tiny_jpeg(size)
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
        assert size <= len(data) <= max(size, len(tiny_jpeg())) + 4


@pytest.mark.parametrize("version", [None, 1], ids=["2013", "2019"])
def test_a_photo_in_packages_is_published_once_with_its_bytes_and_header(harness, version):
    photo = tiny_jpeg(5000)

    async def main():
        collector = harness.collector()
        async with harness.gateway(partitions=4) as (gw, port):
            t = await harness.terminal(port, version=version, location=PLACE, photo=photo,
                                       package_bytes=512)
            media_id = await t.upload(event=4, channel=2)
            await t.wait_uploaded(media_id)
            device = device_for_phone(t.t.phone)
            await harness.until(lambda: collector.on("media"))
            await asyncio.sleep(0.3)  # anything else would have arrived by now
            await t.close()
            return gw.stats, collector, device, media_id, t

    stats, collector, device, media_id, t = asyncio.run(main())
    [(topic, payload)] = [m for m in collector.messages if m[0].endswith("/media")]
    assert topic == partition_topic(harness.root, device, 4, "media")
    header, data = split_media(payload)
    assert data == photo and hashlib.sha256(data).digest() == hashlib.sha256(photo).digest()
    assert header == {"v": 1, "ts": int(WHEN.timestamp() * 1000), "id": media_id,
                      "type": "image", "format": "jpeg", "event": 4, "channel": 2,
                      "lon": 114.051234, "lat": 22.551234}
    packages = -(-(len(photo) + 36) // 512)
    assert packages == 10 and stats.by_message["0x0801"] == packages
    assert (stats.media_events, stats.media_items, stats.media_bytes) == (1, 1, len(photo))
    assert stats.media_resend_requests == 0 and t.resend_requests == []
    assert t.uploaded == [media_id], "one 0x8800 with an empty list"


def test_packages_out_of_order_repeated_and_an_oversized_frame(harness):
    photo = tiny_jpeg(8000)

    async def main():
        collector = harness.collector()
        async with harness.gateway() as (gw, port):
            t = await harness.terminal(port, photo=photo, package_bytes=300, reorder=True,
                                       duplicate=True, oversized=True, seed=7)
            first = await t.upload()
            await t.wait_uploaded(first)
            # and a second photo on the same connection, unannounced
            second = await t.upload(tiny_jpeg(3000), announce=False)
            await t.wait_uploaded(second)
            await asyncio.sleep(0.3)
            await t.close()
            return gw.stats, collector, t

    stats, collector, _t = asyncio.run(main())
    items = [split_media(p) for p in collector.on("media")]
    assert sorted(h["id"] for h, _ in items) == [1, 2], "each photo once"
    assert {h["id"]: d for h, d in items} == {1: photo, 2: tiny_jpeg(3000)}
    assert stats.media_items == 2 and stats.dropped_bytes >= 5000
    assert stats.media_dropped == stats.media_incomplete == 0


@pytest.mark.parametrize("drop", [{2, 5}, {1, 3, 14}], ids=["middle", "first-and-last"])
def test_missing_packages_are_asked_for_and_the_resend_completes_the_photo(harness, drop):
    """The last package arriving (or, when it is missing too, the terminal falling silent)
    makes the gateway name exactly the missing packages; the terminal resends them with
    their original serials and the photo is published once."""
    photo = tiny_jpeg(6000)

    async def main():
        collector = harness.collector()
        async with harness.gateway(media_resend_after_s=0.3) as (gw, port):
            t = await harness.terminal(port, photo=photo, package_bytes=450, drop=drop)
            media_id = await t.upload()
            await t.wait_uploaded(media_id)
            await asyncio.sleep(0.2)
            await t.close()
            return gw, collector, t, media_id

    gw, collector, t, media_id = asyncio.run(main())
    assert -(-(len(photo) + 36) // 450) == 14
    assert t.resend_requests == [(media_id, sorted(drop))], \
        "the media id (from the 0x0800 when package 1 is missing) and exactly those packages"
    [(header, data)] = [split_media(p) for p in collector.on("media")]
    assert data == photo and header["id"] == media_id
    assert gw.stats.media_resend_requests == 1 and gw.stats.media_items == 1
    assert len(gw.uploads) == 0 and gw.uploads.bytes == 0


def test_a_photo_that_never_completes_is_asked_for_again_then_dropped(harness):
    async def main():
        collector = harness.collector()
        async with harness.gateway(media_resend_after_s=0.2, media_resend_tries=2) as (gw,
                                                                                      port):
            t = await harness.terminal(port, package_bytes=400, drop={3},
                                       never_complete=True)
            media_id = await t.upload()
            await harness.until(lambda: gw.stats.media_incomplete, timeout_s=10)
            await asyncio.sleep(0.5)  # no more requests after giving up
            stats = gw.stats
            assert len(gw.uploads) == 0 and gw.uploads.bytes == 0
            # the connection lives on: the next photo goes through
            t.never_complete, t.drop = False, set()
            second = await t.upload()
            await t.wait_uploaded(second)
            await harness.until(lambda: collector.on("media"))
            await t.close()
            return stats, collector, t, media_id

    stats, collector, t, media_id = asyncio.run(main())
    # when the last package came, then after each 0.2 s of silence, twice; then dropped
    assert t.resend_requests == [(media_id, [3])] * 3
    assert stats.media_incomplete == 1 and stats.media_resend_requests == 3
    assert [split_media(p)[0]["id"] for p in collector.on("media")] == [media_id + 1]


def test_memory_stays_bounded_under_many_uploads_and_valid_photos_still_arrive(harness):
    """Terminals that leave every photo unfinished: at most media_max_pending uploads per
    connection and media_max_bytes over the gateway are kept (the oldest dropped and
    counted); a well-behaved terminal's photo still arrives."""
    bound = 30_000

    async def main():
        collector = harness.collector()
        async with harness.gateway(media_max_pending=2, media_max_bytes=bound,
                                   media_resend_after_s=30) as (gw, port):
            hostile = [await harness.terminal(port, package_bytes=1000, drop={2},
                                              never_complete=True) for _ in range(4)]
            peak_items = peak_bytes = 0
            for _ in range(5):
                for t in hostile:
                    await t.upload(tiny_jpeg(6000))
                    await asyncio.sleep(0.01)
                    peak_items = max(peak_items, len(gw.uploads))
                    peak_bytes = max(peak_bytes, gw.uploads.bytes)
            await harness.until(lambda: sum(len(t.resend_requests) for t in hostile) >= 20)
            good = await harness.terminal(port)
            media_id = await good.upload(tiny_jpeg(20_000))
            await good.wait_uploaded(media_id)
            for t in [*hostile, good]:
                await t.close()
            await harness.until(lambda: len(gw.uploads) == 0)
            return gw, collector, peak_items, peak_bytes, good, media_id

    gw, collector, peak_items, peak_bytes, _good, media_id = asyncio.run(main())
    assert peak_items <= 2 * 4 and peak_bytes <= bound
    # 20 unfinished uploads: the connection bound alone drops 12, the byte bound more
    # (4 × 2 × ~5 KB kept would be 40 KB), the rest went with their connections
    assert gw.stats.media_dropped >= 20 and gw.stats.media_incomplete == 0
    assert len(gw.uploads) == 0 and gw.uploads.bytes == 0
    [(header, data)] = [split_media(p) for p in collector.on("media")]
    assert header["id"] == media_id and data == tiny_jpeg(20_000)


def test_a_photo_larger_than_the_bound_is_dropped_and_counted(harness):
    async def main():
        async with harness.gateway(media_max_bytes=5_000) as (gw, port):
            t = await harness.terminal(port, package_bytes=1000)
            await t.upload(tiny_jpeg(9000))
            await harness.until(lambda: gw.stats.media_dropped)
            await asyncio.sleep(0.2)
            await t.close()
            return gw
    gw = asyncio.run(main())
    assert gw.stats.media_dropped >= 1 and gw.stats.media_items == 0
    assert gw.uploads.bytes == 0


def test_without_a_position_the_photo_has_no_coordinates_and_2011_is_unsupported(harness):
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (gw, port):
            nowhere = Location(0, 0x0000, 0.0, 0.0, 0, 0.0, 0, WHEN)
            t = await harness.terminal(port, location=nowhere)
            media_id = await t.upload()
            await t.wait_uploaded(media_id)
            old = await harness.terminal(port, legacy_2011=True)
            [frame] = old.t.media_upload(media.MediaUpload(media.MediaEvent(1, 0, 0, 1, 1),
                                                           PLACE, tiny_jpeg(100)))
            _, body = await old.request(frame)
            await harness.until(lambda: collector.on("media"))
            await t.close()
            await old.close()
            return gw, collector, codec.decode_general_reply(body)[2]

    _gw, collector, old_result = asyncio.run(main())
    [(header, _)] = [split_media(p) for p in collector.on("media")]
    assert "lon" not in header and "lat" not in header and header["ts"] == WHEN.timestamp() * 1e3
    assert old_result == codec.UNSUPPORTED


def test_the_alarm_word_of_a_report_without_a_position_is_published(harness):
    async def main():
        collector = harness.collector()
        async with harness.gateway() as (gw, port):
            t = await harness.terminal(port)
            unpositioned = Location(0x0120, 0x0000, 0.0, 0.0, 0, 0.0, 0, WHEN)
            quiet = Location(0, 0x0000, 0.0, 0.0, 0, 0.0, 0, WHEN)
            assert await t.report(unpositioned) == codec.OK
            assert await t.report(quiet) == codec.OK, "no alarm: nothing to publish"
            later = Location(0x0020, 0, 0.0, 0.0, 0, 0.0, 0, WHEN.replace(minute=1))
            _, body = await t.request(t.t.batch([PLACE, later], blind_area=True))
            assert codec.decode_general_reply(body)[2] == codec.OK
            await harness.until(lambda: len(collector.on("alarm")) == 2)
            await asyncio.sleep(0.2)
            await t.close()
            return gw, collector

    gw, collector = asyncio.run(main())
    alarms = [orjson.loads(p) for p in collector.on("alarm")]
    assert alarms == [{"v": 1, "ts": int(WHEN.timestamp() * 1000), "alarm": 0x0120},
                      {"v": 1, "ts": int(WHEN.timestamp() * 1000) + 60_000, "alarm": 0x0020}]
    assert len(collector.on("telemetry/batch")) == 1, "the positioned one as backfill"
    assert gw.stats.alarms == 2 and gw.stats.unpositioned == 3


def test_a_photo_the_broker_did_not_acknowledge_is_not_answered_until_it_is(run_dir,
                                                                           harness):
    """Nothing answered complete is lost: with the broker down the terminal gets no 0x8800;
    the gateway keeps the photo and publishes it once the broker is back (then answers)."""
    from devservices.mosquitto import PrivateMosquitto

    broker = PrivateMosquitto(run_dir / "gw-media-outage").start()
    harness.port = broker.port

    async def main():
        async with harness.gateway(publish_timeout_s=1.0, media_resend_after_s=0.5,
                                   media_resend_tries=30) as (gw, port):
            t = await harness.terminal(port)
            broker.stop()
            await harness.until(lambda: not gw.publisher.client.is_connected(), 10)
            media_id = await t.upload()
            await asyncio.sleep(1.5)
            assert t.uploaded == [] and gw.stats.publish_failures >= 1
            assert len(gw.uploads) == 1, "kept, complete, for another try"
            broker.start()
            collector = harness.collector()
            await t.wait_uploaded(media_id, timeout_s=20)
            await harness.until(lambda: collector.on("media"))
            await t.close()
            return gw, collector

    try:
        gw, collector = asyncio.run(main())
    finally:
        broker.stop()
    assert len(collector.on("media")) == 1 and gw.stats.media_items == 1


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), size=st.integers(1, 200),
       order=st.randoms(use_true_random=False), repeats=st.lists(st.integers(0, 40)))
def test_any_order_and_repetition_of_packages_gives_the_same_bytes(data, size, order,
                                                                  repeats):
    parts = [data[i:i + size] for i in range(0, len(data), size)][:256]
    whole = b"".join(parts)
    arrivals = list(range(1, len(parts) + 1)) + [1 + r % len(parts) for r in repeats]
    order.shuffle(arrivals)
    buffer = UploadBuffer(max_pending=2, max_bytes=1 << 20)
    owner = object()
    completions = 0
    for k, index in enumerate(arrivals):
        header = Header(media.UPLOAD, "013800000001", (500 + index - 1) & 0xFFFF, None, 0,
                        len(parts), index)
        upload, _ = buffer.add(owner, header, parts[index - 1], float(k))
        assert upload is not None
        assert buffer.bytes == upload.size <= len(whole)
        if upload.complete:
            completions += 1
            assert upload.body() == whole and upload.missing() == []
            buffer.finish(upload)
            break
        assert set(upload.missing()) == set(range(1, len(parts) + 1)) - set(upload.parts)
    assert completions == 1 and buffer.bytes == 0 and len(buffer) == 0


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(1, 4),
                              st.integers(1, 900)), max_size=80))
def test_the_upload_buffer_never_exceeds_its_bounds(ops):
    dropped: list = []
    buffer = UploadBuffer(max_pending=3, max_bytes=4000,
                          on_drop=lambda upload, why: dropped.append(upload))
    owners = [object() for _ in range(4)]
    for k, (who, item, index, n) in enumerate(ops):
        header = Header(media.UPLOAD, "013800000001", (item * 10 + index) & 0xFFFF, None, 0,
                        4, index)
        buffer.add(owners[who], header, bytes(n), float(k))
        assert buffer.bytes <= 4000
        assert buffer.bytes == sum(u.size for u in buffer._uploads.values())
        for owner in owners:
            assert sum(1 for u in buffer._uploads.values() if u.owner is owner) <= 3
    for owner in owners:
        buffer.drop_owner(owner, "closed")
    assert buffer.bytes == 0 and len(buffer) == 0


def test_resent_packages_keep_their_serials_and_indexes():
    t = Terminal("013800000009", 1)
    upload = media.MediaUpload(media.MediaEvent(9, 0, 0, 0, 1), PLACE, tiny_jpeg(2500))
    frames = t.media_upload(upload, 1000)
    headers = [codec.decode_frame(f[1:-1]).header for f in frames]
    assert [(h.serial, h.package_total, h.package_index) for h in headers] == \
        [(1, 3, 1), (2, 3, 2), (3, 3, 3)]
    assert t.resend(9, [3, 1]) == [frames[2], frames[0]]
    assert t.serial == 3, "a resend takes no new serial"
    body = b"".join(codec.decode_frame(f[1:-1]).body for f in frames)
    assert media.decode_upload(body).data == tiny_jpeg(2500)


def test_muckwatch_gateway_takes_photos_with_its_settings(broker, run_dir, tmp_path):
    """The gateway as users run it: the [gateway] media settings reach it, a photo is
    published and the counters say so."""
    from gateway.terminal import SimulatedTerminal

    log_path = run_dir / "gateway-media.log"
    root = f"gwm{os.getpid()}/v1"
    env = {**os.environ, "MUCKWATCH_MQTT_TOPIC_ROOT": root,
           "MUCKWATCH_GATEWAY_CLIENT_ID": f"gw-media-{os.getpid()}",
           "MUCKWATCH_GATEWAY_MEDIA_RESEND_AFTER_S": "0.2",
           "MUCKWATCH_GATEWAY_MEDIA_RESEND_TRIES": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "muckwatch", "gateway", "--listen", "127.0.0.1:0",
             "--mqtt", f"mqtt://127.0.0.1:{broker.port}"], stdout=subprocess.PIPE,
            stderr=log, text=True, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"listening on 127.0.0.1:(\d+)", log_path.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)

        async def main():
            good = SimulatedTerminal("013900000771", package_bytes=700)
            await good.connect("127.0.0.1", int(m.group(1)))
            await good.wait_uploaded(await good.upload(), 10)
            bad = SimulatedTerminal("013900000772", drop={2}, never_complete=True)
            await bad.connect("127.0.0.1", int(m.group(1)))
            await bad.upload()
            deadline = time.monotonic() + 10
            while "given up" not in log_path.read_text() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await good.close()
            await bad.close()
            return bad
        bad = asyncio.run(main())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    stats = json.loads(out)
    assert (stats["media_items"], stats["media_events"], stats["media_incomplete"]) == (1, 2, 1)
    assert len(bad.resend_requests) == 2, "at the last package, then once (media_resend_tries)"
