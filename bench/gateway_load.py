"""JT/T 808: decoding speed, and the gateway under 1,000 concurrent terminals.

* **decode**: 0x0200 frames (escaped frame → header → location with two extra items) decoded
  per second on one core, next to a baseline of merely unescaping and XOR-checking them.
* **gateway**: ``muckwatch gateway`` as its own process, a private Mosquitto, and 1,000 TCP
  connections from this process (register, authenticate, then bursts of location reports,
  each burst waiting for its answers). Every answer is an 'ok' sent after the broker
  acknowledged the fix, so answers/s is reports/s into MQTT.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONNECTIONS = 1000
BURST = 10  # reports per write; a terminal sends its next burst once answered
SECONDS = 20.0


def decode_rate(n: int = 200_000) -> dict:
    from gateway import codec
    from gateway.terminal import Terminal

    t = Terminal("013800000001")
    loc = codec.Location(0, 0x0302, 22.55, 114.05, 10, 30.0, 90,
                         datetime(2026, 11, 19, tzinfo=UTC), {0x01: b"\0\0\0\1", 0x31: b"\x0b"})
    frames = [t.location(loc)[1:-1] for _ in range(n)]
    best_decode = best_check = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for f in frames:
            codec.decode_location(codec.decode_frame(f).body)
        best_decode = min(best_decode, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for f in frames:
            raw = codec.unescape(f)
            codec.xor(raw[:-1])
        best_check = min(best_check, time.perf_counter() - t0)
    return {"frames": n, "decode_rate": n / best_decode, "check_rate": n / best_check}


async def _terminal(port: int, phone: str, until: float, counts: list[int],
                    started: asyncio.Event) -> None:
    from gateway import codec
    from gateway.terminal import Terminal

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t = Terminal(phone)
    writer.write(t.register())
    buffer = bytearray()
    while True:
        buffer += await reader.read(4096)
        frames, _ = codec.split_frames(buffer)
        if frames:
            break
    code = codec.decode_register_reply(codec.decode_frame(frames[0]).body)[2]
    writer.write(t.authenticate(code))
    await reader.read(4096)
    loc = codec.Location(0, 0x0302, 22.55, 114.05, 10, 30.0, 90,
                         datetime.now(UTC).replace(microsecond=0), {0x31: b"\x0b"})
    burst = b"".join(t.location(loc) for _ in range(BURST))
    await started.wait()
    while time.monotonic() < until:
        writer.write(burst)
        flags = 0
        while flags < 2 * BURST:
            data = await reader.read(65536)
            if not data:
                return
            flags += data.count(b"\x7e")
        counts[0] += BURST
    writer.close()


async def _drive(port: int) -> dict:
    counts = [0]
    started = asyncio.Event()
    until = time.monotonic() + 3600
    tasks = [asyncio.ensure_future(_terminal(port, f"0139{k:08d}", until, counts, started))
             for k in range(CONNECTIONS)]
    await asyncio.sleep(5)  # connections, registrations and authentications settle
    started.set()
    await asyncio.sleep(2)  # warm-up
    c0, t0 = counts[0], time.monotonic()
    await asyncio.sleep(SECONDS)
    c1, t1 = counts[0], time.monotonic()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"reports": c1 - c0, "seconds": t1 - t0, "rate": (c1 - c0) / (t1 - t0)}


def run() -> dict:
    from devservices.mosquitto import PrivateMosquitto

    out = decode_rate()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    broker = PrivateMosquitto(REPO / ".run" / "bench" / "mosquitto-gw")
    broker.start()
    log_path = REPO / ".run" / "bench" / "gateway.log"
    try:
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "muckwatch", "gateway", "--listen", "127.0.0.1:0",
                 "--mqtt", f"mqtt://127.0.0.1:{broker.port}"],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
        deadline = time.monotonic() + 30
        while not (m := re.search(r"listening on 127.0.0.1:(\d+)", log_path.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.05)
        cpu0 = _cpu(proc.pid)
        result = asyncio.run(_drive(int(m.group(1))))
        cpu1 = _cpu(proc.pid)
        out.update({f"gateway_{k}": v for k, v in result.items()})
        out["gateway_cpu_share"] = (cpu1 - cpu0) / (result["seconds"] + 7)
        out["connections"] = CONNECTIONS
        proc.terminate()
        try:
            proc.communicate(timeout=60)
            out["gateway_stopped_cleanly"] = proc.returncode == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out["gateway_stopped_cleanly"] = False
    finally:
        broker.stop()
    return out


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    r = run()
    for k, v in r.items():
        print(f"{k:22} {v:,.2f}" if isinstance(v, float) else f"{k:22} {v:,}")
