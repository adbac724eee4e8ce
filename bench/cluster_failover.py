"""A broker node killed under load: what a 3-node NATS cluster (JetStream + MQTT) loses, and how
long nothing arrives; and its QoS 1 throughput next to one Mosquitto's (issue #25, docs/cluster.md).

Clients are paho-mqtt, MQTT 3.1.1, QoS 1, each in its own process (the GIL would otherwise be
the bottleneck), each with the list of every node's URL:

- publishers (clean session, their own client ids) publish ~200-byte JSON fixes numbered
  per publisher; a fix counts as *acknowledged* when its PUBACK arrived;
- one subscriber holds a persistent session (``clean_session=False``, a fixed client id)
  subscribed to ``muck/v1/#`` and records every fix it is handed.

Fail-over: the subscriber on node 1, publishers on nodes 2 and 3 at a fixed rate; node 1 is
killed with SIGKILL; the subscriber reconnects to the next node of its list with the same client
id. Reported: acknowledged fixes never received (loss), fixes received more than once
(duplicates), the gap from the kill to the next fix received, the longest silence, and when the
publishers' PUBACKs resumed.

    .venv/bin/python bench/cluster_failover.py              # throughput, latency, fail-over
    .venv/bin/python bench/cluster_failover.py throughput --runs 3      # 50,000 msgs, vs Mosquitto
    .venv/bin/python bench/cluster_failover.py latency --runs 3 --seconds 15   # at 1,500 msg/s
    .venv/bin/python bench/cluster_failover.py failover --runs 10       # the subscriber's node
    .venv/bin/python bench/cluster_failover.py failover --victim '$MQTT_msgs'  # its leader
    .venv/bin/python bench/cluster_failover.py rabbitmq --runs 3  # the same on RabbitMQ 3.10

prints one JSON summary on stdout (progress on stderr). Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SUB_ID = "muckwatch-failover-sub"
TOPIC_FILTER = "muck/v1/#"
PAYLOAD_BYTES = 200
# the clients' fail-over timing (set from the command line before the client processes fork)
CLIENT = {"connack_timeout_s": 1.0, "retry_delay_s": 0.1, "max_inflight": 1000,
          "puback_stall_s": 0.0}


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- a paho client with a list of nodes ---------------------------------------------------------


@dataclass
class FailoverClient:
    """A paho client driven by its own thread that connects to ``ports[start]`` and, whenever the
    connection is lost or refused or the CONNACK does not come within ``connack_timeout_s``,
    to the next port of the list after ``retry_delay_s``. paho keeps the QoS 1 messages not yet
    acknowledged and publishes them again (DUP) on the new connection."""

    client_id: str
    ports: list[int]
    clean_session: bool
    start: int = 0
    subscribe: str | None = None
    keepalive_s: int = 5
    retry_delay_s: float = field(default_factory=lambda: CLIENT["retry_delay_s"])
    connack_timeout_s: float = field(default_factory=lambda: CLIENT["connack_timeout_s"])
    max_inflight: int = 1000
    on_message: object = None
    # publishers: a callable telling how long QoS 1 messages have waited for a PUBACK with
    # none arriving; past ``puback_stall_s`` the connection is given up for the next node
    # (a node whose stream leader died holds each publish for 4 s, then drops the client)
    stalled_for: object = None
    puback_stall_s: float = field(default_factory=lambda: CLIENT["puback_stall_s"])
    connects: list[dict] = field(default_factory=list)
    stall_drops: int = 0

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv311, clean_session=self.clean_session)
        self.client.max_inflight_messages_set(self.max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        if self.on_message is not None:
            self.client.on_message = self.on_message
        self.connected = threading.Event()
        self.refused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.client_id, daemon=True)
        self.port: int | None = None

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused.set()
            return
        self.connects.append({"t": time.time(), "port": self.port,
                              "session_present": bool(flags.session_present)})
        # Subscribe only when the broker has no session for us: a resumed session must
        # still hold the subscription (that is what is tested).
        if self.subscribe and not flags.session_present:
            client.subscribe(self.subscribe, qos=1)
        self.connected.set()

    def start_thread(self) -> FailoverClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        index = self.start
        while not self._stop.is_set():
            self.port = self.ports[index % len(self.ports)]
            self.connected.clear()
            self.refused.clear()
            try:
                self.client.connect("127.0.0.1", self.port, self.keepalive_s)
            except OSError:
                index += 1
                self._stop.wait(self.retry_delay_s)
                continue
            asked = time.monotonic()
            while not self._stop.is_set():
                rc = self.client.loop(timeout=0.02)
                if rc != self.mqtt.MQTT_ERR_SUCCESS or self.refused.is_set():
                    break
                if not self.connected.is_set() and time.monotonic() - asked > \
                        self.connack_timeout_s:
                    break
                if self.stalled_for is not None and self.puback_stall_s > 0 and \
                        self.stalled_for() > self.puback_stall_s:  # type: ignore[operator]
                    self.stall_drops += 1
                    break
            if self._stop.is_set():
                break
            # (paho's next connect() closes the old socket)
            self.connected.clear()
            index += 1
            self._stop.wait(self.retry_delay_s)

    def stop(self, disconnect: bool = True) -> None:
        if disconnect and self.connected.is_set():
            self.client.disconnect()
            deadline = time.monotonic() + 2
            while self._thread.is_alive() and time.monotonic() < deadline and \
                    self.client.socket() is not None:
                time.sleep(0.02)
        self._stop.set()
        self._thread.join(5)


# -- the processes ------------------------------------------------------------------------------


def payload(pub: int, seq: int) -> bytes:
    body = {"p": pub, "s": seq, "t": time.time(), "v": 1, "lon": 114.05, "lat": 22.54,
            "spd": 31.5, "load": 2, "pad": ""}
    raw = json.dumps(body, separators=(",", ":"))
    body["pad"] = "x" * max(0, PAYLOAD_BYTES - len(raw))
    return json.dumps(body, separators=(",", ":")).encode()


def publisher(pub: int, ports: list[int], start: int, count: int, rate: float,
              go: mp.Event, out: mp.Queue, max_backlog: int = 50_000) -> None:
    """Publish ``count`` fixes at ``rate`` per second (0: as fast as the in-flight window
    allows); put {"pub", "acked": [seq…], "ack_t": [t…], ...} on ``out``."""
    # paho calls on_publish holding its own lock, which publish() also takes: no lock of ours
    # here (it would deadlock); the k-th PUBACK of a packet id belongs to its k-th publish
    sent: list[tuple[int, int]] = []  # (packet id, seq) in publish order
    acks: list[tuple[int, float]] = []  # (packet id, time) in PUBACK order

    progress = [time.monotonic()]  # when a PUBACK last came, or the wait began

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        acks.append((mid, time.time()))
        progress[0] = time.monotonic()

    def stalled_for() -> float:
        if len(acks) >= len(sent):
            progress[0] = time.monotonic()
            return 0.0
        return time.monotonic() - progress[0]

    link = FailoverClient(f"muckwatch-bench-pub-{pub}-{os.getpid()}", ports, clean_session=True,
                          start=start, max_inflight=int(CLIENT["max_inflight"]),
                          stalled_for=stalled_for)
    link.client.on_publish = on_publish
    link.start_thread()
    link.connected.wait(30)
    go.wait(60)
    t0 = time.monotonic()
    for seq in range(count):
        if rate > 0:
            delay = t0 + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while len(sent) - len(acks) > max_backlog:
            time.sleep(0.001)
        info = link.client.publish(f"muck/v1/P{pub}D{seq % 500:03d}/telemetry",
                                   payload(pub, seq), qos=1)
        sent.append((info.mid, seq))
    sent_s = time.monotonic() - t0
    deadline = time.monotonic() + 90
    while len(acks) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.01)
    link.stop()
    by_mid: dict[int, list[int]] = {}
    for mid, seq in reversed(sent):
        by_mid.setdefault(mid, []).append(seq)
    acked: list[int] = []
    ack_t: list[float] = []
    for mid, t in list(acks):
        seqs = by_mid.get(mid)
        if seqs:
            acked.append(seqs.pop())
            ack_t.append(t)
    pending = len(sent) - len(acked)
    out.put({"pub": pub, "acked": acked, "ack_t": ack_t, "sent_s": sent_s,
             "stall_drops": link.stall_drops,
             "unacked": pending, "connects": link.connects,
             "t0": time.time() - (time.monotonic() - t0)})


def subscriber(ports: list[int], start: int, ready: mp.Event, done: mp.Event,
               out: mp.Queue, count, client_id: str = SUB_ID) -> None:
    """Hold the persistent session; record (pub, seq, sent t, received t) of every fix until
    ``done`` is set (``count`` is shared progress); put the record on ``out``."""
    got: list[tuple[int, int, float, float]] = []

    def on_message(client, userdata, msg) -> None:
        body = json.loads(msg.payload)
        got.append((body["p"], body["s"], body["t"], time.time()))
        count.value = len(got)

    link = FailoverClient(client_id, ports, clean_session=False, start=start,
                          subscribe=TOPIC_FILTER, on_message=on_message)
    link.client.on_subscribe = lambda *a: ready.set()
    link.start_thread()
    done.wait(600)
    link.stop()
    out.put({"got": got, "connects": link.connects})


def clear_session(ports: list[int], client_id: str = SUB_ID) -> None:
    """Remove a persistent session a previous run left (connect clean, disconnect)."""
    import paho.mqtt.client as mqtt

    for port in ports:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311, clean_session=True)
        try:
            c.connect("127.0.0.1", port, 5)
            c.loop_start()
            time.sleep(0.5)
            c.disconnect()
            c.loop_stop()
            return
        except OSError:
            continue


# -- measurements -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def account(pubs: list[dict], sub: dict, kill_t: float | None = None) -> dict:
    """Loss, duplicates, gaps and latency from what the publishers saw acknowledged and what
    the subscriber received."""
    acked = {(p["pub"], s) for p in pubs for s in p["acked"]}
    received = Counter((p, s) for p, s, _, _ in sub["got"])
    lost = acked - set(received)
    dups = sum(n - 1 for n in received.values() if n > 1)
    times = sorted(r for _, _, _, r in sub["got"])
    gaps = [b - a for a, b in itertools.pairwise(times)]
    result = {
        "acked": len(acked),
        "received_unique": len(received),
        "received_total": sum(received.values()),
        "lost_acked": len(lost),
        "duplicates": dups,
        "unacked_at_end": sum(p["unacked"] for p in pubs),
        "longest_silence_s": round(max(gaps), 3) if gaps else None,
        "latency_p50_ms": round(1000 * percentile([r - t for _, _, t, r in sub["got"]], .5), 1),
        "latency_p99_ms": round(1000 * percentile([r - t for _, _, t, r in sub["got"]], .99), 1),
        "latency_max_s": round(max((r - t for _, _, t, r in sub["got"]), default=0), 3),
        "subscriber_connects": [
            {"after_s": round(c["t"] - kill_t, 2) if kill_t else None, "port": c["port"],
             "session_present": c["session_present"]} for c in sub["connects"]],
    }
    if kill_t is not None:
        # The subscriber still reads what was in its socket when its node died; the silence
        # that matters is the longest one that starts after the kill.
        after = [kill_t] + [r for r in times if r > kill_t]
        silences = [b - a for a, b in itertools.pairwise(after)]
        result["silence_after_kill_s"] = round(max(silences), 3) if silences else None
        back = [c["t"] for c in sub["connects"] if c["t"] > kill_t]
        result["subscriber_reconnected_s"] = round(back[0] - kill_t, 3) if back else None
        later = [r for r in times if back and r > back[0]]
        result["flowing_again_s"] = round(later[0] - kill_t, 3) if later else None
        result["received_before_kill"] = sum(1 for r in times if r <= kill_t)
        buckets = Counter(int(r - kill_t + 5) for r in times if kill_t - 5 <= r < kill_t + 40)
        result["received_per_s"] = {"from_s": -5, "counts": [buckets.get(i, 0)
                                                             for i in range(45)]}
        ack_times = sorted(t for p in pubs for t in p["ack_t"])
        ack_gaps = [b - a for a, b in itertools.pairwise([kill_t] + [t for t in ack_times
                                                                     if t > kill_t])]
        result["publisher_ack_silence_s"] = round(max(ack_gaps), 3) if ack_gaps else None
        result["publisher_reconnects"] = sum(len(p["connects"]) - 1 for p in pubs)
        result["publisher_stall_drops"] = sum(p.get("stall_drops", 0) for p in pubs)
        steady = [r - t for _, _, t, r in sub["got"] if r < kill_t - 0.5]
        result["latency_p50_ms"] = round(1000 * percentile(steady, .5), 1)
        result["latency_p99_ms"] = round(1000 * percentile(steady, .99), 1)
    return result


def run_clients(sub_ports: list[int], pub_ports: list[list[int]], per_pub: int, rate: float,
                kill: tuple | None = None, sub_start: int = 0,
                drain_s: float = 60.0, sub_id: str = SUB_ID) -> dict:
    """One subscriber and ``len(pub_ports)`` publishers; ``kill`` = (after seconds, callable,
    [note]) runs the callable that long after the publishers started; note() is what the
    summary says it killed."""
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    ready, done, go = ctx.Event(), ctx.Event(), ctx.Event()
    count = ctx.Value("q", 0, lock=False)
    sub = ctx.Process(target=subscriber,
                      args=(sub_ports, sub_start, ready, done, out, count, sub_id))
    sub.start()
    if not ready.wait(60):
        done.set()
        sub.join(10)
        raise RuntimeError("the subscriber did not get its SUBACK in 60 s")
    pubs = [ctx.Process(target=publisher, args=(i, ports, 0, per_pub, rate, go, out))
            for i, ports in enumerate(pub_ports)]
    for p in pubs:
        p.start()
    time.sleep(1.0)  # publishers connected
    go.set()
    started = time.time()
    kill_t = None
    killed_led = None
    if kill is not None:
        time.sleep(kill[0])
        # which groups the victim leads, asked first (rabbitmqctl takes seconds); the clock
        # starts at the kill itself
        killed_led = kill[2]() if len(kill) > 2 else None
        kill_t = time.time()
        kill[1]()
        log(f"  killed at +{kill_t - started:.1f} s")
    results = [out.get(timeout=600) for _ in pubs]
    pub_done = time.time()
    total = sum(len(r["acked"]) for r in results)
    # let the subscriber drain what is still queued for it: until it has at least as many as
    # were acknowledged and 2 s passed with nothing new (late duplicates), or 10 s of nothing
    deadline = time.monotonic() + drain_s
    last, still = -1, 0.0
    while time.monotonic() < deadline and sub.is_alive():
        time.sleep(0.5)
        now = count.value
        still = still + 0.5 if now == last else 0.0
        last = now
        if (now >= total and still >= 2.0) or still >= 10.0:
            break
    done.set()
    sub_result = out.get(timeout=120)
    sub.join(10)
    for p in pubs:
        p.join(10)
    summary = account(results, sub_result, kill_t)
    if kill is not None:
        summary["led_by_killed_node"] = killed_led
    times = sorted(r for _, _, _, r in sub_result["got"])
    sends = min(r["t0"] for r in results)
    last_ack = max((max(r["ack_t"]) for r in results if r["ack_t"]), default=pub_done)
    summary["publish_rate_per_s"] = round(total / max(1e-6, last_ack - sends))
    if times:
        summary["end_to_end_rate_per_s"] = round(len(times) / max(1e-6, times[-1] - sends))
    return summary


# -- brokers ------------------------------------------------------------------------------------


def nats_cluster(base: Path, **settings):
    from devservices.nats import PrivateNatsCluster

    return PrivateNatsCluster(base / "nats", **settings).start()


def rabbitmq(base: Path, messages: int, publishers: int, rate: float, seconds: float,
             kill_after: float, fo_publishers: int, runs: int) -> dict:
    """Throughput, latency at ``rate`` and fail-over (the subscriber's node, which also leads its
    quorum queue, killed) on a fresh 3-node RabbitMQ cluster per run."""
    from devservices.rabbitmq import PrivateRabbitCluster

    out: dict[str, list[dict]] = {"throughput": [], "latency": [], "failover": []}
    for run in range(runs):
        log(f"rabbitmq run {run + 1}/{runs}: starting a 3-node cluster")
        cluster = PrivateRabbitCluster(base / f"rmq{run}", prefetch=1000).start()
        try:
            p = cluster.mqtt_ports
            inflight = CLIENT["max_inflight"]
            CLIENT["max_inflight"] = 1000
            out["throughput"].append(run_clients(
                [p[0], p[2], p[1]], [[p[1 + i % 2], p[0]] for i in range(publishers)],
                messages // publishers, 0, drain_s=120, sub_id=f"rmq-tp-{run}"))
            clear_session(p, f"rmq-tp-{run}")
            CLIENT["max_inflight"] = inflight
            out["latency"].append(run_clients(
                [p[0], p[2], p[1]], [[p[1 + i % 2], p[0]] for i in range(fo_publishers)],
                int(rate * seconds / 2 / fo_publishers), rate / fo_publishers,
                sub_id=f"rmq-lat-{run}"))
            clear_session(p, f"rmq-lat-{run}")
            sub_id = f"rmq-fo-{run}"
            summary = run_clients(
                [p[0], p[2], p[1]], [[p[1], p[2]] if i % 2 else [p[2], p[1]]
                                     for i in range(fo_publishers)],
                int(rate * seconds / fo_publishers), rate / fo_publishers,
                kill=(kill_after, lambda c=cluster: c.kill(1),
                      lambda c=cluster, q=f"mqtt-subscription-{sub_id}qos1":
                      ["quorum queue"] if c.leaders().get(q) == c.members[0].name else []),
                sub_id=sub_id)
            log("  " + json.dumps({k: v for k, v in summary.items()
                                   if k not in ("subscriber_connects", "received_per_s")}))
            out["failover"].append(summary)
        finally:
            cluster.stop()
    return {name: {"runs": rs, "spread": spread(rs)} for name, rs in out.items()}


def throughput(base: Path, messages: int, publishers: int, runs: int) -> dict:
    from devservices.mosquitto import PrivateMosquitto

    per_pub = messages // publishers
    out: dict[str, list[dict]] = {"nats_3_nodes": [], "mosquitto": []}
    CLIENT["max_inflight"] = 1000  # as fast as 1,000 QoS 1 messages in flight per publisher allow
    for run in range(runs):
        log(f"throughput run {run + 1}/{runs}: NATS cluster")
        cluster = nats_cluster(base / f"tp{run}")
        try:
            p = cluster.mqtt_ports
            out["nats_3_nodes"].append(run_clients(
                [p[0], p[2], p[1]], [[p[1 + i % 2], p[0]] for i in range(publishers)],
                per_pub, 0, drain_s=120))
        finally:
            cluster.stop()
        log(f"throughput run {run + 1}/{runs}: Mosquitto")
        mosq = PrivateMosquitto(base / f"mosq{run}").start()
        try:
            out["mosquitto"].append(run_clients([mosq.port], [[mosq.port]] * publishers,
                                                per_pub, 0, drain_s=120))
        finally:
            mosq.stop()
    return {name: {"runs": rs, "spread": spread(rs)} for name, rs in out.items()}


def latency(base: Path, rate: float, seconds: float, publishers: int, runs: int) -> dict:
    """End-to-end latency at a rate both brokers sustain (publish → subscriber callback)."""
    from devservices.mosquitto import PrivateMosquitto

    per_pub = int(rate * seconds / publishers)
    out: dict[str, list[dict]] = {"nats_3_nodes": [], "mosquitto": []}
    for run in range(runs):
        log(f"latency run {run + 1}/{runs} at {rate:.0f} msg/s: NATS cluster, Mosquitto")
        cluster = nats_cluster(base / f"lat{run}")
        try:
            p = cluster.mqtt_ports
            out["nats_3_nodes"].append(run_clients(
                [p[0], p[2], p[1]], [[p[1 + i % 2], p[0]] for i in range(publishers)],
                per_pub, rate / publishers))
        finally:
            cluster.stop()
        mosq = PrivateMosquitto(base / f"mosq-lat{run}").start()
        try:
            out["mosquitto"].append(run_clients([mosq.port], [[mosq.port]] * publishers,
                                                per_pub, rate / publishers))
        finally:
            mosq.stop()
    return {"rate_per_s": rate, "seconds": seconds,
            **{name: {"runs": rs, "spread": spread(rs)} for name, rs in out.items()}}


def failover(base: Path, rate: float, seconds: float, kill_after: float, runs: int,
             victim: str = "subscriber", publishers: int = 8, **settings) -> dict:
    """``victim``: "subscriber" kills the subscriber's node (node 1); a stream name (e.g.
    ``$MQTT_msgs``) puts the subscriber on the node that leads that stream and kills it, the
    worst case for that stream."""
    per_pub = int(rate * seconds / publishers)
    results = []
    for run in range(runs):
        cluster = nats_cluster(base / f"fo{run}", **settings)
        try:
            order = [0, 1, 2]
            if victim != "subscriber":
                leader = cluster.leaders().get("streams", {}).get(victim)
                first = [m.name for m in cluster.members].index(leader) if leader else 0
                order = [first] + [i for i in order if i != first]
            name = cluster.members[order[0]].name
            log(f"fail-over run {run + 1}/{runs}: {rate:.0f} msg/s for {seconds:.0f} s, "
                f"{name} (the subscriber's) killed at +{kill_after:.0f} s")
            p = [cluster.mqtt_ports[i] for i in order]
            # subscriber on the victim, then the third node, then the second; publishers on
            # the other two
            summary = run_clients(
                [p[0], p[2], p[1]], [[p[1], p[2]] if i % 2 else [p[2], p[1]]
                                     for i in range(publishers)], per_pub, rate / publishers,
                kill=(kill_after, lambda c=cluster, n=order[0] + 1: c.kill(n),
                      lambda c=cluster, n=name: led_by(c, n)))
        finally:
            cluster.stop()
        log("  " + json.dumps({k: v for k, v in summary.items()
                               if k not in ("subscriber_connects", "received_per_s")}))
        results.append(summary)
    return {"rate_per_s": rate, "seconds": seconds, "victim": victim, "publishers": publishers,
            "runs": results,
            "spread": spread(results)}


def led_by(cluster, node: str) -> list[str]:
    """The JetStream groups (meta, streams, consumers) that ``node`` leads right now."""
    leaders = cluster.leaders()
    out = ["meta"] if leaders.get("meta") == node else []
    out += [name for name, who in leaders.get("streams", {}).items() if who == node]
    out += [f"consumer {name.split('/')[0]}" for name, who in
            leaders.get("consumers", {}).items() if who == node]
    return out


SPREAD_KEYS = ("lost_acked", "duplicates", "silence_after_kill_s", "subscriber_reconnected_s",
               "flowing_again_s", "publisher_ack_silence_s", "latency_p50_ms", "latency_p99_ms",
               "latency_max_s", "publish_rate_per_s", "end_to_end_rate_per_s")


def spread(runs: list[dict]) -> dict:
    """min / median / max of the main fields over the runs."""
    keys = [k for k in SPREAD_KEYS if runs and k in runs[0]]
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if isinstance(r.get(k), int | float)]
        if vals:
            out[k] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=["all", "throughput", "latency",
                                                               "failover", "rabbitmq"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--publishers", type=int, default=2, help="throughput: publishers")
    ap.add_argument("--failover-publishers", type=int, default=8,
                    help="fail-over and latency: publishers (connections)")
    ap.add_argument("--max-inflight", type=int, default=100,
                    help="publishers: QoS 1 messages in flight per connection")
    ap.add_argument("--rate", type=float, default=1500,
                    help="fail-over and latency: total msg/s")
    ap.add_argument("--seconds", type=float, default=25,
                    help="fail-over and latency: publishing time")
    ap.add_argument("--kill-after", type=float, default=8)
    ap.add_argument("--victim", default="subscriber",
                    help="fail-over: 'subscriber' (its node) or a stream whose leader to kill "
                         "(the subscriber is put there), e.g. '$MQTT_msgs' or '$MQTT_sess'")
    ap.add_argument("--ack-wait", default=None, help="NATS mqtt.ack_wait, e.g. 10s")
    ap.add_argument("--max-ack-pending", type=int, default=None)
    ap.add_argument("--connack-timeout", type=float, default=CLIENT["connack_timeout_s"],
                    help="client: give up a CONNECT after this many seconds, try the next node")
    ap.add_argument("--retry-delay", type=float, default=CLIENT["retry_delay_s"],
                    help="client: pause before the next node")
    ap.add_argument("--puback-stall", type=float, default=0.0,
                    help="publishers: drop a connection whose PUBACKs stopped this many seconds"
                         " ago and go to the next node (0: never)")
    ap.add_argument("--keep", action="store_true", help="keep the brokers' logs and stores")
    args = ap.parse_args(argv)
    from devservices.nats import nats_server_binary

    if nats_server_binary() is None:
        log("nats-server is not installed (apt-get install nats-server)")
        return 2
    CLIENT.update(connack_timeout_s=args.connack_timeout, retry_delay_s=args.retry_delay,
                  max_inflight=args.max_inflight, puback_stall_s=args.puback_stall)
    settings = {k: v for k, v in (("ack_wait", args.ack_wait),
                                  ("max_ack_pending", args.max_ack_pending)) if v is not None}
    base = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    summary: dict = {"nats_server": _version(), "settings": settings, "client": CLIENT}
    try:
        if args.what in ("all", "throughput"):
            summary["throughput"] = throughput(base, args.messages, args.publishers, args.runs)
            CLIENT["max_inflight"] = args.max_inflight
        if args.what in ("all", "latency"):
            summary["latency"] = latency(base, args.rate, args.seconds, args.failover_publishers,
                                         args.runs)
        if args.what == "rabbitmq":  # not in "all": a brief comparison, see docs/cluster.md
            summary["rabbitmq"] = rabbitmq(base, args.messages, args.publishers, args.rate,
                                           args.seconds, args.kill_after,
                                           args.failover_publishers, args.runs)
        if args.what in ("all", "failover"):
            summary["failover"] = failover(base, args.rate, args.seconds, args.kill_after,
                                           args.runs, args.victim, args.failover_publishers,
                                           **settings)
    finally:
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    return 0


def _version() -> str:
    from devservices.nats import nats_server_binary

    out = subprocess.run([nats_server_binary() or "nats-server", "--version"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
