"""Bearer tokens → a Principal, and the permission check every endpoint declares.

A request without an Authorization header is the anonymous public (it may read what is
published); a header with an unknown or revoked token is refused (401) rather than treated
as public, so a mistyped token never silently narrows what a client sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from api.access import MATRIX, allowed
from store.accounts import account_for_token
from store.review import Scope


@dataclass(frozen=True, slots=True)
class Principal:
    account: str  # account id, or "anonymous"
    role: str
    company: str | None = None
    districts: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()  # a site operator's disposal sites / transfer docks

    @property
    def scope(self) -> Scope:
        """The rows this caller sees: an officer their districts, a company its own (a site
        operator no violations or cases: its scope is its sites, api.manifest)."""
        if self.role == "officer":
            return Scope(districts=self.districts)
        if self.role == "company":
            return Scope(company=self.company)
        if self.role == "site_operator":
            return Scope(districts=())
        return Scope()


ANONYMOUS = Principal("anonymous", "public")


def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if header is None:
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "Authorization must be 'Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    with request.app.state.db.transaction() as conn:
        account = account_for_token(conn, token.strip())
    if account is None:
        raise HTTPException(401, "unknown or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    return Principal(account.id, account.role, account.company_id, account.districts,
                     account.sites)


def need(permission: str) -> Callable[[Request], Principal]:
    """A dependency: the caller, if its role holds ``permission`` (else 401/403)."""
    if permission not in MATRIX:
        raise KeyError(permission)

    def check(request: Request) -> Principal:
        who = authenticate(request)
        if not allowed(who.role, permission):
            if who is ANONYMOUS:
                raise HTTPException(401, f"{permission} needs a token",
                                    headers={"WWW-Authenticate": "Bearer"})
            raise HTTPException(403, f"role {who.role} may not {permission}")
        request.state.principal = who
        return who

    check.__name__ = f"need_{permission.replace('.', '_')}"
    return check
