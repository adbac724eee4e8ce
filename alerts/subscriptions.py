"""Who gets which alerts: a subscription is a receiver URL, its secret and filters.

Subscriptions live in the ``alert_subscriptions`` table (operators add them there or in the
config file's ``[[alerts.subscriptions]]``, which is synced into the table at start). Filters
are ANDed; an empty filter lets everything through:

* ``rules`` — rule names; ``min_severity`` — 1…3;
* ``companies`` — company ids; ``zones`` — restricted-zone fence ids (a RESTRICTED_ZONE
  violation in one of them);
* ``area`` — a GeoJSON (Multi)Polygon in WGS-84, e.g. a district boundary: the violation's
  start lies in it;
* ``events`` — ``opened``, ``closed``, ``retracted`` (default) and optionally ``updated``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import shapely

from alerts.signing import SignatureError, secret_key
from domain.events import RULES

EVENTS = ("opened", "updated", "closed", "retracted")
DEFAULT_EVENTS = ("opened", "closed", "retracted")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class SubscriptionError(ValueError):
    """A subscription is unusable; names it and the problem."""


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    secret: str = field(repr=False)
    rules: tuple[str, ...] = ()
    min_severity: int = 1
    companies: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    area: Any = None  # shapely geometry or None
    events: tuple[str, ...] = DEFAULT_EVENTS
    enabled: bool = True

    def wants(self, event: str, rule: str, severity: int, company: str | None,
              fence: str | None, lon: float, lat: float) -> bool:
        return (self.enabled and event in self.events
                and (not self.rules or rule in self.rules)
                and severity >= self.min_severity
                and (not self.companies or company in self.companies)
                and (not self.zones or fence in self.zones)
                and (self.area is None or bool(shapely.contains_xy(self.area, lon, lat))))

    def filters(self) -> dict:
        """The filters as stored in ``alert_subscriptions.filters``."""
        out: dict[str, Any] = {"events": list(self.events), "min_severity": self.min_severity}
        for key in ("rules", "companies", "zones"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.area is not None:
            out["area"] = json.loads(shapely.to_geojson(self.area))
        return out

    @classmethod
    def from_config(cls, data: dict, where: str = "subscription") -> Subscription:
        """From a ``[[alerts.subscriptions]]`` table (or a row: id, url, secret, enabled and
        the ``filters`` keys); every problem is named."""
        data = dict(data)
        filters = data.pop("filters", None) or {}
        data = {**filters, **data}
        sid = data.get("id")
        if not isinstance(sid, str) or not _ID.fullmatch(sid):
            raise SubscriptionError(f"{where}: id must be 1–64 of A–Z a–z 0–9 _ . : -")
        where = f"subscription {sid!r}"
        known = {"id", "url", "secret", "secret_env", "rules", "min_severity", "companies",
                 "zones", "area", "events", "enabled"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SubscriptionError(f"{where}: unknown key(s) {', '.join(unknown)} "
                                    f"(known: {', '.join(sorted(known))})")
        url = data.get("url")
        if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
            raise SubscriptionError(f"{where}: url must be http(s)://host…")
        secret = data.get("secret")
        if data.get("secret_env"):
            secret = os.environ.get(str(data["secret_env"]))
            if not secret:
                raise SubscriptionError(f"{where}: environment variable "
                                        f"{data['secret_env']} (secret_env) is not set")
        if not isinstance(secret, str):
            raise SubscriptionError(f"{where}: secret (whsec_…) or secret_env is required")
        try:
            secret_key(secret)
        except SignatureError as e:
            raise SubscriptionError(f"{where}: {e}") from None

        def names(key: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SubscriptionError(f"{where}: {key} must be a list of strings")
            if allowed is not None:
                bad = [v for v in value if v not in allowed]
                if bad:
                    raise SubscriptionError(f"{where}: {key}: unknown {', '.join(bad)} "
                                            f"(one of {', '.join(allowed)})")
            return tuple(value)

        severity = data.get("min_severity", 1)
        if not isinstance(severity, int) or isinstance(severity, bool) or \
                not 1 <= severity <= 3:
            raise SubscriptionError(f"{where}: min_severity must be 1, 2 or 3")
        area = data.get("area")
        if area is not None:
            try:
                area = shapely.from_geojson(json.dumps(area) if not isinstance(area, str)
                                            else area)
            except Exception:
                raise SubscriptionError(f"{where}: area is not GeoJSON") from None
            if area.geom_type not in ("Polygon", "MultiPolygon") or not area.is_valid:
                raise SubscriptionError(f"{where}: area must be a valid GeoJSON (Multi)Polygon")
            shapely.prepare(area)
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise SubscriptionError(f"{where}: enabled must be true or false")
        return cls(id=sid, url=url, secret=secret, rules=names("rules", RULES),
                   min_severity=severity, companies=names("companies"),
                   zones=names("zones"), area=area,
                   events=names("events", EVENTS) or DEFAULT_EVENTS, enabled=enabled)


def load_from_db(conn) -> list[Subscription]:
    """Every subscription in the table (enabled or not), sync connection."""
    rows = conn.execute("SELECT id, url, secret, filters, enabled FROM alert_subscriptions"
                        " ORDER BY id").fetchall()
    return [Subscription.from_config({"id": r[0], "url": r[1], "secret": r[2],
                                      "filters": r[3], "enabled": r[4]}) for r in rows]


async def load_from_db_async(conn) -> list[Subscription]:
    cur = await conn.execute("SELECT id, url, secret, filters, enabled FROM alert_subscriptions"
                             " ORDER BY id")
    return [Subscription.from_config({"id": r[0], "url": r[1], "secret": r[2],
                                      "filters": r[3], "enabled": r[4]})
            for r in await cur.fetchall()]


def save(conn, subscription: Subscription) -> None:
    """Insert or update one subscription (sync connection; the caller commits)."""
    from psycopg.types.json import Jsonb

    conn.execute(
        "INSERT INTO alert_subscriptions (id, url, secret, filters, enabled)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
        " secret = excluded.secret, filters = excluded.filters, enabled = excluded.enabled",
        (subscription.id, subscription.url, subscription.secret,
         Jsonb(subscription.filters()), subscription.enabled))
