"""Who may do what: the role × permission matrix every request is checked against.

One table, read by the request check and printed in docs/api.md (a test compares them), so
the documented matrix is the enforced one. Scope comes on top: an officer sees only the
violations and cases of their districts, a company only its own (``Principal.scope``), a
site operator the manifest of its sites (api.manifest).
"""

from __future__ import annotations

ROLES = ("officer", "supervisor", "company", "association", "public", "analyst",
         "site_operator")

MATRIX: dict[str, frozenset[str]] = {
    "me.read": frozenset(ROLES),
    "scores.read": frozenset(ROLES),
    "permits.read": frozenset(ROLES),
    "sites.read": frozenset(ROLES),
    "reasons.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "violations.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "violations.review": frozenset({"officer", "supervisor"}),
    "queue.read": frozenset({"officer", "supervisor"}),
    "appeals.file": frozenset({"company"}),
    "appeals.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "appeals.decide": frozenset({"officer", "supervisor"}),
    "cases.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "cases.write": frozenset({"officer", "supervisor"}),
    "closure.read": frozenset({"officer", "supervisor", "analyst"}),
    "association.read": frozenset({"association", "supervisor", "analyst"}),
    "telemetry.read": frozenset({"officer", "supervisor", "analyst"}),
    "audit.read": frozenset({"supervisor", "analyst"}),
    # permits with a life cycle (issue #22, docs/permits.md); city-wide, a company its own
    "permits.apply": frozenset({"company"}),
    "applications.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "permits.decide": frozenset({"officer", "supervisor"}),
    "permits.list": frozenset({"officer", "supervisor", "company", "analyst"}),
    "permits.manage": frozenset({"officer", "supervisor"}),
    # the registry (issue #22): sites, vehicles, companies; a company reads its own
    "registry.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "registry.manage": frozenset({"supervisor"}),
    "sites.status": frozenset({"officer", "supervisor"}),
    # the manifest (issue #22): a site operator records receipts at its sites and reads the
    # lines and receipts of its sites; a company reads its own lines and jobs
    "receipts.write": frozenset({"site_operator"}),
    "receipts.read": frozenset({"officer", "supervisor", "analyst", "site_operator"}),
    "manifest.read": frozenset({"officer", "supervisor", "company", "analyst",
                                "site_operator"}),
    "reconciliation.read": frozenset({"officer", "supervisor", "company", "analyst",
                                      "site_operator"}),
    # the console (issue #23): the live map, the city's layers and corridors, and tracks
    # of any time range; city-wide, a company its own vehicles and permits
    "map.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "live.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "track.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    # terminals online (issue #24): the online rate per company and day; a company its own
    "online.read": frozenset({"officer", "supervisor", "company", "association", "analyst"}),
    # evidence and control through the terminal (issue #24): photos and evidence bundles to
    # whoever may see the violation (a company its own vehicles'); commands to terminals
    "media.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "evidence.read": frozenset({"officer", "supervisor", "company", "analyst"}),
    "evidence.seal": frozenset({"officer", "supervisor"}),
    "commands.send": frozenset({"officer", "supervisor"}),
    "commands.read": frozenset({"officer", "supervisor", "company", "analyst"}),
}


def allowed(role: str, permission: str) -> bool:
    return role in MATRIX[permission]


def matrix_markdown() -> str:
    """The matrix as the Markdown table in docs/api.md."""
    head = "| permission | " + " | ".join(ROLES) + " |"
    rule = "|---|" + "---|" * len(ROLES)
    rows = [f"| `{p}` | " + " | ".join("✓" if r in roles else "" for r in ROLES) + " |"
            for p, roles in MATRIX.items()]
    return "\n".join([head, rule, *rows])
