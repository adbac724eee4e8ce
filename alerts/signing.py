"""Standard Webhooks signatures: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``.

The secret is ``whsec_`` + base64 of the key bytes. Receivers verify the signature *and* that
the timestamp is recent (default ±5 minutes), which stops replays of captured requests;
``webhook-id`` is their idempotency key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

PREFIX = "whsec_"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """The delivery is not authentic or not fresh; says which check failed."""


def new_secret() -> str:
    """A fresh random secret (32 bytes)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise SignatureError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error:
        raise SignatureError("the webhook secret is not base64 after 'whsec_'") from None
    if len(key) < 16:
        raise SignatureError("the webhook secret is shorter than 16 bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body),
            "content-type": "application/json"}


def verify(secret: str, headers: dict, body: bytes, *, now: float | None = None,
           tolerance_s: int = TOLERANCE_S) -> None:
    """Raise SignatureError unless ``body`` with these headers was signed with ``secret``
    within ``tolerance_s`` of ``now``. Header names are case-insensitive; the signature
    header may list several space-separated signatures (key rotation)."""
    h = {k.lower(): v for k, v in headers.items()}
    missing = [k for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
               if not h.get(k)]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(h["webhook-timestamp"])
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"webhook-timestamp is {now - timestamp:+.0f} s from now "
                             f"(tolerance {tolerance_s} s): stale or replayed")
    expected = sign(secret, h["webhook-id"], timestamp, body)
    for candidate in h["webhook-signature"].split():
        if hmac.compare_digest(candidate, expected):
            return
    raise SignatureError("no signature matches: wrong secret or the body was altered")
