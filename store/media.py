"""Photos (and other items) from terminals: their bytes in a blob store, their rows in ``media``.

Why content-addressed: a terminal resends an upload whenever a package went missing, the
broker redelivers whatever was not acked, and several trucks' cameras never produce the same
bytes — so the SHA-256 of the bytes is the one name that makes every write idempotent and
lets anyone check later that an evidence photo is what was received (docs/evidence.md).

The ingest writes each item's bytes here *before* the batch's transaction commits, and acks
the broker only after it: a crash in between leaves bytes without a row, and the redelivery
writes the same bytes under the same name again. So a row never names missing bytes.

Stores: a local directory (``<dir>/<sha[:2]>/<sha256>.<format>``, written to a temporary
file, fsynced and renamed, so a reader never sees half a photo) or an S3-compatible object
store (``<prefix><sha256>.<format>``). The read queries for the API are here too (constant
SQL, async for the pipeline's side, sync for the API's connections).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from domain.settings import MediaSettings
from store.database import DatabaseError

SHA256 = re.compile(r"[0-9a-f]{64}")
FORMAT = re.compile(r"[a-z0-9]{1,8}")

_CONTENT_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png",
                  "tif": "image/tiff", "tiff": "image/tiff", "mp3": "audio/mpeg",
                  "wav": "audio/wav", "mp4": "video/mp4", "wmv": "video/x-ms-wmv",
                  "avi": "video/x-msvideo"}


class MediaMissing(LookupError):
    """The row names bytes the store does not have (deleted, or another store configured)."""


class BlobStoreError(DatabaseError):
    """The blob store could not be reached or refused a write. A DatabaseError on purpose:
    the ingest retries the batch unacked, as when PostgreSQL is down, and loses nothing."""


class BlobStore(Protocol):
    name: str  # 'local' or 's3': stored in media.storage

    def put(self, sha256: str, fmt: str, data: bytes) -> None:
        """Store ``data`` under its hash; idempotent (the same bytes again change nothing)."""

    def get(self, sha256: str, fmt: str) -> bytes:
        """The bytes, or MediaMissing."""


def content_type(fmt: str) -> str:
    """The HTTP Content-Type of a media format (JT/T 808: jpeg, tif, mp3, wav, wmv)."""
    return _CONTENT_TYPES.get(fmt, "application/octet-stream")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked(sha256: str, fmt: str) -> str:
    """``<sha256>.<format>`` after checking both, so no name ever leaves the store's place."""
    if not SHA256.fullmatch(sha256):
        raise ValueError(f"not a SHA-256 in lower-case hex: {sha256!r}")
    if not FORMAT.fullmatch(fmt):
        raise ValueError(f"not a media format (1 to 8 of a-z, 0-9): {fmt!r}")
    return f"{sha256}.{fmt}"


def _same(sha256: str, data: bytes) -> None:
    actual = sha256_hex(data)
    if actual != sha256:
        raise ValueError(f"data hashes to {actual}, not to the name it was given ({sha256})")


class LocalBlobStore:
    """``<dir>/<sha[:2]>/<sha256>.<format>``; 256 subdirectories keep each one small."""

    name = "local"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, sha256: str, fmt: str) -> Path:
        return self.directory / sha256[:2] / _checked(sha256, fmt)

    def put(self, sha256: str, fmt: str, data: bytes) -> None:
        path = self.path(sha256, fmt)
        _same(sha256, data)
        try:
            if path.stat().st_size == len(data):
                return  # written before (renamed into place whole, so it is complete)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise BlobStoreError(f"media store {self.directory}: {e}") from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{sha256[:16]}.", suffix=".part",
                                       dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    os.fchmod(f.fileno(), 0o640)  # evidence: not for every local user
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            # the rename itself must survive a power cut before the row commits
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise BlobStoreError(f"media store {self.directory}: cannot write {path.name}: "
                                 f"{e.strerror or e}") from None

    def get(self, sha256: str, fmt: str) -> bytes:
        path = self.path(sha256, fmt)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise MediaMissing(f"{path} does not exist") from None


class S3BlobStore:
    """An S3-compatible object store (AWS, MinIO, Ceph, an OSS/COS gateway …):
    ``<prefix><sha256>.<format>`` in one bucket. boto3's clients are thread-safe, and every
    call here runs on a worker thread (the ingest) or in a sync request handler (the API)."""

    name = "s3"

    def __init__(self, settings: MediaSettings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = settings.s3_bucket, settings.s3_prefix
        self.where = f"s3 bucket {settings.s3_bucket!r}" + (
            f" at {settings.s3_endpoint}" if settings.s3_endpoint else "")
        config = Config(
            connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
            # own endpoints (MinIO …) are addressed by path, not by a bucket host name
            s3={"addressing_style": "path"} if settings.s3_endpoint else None,
            # checksums only where S3 requires them: many S3-compatible stores refuse the
            # CRC32 trailers newer SDKs send by default
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint or None, region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None, config=config)

    def key(self, sha256: str, fmt: str) -> str:
        return self.prefix + _checked(sha256, fmt)

    def put(self, sha256: str, fmt: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(sha256, fmt)
        _same(sha256, data)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                   ContentType=content_type(fmt), Metadata={"sha256": sha256})
        except (BotoCoreError, ClientError) as e:
            raise BlobStoreError(f"{self.where}: cannot write {key}: {e}") from None

    def get(self, sha256: str, fmt: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(sha256, fmt)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise MediaMissing(f"{self.where} has no {key}") from None
            raise BlobStoreError(f"{self.where}: cannot read {key}: {e}") from None
        except BotoCoreError as e:
            raise BlobStoreError(f"{self.where}: cannot read {key}: {e}") from None


_stores: dict[MediaSettings, BlobStore] = {}
_stores_lock = threading.Lock()


def blob_store(settings: MediaSettings) -> BlobStore:
    """The store ``[media]`` configures: S3 when ``s3_bucket`` is set, else the local
    directory. One per configuration, kept: an S3 client takes tens of ms to make, and the
    API asks for the store on every request."""
    with _stores_lock:
        store = _stores.get(settings)
        if store is None:
            store = S3BlobStore(settings) if settings.s3_bucket \
                else LocalBlobStore(settings.dir)
            _stores[settings] = store
        return store


# --- the API's reads --------------------------------------------------------------------------

_COLUMNS = """
SELECT m.id, m.device_id, ve.company_id, m.terminal_id, m.sha256, m.bytes, m.media_type,
       m.media_format, m.event, m.channel, m.taken_at, m.lon, m.lat, m.storage, m.command_id,
       m.violation_id
FROM media m LEFT JOIN vehicles ve ON ve.device_id = m.device_id
"""
# a violation's media: linked to it (its capture command, or the time it was taken), or of
# its device and taken while it lasted — any of its rows, an open one up to now
_FOR_VIOLATION = _COLUMNS + """
WHERE m.id IN (SELECT l.id FROM media l WHERE l.violation_id = %(violation)s
               UNION
               SELECT t.id FROM violations v
               JOIN media t ON t.device_id = v.device_id
                           AND t.taken_at BETWEEN v.start_ts AND coalesce(v.end_ts, now())
               WHERE v.id = %(violation)s)
ORDER BY m.taken_at, m.id
"""
_BY_ID = _COLUMNS + "WHERE m.id = %(id)s"


def _row(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if isinstance(out.get("taken_at"), datetime):
        out["taken_at"] = out["taken_at"].isoformat()
    return out


async def media_for_violation(conn: psycopg.AsyncConnection, violation_id: str
                              ) -> list[dict[str, Any]]:
    """The media of a violation, oldest first (the caller checks who may see it)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_FOR_VIOLATION, {"violation": violation_id})
        return [_row(r) for r in await cur.fetchall()]


async def media_by_id(conn: psycopg.AsyncConnection, media_id: int) -> dict[str, Any] | None:
    """One media row with its device's company (None if no vehicle has the device), so the
    caller can scope it; None if there is no such row."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_BY_ID, {"id": media_id})
        found = await cur.fetchone()
    return _row(found) if found is not None else None


def media_for_violation_sync(conn: psycopg.Connection, violation_id: str
                             ) -> list[dict[str, Any]]:
    """``media_for_violation`` on a sync connection (the API's)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_FOR_VIOLATION, {"violation": violation_id})
        return [_row(r) for r in cur.fetchall()]


def media_by_id_sync(conn: psycopg.Connection, media_id: int) -> dict[str, Any] | None:
    """``media_by_id`` on a sync connection (the API's)."""
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(_BY_ID, {"id": media_id}).fetchone()
    return _row(found) if found is not None else None
