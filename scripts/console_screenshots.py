"""Screenshots of the console for docs/console.md, from a running ``muckwatch serve``.

    .venv/bin/python scripts/console_screenshots.py http://127.0.0.1:8088 TOKEN [--out docs]

TOKEN: an officer (every district) or supervisor. Takes the live map, the review view of the
newest violation in the queue, and the playback of that violation's truck around it, in
headless Chromium (devservices/browser.py). Run it beside a simulated fleet (e.g.
``muckwatch simulate --mqtt … --start-ms now --speed 1``) so the map has trucks on it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devservices.browser import headless_chromium


def wait(driver, script: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"timed out: {script}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--lang", choices=["en", "zh"], default="en")
    parser.add_argument("--rule", default="OFF_ROUTE",
                        help="review and play back a violation of this rule when there is one")
    args = parser.parse_args()
    out = Path(args.out)
    headers = {"Authorization": f"Bearer {args.token}"}
    queue = httpx.get(f"{args.url}/v1/review/queue", headers=headers, params={"limit": 200},
                      timeout=10).raise_for_status().json()["violations"]
    closed = [v for v in queue if v["end_ts"]]
    pick = next((v for v in closed if v["rule"] == args.rule), None) \
        or (closed[0] if closed else None)
    with tempfile.TemporaryDirectory() as profile:
        driver = headless_chromium(Path(profile), width=1400, height=860)
        try:
            driver.get(f"{args.url}/console/")
            driver.execute_script("localStorage.setItem('muckwatch.lang', arguments[0])",
                                  args.lang)
            driver.get(f"{args.url}/console/#token={args.token}")
            wait(driver, "return window.muckwatchConsole && window.muckwatchConsole.map"
                         " && window.muckwatchConsole.trucks().length > 0")
            time.sleep(3)
            driver.save_screenshot(str(out / "console-live.png"))
            if pick is None:
                print("no violation in the queue: only the live map was taken")
                return 0
            driver.get(f"{args.url}/console/#/review/{pick['id']}")
            wait(driver, "return document.querySelector('#sensor-timeline canvas')")
            time.sleep(3)
            driver.save_screenshot(str(out / "console-review.png"))
            from datetime import datetime

            start = int(datetime.fromisoformat(pick["start_ts"]).timestamp() * 1000)
            end = int(datetime.fromisoformat(pick["end_ts"]).timestamp() * 1000)
            driver.get(f"{args.url}/console/#/playback?plate={pick['plate']}"
                       f"&since={start - 600_000}&until={end + 600_000}")
            wait(driver, "return document.querySelector('.timeline-violation')")
            driver.execute_script("document.querySelector('#playback-speed').value = '60';"
                                  "document.querySelector('#playback-speed')"
                                  ".dispatchEvent(new Event('change'));"
                                  "document.querySelector('#playback-play').click()")
            wait(driver, "return document.querySelector('.timeline-violation.reached')", 60)
            driver.save_screenshot(str(out / "console-playback.png"))
        finally:
            driver.quit()
    print(f"wrote console-live.png, console-review.png, console-playback.png in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
