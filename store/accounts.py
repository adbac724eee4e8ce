"""API accounts: who may call ``muckwatch serve``, in which role and scope.

A token is shown once, when it is made; the table keeps only its SHA-256. The tokens are 32
random bytes, so an unsalted hash is safe (nothing to guess) and lets a request be looked up
by one indexed equality.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

ROLES = ("officer", "supervisor", "company", "association", "public", "analyst",
         "site_operator")
TOKEN_PREFIX = "mwt_"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    role: str
    company_id: str | None
    districts: tuple[str, ...]
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    sites: tuple[str, ...] = ()  # a site operator's disposal sites / transfer docks


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check(conn: psycopg.Connection, role: str, company: str | None,
           districts: tuple[str, ...], sites: tuple[str, ...] = ()) -> None:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "company":
        if not company:
            raise ValueError("a company account needs --company")
        if conn.execute("SELECT 1 FROM companies WHERE id = %s", (company,)).fetchone() is None:
            raise ValueError(f"company {company!r} is not in the companies table "
                             "(muckwatch import city DIR)")
    elif company:
        raise ValueError(f"--company is for company accounts, not {role}")
    if role == "officer" and not districts:
        raise ValueError("an officer account needs at least one --district")
    if districts and role != "officer":
        raise ValueError(f"--district scopes officer accounts, not {role}")
    known = {r[0] for r in conn.execute(
        "SELECT id FROM fences WHERE kind = 'district' AND id = ANY(%s)", (list(districts),))}
    unknown = sorted(set(districts) - known)
    if unknown:
        raise ValueError(f"district(s) {', '.join(unknown)} are not in the fences table "
                         "(kind 'district' of the city bundle)")
    if role == "site_operator" and not sites:
        raise ValueError("a site_operator account needs at least one --site")
    if sites and role != "site_operator":
        raise ValueError(f"--site scopes site_operator accounts, not {role}")
    receiving = {r[0] for r in conn.execute(
        "SELECT id FROM fences WHERE kind IN ('disposal_site', 'transfer_dock')"
        " AND id = ANY(%s)", (list(sites),))}
    wrong = sorted(set(sites) - receiving)
    if wrong:
        raise ValueError(f"site(s) {', '.join(wrong)} are not disposal sites or transfer "
                         "docks of the fences table (the city bundle)")


def add_account(conn: psycopg.Connection, account_id: str, role: str, *,
                company: str | None = None, districts: tuple[str, ...] = (),
                sites: tuple[str, ...] = ()) -> str:
    """Create an account and return its token (the only time it is seen)."""
    if not account_id or len(account_id) > 64 or not account_id.isprintable():
        raise ValueError("an account id is 1–64 printable characters")
    sites = tuple(dict.fromkeys(sites))
    _check(conn, role, company, districts, sites)
    token = new_token()
    with conn.transaction():
        if conn.execute("SELECT 1 FROM api_accounts WHERE id = %s",
                        (account_id,)).fetchone() is not None:
            raise ValueError(f"account {account_id!r} exists (revoke it, or rotate its token)")
        conn.execute("INSERT INTO api_accounts (id, role, company_id, districts, sites,"
                     " token_hash) VALUES (%s, %s, %s, %s, %s, %s)",
                     (account_id, role, company, list(districts), list(sites),
                      token_hash(token)))
    return token


def rotate_token(conn: psycopg.Connection, account_id: str) -> str:
    """A new token for an active account; the old one stops working at once."""
    token = new_token()
    with conn.transaction():
        cur = conn.execute("UPDATE api_accounts SET token_hash = %s"
                           " WHERE id = %s AND revoked_at IS NULL",
                           (token_hash(token), account_id))
        if cur.rowcount == 0:
            raise ValueError(f"no active account {account_id!r}")
    return token


def revoke(conn: psycopg.Connection, account_id: str) -> bool:
    """Revoke an account; False when there is no active account of that id."""
    with conn.transaction():
        cur = conn.execute("UPDATE api_accounts SET revoked_at = now()"
                           " WHERE id = %s AND revoked_at IS NULL", (account_id,))
    return cur.rowcount == 1


def list_accounts(conn: psycopg.Connection) -> list[Account]:
    rows = conn.execute("SELECT id, role, company_id, districts, created_at, revoked_at, sites"
                        " FROM api_accounts ORDER BY id").fetchall()
    return [Account(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], tuple(r[6])) for r in rows]


def account_for_token(conn: psycopg.Connection, token: str) -> Account | None:
    """The active account holding ``token``, or None."""
    row = conn.execute("SELECT id, role, company_id, districts, sites FROM api_accounts"
                       " WHERE token_hash = %s AND revoked_at IS NULL",
                       (token_hash(token),)).fetchone()
    return None if row is None else Account(row[0], row[1], row[2], tuple(row[3]),
                                            sites=tuple(row[4]))
