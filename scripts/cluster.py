"""A private 3-node broker cluster for development: ``make cluster-up`` / ``make cluster-down``
(issue #25, docs/cluster.md). RabbitMQ (MQTT plugin, quorum queues) is the one muckwatch
chose; ``--broker nats`` starts the NATS alternative it was measured against.

    .venv/bin/python scripts/cluster.py up [--fresh] [--broker rabbitmq|nats]
    .venv/bin/python scripts/cluster.py status   # which nodes run
    .venv/bin/python scripts/cluster.py down     # stop (the stores stay for the next up)

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
from devservices.rabbitmq import PrivateRabbitCluster  # noqa: E402


def cluster_dir() -> Path:
    return default_run_dir() / "cluster"


def state_path() -> Path:
    return cluster_dir() / "cluster.json"


def load() -> dict:
    path = state_path()
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def ours(pid: int | None, marker: str) -> bool:
    """Is ``pid`` still a broker process of this cluster (its command line names
    ``marker``), not a reused pid?"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(marker.encode() in part for part in cmdline)


def running(state: dict) -> list[dict]:
    # a nats-server's command line names its config file, an Erlang VM its home: both are
    # inside the cluster's run directory
    return [n for n in state.get("nodes", []) if ours(n.get("pid"), state.get("run_dir", "?"))]


def up(fresh: bool, broker: str) -> int:
    state = load()
    if running(state):
        print("cluster already running")
        return status()
    where = cluster_dir()
    if fresh and where.exists():
        shutil.rmtree(where)
    previous = load()
    if previous and previous.get("broker", "nats") != broker:
        print(f"{where} holds a {previous.get('broker', 'nats')} cluster: use --fresh to "
              "replace it", file=sys.stderr)
        return 1
    cluster: PrivateRabbitCluster | PrivateNatsCluster
    if broker == "rabbitmq":
        cluster = PrivateRabbitCluster.from_state(previous) if previous else \
            PrivateRabbitCluster(where)
    else:
        cluster = PrivateNatsCluster(where)
    try:
        cluster.start()
    except ServiceError as e:
        print(f"cluster-up failed: {e}", file=sys.stderr)
        return 1
    state = cluster.state()
    state.setdefault("broker", broker)
    state_path().write_text(json.dumps(state, indent=2), encoding="utf-8")
    # the processes outlive this script (their own sessions); `down` stops them
    for url in cluster.urls:
        print(url)
    print(f"{broker} cluster; state: {state_path()}", file=sys.stderr)
    return 0


def status() -> int:
    state = load()
    if not state:
        print("no cluster (make cluster-up)")
        return 1
    alive = {n["name"] for n in running(state)}
    for n in state["nodes"]:
        ok = n["name"] in alive and listening(n["mqtt_port"])
        print(f"{n['name']}  mqtt://127.0.0.1:{n['mqtt_port']}  pid {n['pid']}  "
              f"{'up' if ok else 'DOWN'}")
    if state.get("broker") == "rabbitmq" and alive:
        cluster = PrivateRabbitCluster.from_state(state)
        print(f"running nodes: {', '.join(cluster.running_nodes()) or 'none'}")
    return 0 if alive else 1


def down() -> int:
    state = load()
    nodes = running(state)
    if state.get("broker") == "rabbitmq":
        if nodes:
            PrivateRabbitCluster.from_state(state).stop()
    else:
        for n in nodes:
            os.kill(n["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and running(state):
            time.sleep(0.1)
        for n in running(state):
            os.kill(n["pid"], signal.SIGKILL)
    if state_path().exists():
        # the ports and node names stay with the stores: the next `up` reuses them
        kept = {**state, "nodes": [{**n, "pid": None} for n in state.get("nodes", [])]}
        state_path().write_text(json.dumps(kept, indent=2), encoding="utf-8")
    print(f"stopped {len(nodes)} node(s)" if nodes else "no cluster running")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a private 3-node MQTT broker cluster")
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--fresh", action="store_true", help="up: delete the previous stores")
    ap.add_argument("--broker", choices=["rabbitmq", "nats"], default="rabbitmq",
                    help="up: which broker (default rabbitmq, the one muckwatch chose)")
    args = ap.parse_args(argv)
    if args.command == "up":
        return up(args.fresh, args.broker)
    if args.command == "down":
        return down()
    return status()


if __name__ == "__main__":
    sys.exit(main())
