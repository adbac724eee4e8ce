"""Long jobs show progress bars on a terminal (replay, import, migrations; simulate has its own
test) and stay quiet when their output goes to a file or a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def on_terminal(args: list[str], env: dict | None = None) -> tuple[int, str]:
    """Run ``muckwatch ARGS`` with stderr on a pseudo-terminal; return (code, what it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real size
    proc = subprocess.Popen([sys.executable, "-m", "muckwatch", *args], stdout=subprocess.PIPE,
                            stderr=slave, env={**os.environ, **(env or {})}, cwd=REPO)
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    proc.communicate(timeout=120)
    os.close(master)
    return proc.returncode, drawn.decode(errors="replace")


def test_replay_draws_a_bar_on_a_terminal_and_not_into_a_pipe():
    args = ["replay", "data/examples/detour.jsonl", "--city", "data/sample-city"]
    code, drawn = on_terminal(args)
    assert code == 0 and "replaying" in drawn and "lines" in drawn, drawn
    piped = subprocess.run([sys.executable, "-m", "muckwatch", *args], capture_output=True,
                           text=True, timeout=120, cwd=REPO)
    assert piped.returncode == 0 and "replaying:" not in piped.stderr


def test_import_and_migrate_draw_bars(dsn):
    env = {"MUCKWATCH_DSN": dsn}
    code, drawn = on_terminal(["db", "migrate"], env)
    assert code == 0 and "migrating" in drawn, drawn
    code, drawn = on_terminal(["import", "city", "data/sample-city"], env)
    assert code == 0 and "importing" in drawn and "4/4" in drawn, drawn
