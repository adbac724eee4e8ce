"""Scale-out end to end (issue #12): topic partitions on a real Mosquitto, real PostgreSQL,
real ``muckwatch run`` processes.

The same simulated stream goes to (a) one worker consuming every partition, (b) two workers
with two partitions each, (c) two workers, one SIGKILLed mid-stream and its partitions moved
to the other. Each run has its own database and topic root; all must end with exactly the
same violations and trips — same ids, same times, same state.

The four deployments run at the same time (``deployments``): the stream is paced at SPEED,
about 100 messages a second, so four of them leave the cores mostly idle, and one stream's
wall time serves all four instead of each test waiting out its own. Nothing is shared
between them but the broker and the PostgreSQL cluster.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from devservices.rabbitmq import PrivateRabbitCluster
from domain.wire import partition_of
from simulator.mixed import MixedOptions, MixedScenario
from simulator.publish import MqttPublisher, stream
from tests.conftest import IngestProcess, create_database, ingest_env, wait_for
from tests.muckwatch.test_observability import endpoint, get, sample

PARTITIONS = 4
OPTIONS = MixedOptions(trucks=24, minutes=12, interval_s=5.0, seed=12, per_rule=1,
                       blind_episode_every=3)
# simulated time runs this many times faster than the wall clock: fast enough for a short
# test, slow enough that a 50 ms batch spans ~1 s of device time, well inside the 10 s
# reorder window, so which fixes count as late depends on the data, not on batch timing
SPEED = 20.0


@pytest.fixture(scope="module")
def scenario(city):
    scenario = MixedScenario(city, OPTIONS)
    deliveries = list(scenario.deliveries())
    keys = {(d.device, f["ts"]) for d in deliveries
            for f in (d.payload if isinstance(d.payload, list) else [d.payload])}
    return deliveries, len(keys)


class Run:
    """One deployment: its own database, topic root and client id prefix."""

    def __init__(self, name: str, broker, dsn: str, run_dir: Path,
                 cluster: PrivateRabbitCluster | None = None) -> None:
        self.name, self.broker, self.run_dir = name, broker, run_dir
        self.root = f"{name}-{uuid.uuid4().hex[:6]}/v1"
        self.dsn = dsn
        self.workers: list[IngestProcess] = []
        # on a clustered broker: every node for the workers and the publisher, MQTT 3.1.1
        self.cluster = cluster
        self.nodes = [("127.0.0.1", p) for p in cluster.mqtt_ports] if cluster else \
            [("127.0.0.1", broker.port)]
        self.broker_env = {"MUCKWATCH_MQTT_HOSTS": ",".join(f"{h}:{p}" for h, p in self.nodes),
                           "MUCKWATCH_MQTT_PROTOCOL": "3.1.1",
                           "MUCKWATCH_MQTT_KEEPALIVE_S": "5"} if cluster else {}

    def start(self, partitions: str | None, config: Path | None = None) -> IngestProcess:
        """A worker for ``partitions`` (None: from the ``config`` file, so SIGHUP can change
        them)."""
        extra = {"MUCKWATCH_INGEST_PARTITIONS": partitions} if partitions is not None else \
            {"MUCKWATCH_CONFIG": str(config)}
        env = ingest_env(self.broker, self.dsn, MUCKWATCH_MQTT_CLIENT_ID=self.root.split("/")[0],
                         MUCKWATCH_MQTT_TOPIC_ROOT=self.root,
                         MUCKWATCH_MQTT_PARTITIONS=str(PARTITIONS),
                         MUCKWATCH_INGEST_SNAPSHOT_S="1", **self.broker_env, **extra)
        log = self.run_dir / f"ingest-{self.root.split('/')[0]}-{len(self.workers)}.log"
        proc = IngestProcess(env, log)
        self.workers.append(proc)
        return proc

    def publish(self, deliveries) -> None:
        pub = MqttPublisher(*self.nodes[0], client_id=f"pub-{self.root[:20]}",
                            partitions=PARTITIONS, nodes=self.nodes).connect()
        try:
            stream(deliveries, pub, start_ms=deliveries[0].at_ms, speed=SPEED, root=self.root)
        finally:
            pub.close()

    def stored(self) -> int:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]

    def outcome(self) -> tuple[list[tuple], list[tuple]]:
        with psycopg.connect(self.dsn) as conn:
            violations = conn.execute(
                "SELECT id, rule, device_id, start_ts, end_ts, state, late, permit_id,"
                " fence_id, round(peak::numeric, 3) FROM violations ORDER BY id").fetchall()
            trips = conn.execute(
                "SELECT id, device_id, left_at, destination, arrived_at FROM trips"
                " ORDER BY id").fetchall()
        return violations, trips

    def stop_all(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                code, _ = w.stop()
                assert code == 0, w.log_path.read_text()[-3000:]


def wait_stored(run: Run, expected: int, timeout_s: float = 120) -> None:
    got = wait_for(lambda: run.stored() >= expected, timeout_s=timeout_s, interval_s=0.5)
    assert got, f"{run.name}: {run.stored()} of {expected} fixes stored"


def run_single(run: Run, scenario) -> tuple[list[tuple], list[tuple]]:
    """The reference: one worker consuming all partitions."""
    deliveries, expected = scenario
    run.start("")
    try:
        run.publish(deliveries)
        wait_stored(run, expected)
    finally:
        run.stop_all()
    violations, trips = run.outcome()
    assert len(violations) >= 5 and len({v[1] for v in violations}) >= 3, violations
    return violations, trips


def run_two_workers(run: Run, scenario) -> tuple[list[tuple], list[tuple]]:
    """Two workers with two partitions each, from start to end."""
    deliveries, expected = scenario
    run.start("0-1")
    run.start("2-3")
    try:
        run.publish(deliveries)
        wait_stored(run, expected)
    finally:
        run.stop_all()
    return run.outcome()


def run_kill_and_restart(run: Run, scenario) -> tuple[int, IngestProcess, str, tuple]:
    """Worker 2 is SIGKILLed mid-stream; worker 1 is stopped and restarted with all four
    partitions."""
    def restart_with_all(first: IngestProcess) -> IngestProcess:
        code, _ = first.stop()
        assert code == 0, first.log_path.read_text()[-3000:]
        time.sleep(0.5)  # the stream goes on meanwhile: it queues in the partitions' sessions
        return run.start("0-3")

    at_kill, survivor, metrics = kill_worker_two_mid_stream(run, scenario, run.start("0-1"),
                                                            restart_with_all)
    return at_kill, survivor, metrics, run.outcome()


def run_kill_and_sighup(run: Run, scenario, config: Path) -> tuple[int, str, tuple]:
    """Worker 2 is SIGKILLed mid-stream; worker 1 gets partitions 2-3 added to its config
    file and SIGHUP."""
    config.write_text('[ingest]\npartitions = "0-1"\n')

    def add_partitions(first: IngestProcess) -> IngestProcess:
        config.write_text('[ingest]\npartitions = "0-3"\n')
        first.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "took over topic partitions 2,3; now consuming 0,1,2,3"
                        in first.log_path.read_text(), timeout_s=30)
        return first

    at_kill, _, metrics = kill_worker_two_mid_stream(run, scenario, run.start(None, config),
                                                     add_partitions)
    return at_kill, metrics, run.outcome()


def run_cluster_crash(run: Run, scenario, config: Path) -> tuple[int, int, str, tuple]:
    """On a 3-node RabbitMQ cluster (issue #25): worker 2 is SIGKILLed mid-stream and, at the
    same moment, the broker node worker 1 and the terminals are connected to is killed -9;
    worker 1 finds another node by itself, gets worker 2's partitions on SIGHUP, and the
    terminals' publisher moves on too."""
    assert run.cluster is not None
    config.write_text('[ingest]\npartitions = "0-1"\n')
    killed: list[int] = []

    def lose_a_node_and_add_partitions(first: IngestProcess) -> IngestProcess:
        port = int(re.findall(r"connected to 127\.0\.0\.1:(\d+)",
                              first.log_path.read_text())[-1])
        node = run.cluster.mqtt_ports.index(port) + 1
        run.cluster.kill(node)
        killed.append(node)
        config.write_text('[ingest]\npartitions = "0-3"\n')
        first.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "now consuming 0,1,2,3" in first.log_path.read_text(),
                        timeout_s=60), first.log_path.read_text()[-3000:]
        return first

    at_kill, _, metrics = kill_worker_two_mid_stream(run, scenario, run.start(None, config),
                                                     lose_a_node_and_add_partitions)
    assert run.stored() == scenario[1], "every acknowledged fix stored exactly once"
    return at_kill, killed[0], metrics, run.outcome()


@pytest.fixture(scope="module")
def broker_cluster(run_dir):
    cluster = PrivateRabbitCluster(run_dir / "rabbit-scale").start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def deployments(scenario, broker, dsn, run_dir, tmp_path_factory,
                broker_cluster) -> dict[str, Future]:
    """The five deployments, run at once, each in its own thread with its own database
    (created one after the other first) and topic root; a test reads its deployment's
    ``result()``, which re-raises whatever failed in that deployment."""
    runs = {name: Run(f"scale-{name}", broker, create_database(dsn), run_dir)
            for name in ("one", "two", "kill", "hup")}
    runs["cluster"] = Run("scale-cluster", broker, create_database(dsn), run_dir,
                          cluster=broker_cluster)
    config = tmp_path_factory.mktemp("scale-hup") / "worker-1.toml"
    cluster_config = tmp_path_factory.mktemp("scale-cluster") / "worker-1.toml"
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {
            "one": pool.submit(run_single, runs["one"], scenario),
            "two": pool.submit(run_two_workers, runs["two"], scenario),
            "kill": pool.submit(run_kill_and_restart, runs["kill"], scenario),
            "hup": pool.submit(run_kill_and_sighup, runs["hup"], scenario, config),
            "cluster": pool.submit(run_cluster_crash, runs["cluster"], scenario,
                                   cluster_config),
        }
    return futures  # leaving the pool waited for all five


@pytest.fixture(scope="module")
def single(deployments):
    """The reference: one worker consuming all partitions (its violations, its trips)."""
    return deployments["one"].result()


VOLUME = "PERMIT_VOLUME_EXCEEDED"


def assert_same(outcome, single) -> None:
    """The single worker's rows, exactly — after a crash, a takeover and a broker node's
    death too — but for PERMIT_VOLUME_EXCEEDED, which counts a job's loads across its
    trucks: workers that split a job count their own departures between reference reloads
    (docs/scaling.md), so one may be recognised late or not at all, never twice: none that
    the single worker did not find."""
    violations, trips = outcome
    mine = [v for v in violations if v[1] != VOLUME]
    theirs = [v for v in single[0] if v[1] != VOLUME]
    assert mine == theirs
    assert {v for v in violations if v[1] == VOLUME} <= {v for v in single[0] if v[1] == VOLUME}
    assert trips == single[1]


def test_partitions_split_the_fleet_between_workers(scenario):
    """The stream really is partitioned: every partition carries vehicles."""
    deliveries, _ = scenario
    counts = [0] * PARTITIONS
    for device in {d.device for d in deliveries}:
        counts[partition_of(device, PARTITIONS)] += 1
    assert all(counts), counts


def test_two_workers_produce_exactly_the_violations_of_one(single, deployments):
    violations, trips = deployments["two"].result()
    assert_same((violations, trips), single)
    print(f"\n[scale-out] two workers, {PARTITIONS} partitions: {len(violations)} violations, "
          f"{len(trips)} trips, identical to one worker")


def test_killed_worker_partitions_move_to_the_survivor_with_identical_ids(
        scenario, single, deployments):
    """Worker 2 is SIGKILLed mid-stream; the survivor is restarted with all four partitions
    (a graceful stop saves its own vehicles) and takes over worker 2's sessions: what the
    broker queued, what worker 2 never acked, and its vehicles' rule state (last periodic
    snapshot + the fixes stored after it)."""
    at_kill, survivor, metrics, outcome = deployments["kill"].result()
    assert_same(outcome, single)
    took_over = [tuple(map(int, m)) for m in re.findall(
        r"took over (\d+) vehicles: rule state restored, (\d+) stored fixes",
        survivor.log_path.read_text())]
    vehicles, fixes = sum(v for v, _ in took_over), sum(f for _, f in took_over)
    print(f"\n[scale-out] worker killed at {at_kill} of {scenario[1]} fixes stored; the "
          f"survivor, restarted, took over its partitions: {len(single[0])} violations, "
          f"{len(single[1])} trips, identical ids to one worker; {vehicles} vehicles' state "
          f"restored, {fixes} stored fixes re-evaluated")
    assert vehicles > 0 and fixes > 0
    # operators see the same on /metrics
    assert sample(metrics, "muckwatch_handover_vehicles_total") == vehicles
    assert sample(metrics, "muckwatch_handover_fixes_total") == fixes
    assert sample(metrics, "muckwatch_rule_state_snapshots_total") > 0


def test_survivor_takes_the_killed_workers_partitions_over_live_on_sighup(
        scenario, single, deployments):
    """The same crash, but the survivor keeps running: its config file gets partitions 2-3
    added and SIGHUP makes it connect their sessions. Still the single worker's rows."""
    at_kill, metrics, outcome = deployments["hup"].result()
    assert_same(outcome, single)
    restored = sample(metrics, "muckwatch_handover_vehicles_total")
    assert restored > 0
    print(f"\n[scale-out] worker killed at {at_kill} of {scenario[1]} fixes stored; the "
          f"survivor took its partitions over on SIGHUP without stopping: {len(single[0])} "
          f"violations, {len(single[1])} trips, identical ids to one worker; {restored:.0f} "
          f"vehicles' state restored, "
          f"{sample(metrics, 'muckwatch_handover_fixes_total'):.0f} stored fixes re-evaluated")


def test_on_a_cluster_a_dead_worker_and_a_dead_broker_node_change_nothing(
        scenario, single, deployments):
    """Worker 2 killed -9 and, at once, the broker node the survivor and the terminals are
    on: the survivor moves to another node, takes worker 2's partitions over, and the rows
    are the single worker's on one Mosquitto — no acknowledged fix lost, none twice."""
    at_kill, node, metrics, outcome = deployments["cluster"].result()
    assert_same(outcome, single)
    assert sample(metrics, "muckwatch_handover_vehicles_total") > 0
    print(f"\n[scale-out] RabbitMQ cluster: worker 2 and broker node {node} killed at {at_kill} of "
          f"{scenario[1]} fixes stored; the survivor moved to another node and took the "
          f"partitions over: {len(single[0])} violations, {len(single[1])} trips, identical "
          f"ids to one worker on one Mosquitto")


def kill_worker_two_mid_stream(run: Run, scenario, first: IngestProcess,
                               take_over) -> tuple[int, IngestProcess, str]:
    """Worker 2 (partitions 2-3) is SIGKILLed once 40 % of the stream is stored, then
    ``take_over(first)`` moves its partitions and returns the worker that has them. Returns
    the fixes stored at the kill, that worker, and its /metrics once everything is stored."""
    deliveries, expected = scenario
    second = run.start("2-3")
    publisher = threading.Thread(target=run.publish, args=(deliveries,))
    publisher.start()
    try:
        assert wait_for(lambda: run.stored() >= expected * 0.4, timeout_s=60, interval_s=0.1)
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(timeout=30)
        at_kill = run.stored()
        survivor = take_over(first)
        publisher.join(timeout=120)
        wait_stored(run, expected)
        _, metrics = get(endpoint(survivor) + "/metrics")
    finally:
        publisher.join(timeout=120)
        run.stop_all()
    assert at_kill < expected, "the worker was killed after the stream had ended"
    return at_kill, survivor, metrics
