"""Secrets never reach logs or output: the MQTT password, the database password and webhook
secrets given to a running ingest (with debug logging) and to ``config show``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from alerts.signing import new_secret

pytestmark = pytest.mark.e2e


def test_secrets_stay_out_of_logs_and_output(broker, dsn, run_dir, tmp_path, publish, poll,
                                             db):
    mqtt_password = "mqtt-Pa55-" + os.urandom(6).hex()
    db_password = "db-Pa55-" + os.urandom(6).hex()
    hook_secret = new_secret()
    with_password = dsn.replace("postgres@", f"postgres:{db_password}@")  # trust auth
    config = tmp_path / "muckwatch.toml"
    config.write_text(f'''
[mqtt]
username = "ingest"
password = "{mqtt_password}"

[alerts]
worker = true
poll_s = 0.2

[[alerts.subscriptions]]
id = "secret-test"
url = "http://127.0.0.1:9/unreachable"
secret = "{hook_secret}"
''')
    env = {**os.environ, "MUCKWATCH_CONFIG": str(config), "MUCKWATCH_DSN": with_password,
           "MUCKWATCH_MQTT_HOST": "127.0.0.1", "MUCKWATCH_MQTT_PORT": str(broker.port),
           "MUCKWATCH_MQTT_CLIENT_ID": "secret-test-ingest",
           "MUCKWATCH_MQTT_TOPIC_ROOT": "secret/v1"}
    log_path = run_dir / "ingest-secrets.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "muckwatch", "-v", "run"], env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 60
        while "ingest running" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        publish("secret/v1/013800009999/telemetry", '{"v":1,"ts":1,"lon":0}')  # a reject
        time.sleep(2.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        db.rollback()
        db.execute("DELETE FROM alert_subscriptions WHERE id = 'secret-test'")
        db.commit()
    shown = subprocess.run([sys.executable, "-m", "muckwatch", "config", "show"], env=env,
                           capture_output=True, text=True, timeout=60)
    text = log_path.read_text() + out + shown.stdout + shown.stderr
    assert "ingest running" in text and "[alerts]" in shown.stdout
    for secret in (mqtt_password, db_password, hook_secret, hook_secret[6:]):
        assert secret not in text, "a secret leaked into logs or output"
