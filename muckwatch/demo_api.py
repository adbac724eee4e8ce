"""The demo's people: ``muckwatch serve`` beside the ingest, a ready-made officer account,
and one violation reviewed and one case opened through the HTTP API — what an enforcement
centre does with the demo's violations, done the way its officers' tools would do it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from devservices.common import ServiceError, free_port
from store.accounts import add_account, rotate_token

OFFICER = "demo-officer"


def api_port(listen: str) -> int:
    """The configured port when it is free, else any free one (the demo must not fail
    because something else holds 8088)."""
    port = int(listen.rpartition(":")[2] or 0)
    if port:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


class ApiProcess:
    """``muckwatch serve`` in its own process, as an operator would start it."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "muckwatch", "serve", "--listen", f"127.0.0.1:{port}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError("muckwatch serve did not start:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def officer_token(dsn: str) -> str:
    """A token for the demo's officer (every district): made once, rotated on later runs."""
    with psycopg.connect(dsn) as conn:
        districts = tuple(r[0] for r in conn.execute(
            "SELECT id FROM fences WHERE kind = 'district' ORDER BY id"))
        exists = conn.execute("SELECT 1 FROM api_accounts WHERE id = %s AND revoked_at IS NULL",
                              (OFFICER,)).fetchone()
        if exists:
            conn.execute("UPDATE api_accounts SET districts = %s WHERE id = %s",
                         (list(districts), OFFICER))
            conn.commit()
            return rotate_token(conn, OFFICER)
        conn.execute("DELETE FROM api_accounts WHERE id = %s AND revoked_at IS NOT NULL",
                     (OFFICER,))
        conn.commit()
        return add_account(conn, OFFICER, "officer", districts=districts)


def review_and_open_case(url: str, token: str, since_ms: int) -> list[str]:
    """Through the API as the officer: take the gravest new violation of this run from the
    review queue, confirm it, open a case with it and dispatch the case. Returns what was
    done, a line per step."""
    done: list[str] = []
    since = datetime.fromtimestamp(since_ms / 1000, UTC)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=10) as api:
        queue = api.get("/v1/review/queue", params={"limit": 1000})
        queue.raise_for_status()
        mine = [v for v in queue.json()["violations"]
                if datetime.fromisoformat(v["start_ts"]) >= since and v["company_id"]]
        if not mine:
            return ["no new violation of this run in the review queue"]
        pick = mine[0]
        r = api.post(f"/v1/violations/{pick['id']}/review",
                     json={"decision": "confirm", "reason": "evidence_clear",
                           "note": "demo: the evidence track shows it"})
        r.raise_for_status()
        done.append(f"POST /v1/violations/{pick['id']}/review → {r.status_code} "
                    f"{r.json()['review']} ({pick['rule']}, severity {pick['severity']}, "
                    f"{pick['plate']}, district {pick['district_id']})")
        r = api.post("/v1/cases", json={"violations": [pick["id"]],
                                        "note": "demo case"})
        r.raise_for_status()
        case = r.json()
        done.append(f"POST /v1/cases → {r.status_code} case {case['id']} ({case['state']}, "
                    f"company {case['company_id']})")
        due = datetime.now(UTC) + timedelta(days=7)
        r = api.post(f"/v1/cases/{case['id']}/actions",
                     json={"action": "dispatch", "team": f"{case['district_id']} team",
                           "due_at": due.isoformat()})
        r.raise_for_status()
        done.append(f"POST /v1/cases/{case['id']}/actions → {r.status_code} "
                    f"{r.json()['state']} to {r.json()['team']}, due {due:%Y-%m-%d}")
    return done
