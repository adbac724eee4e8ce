"""Every SQL statement is parameterised: an audit of the shipped code, and hostile text through
the places where users put text into the database.

The audit reads every module of the installed packages and follows the first argument of each
``execute``/``executemany``/``copy``/``stream`` call back to where it was built. It passes only
when the statement is made of string constants (literals, module or local names bound only to
constants, constant lists joined, f-strings whose parts are constants) or psycopg's
``sql.SQL``/``sql.Identifier`` composition — so any value reaches the server as a bound
parameter, never as text in the statement. A statement built from anything else fails the test
with its file and line."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("alerts", "api", "devservices", "domain", "gateway", "geofence", "ingest", "muckwatch",
            "permits", "rules", "simulator", "store")
CALLS = {"execute", "executemany", "copy", "stream"}
# Statements read from the repository's own migration files, not built from any value.
TRUSTED_ATTRIBUTES = {"sql", "timescale_sql"}


class Audit:
    """Which SQL arguments of one module are not provably constant."""

    def __init__(self, source: str, path: str) -> None:
        self.tree = ast.parse(source)
        self.path = path
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def scope_of(self, node: ast.AST) -> ast.AST:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node
        return self.tree

    def bindings(self, name: str, scope: ast.AST) -> list[ast.AST] | None:
        """Every expression ``name`` is given in ``scope``: assigned, augmented, appended or
        extended. None if it is also bound some other way (a loop, a parameter, an import)."""
        values: list[ast.AST] = []
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                    values.append(node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign) and \
                    isinstance(node.target, ast.Name) and node.target.id == name:
                if node.value is None:
                    continue
                values.append(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == name and \
                    node.func.attr in ("append", "extend", "insert"):
                values.extend(node.args[-1:])
            elif (isinstance(node, ast.arg) and node.arg == name) or (
                    isinstance(node, ast.For | ast.comprehension)
                    and any(isinstance(t, ast.Name) and t.id == name
                            for t in ast.walk(node.target))):
                return None  # a parameter or loop variable: could be anything
        return values

    def constant(self, node: ast.AST, scope: ast.AST, seen: frozenset = frozenset()) -> bool:
        match node:
            case ast.Constant(value=str() | int() | None):
                return True
            case ast.JoinedStr(values=parts):
                return all(self.constant(p, scope, seen) for p in parts)
            case ast.FormattedValue(value=value):
                return self.constant(value, scope, seen)
            case ast.BinOp(op=ast.Add(), left=left, right=right):
                return self.constant(left, scope, seen) and self.constant(right, scope, seen)
            case ast.IfExp(body=body, orelse=orelse):
                return self.constant(body, scope, seen) and self.constant(orelse, scope, seen)
            case ast.List(elts=elts) | ast.Tuple(elts=elts):
                return all(self.constant(e, scope, seen) for e in elts)
            case ast.GeneratorExp(elt=elt, generators=gens) | ast.ListComp(elt=elt,
                                                                          generators=gens):
                # a comprehension over constants, whose loop variables are then constants
                if not all(self.constant(g.iter, scope, seen) and not g.ifs for g in gens):
                    return False
                loop = {(n.id, id(scope)) for g in gens for n in ast.walk(g.target)
                        if isinstance(n, ast.Name)}
                return self.constant(elt, scope, seen | loop)
            case ast.Call(func=ast.Attribute(attr="join", value=sep), args=[items]):
                return self.constant(sep, scope, seen) and self.constant(items, scope, seen)
            case ast.Call(func=ast.Attribute(attr="SQL" | "Identifier")):
                return True  # psycopg.sql: quoted by the driver
            case ast.Call(func=ast.Attribute(attr="format", value=ast.Call(
                    func=ast.Attribute(attr="SQL")))):
                return all(self.composable(a) for a in node.args)
            case ast.Attribute(attr=attr) if attr in TRUSTED_ATTRIBUTES:
                return True
            case ast.Name(id=name):
                if (name, id(scope)) in seen:
                    return True
                seen = seen | {(name, id(scope))}
                for where in ([scope, self.tree] if scope is not self.tree else [self.tree]):
                    values = self.bindings(name, where)
                    if values is None:
                        return False
                    if values:
                        return all(self.constant(v, where, seen) for v in values)
                return False
        return False

    @staticmethod
    def composable(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr in ("Identifier", "SQL", "Literal", "Placeholder")

    def findings(self) -> list[str]:
        out = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in CALLS and node.args and \
                    not self.constant(node.args[0], self.scope_of(node)):
                out.append(f"{self.path}:{node.lineno}: {ast.unparse(node)[:120]}")
        return out


def audit_source(source: str, path: str = "<snippet>") -> list[str]:
    return Audit(textwrap.dedent(source), path).findings()


def sql_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_sql_statement_in_the_shipped_code_is_constant_or_composed():
    modules = sql_modules()
    assert len(modules) > 40, "the audit sees the packages"
    findings = [f for p in modules for f in audit_source(p.read_text(), str(p.relative_to(ROOT)))]
    statements = sum(1 for p in modules for n in ast.walk(ast.parse(p.read_text()))
                     if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                     and n.func.attr in CALLS and n.args)
    assert statements > 40, "the audit finds the statements"
    assert findings == [], "statements built from values:\n" + "\n".join(findings)


@pytest.mark.parametrize("snippet", [
    'def f(conn, device):\n    conn.execute(f"SELECT * FROM t WHERE d = \'{device}\'")',
    'def f(conn, device):\n    conn.execute("SELECT * FROM t WHERE d = \'%s\'" % device)',
    'def f(conn, device):\n    conn.execute("SELECT * FROM t WHERE d = {}".format(device))',
    'def f(conn, device):\n    q = "SELECT * FROM t WHERE d = \'" + device + "\'"\n'
    '    conn.execute(q)',
    'def f(conn, extra):\n    where = ["true"]\n    where.append(extra)\n'
    '    conn.execute(" AND ".join(where))',
    'def f(conn, rows):\n    for q in rows:\n        conn.execute(q)',
    'def f(cur, table):\n    cur.copy(f"COPY {table} FROM STDIN")',
    'def f(conn, names):\n    conn.execute(", ".join(f"{n} text" for n in names))',
])
def test_the_audit_catches_statements_built_from_values(snippet):
    assert audit_source(snippet), snippet


@pytest.mark.parametrize("snippet", [
    'def f(conn, device):\n    conn.execute("SELECT * FROM t WHERE d = %s", (device,))',
    '_Q = "SELECT 1"\ndef f(conn):\n    conn.execute(_Q + " WHERE true")',
    'def f(conn, a, b):\n    where = ["true"]\n    if a:\n        where.append("a = %s")\n'
    '    conn.execute(f"SELECT * FROM t WHERE {\' AND \'.join(where)}", [a])',
    'COLS = (("a", "int"), ("b", "text"))\ndef f(conn):\n'
    '    conn.execute("CREATE TABLE t (" + ", ".join(f"{n} {t}" for n, t in COLS) + ")")',
    'from psycopg import sql\ndef f(conn, role):\n'
    '    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))',
])
def test_the_audit_accepts_parameterised_statements(snippet):
    assert audit_source(snippet) == [], snippet


HOSTILE = ["'; DROP TABLE telemetry; --", "x' OR '1'='1", 'a"b\\c', "粤B·12345'); --",
           "$$; DELETE FROM violations; $$"]


def test_hostile_text_through_the_cli_is_stored_verbatim_and_harms_nothing(dsn, db, tmp_path):
    """Text users control goes in and comes back verbatim, and no table is touched: company
    names in a city import, a subscription's id and filters, the company filter of
    ``scores`` and ``alerts list``."""
    import os
    import shutil

    env = {**os.environ, "MUCKWATCH_DATABASE_DSN": dsn}

    def cli(*args: str, status: int = 0) -> str:
        out = subprocess.run([sys.executable, "-m", "muckwatch", *args], capture_output=True,
                             text=True, timeout=120, env=env)
        assert out.returncode == status, (args, out.stderr[-2000:])
        return out.stdout + out.stderr

    def sizes() -> dict[str, int]:
        db.rollback()
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("telemetry", "violations", "companies", "vehicles")}

    before = sizes()
    bundle = tmp_path / "city"
    shutil.copytree(ROOT / "data" / "sample-city", bundle)
    companies = (bundle / "companies.csv").read_text(encoding="utf-8").splitlines()
    hostile_names = {}
    for k, text in enumerate(HOSTILE, 1):  # rename the first companies
        company_id = companies[k].split(",")[0]
        hostile_names[company_id] = text
        companies[k] = f'{company_id},"{text.replace(chr(34), chr(34) * 2)}"'
    (bundle / "companies.csv").write_text("\n".join(companies) + "\n", encoding="utf-8")
    cli("import", "city", str(bundle))
    db.rollback()
    stored = dict(db.execute("SELECT id, name FROM companies WHERE id = ANY(%s)",
                             (list(hostile_names),)).fetchall())
    cli("import", "city", str(ROOT / "data" / "sample-city"))  # the names other tests expect
    assert stored == hostile_names, "company names stored verbatim"

    for k, text in enumerate(HOSTILE):
        refused = cli("alerts", "subscribe", text, "http://127.0.0.1:9/hook", status=2)
        assert "id must be" in refused, "subscription ids are plain names"
        cli("alerts", "subscribe", f"hx{k}", "http://127.0.0.1:9/hook", "--company", text,
            "--zone", text, "--rule", "UNAUTHORISED_DUMP")
        assert "not found" in cli("scores", "--company", text, status=2), "no such company id"
        cli("alerts", "list", "--subscription", text)
    listed = cli("alerts", "subscriptions")
    db.rollback()
    rows = db.execute("SELECT id, filters FROM alert_subscriptions WHERE id LIKE 'hx%'"
                      " ORDER BY id").fetchall()
    assert [(r[0], r[1]["companies"], r[1]["zones"]) for r in rows] == \
        [(f"hx{k}", [t], [t]) for k, t in enumerate(HOSTILE)], "filters verbatim"
    assert all(f"hx{k}" in listed for k in range(len(HOSTILE)))
    for sid, _ in rows:
        cli("alerts", "disable", sid)
    db.execute("DELETE FROM alert_subscriptions WHERE id LIKE 'hx%'")
    db.commit()
    after = sizes()
    assert after["telemetry"] >= before["telemetry"] and after["violations"] >= \
        before["violations"], "no rows deleted, no table dropped"
