"""``muckwatch alerts …``: what operators do with the outbox (sync connections)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from alerts.signing import SignatureError, new_secret, verify
from alerts.subscriptions import Subscription, SubscriptionError, load_from_db, save


def parse_time(text: str) -> datetime:
    """Epoch ms or ISO 8601 (a bare date or time without zone is UTC)."""
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch ms nor ISO 8601") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def sync_config(conn, tables: tuple) -> list[str]:
    """Upsert the config file's subscriptions into the table; returns their ids."""
    ids = []
    for n, table in enumerate(tables, 1):
        sub = Subscription.from_config(table, f"[[alerts.subscriptions]] #{n}")
        save(conn, sub)
        ids.append(sub.id)
    conn.commit()
    return ids


def subscribe(conn, sid: str, url: str, secret: str | None, rules: list[str],
              min_severity: int, companies: list[str], zones: list[str],
              events: list[str]) -> str:
    """Add or replace a subscription; returns its secret (generated if not given)."""
    secret = secret or new_secret()
    sub = Subscription.from_config({"id": sid, "url": url, "secret": secret, "rules": rules,
                                    "min_severity": min_severity, "companies": companies,
                                    "zones": zones, "events": events})
    save(conn, sub)
    conn.commit()
    return secret


def set_enabled(conn, sid: str, enabled: bool) -> bool:
    n = conn.execute("UPDATE alert_subscriptions SET enabled = %s, disabled_reason = CASE WHEN"
                     " %s THEN NULL ELSE 'disabled by an operator' END, updated_at = now()"
                     " WHERE id = %s", (enabled, enabled, sid)).rowcount
    conn.commit()
    return n == 1


def subscriptions_table(conn) -> list[tuple]:
    head = ("id", "enabled", "url", "filters", "disabled because")
    rows = [head]
    for sub in load_from_db(conn):
        why = conn.execute("SELECT disabled_reason FROM alert_subscriptions WHERE id = %s",
                           (sub.id,)).fetchone()[0]
        filters = {k: v for k, v in sub.filters().items()
                   if k not in ("area",)} | ({"area": "GeoJSON"} if sub.area else {})
        rows.append((sub.id, "yes" if sub.enabled else "no", sub.url,
                     ", ".join(f"{k}={v}" for k, v in filters.items()), why or ""))
    return rows


def list_rows(conn, failed_only: bool, subscription: str | None, limit: int) -> list[tuple]:
    where = ["true"]
    params: list = []
    if failed_only:
        where.append("(state IN ('failed', 'dead') OR (state = 'pending' AND attempts > 0))")
    if subscription:
        where.append("subscription_id = %s")
        params.append(subscription)
    rows = conn.execute(
        "SELECT webhook_id, subscription_id, violation_id, event, state, attempts,"
        " coalesce(last_status::text, ''), coalesce(left(last_error, 60), ''),"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"
        " CASE WHEN state = 'pending' THEN to_char(due_at AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD HH24:MI:SS') ELSE '' END"
        f" FROM alert_outbox WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s",
        (*params, limit)).fetchall()
    head = ("webhook-id", "subscription", "violation", "event", "state", "attempts",
            "status", "last error", "created (UTC)", "due (UTC)")
    return [head, *[tuple(str(c) for c in r) for r in rows]]


def replay(conn, since: datetime, until: datetime | None, subscription: str | None,
           violation: str | None) -> int:
    """Queue alerts created in [since, until) again, with the same webhook ids (receivers
    that already have them dedupe; ones that lost them get them back)."""
    where = ["created_at >= %s"]
    params: list = [since]
    if until is not None:
        where.append("created_at < %s")
        params.append(until)
    if subscription:
        where.append("subscription_id = %s")
        params.append(subscription)
    if violation:
        where.append("violation_id = %s")
        params.append(violation)
    n = conn.execute(
        "UPDATE alert_outbox SET state = 'pending', attempts = 0, due_at = now(),"
        " last_error = NULL, delivered_at = NULL"
        f" WHERE {' AND '.join(where)}", params).rowcount
    conn.commit()
    return n


def stats(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT subscription_id, CASE WHEN enabled THEN 'yes' ELSE 'no' END, pending,"
        " delivered, failed, dead, attempts, retries_before_success,"
        " coalesce(round(oldest_pending_s)::text, '-') FROM alert_delivery_stats"
        " ORDER BY subscription_id").fetchall()
    head = ("subscription", "enabled", "pending", "delivered", "failed", "dead", "attempts",
            "retries", "oldest pending (s)")
    return [head, *[tuple(str(c) for c in r) for r in rows]]


def verify_delivery(secret: str, webhook_id: str, timestamp: str, signature: str,
                    body: bytes, tolerance_s: int) -> str | None:
    """None if the delivery is authentic and fresh, else the reason it is not."""
    try:
        verify(secret, {"webhook-id": webhook_id, "webhook-timestamp": timestamp,
                        "webhook-signature": signature}, body, tolerance_s=tolerance_s)
    except SignatureError as e:
        return str(e)
    return None


def print_table(rows: list[tuple], out=sys.stdout) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(),
              file=out)


__all__ = ["SubscriptionError", "list_rows", "parse_time", "print_table", "replay", "set_enabled",
           "stats", "subscribe", "subscriptions_table", "sync_config", "verify_delivery"]
