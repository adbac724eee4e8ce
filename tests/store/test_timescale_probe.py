"""What works on the private TimescaleDB (PGlite + TimescaleDB 2.23 over the wire) via psycopg 3.

Each test proves one capability our store and migrations rely on, or pins down a limitation
by asserting what happens instead, so a change in the server or the packages shows up here.
The server allows one connection at a time: every test opens its own and closes it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devservices.timescale import PrivateTimescale, available

pytestmark = pytest.mark.timescale

if not available():  # make test installs them: a missing node is a broken set-up, not a skip
    raise RuntimeError("node and npm are needed for the TimescaleDB tests (apt-get install "
                       "nodejs npm)")

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
TELEMETRY = """
    CREATE TABLE {name} (
        device_id text NOT NULL,
        ts timestamptz NOT NULL,
        speed real,
        PRIMARY KEY (device_id, ts)
    )
"""


@pytest.fixture(scope="module")
def ts_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="muckwatch-timescale-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(ts_dir: Path) -> Iterator[PrivateTimescale]:
    ts = PrivateTimescale(ts_dir / "memory").start()
    yield ts
    ts.stop()
    assert ts.proc is not None and ts.proc.returncode == 0, ts._log_tail()


@pytest.fixture
def conn(server: PrivateTimescale) -> Iterator[psycopg.Connection]:
    with psycopg.connect(server.dsn, autocommit=True, connect_timeout=10) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        yield c


def hypertable(conn: psycopg.Connection, name: str) -> None:
    conn.execute(TELEMETRY.format(name=name))
    conn.execute(f"SELECT create_hypertable('{name}', by_range('ts', INTERVAL '1 day'))")


def fill(conn: psycopg.Connection, name: str, hours: int, devices: int = 3) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {name} VALUES (%s, %s, %s)",
            [(f"d{i % devices}", NOW - dt.timedelta(hours=i), float(i)) for i in range(hours)],
        )


def test_extension_is_available_not_preloaded_and_creatable(server: PrivateTimescale) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as c:
        listed = c.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        assert listed is not None and listed[0].startswith("2.23")
        # the library is loaded on demand, not through shared_preload_libraries
        assert c.execute("SHOW shared_preload_libraries").fetchone() == ("",)
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")  # idempotent
        version = c.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert version is not None and version[0].startswith("2.23")
        assert c.info.parameter_status("server_version") == "17.5"


def test_connection_parameters(server: PrivateTimescale) -> None:
    """No password, no TLS; user and database in the DSN are ignored."""
    other = server.dsn.replace("postgres@", "someone@").rsplit("/", 1)[0] + "/muckwatch"
    for dsn in (server.dsn, other, server.dsn + "?sslmode=disable"):
        with psycopg.connect(dsn, autocommit=True) as c:
            assert c.execute("SELECT current_user, current_database()").fetchone() == (
                "postgres", "template1")
            assert c.info.parameter_status("TimeZone") == "GMT"
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(server.dsn + "?sslmode=require", connect_timeout=5)


def test_hypertable_with_device_time_primary_key(conn: psycopg.Connection) -> None:
    conn.execute(TELEMETRY.format(name="ht"))
    created = conn.execute("SELECT create_hypertable('ht', by_range('ts', INTERVAL '1 day'))")
    assert created.fetchone() is not None
    assert conn.execute(
        "SELECT num_dimensions FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = 'ht'"
    ).fetchone() == (1,)
    fill(conn, "ht", hours=72)
    chunks = conn.execute("SELECT count(*) FROM show_chunks('ht')").fetchone()[0]
    assert chunks >= 3


def test_insert_on_conflict_do_nothing_with_parameters(server: PrivateTimescale) -> None:
    sql = "INSERT INTO upsert VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        hypertable(c, "upsert")
        assert c.execute(sql, ("d1", NOW, 1.5)).rowcount == 1
        assert c.execute(sql, ("d1", NOW, 9.9)).rowcount == 0
        # past psycopg's prepare_threshold (5): server-side prepared statements are used
        for i in range(10):
            c.execute(sql, ("d2", NOW - dt.timedelta(minutes=i), float(i)))
        assert c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] >= 1
    # a new connection gets a fresh session: psycopg's _pg3_0 names do not collide
    with psycopg.connect(server.dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        for i in range(10):
            c.execute(sql, ("d3", NOW - dt.timedelta(minutes=i), float(i)))
        assert c.execute("SELECT count(*) FROM upsert").fetchone() == (21,)


def test_compression_setting_policy_and_chunks(conn: psycopg.Connection) -> None:
    hypertable(conn, "comp")
    fill(conn, "comp", hours=24 * 20)
    conn.execute(
        "ALTER TABLE comp SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id')"
    )
    job = conn.execute("SELECT add_compression_policy('comp', INTERVAL '7 days')").fetchone()[0]
    assert isinstance(job, int)
    # there are no background workers: a policy is scheduled but runs only when called
    assert conn.execute(
        "SELECT count(*) FROM timescaledb_information.job_stats WHERE job_id = %s"
        " AND total_runs > 0", (job,)
    ).fetchone() == (0,)
    conn.execute("CALL run_job(%s)", (job,))
    total, compressed = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE is_compressed)"
        " FROM timescaledb_information.chunks WHERE hypertable_name = 'comp'"
    ).fetchone()
    assert 0 < compressed < total
    # compressed rows still read back, segment by segment
    assert conn.execute("SELECT count(*), count(DISTINCT device_id) FROM comp").fetchone() == (
        24 * 20, 3)


def test_retention_policy_drops_old_chunks(conn: psycopg.Connection) -> None:
    hypertable(conn, "ret")
    fill(conn, "ret", hours=24 * 10)
    job = conn.execute("SELECT add_retention_policy('ret', INTERVAL '5 days')").fetchone()[0]
    assert isinstance(job, int)
    conn.execute("CALL run_job(%s)", (job,))
    oldest = conn.execute("SELECT min(ts) FROM ret").fetchone()[0]
    assert oldest > NOW - dt.timedelta(days=6)


def test_continuous_aggregate_with_policy(conn: psycopg.Connection) -> None:
    hypertable(conn, "cag")
    fill(conn, "cag", hours=24 * 3, devices=2)
    conn.execute(
        "CREATE MATERIALIZED VIEW cag_daily WITH (timescaledb.continuous) AS"
        " SELECT time_bucket('1 day', ts) AS day, device_id, count(*) AS n, avg(speed) AS speed"
        " FROM cag GROUP BY 1, 2"
    )
    job = conn.execute(
        "SELECT add_continuous_aggregate_policy('cag_daily', start_offset => INTERVAL '30 days',"
        " end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes')"
    ).fetchone()[0]
    assert isinstance(job, int)
    assert conn.execute("SELECT sum(n) FROM cag_daily").fetchone() == (24 * 3,)
    # materialized only: new rows appear after a refresh (by the policy's job, or by hand)
    conn.execute("INSERT INTO cag VALUES ('late', %s, 1)", (NOW - dt.timedelta(days=2),))
    late = "SELECT sum(n) FROM cag_daily WHERE device_id = 'late'"
    assert conn.execute(late).fetchone() == (None,)
    conn.execute("CALL run_job(%s)", (job,))
    assert conn.execute(late).fetchone() == (1,)
    conn.execute("CALL refresh_continuous_aggregate('cag_daily', NULL, NULL)")


def test_multi_statement_string_works_in_one_execute(conn: psycopg.Connection) -> None:
    """Migrations send whole files in one execute() inside a transaction: that works."""
    script = """
        CREATE TABLE ms (device_id text NOT NULL, ts timestamptz NOT NULL, speed real,
                         PRIMARY KEY (device_id, ts));
        SELECT create_hypertable('ms', by_range('ts', INTERVAL '1 day'));
        ALTER TABLE ms SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id');
        SELECT add_compression_policy('ms', INTERVAL '7 days');
        -- a comment between statements
        INSERT INTO ms VALUES ('a', now(), 1), ('b', now(), 2);
        CREATE MATERIALIZED VIEW ms_daily WITH (timescaledb.continuous) AS
            SELECT time_bucket('1 day', ts) AS day, count(*) AS n FROM ms GROUP BY 1
        WITH NO DATA;
    """
    with conn.transaction():
        conn.execute(script)
    assert conn.execute("SELECT count(*) FROM ms").fetchone() == (2,)
    assert conn.execute(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
        " WHERE view_name = 'ms_daily'"
    ).fetchone() == (1,)
    # as on any PostgreSQL: a continuous aggregate WITH DATA needs autocommit, not a block
    with pytest.raises(psycopg.errors.ActiveSqlTransaction), conn.transaction():
        conn.execute(
            "CREATE MATERIALIZED VIEW ms_hourly WITH (timescaledb.continuous) AS"
            " SELECT time_bucket('1 hour', ts) AS h, count(*) FROM ms GROUP BY 1"
        )
    # a failing statement rolls the whole string back, and the connection stays usable
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute("INSERT INTO ms VALUES ('c', now(), 3); SELECT 1/0;")
    assert conn.execute("SELECT count(*) FROM ms").fetchone() == (2,)


def test_executemany_and_pipeline_work(conn: psycopg.Connection) -> None:
    hypertable(conn, "em")
    rows = [(f"d{i % 7}", NOW - dt.timedelta(seconds=i), float(i)) for i in range(5000)]
    with conn.cursor() as cur:  # ~200 KiB of Bind/Execute: many TCP chunks
        cur.executemany("INSERT INTO em VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", rows)
    assert conn.execute("SELECT count(*) FROM em").fetchone() == (5000,)
    with conn.pipeline():
        for i in range(500):
            conn.execute("INSERT INTO em VALUES ('p', %s, %s)", (NOW - dt.timedelta(seconds=i), i))
    assert conn.execute("SELECT count(*) FROM em WHERE device_id = 'p'").fetchone() == (500,)
    big = "x" * 1_000_000  # one message far bigger than a TCP chunk
    assert conn.execute("SELECT length(%s::text)", (big,)).fetchone() == (1_000_000,)


def test_copy_from_stdin_is_refused_copy_to_stdout_works(conn: psycopg.Connection) -> None:
    hypertable(conn, "cp")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="COPY FROM STDIN"):  # noqa: SIM117
        with conn.cursor() as cur, cur.copy("COPY cp (device_id, ts, speed) FROM STDIN") as copy:
            copy.write_row(("d1", NOW, 1.0))
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the server survived
    fill(conn, "cp", hours=10)
    with conn.cursor() as cur, cur.copy("COPY (SELECT * FROM cp) TO STDOUT") as copy:
        assert sum(1 for _ in copy.rows()) == 10


def test_one_connection_at_a_time_and_fresh_sessions(server: PrivateTimescale) -> None:
    first = psycopg.connect(server.dsn)  # not autocommit: leaves a transaction open
    first.execute("SET TIME ZONE 'Asia/Shanghai'")
    first.execute("CREATE TEMP TABLE scratch (x int)")
    # a second client is accepted but not answered while the first is connected (a raw
    # socket: psycopg keeps a timed-out attempt's socket open, and it would keep its place)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as waiting:
        waiting.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        waiting.settimeout(1.5)
        with pytest.raises(TimeoutError):
            waiting.recv(1)
    first.close()
    with psycopg.connect(server.dsn, autocommit=True, connect_timeout=10) as second:
        assert second.execute("SHOW TimeZone").fetchone() == ("GMT",)
        assert second.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
        assert second.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert second.execute("SHOW client_min_messages").fetchone() == ("notice",)


def test_data_directory_persists_across_restarts(ts_dir: Path) -> None:
    data = ts_dir / "persistent" / "pgdata"
    for round_ in (1, 2):
        ts = PrivateTimescale(ts_dir / "persistent", data_dir=data).start()
        try:
            with psycopg.connect(ts.dsn, autocommit=True) as c:
                if round_ == 1:
                    c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    hypertable(c, "kept")
                    fill(c, "kept", hours=30)
                else:
                    assert c.execute("SELECT count(*) FROM kept").fetchone() == (30,)
                    assert c.execute(
                        "SELECT count(*) FROM timescaledb_information.hypertables"
                        " WHERE hypertable_name = 'kept'"
                    ).fetchone() == (1,)
        finally:
            ts.stop()
        assert ts.proc is not None and ts.proc.returncode == 0, ts._log_tail()
