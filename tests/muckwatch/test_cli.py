"""The CLI as a user meets it: help with examples, one-sentence errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from muckwatch.services import free_port


def muckwatch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muckwatch", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_help_lists_commands_with_examples():
    out = muckwatch("--help")
    assert out.returncode == 0
    for word in ("run", "demo", "db", "import", "services", "config", "coords", "examples:"):
        assert word in out.stdout


@pytest.mark.parametrize("command", ["run", "demo", "db", "import", "services", "config",
                                     "coords"])
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
