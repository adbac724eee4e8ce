"""A private Mosquitto for the demo, the tests and benchmarks.

Why private: `make demo` and `make test` must work on a fresh machine without touching (or
depending on) a broker that happens to run there. Each instance lives in a run directory, on a
free loopback port, and is stopped by whoever started it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devservices.common import (
    REPO_ROOT,
    ServiceError,
    free_port,
    give_to,
    stop_process,
    wait_for_port,
)


@dataclass
class PrivateMosquitto:
    """A Mosquitto broker started from the repository's mosquitto.conf on a loopback port."""

    run_dir: Path
    port: int = 0
    conf: Path = REPO_ROOT / "mosquitto.conf"
    proc: subprocess.Popen | None = None
    # further listeners of the file (e.g. TLS 8883) by their configured port → the port used
    more_ports: dict[int, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def runtime_config(self) -> str:
        """The repository file with its port and paths rewritten for this instance."""
        lines = []
        first = True
        for line in self.conf.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words[:1] == ["listener"]:
                # a private broker listens on loopback only, whatever the file says
                if first:
                    line = f"listener {self.port} 127.0.0.1"
                    first = False
                else:
                    port = self.more_ports.setdefault(int(words[1]), free_port())
                    line = f"listener {port} 127.0.0.1"
            elif words[:1] == ["persistence_location"]:
                line = f"persistence_location {self.run_dir}/"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 15.0) -> PrivateMosquitto:
        if shutil.which("mosquitto") is None:
            raise ServiceError("mosquitto is not installed (apt-get install mosquitto)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf_path = self.run_dir / "mosquitto.conf"
        conf_path.write_text(self.runtime_config(), encoding="utf-8")
        give_to("mosquitto", self.run_dir)
        log = open(self.run_dir / "mosquitto.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf_path)], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout_s, self.proc)
        except ServiceError as e:
            self.stop()
            tail = (self.run_dir / "mosquitto.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"mosquitto did not start: {e}\n{tail}") from None
        return self

    def stop(self, kill: bool = False) -> None:
        """Graceful stop (SIGTERM, persistence saved) unless ``kill`` (SIGKILL, a crash)."""
        stop_process(self.proc, grace_s=10, kill=kill)
