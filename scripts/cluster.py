"""A private 3-node NATS cluster (JetStream + MQTT) for development: ``make cluster-up`` /
``make cluster-down`` (issue #25, docs/cluster.md).

    .venv/bin/python scripts/cluster.py up [--fresh]   # start; print the three MQTT URLs
    .venv/bin/python scripts/cluster.py status         # which nodes run, the JetStream leader
    .venv/bin/python scripts/cluster.py down           # stop (the stores stay for the next up)

The nodes run in the background on free loopback ports, in ``.run/cluster/`` (or the run
directory ``muckwatch services`` uses); ``.run/cluster/cluster.json`` holds their pids and
ports. ``up --fresh`` first deletes the stores of a previous cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devservices.common import ServiceError, default_run_dir, listening  # noqa: E402
from devservices.nats import PrivateNatsCluster  # noqa: E402


def cluster_dir() -> Path:
    return default_run_dir() / "cluster"


def state_path() -> Path:
    return cluster_dir() / "cluster.json"


def load() -> dict:
    path = state_path()
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def ours(pid: int | None, conf_dir: str) -> bool:
    """Is ``pid`` still a nats-server started from this cluster's directory (not a reused pid)?"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"nats-server") and \
        any(part.decode(errors="replace").startswith(conf_dir) for part in cmdline)


def running(state: dict) -> list[dict]:
    return [n for n in state.get("nodes", []) if ours(n.get("pid"), state.get("run_dir", "?"))]


def up(fresh: bool) -> int:
    state = load()
    if running(state):
        print("cluster already running")
        return status()
    where = cluster_dir()
    if fresh and where.exists():
        shutil.rmtree(where)
    cluster = PrivateNatsCluster(where)
    try:
        cluster.start()
    except ServiceError as e:
        print(f"cluster-up failed: {e}", file=sys.stderr)
        return 1
    state_path().write_text(json.dumps(cluster.state(), indent=2), encoding="utf-8")
    # the processes outlive this script (their own sessions); `down` stops them by pid
    for url in cluster.urls:
        print(url)
    print(f"state: {state_path()}", file=sys.stderr)
    return 0


def status() -> int:
    state = load()
    if not state:
        print("no cluster (make cluster-up)")
        return 1
    alive = {n["name"] for n in running(state)}
    leader = None
    cluster = PrivateNatsCluster(Path(state["run_dir"]))
    for n in state["nodes"]:
        ok = n["name"] in alive and listening(n["mqtt_port"])
        print(f"{n['name']}  mqtt://127.0.0.1:{n['mqtt_port']}  pid {n['pid']}  "
              f"{'up' if ok else 'DOWN'}")
        if ok and leader is None:
            from devservices.nats import NatsNode

            leader = cluster.meta_leader(NatsNode(n["name"], n["client_port"], n["route_port"],
                                                  n["http_port"], n["mqtt_port"]))
    print(f"JetStream meta leader: {leader or 'none'}")
    return 0 if alive else 1


def down() -> int:
    state = load()
    nodes = running(state)
    for n in nodes:
        os.kill(n["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(state):
        time.sleep(0.1)
    for n in running(state):
        os.kill(n["pid"], signal.SIGKILL)
    if state_path().exists():
        state_path().unlink()
    print(f"stopped {len(nodes)} node(s)" if nodes else "no cluster running")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a private 3-node NATS cluster with MQTT")
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--fresh", action="store_true", help="up: delete the previous stores")
    args = ap.parse_args(argv)
    if args.command == "up":
        return up(args.fresh)
    if args.command == "down":
        return down()
    return status()


if __name__ == "__main__":
    sys.exit(main())
