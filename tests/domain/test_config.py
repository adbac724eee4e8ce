"""Settings: defaults, TOML file, MUCKWATCH_* overrides, clear errors, masked secrets."""

from __future__ import annotations

import pytest

from domain.config import ConfigError, as_dict, load_settings, to_toml
from domain.settings import Settings


def test_defaults_without_file_or_env():
    s = load_settings(None, env={})
    assert s == Settings()
    assert s.mqtt.receive_maximum > s.ingest.batch_max


def test_file_then_environment(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[mqtt]\nport = 1999\nclient_id = "a"\n[ingest]\nbatch_max = 100\n')
    s = load_settings(f, env={"MUCKWATCH_MQTT_PORT": "2001", "MUCKWATCH_DSN": "postgresql://x/y",
                              "MUCKWATCH_INGEST_BATCH_WAIT_MS": "75",
                              "MUCKWATCH_RUN_DIR": "/tmp/ignored", "OTHER": "1"})
    assert s.mqtt.port == 2001 and s.mqtt.client_id == "a"
    assert s.ingest.batch_max == 100 and s.ingest.batch_wait_ms == 75
    assert s.database.dsn == "postgresql://x/y"


def test_config_file_from_environment(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[city]\ndir = "elsewhere"\n')
    assert load_settings(None, env={"MUCKWATCH_CONFIG": str(f)}).city.dir == "elsewhere"


@pytest.mark.parametrize(
    ("text", "env", "words"),
    [
        ("[mqtt]\nport = 'x'\n", {}, "[mqtt] port: expected int"),
        ("[mqtt]\nprot = 1\n", {}, "unknown key 'prot' in [mqtt]"),
        ("[brokers]\n", {}, "unknown config section [brokers]"),
        ("[mqtt\n", {}, "config file"),
        ("", {"MUCKWATCH_INGEST_BATCH_MAX": "many"}, "[ingest] batch_max: expected int"),
    ],
)
def test_mistakes_name_the_key(tmp_path, text, env, words):
    f = tmp_path / "m.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=None) as e:
        load_settings(f, env=env)
    assert words in str(e.value)


@pytest.mark.parametrize(("env", "key"), [
    ({"MQTT_RECEIVE_MAXIMUM": "100", "INGEST_BATCH_MAX": "500"}, "[mqtt] receive_maximum"),
    ({"MQTT_RECEIVE_MAXIMUM": "70000"}, "[mqtt] receive_maximum"),
    ({"INGEST_BATCH_MAX": "0"}, "[ingest] batch_max"),
    ({"MQTT_PORT": "0"}, "[mqtt] port"),
    ({"ALERTS_RETRY_SCHEDULE_S": "0,soon"}, "[alerts] retry_schedule_s"),
    ({"ALERTS_JITTER": "1.5"}, "[alerts] jitter"),
    ({"GATEWAY_LISTEN": "6808"}, "[gateway] listen"),
    ({"OBSERVABILITY_LISTEN": "localhost"}, "[observability] listen"),
    ({"OBSERVABILITY_LOG_FORMAT": "xml"}, "[observability] log_format"),
    ({"RULES_OFF_ROUTE_OPEN_FIXES": "0"}, "[rules] off_route_open_fixes"),
    ({"RULES_MIN_SATS": "-1"}, "[rules] min_sats"),
])
def test_cross_field_and_range_mistakes_are_refused_at_load_in_one_line(env, key):
    with pytest.raises(ConfigError) as e:
        load_settings(None, env={f"MUCKWATCH_{k}": v for k, v in env.items()})
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_muckwatch_run_with_a_bad_window_says_so_in_one_line_without_a_traceback(tmp_path):
    """The mistake the issue found: receive_maximum ≤ batch_max ended `muckwatch run` with
    a traceback from inside the receiver."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MUCKWATCH_MQTT_RECEIVE_MAXIMUM": "10",
           "MUCKWATCH_INGEST_BATCH_MAX": "5000", "MUCKWATCH_MQTT_PORT": "1"}
    done = subprocess.run([sys.executable, "-m", "muckwatch", "run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "[mqtt] receive_maximum" in lines[0], done.stderr


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_secrets_are_masked_when_shown():
    s = load_settings(None, env={"MUCKWATCH_MQTT_PASSWORD": "hunter2",
                                 "MUCKWATCH_DSN": "postgresql://app:s3cret@db:5432/muck"})
    text = to_toml(as_dict(s))
    assert "hunter2" not in text and "s3cret" not in text
    assert "postgresql://app:********@db:5432/muck" in text
    assert as_dict(s, masked=False)["mqtt"]["password"] == "hunter2"


def test_every_setting_is_documented_and_in_the_example_file():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    example = load_settings(docs / "muckwatch.example.toml", env={})
    assert example == Settings(), "the example file shows the defaults"
    text = (docs / "config.md").read_text()
    for section, values in as_dict(Settings()).items():
        assert f"## [{section}]" in text
        for key in values:
            assert f"| `{key}` |" in text, f"[{section}] {key} is not in docs/config.md"
