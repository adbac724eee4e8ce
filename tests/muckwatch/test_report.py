"""``muckwatch report``: one offline HTML file, rendered in headless Chromium — the screenshot
is not blank, the DOM holds a marker per violation with its plate and company, the evidence
track is drawn, and nothing is fetched from the network."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.batches import DeviceStatus, FixBatch, Rejects
from domain.events import Phase, ViolationEvent
from muckwatch.report import parse_since
from store.database import Store

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and unfiltered RGBA rows of an 8-bit RGBA/RGB PNG (what Chromium
    writes), enough to tell a drawn page from a blank one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 4 if colour == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytes(width * channels)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = bytes(line)
    return width, height, rows


def test_since_accepts_durations_and_dates():
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-29", now) == datetime(2026, 11, 29, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"expected e\.g\. 24h"):
        parse_since("yesterday", now)


def test_report_renders_in_chromium_with_every_violation(dsn, city, tmp_path):
    browser = chromium()
    assert browser is not None, "chromium is missing: `make setup` installs it"
    tag = f"rep{os.getpid()}"
    now = datetime.now(UTC).replace(microsecond=0)
    vehicle = city.vehicles[0]
    route = city.permits[0].route
    events = []
    for k, rule in enumerate(["OFF_ROUTE", "UNAUTHORISED_DUMP", "OVERSPEED"]):
        p = route.interpolate(0.2 + 0.3 * k, normalized=True)
        start = int((now - timedelta(hours=3 - k)).timestamp() * 1000)
        events.append(ViolationEvent(
            id=f"{tag}-{k}", phase=Phase.OPENED, rule=rule, device_id=f"{tag}DEV",
            start_ts=start, end_ts=None, start_lon=p.x, start_lat=p.y, severity=2,
            plate=f"粤B{k}<b>X", company_id=vehicle.company_id))
    track = FixBatch.from_columns(
        device=[f"{tag}DEV"] * 5, ts=[events[0].start_ts + 5000 * i for i in range(5)],
        lon=[events[0].start_lon + 0.001 * i for i in range(5)],
        lat=[events[0].start_lat] * 5, received=[events[0].start_ts] * 5)

    async def write():
        store = Store(dsn)
        try:
            await store.write(track, Rejects(), DeviceStatus(), events, [])
        finally:
            await store.close()
    asyncio.run(write())
    env = {**os.environ, "MUCKWATCH_DSN": dsn}
    imported = subprocess.run([sys.executable, "-m", "muckwatch", "import", "city",
                               str(REPO / "data" / "sample-city")], capture_output=True,
                              text=True, timeout=120, env=env)
    assert imported.returncode == 0, imported.stderr  # companies for the score table

    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "muckwatch", "report", "--since", "6h",
                           "-o", str(out)], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', text), "nothing fetched"
    assert "url(" not in text and "@import" not in text
    for e in events:
        assert f'data-id="{e.id}"' in text
    assert "粤B0&lt;b&gt;X" in text, "plates escaped, not markup"

    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1280,1400", "--no-first-run", "--disable-extensions"]
    url = out.as_uri() + f"#show={events[0].id}"
    subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True,
                   timeout=120)
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    assert shot.exists(), "chromium wrote a screenshot"
    width, _, rows = png_pixels(shot)
    colours = {row[i:i + 3] for row in rows[::7] for i in range(0, len(row), 4 * 11)}
    assert width >= 1000 and len(colours) > 20, "the page is drawn, not blank"
    markers = re.findall(r'<circle class="violation[^"]*"[^>]*data-id="([^"]+)"', dom)
    assert {e.id for e in events} <= set(markers)
    assert re.search(r'<polyline id="track" points="[\d.,]+ [\d.,]+', dom), \
        "the evidence track of the violation in the URL is drawn"
    assert "plate 粤B0&lt;b&gt;X" in dom, "the popup shows the plate as text"
    scores = re.search(r'<table id="scores">(.*?)</table>', dom, re.S).group(1)
    assert f"<td>{vehicle.company_id}</td>" in scores, "the credit score table is filled"
    if os.environ.get("MUCKWATCH_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["MUCKWATCH_REPORT_SCREENSHOT"])
