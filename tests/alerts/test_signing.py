"""Standard Webhooks signatures: the published test vector, round trips, and every way a
forged or replayed delivery is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.signing import SignatureError, headers, new_secret, secret_key, sign, verify

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'


def test_the_published_test_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    verify(VECTOR_SECRET, {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS),
                           "webhook-signature": "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJE"
                                                "LVlNIOLJ1OE="}, VECTOR_BODY, now=VECTOR_TS)


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=2000), webhook_id=st.text(min_size=1, max_size=40).filter(
    lambda s: "." not in s and s.strip() == s and s.isprintable()),
    skew=st.integers(-299, 299), flip=st.integers(0, 1999))
def test_round_trip_and_any_tampering_fails(body, webhook_id, skew, flip):
    secret = new_secret()
    h = headers(secret, webhook_id, body, timestamp=1_800_000_000)
    verify(secret, h, body, now=1_800_000_000 + skew)
    if body:
        k = flip % len(body)
        tampered = body[:k] + bytes([body[k] ^ 1]) + body[k + 1:]
        with pytest.raises(SignatureError, match="altered"):
            verify(secret, h, tampered, now=1_800_000_000)
    with pytest.raises(SignatureError, match="altered"):
        verify(new_secret(), h, body, now=1_800_000_000)


def test_stale_or_future_timestamps_are_replays():
    secret = new_secret()
    h = headers(secret, "msg_1", b"{}", timestamp=1_800_000_000)
    for now in (1_800_000_000 + 301, 1_800_000_000 - 301):
        with pytest.raises(SignatureError, match="stale or replayed"):
            verify(secret, h, b"{}", now=now)


def test_missing_headers_and_bad_secrets_are_named():
    with pytest.raises(SignatureError, match=r"missing header.*webhook-signature"):
        verify(new_secret(), {"Webhook-Id": "a", "Webhook-Timestamp": "1"}, b"")
    with pytest.raises(SignatureError, match="starts with 'whsec_'"):
        secret_key("abc")
    with pytest.raises(SignatureError, match="not base64"):
        secret_key("whsec_!!!")
    with pytest.raises(SignatureError, match="shorter than 16"):
        secret_key("whsec_YWJj")
