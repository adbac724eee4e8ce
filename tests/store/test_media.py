"""Photos: the blob stores (a local directory; S3 against a real moto_server) and the media
rows the batch writer links to violations, read back as the API reads them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from domain.batches import DeviceStatus, FixBatch, Rejects
from domain.settings import MediaSettings
from store.database import DatabaseError, Store
from store.media import (
    BlobStoreError,
    LocalBlobStore,
    MediaMissing,
    S3BlobStore,
    blob_store,
    content_type,
    media_by_id,
    media_by_id_sync,
    media_for_violation,
    media_for_violation_sync,
)
from store.writer import MediaRow

T0 = 1_790_000_000_000
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(50_000) + b"\xff\xd9"
SHA = hashlib.sha256(PHOTO).hexdigest()


# --- the local directory -----------------------------------------------------------------------

def test_local_store_writes_by_hash_and_reads_back(tmp_path):
    store = LocalBlobStore(tmp_path / "media")
    store.put(SHA, "jpeg", PHOTO)
    path = tmp_path / "media" / SHA[:2] / f"{SHA}.jpeg"
    assert path.read_bytes() == PHOTO and store.get(SHA, "jpeg") == PHOTO
    assert store.name == "local" and store.path(SHA, "jpeg") == path
    assert oct(path.stat().st_mode & 0o777) == oct(0o640), "evidence is not world-readable"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left"


def test_local_put_is_idempotent_and_repairs_a_short_file(tmp_path):
    store = LocalBlobStore(tmp_path)
    store.put(SHA, "jpeg", PHOTO)
    path = store.path(SHA, "jpeg")
    before = path.stat()
    store.put(SHA, "jpeg", PHOTO)  # a redelivery: nothing rewritten
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    path.write_bytes(PHOTO[:100])  # not something put leaves, but should it be there …
    store.put(SHA, "jpeg", PHOTO)
    assert store.get(SHA, "jpeg") == PHOTO


def test_local_put_is_atomic_when_the_write_fails(tmp_path):
    """A failed write leaves no temporary file behind and raises BlobStoreError (which the
    ingest treats like a database outage: the batch is retried, unacked)."""
    store = LocalBlobStore(tmp_path)
    blocker = store.path(SHA, "jpeg")
    blocker.mkdir(parents=True)  # the final name is taken by a directory: rename fails
    (blocker / "x").touch()
    with pytest.raises(BlobStoreError, match=f"cannot write {SHA}.jpeg"):
        store.put(SHA, "jpeg", PHOTO)
    assert sorted(p.name for p in blocker.parent.iterdir()) == [blocker.name]
    assert isinstance(BlobStoreError("x"), DatabaseError)


def test_local_put_is_atomic_under_concurrent_writers(tmp_path):
    """Two workers writing the same photo at once (a redelivery racing the original): every
    reader sees all of it or nothing."""
    from concurrent.futures import ThreadPoolExecutor

    store = LocalBlobStore(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.put(SHA, "jpeg", PHOTO), range(16)))
    assert store.get(SHA, "jpeg") == PHOTO
    assert [p.name for p in (tmp_path / SHA[:2]).iterdir()] == [f"{SHA}.jpeg"]


def test_local_store_refuses_wrong_names_and_wrong_bytes(tmp_path):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(MediaMissing):
        store.get(SHA, "jpeg")
    with pytest.raises(ValueError, match="hashes to"):
        store.put(SHA, "jpeg", PHOTO + b"x")
    for sha, fmt in ((SHA.upper(), "jpeg"), ("../" + SHA[3:], "jpeg"), (SHA, "../x"),
                     (SHA, "")):
        with pytest.raises(ValueError):
            store.get(sha, fmt)
    assert list(tmp_path.iterdir()) == []


def test_content_types_and_store_choice(tmp_path):
    assert content_type("jpeg") == "image/jpeg" and content_type("wav") == "audio/wav"
    assert content_type("xyz") == "application/octet-stream"
    local = blob_store(MediaSettings(dir=str(tmp_path)))
    assert isinstance(local, LocalBlobStore) and local.directory == tmp_path
    assert blob_store(MediaSettings(dir=str(tmp_path))) is local, "one per configuration"


# --- S3, against a real moto_server ----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    pytest.importorskip("moto", reason="moto[server] is a dev dependency (pyproject.toml)")
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) \
        or shutil.which("moto_server")
    assert server, "moto is installed but its moto_server script is not"
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    log.close()


def s3_settings(endpoint: str, bucket: str, prefix: str = "media/") -> MediaSettings:
    return MediaSettings(s3_endpoint=endpoint, s3_bucket=bucket, s3_region="us-east-1",
                         s3_access_key="test", s3_secret_key="test", s3_prefix=prefix)


def test_s3_store_puts_by_hash_and_reads_back(s3_endpoint):
    bucket = f"muck-{uuid.uuid4().hex[:8]}"
    store = blob_store(s3_settings(s3_endpoint, bucket, prefix="city/photos/"))
    assert isinstance(store, S3BlobStore) and store.name == "s3"
    store.client.create_bucket(Bucket=bucket)
    store.put(SHA, "jpeg", PHOTO)
    store.put(SHA, "jpeg", PHOTO)  # a redelivery: the same object again
    assert store.get(SHA, "jpeg") == PHOTO
    listed = store.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"city/photos/{SHA}.jpeg"]
    head = store.client.head_object(Bucket=bucket, Key=f"city/photos/{SHA}.jpeg")
    assert head["ContentType"] == "image/jpeg" and head["Metadata"] == {"sha256": SHA}
    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(MediaMissing, match=other):
        store.get(other, "jpeg")


def test_s3_store_errors_say_where(s3_endpoint):
    store = S3BlobStore(s3_settings(s3_endpoint, "no-such-bucket"))
    with pytest.raises(BlobStoreError, match=r"s3 bucket 'no-such-bucket' at http://127"):
        store.put(SHA, "jpeg", PHOTO)
    closed = S3BlobStore(s3_settings(f"http://127.0.0.1:{_free_port()}", "b"))
    with pytest.raises(BlobStoreError, match="cannot read"):
        closed.get(SHA, "jpeg")


# --- media rows: linking, redelivery, the API's reads -------------------------------------------

def row(device: str, *, taken: int, terminal_id: int = 1, sha: str = SHA,
        command: str | None = None) -> MediaRow:
    return MediaRow(device_id=device, terminal_id=terminal_id, sha256=sha, size=len(PHOTO),
                    media_type="image", media_format="jpeg", event=0, channel=1,
                    taken_ms=taken, lon=114.05, lat=22.54, storage="local",
                    command_id=command, received_ms=taken + 900)


def write_media(dsn: str, rows: list[MediaRow]):
    async def go():
        store = Store(dsn)
        try:
            return await store.write(FixBatch.empty(), Rejects(), DeviceStatus(), [],
                                     media=rows)
        finally:
            await store.close()
    return asyncio.run(go())


def violation(db: psycopg.Connection, device: str, vid: str, start: int, end: int | None,
              state: str = "open") -> None:
    db.execute(
        "INSERT INTO violations (id, rule, device_id, start_ts, end_ts, state) VALUES"
        " (%s, 'OFF_ROUTE', %s, timestamptz 'epoch' + %s * interval '1 millisecond',"
        " timestamptz 'epoch' + %s * interval '1 millisecond', %s)",
        (vid, device, start, end, state))


def linked(db: psycopg.Connection, device: str) -> dict[int, str | None]:
    return dict(db.execute("SELECT terminal_id, violation_id FROM media WHERE device_id = %s",
                           (device,)).fetchall())


def test_media_links_to_the_capture_commands_violation_first(dsn, db, device_id):
    violation(db, device_id, f"{device_id}-A", T0, T0 + 60_000, "closed")
    violation(db, device_id, f"{device_id}-B", T0 + 30_000, None)
    db.execute("INSERT INTO terminal_commands (id, device_id, kind, requested_by,"
               " violation_id, timeout_s) VALUES (%s, %s, 'capture', 'rule:OFF_ROUTE', %s, 60)",
               (f"cmd-{device_id}", device_id, f"{device_id}-A"))
    db.execute("INSERT INTO terminal_commands (id, device_id, kind, requested_by, timeout_s)"
               " VALUES (%s, 'someone-else', 'capture', 'x', 60)", (f"other-{device_id}",))
    shas = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    report = write_media(dsn, [
        # asked for by the capture command of violation A, taken while B also runs
        row(device_id, taken=T0 + 45_000, terminal_id=1, sha=shas[0],
            command=f"cmd-{device_id}"),
        # no command: the violation whose span holds it, the most recent start of two
        row(device_id, taken=T0 + 45_000, terminal_id=2, sha=shas[1]),
        row(device_id, taken=T0 + 10_000, terminal_id=3, sha=shas[2]),
        row(device_id, taken=T0 - 1, terminal_id=4, sha=shas[3]),  # before any: none
        # a command id of another device links nothing through the command
        row(device_id, taken=T0 - 5, terminal_id=5, sha=shas[4], command=f"other-{device_id}"),
    ])
    assert (report.media_inserted, report.media_duplicate) == (5, 0)
    assert linked(db, device_id) == {1: f"{device_id}-A", 2: f"{device_id}-B",
                                     3: f"{device_id}-A", 4: None, 5: None}
    stored = db.execute("SELECT command_id, storage, bytes, extract(epoch FROM taken_at)"
                        " * 1000, lon FROM media WHERE device_id = %s AND terminal_id = 1",
                        (device_id,)).fetchone()
    assert stored == (f"cmd-{device_id}", "local", len(PHOTO), T0 + 45_000, 114.05)


def test_retracted_violations_get_no_photos_and_open_ones_run_on(dsn, db, device_id):
    violation(db, device_id, f"{device_id}-R", T0, T0 + 60_000, "retracted")
    violation(db, device_id, f"{device_id}-O", T0 - 3_600_000, None)
    write_media(dsn, [row(device_id, taken=T0 + 1000)])
    assert linked(db, device_id) == {1: f"{device_id}-O"}


def test_redelivered_media_is_kept_once(dsn, db, device_id):
    first = write_media(dsn, [row(device_id, taken=T0)])
    again = write_media(dsn, [row(device_id, taken=T0), row(device_id, taken=T0)])
    assert (first.media_inserted, again.media_inserted, again.media_duplicate) == (1, 0, 2)
    # the same bytes under another multimedia id (a second shot) is a second item
    write_media(dsn, [row(device_id, taken=T0, terminal_id=2)])
    assert db.execute("SELECT count(*) FROM media WHERE device_id = %s",
                      (device_id,)).fetchone()[0] == 2


def test_the_apis_reads_scope_and_shape(dsn, db, device_id):
    company = f"C-{device_id}"
    db.execute("INSERT INTO companies (id, name) VALUES (%s, 'Test Haulage')", (company,))
    db.execute("INSERT INTO vehicles (plate, device_id, company_id) VALUES (%s, %s, %s)",
               (f"P-{device_id}", device_id, company))
    vid = f"{device_id}-V"
    violation(db, device_id, vid, T0, T0 + 60_000, "closed")
    violation(db, device_id, vid, T0 + 600_000, None)  # the same id, a second row
    db.execute("INSERT INTO terminal_commands (id, device_id, kind, requested_by,"
               " violation_id, timeout_s) VALUES (%s, %s, 'capture', 'rule:X', %s, 60)",
               (f"cmd-{device_id}", device_id, vid))
    shas = [hashlib.sha256(bytes([i])).hexdigest() for i in range(4)]
    write_media(dsn, [
        row(device_id, taken=T0 + 5_000, terminal_id=1, sha=shas[0]),  # in the first row
        row(device_id, taken=T0 + 900_000, terminal_id=2, sha=shas[1]),  # the open row
        row(device_id, taken=T0 + 300_000, terminal_id=3, sha=shas[2]),  # between: not it
        # taken before, but asked for by the violation's own capture command
        row(device_id, taken=T0 - 5_000, terminal_id=4, sha=shas[3],
            command=f"cmd-{device_id}")])
    rows = media_for_violation_sync(db, vid)
    assert [r["terminal_id"] for r in rows] == [4, 1, 2]
    assert set(rows[0]) == {"id", "device_id", "company_id", "terminal_id", "sha256", "bytes",
                            "media_type", "media_format", "event", "channel", "taken_at",
                            "lon", "lat", "storage", "command_id", "violation_id"}
    assert rows[0]["company_id"] == company and rows[0]["violation_id"] == vid
    assert rows[0]["command_id"] == f"cmd-{device_id}" and rows[0]["sha256"] == shas[3]
    assert rows[1]["taken_at"].startswith("2026-09-21T") and rows[1]["bytes"] == len(PHOTO)
    assert media_for_violation_sync(db, "no-such-violation") == []
    one = media_by_id_sync(db, rows[1]["id"])
    assert one == rows[1] and media_by_id_sync(db, -1) is None

    async def read_async():
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return (await media_for_violation(conn, vid), await media_by_id(conn, rows[2]["id"]),
                    await media_by_id(conn, 2**40))
    assert asyncio.run(read_async()) == (rows, rows[2], None)
