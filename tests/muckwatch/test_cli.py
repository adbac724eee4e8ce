"""The CLI as a user meets it: help with examples, one-sentence errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devservices.common import free_port


def muckwatch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muckwatch", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_help_lists_commands_with_examples():
    out = muckwatch("--help")
    assert out.returncode == 0
    for word in ("run", "demo", "db", "import", "services", "config", "coords", "examples:"):
        assert word in out.stdout


@pytest.mark.parametrize("command", [
    "run", "demo", "replay", "simulate", "accuracy", "alerts", "gateway", "broker", "devices",
    "jt808", "db", "scores", "company-role", "import", "report", "services", "config",
    "geofence", "coords"])
def test_every_subcommand_has_an_example(command):
    out = muckwatch(command, "--help")
    assert out.returncode == 0 and "example:" in out.stdout


def test_coords_convert_prints_eight_decimals():
    out = muckwatch("coords", "convert", "--from", "wgs84", "--to", "gcj02", "114.0", "22.5")
    assert out.returncode == 0
    lon, lat = out.stdout.split()
    assert len(lon.split(".")[1]) == 8 and len(lat.split(".")[1]) == 8
    assert float(lon) != 114.0 and float(lat) != 22.5


def test_config_show_masks_secrets():
    out = muckwatch("config", "show", MUCKWATCH_MQTT_PASSWORD="hunter2",
                    MUCKWATCH_DSN="postgresql://u:pw123@h/db")
    assert out.returncode == 0
    assert "hunter2" not in out.stdout and "pw123" not in out.stdout and "[mqtt]" in out.stdout


def assert_one_sentence(out: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    for w in words:
        assert w in out.stderr


def test_missing_city_directory_is_a_user_error(tmp_path):
    out = muckwatch("import", "city", str(tmp_path / "nowhere"))
    assert_one_sentence(out, 2, "nowhere", "not a directory")


def test_bad_config_is_a_user_error(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[mqtt]\nport = 'abc'\n")
    assert_one_sentence(muckwatch("--config", str(f), "config", "show"), 2, "[mqtt] port")


def test_unreachable_database_says_where():
    port = free_port()
    out = muckwatch("db", "status", MUCKWATCH_DSN=f"postgresql://postgres@127.0.0.1:{port}/x")
    assert_one_sentence(out, 1, f"127.0.0.1:{port}/x")


def test_unreachable_broker_says_where(dsn):
    port = free_port()
    out = muckwatch("run", MUCKWATCH_DSN=dsn, MUCKWATCH_MQTT_PORT=str(port))
    assert_one_sentence(out, 1, f"127.0.0.1:{port}")


@pytest.mark.parametrize("args, code, words", [
    (["replay", "/nope.jsonl", "--city", "data/sample-city"], 2, ["/nope.jsonl", "does not exist"]),
    (["report", "--since", "yesterday"], 2, ["--since", "24h"]),
    (["report", "-o", "/nonexistent/dir/r.html"], 2, ["/nonexistent/dir", "does not exist"]),
    (["report"], 1, ["PostgreSQL at 127.0.0.1"]),
    (["scores"], 1, ["PostgreSQL at 127.0.0.1"]),
    (["alerts", "list"], 1, ["PostgreSQL at 127.0.0.1"]),
    (["jt808", "decode", "zz"], 2, ["not hexadecimal"]),
    (["accuracy", "/nope", "/nope2"], 2, ["/nope", "does not exist"]),
    (["simulate", "--trucks", "5", "--duration", "1", "--out", "/nonexistent/x.jsonl",
      "--truth", "/dev/null"], 2, ["/nonexistent", "does not exist"]),
    (["gateway", "--mqtt", "mqtt://127.0.0.1:1"], 1, ["MQTT broker at 127.0.0.1:1"]),
])
def test_user_mistakes_and_outages_are_one_sentence(args, code, words):
    """What a user gets wrong, or finds down, is said in one sentence with where; never a
    traceback."""
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "muckwatch", *args], capture_output=True,
                         text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(
                             os.path.dirname(os.path.abspath(__file__)))),
                         env={**os.environ,
                              "MUCKWATCH_DSN": f"postgresql://postgres@127.0.0.1:{port}/x"})
    assert_one_sentence(out, code, *words)


def test_db_migrate_and_status(dsn):
    out = muckwatch("db", "migrate", MUCKWATCH_DSN=dsn)
    assert out.returncode == 0
    assert "schema is up to date" in out.stdout and "mode: postgresql" in out.stdout


def test_services_up_status_down(run_dir):
    env = {"MUCKWATCH_RUN_DIR": str(run_dir / "services-cli")}
    up = muckwatch("services", "up", **env)
    try:
        assert up.returncode == 0, up.stderr
        psql_line = next(line for line in up.stdout.splitlines() if line.startswith("psql "))
        query = subprocess.run([*psql_line.split(), "-tAc", "SELECT 42"], capture_output=True,
                               text=True, timeout=30)
        assert query.stdout.strip() == "42", query.stderr
        assert "mqtt_port" in muckwatch("services", "status", **env).stdout
    finally:
        down = muckwatch("services", "down", **env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert muckwatch("services", "status", **env).stdout.strip() == "not running"


def test_services_up_twice_prints_the_running_services(run_dir):
    """A second ``services up`` starts nothing and prints what runs (it used to end in a
    pg_ctl error, exit 1): same broker, same database, a working psql line, exit 0."""
    env = {"MUCKWATCH_RUN_DIR": str(run_dir / "services-twice")}
    try:
        first = muckwatch("services", "up", **env)
        assert first.returncode == 0, first.stderr
        again = muckwatch("services", "up", **env)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr and "Traceback" not in again.stderr
        assert again.stdout == first.stdout  # mosquitto url and pid, DSN, psql, export
        psql_line = next(line for line in again.stdout.splitlines() if line.startswith("psql "))
        query = subprocess.run([*psql_line.split(), "-tAc", "SELECT 42"], capture_output=True,
                               text=True, timeout=30)
        assert query.stdout.strip() == "42", query.stderr
    finally:
        down = muckwatch("services", "down", **env)
    assert down.returncode == 0 and "stopped" in down.stdout


def test_geofence_query_csv_matches_shapely(tmp_path, city):
    import json

    import numpy as np
    import shapely

    from domain.coords import convert

    rng = np.random.default_rng(1)
    fences_path = city.directory / "fences.geojson"
    geoms = [f.geometry for f in city.fences]
    bounds = np.array([g.bounds for g in geoms])
    pick = rng.integers(0, len(geoms), 300)
    lon = rng.uniform(bounds[pick, 0], bounds[pick, 2])
    lat = rng.uniform(bounds[pick, 1], bounds[pick, 3])
    vertices = np.vstack([shapely.get_coordinates(g)[:3] for g in geoms])
    lon = np.concatenate([lon, vertices[:, 0]])
    lat = np.concatenate([lat, vertices[:, 1]])
    points = tmp_path / "points.csv"
    points.write_text("id,lon,lat\n" + "".join(
        f"p{k},{x!r},{y!r}\n" for k, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(),
                                                              strict=True))))
    out = muckwatch("geofence", "query", str(fences_path), str(points))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "point_id,fence_id"
    # every feature of the file answers, the sample city's districts too (which district a
    # point is in is a question operators ask as well)
    expected = sorted(f"p{k},{f.id}" for k in range(len(lon))
                      for f in [*city.fences, *city.districts]
                      if f.geometry.covers(shapely.Point(lon[k], lat[k])))
    assert lines[1:] == expected and len(expected) > 300

    # the same fences drawn in GCJ-02 give the same answer with --crs gcj02
    data = json.loads(fences_path.read_text())
    for feature in data["features"]:
        g = shapely.geometry.shape(feature["geometry"])
        g = shapely.transform(g, lambda xy: np.column_stack(
            convert(xy[:, 0], xy[:, 1], "wgs84", "gcj02")))
        feature["geometry"] = shapely.geometry.mapping(g)
    gcj = tmp_path / "fences-gcj02.geojson"
    gcj.write_text(json.dumps(data))
    out = muckwatch("geofence", "query", str(gcj), str(points), "--crs", "gcj02")
    # the round trip moves vertices by < 1e-9°: random points keep their answers exactly;
    # the points placed exactly on vertices may fall either side and are left out
    def random_only(rows):
        return {r for r in rows if int(r.split(",")[0][1:]) < 300}

    assert random_only(out.stdout.splitlines()[1:]) == random_only(expected)


def test_geofence_query_errors(tmp_path, city):
    fences_path = str(city.directory / "fences.geojson")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lon,lat\na,114,22.5\nb,east,22.5\n")
    assert_one_sentence(muckwatch("geofence", "query", fences_path, str(bad)), 2,
                        "bad.csv:3", "'east'")
    bad.write_text("name,x,y\n")
    assert_one_sentence(muckwatch("geofence", "query", fences_path, str(bad)), 2,
                        "header must have id,lon,lat")
    broken = tmp_path / "f.geojson"
    broken.write_text('{"type":"FeatureCollection","features":[{"type":"Feature",'
                      '"properties":{"id":"z"},"geometry":{"type":"Polygon","coordinates":'
                      '[[[114,22],[115,22],[114,23]]]}}]}')
    assert_one_sentence(muckwatch("geofence", "query", str(broken), str(bad)), 2,
                        "z: exterior ring: ring is not closed")


def test_the_scoring_table_comes_from_the_config(dsn):
    """[scoring] deductions is what the scores are computed with; a bad entry is named."""
    import psycopg

    heavy = "OVERSPEED=7/8/9"
    out = muckwatch("scores", MUCKWATCH_DSN=dsn, MUCKWATCH_SCORING_DEDUCTIONS=heavy)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(dsn) as conn:
        got = conn.execute("SELECT severity, points FROM score_deductions"
                           " WHERE rule = 'OVERSPEED' ORDER BY 1").fetchall()
    assert [(s, float(p)) for s, p in got] == [(1, 7.0), (2, 8.0), (3, 9.0)]
    assert muckwatch("db", "migrate", MUCKWATCH_DSN=dsn).returncode == 0  # back to defaults
    with psycopg.connect(dsn) as conn:
        got = conn.execute("SELECT points FROM score_deductions WHERE rule = 'OVERSPEED'"
                           " ORDER BY severity").fetchall()
    assert [float(p) for (p,) in got] == [1.0, 2.0, 4.0]
    bad = muckwatch("scores", MUCKWATCH_DSN=dsn, MUCKWATCH_SCORING_DEDUCTIONS="SPEEDING=1/2/3")
    assert_one_sentence(bad, 2, "SPEEDING", "RULE=p1/p2/p3")
