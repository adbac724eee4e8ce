"""A broker node killed under load (issue #25): a 3-node NATS cluster (JetStream, MQTT listener,
``stream_replicas: 3``, ``consumer_replicas: 3``) loses none of the QoS 1 messages it
acknowledged, and a persistent MQTT session resumes on another node.

A publisher on node 2 sends 2,000 QoS 1 fixes while a persistent subscriber
(``clean_session=False``, fixed client id) on node 1 receives them; node 1 is killed with
SIGKILL mid-stream; the subscriber's client tries the next node of its list (node 3) with the
same client id. Every fix whose PUBACK the publisher got must reach the subscriber; duplicates
(the fixes node 1 delivered but whose PUBACK died with it) are counted and reported, as is the
time nothing arrived. The measured version of this is bench/cluster_failover.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from devservices.nats import PrivateNatsCluster

pytestmark = pytest.mark.e2e
BENCH = Path(__file__).resolve().parents[2] / "bench" / "cluster_failover.py"
MESSAGES, RATE = 2_000, 400  # ≈ 5 s of publishing; node 1 dies after ~800 acks


def _bench():
    spec = importlib.util.spec_from_file_location("cluster_failover", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cluster(run_dir):
    c = PrivateNatsCluster(run_dir / f"nats-{uuid.uuid4().hex[:6]}").start()
    yield c
    c.stop()


def test_node_killed_under_load_loses_no_acknowledged_message(cluster, capsys):
    bench = _bench()
    n1, n2, n3 = cluster.mqtt_ports
    received: list[tuple[int, float]] = []

    def on_message(client, userdata, msg) -> None:
        received.append((json.loads(msg.payload)["s"], time.time()))

    subscribed = threading.Event()
    # its list: node 1, then node 3 (node 2 left out so that where it resumes is known)
    sub = bench.FailoverClient(f"muckwatch-test-sub-{uuid.uuid4().hex[:6]}", [n1, n3],
                               clean_session=False, subscribe="muck/v1/#",
                               on_message=on_message)
    sub.client.on_subscribe = lambda *a: subscribed.set()
    sub.start_thread()
    assert subscribed.wait(30), "no SUBACK from node 1"

    acks: list[tuple[int, float]] = []
    pub = bench.FailoverClient(f"muckwatch-test-pub-{uuid.uuid4().hex[:6]}", [n2, n3],
                               clean_session=True)
    pub.client.on_publish = lambda c, u, mid, rc, p: acks.append((mid, time.time()))
    pub.start_thread()
    assert pub.connected.wait(30)
    sent: list[tuple[int, int]] = []
    kill_t = 0.0
    t0 = time.monotonic()
    for seq in range(MESSAGES):
        delay = t0 + seq / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        info = pub.client.publish(f"muck/v1/T{seq % 50:03d}/telemetry",
                                  bench.payload(0, seq), qos=1)
        sent.append((info.mid, seq))
        if not kill_t and (len(acks) >= 800 or seq >= 1_200):
            kill_t = time.time()
            cluster.kill(1)
    assert kill_t, "node 1 was never killed (too few acks)"
    deadline = time.monotonic() + 30
    while len(acks) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    # packet ids are unique here (2,000 < 65,535): each PUBACK names one fix
    seq_of = dict(sent)
    acked = {seq_of[mid] for mid, _ in acks}
    deadline = time.monotonic() + 40
    while not acked <= {s for s, _ in received} and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # late redeliveries show up as duplicates
    pub.stop()
    sub.stop()

    got = Counter(s for s, _ in received)
    lost = sorted(acked - set(got))
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    after = [kill_t, *sorted(t for _, t in received if t > kill_t)]
    silence = max(b - a for a, b in itertools.pairwise(after)) if len(after) > 1 \
        else float("inf")
    resumed = [c for c in sub.connects if c["t"] > kill_t]
    with capsys.disabled():
        print(f"\n[nats cluster] {len(acked)} of {len(sent)} QoS 1 fixes acknowledged, node 1 "
              f"killed after {sum(1 for _, t in acks if t <= kill_t)}; subscriber resumed on "
              f"port {resumed[0]['port'] if resumed else '-'} (node 3 = {n3}) after "
              f"{resumed[0]['t'] - kill_t if resumed else float('nan'):.1f} s, session present"
              f" {resumed[0]['session_present'] if resumed else '-'}; longest silence "
              f"{silence:.1f} s; {len(lost)} lost, {duplicates} duplicated")
    assert len(acked) == MESSAGES, "every publish was acknowledged in the end"
    assert not lost, f"{len(lost)} acknowledged fixes never arrived, e.g. {lost[:10]}"
    assert resumed and resumed[0]["port"] == n3, sub.connects
    assert resumed[0]["session_present"], "the persistent session did not survive node 1"
    assert silence < 30, f"nothing arrived for {silence:.1f} s"
