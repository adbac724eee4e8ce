"""The console in a real headless Chromium, driven by Selenium through Debian's chromedriver,
against the real ``muckwatch serve`` (the ``api`` fixture) with a real ingest writing into its
database and fixes published with the real ``mosquitto_pub``.

One officer's afternoon: log in, watch a truck move on the live map and click it, find its
overspeed in the review queue, open it (evidence track, sensor timeline, corridor), confirm
it — the company's page then shows a lower score — and play the truck's track back until the
playhead reaches the violation's marker. Screenshots land in the run directory (or in
``MUCKWATCH_SCREENSHOT_DIR``, e.g. ``docs/``)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import shapely
from shapely.geometry import shape

from devservices.browser import available as browser_available
from devservices.browser import headless_chromium
from geofence.projection import Projector
from tests.api.conftest import cli
from tests.conftest import IngestProcess, ingest_env, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser(run_dir: Path) -> Iterator:
    assert browser_available(), \
        "chromium and chromedriver are needed (scripts/setup.sh installs them)"
    driver = headless_chromium(run_dir / f"chromium-{os.getpid()}")
    yield driver
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    driver.quit()
    assert not errors, f"errors in the browser console: {errors[:5]}"


@pytest.fixture(scope="module")
def console_ingest(broker, api, run_dir: Path) -> Iterator[IngestProcess]:
    """An ingest writing into the API's database, as in a deployment."""
    proc = IngestProcess(ingest_env(broker, api.dsn, MUCKWATCH_MQTT_CLIENT_ID="test-console"),
                         run_dir / "ingest-console.log")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def city_officer(api) -> str:
    """An officer of every district (the truck's route may cross several)."""
    env = {**os.environ, "MUCKWATCH_DSN": api.dsn}
    districts = [r[0] for r in api.sql("SELECT id FROM fences WHERE kind = 'district'")]
    done = cli(env, "accounts", "add", "console-officer", "--role", "officer",
               *[a for d in districts for a in ("--district", d)])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def truck(api):
    """A truck of the company account's company with a permit in force now, all day, that
    nothing else has reported for yet."""
    company = api.get("company", "/v1/me").json()["company"]
    rows = api.sql(
        "SELECT p.id, p.plate, v.device_id, p.route FROM permits p"
        " JOIN vehicles v ON v.plate = p.plate"
        " WHERE v.company_id = %s AND p.hours IS NULL AND p.valid_from < now() - interval '1 h'"
        "   AND p.valid_to > now() + interval '1 h' AND permit_status_at(p.id, now()) = 'active'"
        "   AND NOT EXISTS (SELECT 1 FROM live_positions l WHERE l.device_id = v.device_id)"
        " ORDER BY p.plate DESC LIMIT 1", (company,))
    assert rows, "the sample city has a permit in force for the company"
    permit, plate, device, route = rows[0]
    return {"permit": permit, "plate": plate, "device": device, "route": shape(route),
            "company": company}


def drive(route, start_ms: int, speeds_kmh: list[float], from_m: float = 0.0
          ) -> tuple[list[dict], float]:
    """Fixes 1 s apart along ``route`` at these speeds (lid closed, full), and how far along
    the route they end."""
    projector = Projector(4547)
    metric = shapely.transform(route, lambda xy: np.column_stack(
        projector.to_metric(xy[:, 0], xy[:, 1])))
    along = from_m + np.cumsum(np.asarray(speeds_kmh) / 3.6)
    points = shapely.line_interpolate_point(metric, np.minimum(along, metric.length))
    lon, lat = projector.to_lonlat(shapely.get_x(points), shapely.get_y(points))
    fixes = [{"v": 1, "ts": start_ms + k * 1000, "lon": round(float(lon[k]), 7),
              "lat": round(float(lat[k]), 7), "spd": float(s), "hdg": 90, "lid": 0, "lift": 0,
              "load": 2, "sats": 12, "hdop": 0.8} for k, s in enumerate(speeds_kmh)]
    return fixes, float(along[-1])


def publish(broker, device: str, fixes: list[dict]) -> None:
    """One fix per message, every line through one real mosquitto_pub (-l)."""
    payload = b"\n".join(orjson.dumps(f) for f in fixes) + b"\n"
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-t", f"muck/v1/{device}/telemetry", "-l"], input=payload, check=True,
                   timeout=30)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def wait_js(driver, script: str, *args, timeout_s: float = 20.0, what: str = ""):
    value = wait_for(lambda: js(driver, script, *args), timeout_s=timeout_s, interval_s=0.2)
    assert value, f"timed out waiting for {what or script}"
    return value


def shoot(driver, run_dir: Path, name: str) -> None:
    folder = Path(os.environ.get("MUCKWATCH_SCREENSHOT_DIR", run_dir))
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / f"console-{name}.png"))


def element(driver, css: str, timeout_s: float = 20.0):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def login(driver, url: str, token: str) -> None:
    # forget the previous login on a page of the origin that is not the console, so no view
    # of the console is loading when its token goes
    driver.get(f"{url}/healthz")
    js(driver, "sessionStorage.clear()")
    driver.get(f"{url}/console/")
    field = element(driver, "#login-token")
    field.clear()
    field.send_keys(token)
    element(driver, "#login-submit").click()
    element(driver, "#whoami")


def company_score(driver, url: str, token: str) -> float:
    login(driver, url, token)
    driver.get(f"{url}/console/#/company")
    text = wait_js(driver, "const e = document.querySelector('#company-score');"
                           "return e && /\\d/.test(e.textContent) ? e.textContent : null",
                   what="the company's score")
    return float("".join(ch for ch in text if ch.isdigit() or ch == "."))


def test_an_officer_watches_reviews_and_plays_back(api, broker, console_ingest, browser,
                                                   city_officer, truck, run_dir):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, url, plate = browser, api.url, truck["plate"]
    score_before = company_score(driver, url, api.tokens["company"])

    # the live map: the truck appears where it is, then moves
    login(driver, url, city_officer)
    assert "console-officer" in element(driver, "#whoami").text
    driver.get(f"{url}/console/#/live")
    element(driver, "#map")
    wait_js(driver, "return window.muckwatchConsole && window.muckwatchConsole.map"
                    " && window.muckwatchConsole.map.loaded()", what="the map")
    t0 = time.time_ns() // 1_000_000 - 100_000
    first, along = drive(truck["route"], t0, [40.0] * 30)
    publish(broker, truck["device"], first)
    where = ("const t = window.muckwatchConsole.trucks().find(t => t.plate === arguments[0]);"
             "return t && t.ts === arguments[1] ? [t.lon, t.lat, t.state] : null")
    lon_a, lat_a, state = wait_js(driver, where, plate, first[-1]["ts"],
                                  what="the truck on the live map")
    assert abs(lon_a - first[-1]["lon"]) < 1e-6 and state in ("moving_loaded", "violation")
    # over the limit for 40 s, then 20 s below it: an OVERSPEED opens and closes
    fast, along = drive(truck["route"], t0 + 30_000, [90.0] * 40, along)
    slow, along = drive(truck["route"], t0 + 70_000, [40.0] * 20, along)
    publish(broker, truck["device"], fast + slow)
    lon_b, lat_b, _ = wait_js(driver, where, plate, slow[-1]["ts"],
                              what="the truck moving on the live map")
    assert (lon_b, lat_b) != (lon_a, lat_a)
    shoot(driver, run_dir, "live")
    # filters: by the truck's company it stays; by a state it is not in, it goes
    company = Select(element(driver, "#filter-company"))
    company.select_by_value(truck["company"])
    wait_js(driver, where, plate, slow[-1]["ts"], what="the truck under its company's filter")
    state = Select(element(driver, "#filter-state"))
    state.select_by_value("offline")
    wait_js(driver, "return !window.muckwatchConsole.trucks().some("
                    "t => t.plate === arguments[0])", plate, what="the state filter")
    state.select_by_value("all")
    company.select_by_value("")
    wait_js(driver, where, plate, slow[-1]["ts"], what="the truck back without filters")
    # Chinese labels, then English again
    element(driver, "#lang-toggle").click()
    wait_js(driver, "return document.querySelector('a[data-nav=live]').textContent"
                    " === '实时监控'", what="Chinese labels")
    element(driver, "#lang-toggle").click()
    wait_js(driver, "return document.querySelector('a[data-nav=live]').textContent"
                    " === 'Live map'", what="English labels")
    # click it: the panel names it
    x, y = js(driver, "return window.muckwatchConsole.truckScreenPoint(arguments[0])", plate)
    body = driver.find_element(By.TAG_NAME, "body")
    ActionChains(driver).move_to_element_with_offset(
        body, int(x - body.size["width"] / 2), int(y - body.size["height"] / 2)).click().perform()
    panel = element(driver, "#truck-panel")
    wait_for(lambda: plate in panel.text, timeout_s=10)
    assert panel.find_element(By.CSS_SELECTOR, "[data-field=plate]").text.strip() == plate

    # the review queue holds the truck's overspeed; open and confirm it
    violation = wait_for(lambda: api.sql(
        "SELECT id FROM violations WHERE device_id = %s AND rule = 'OVERSPEED'"
        " AND state = 'closed'", (truck["device"],)), timeout_s=30)
    assert violation, "the pipeline flagged the overspeed"
    vid = violation[0][0]
    driver.get(f"{url}/console/#/review")
    row = element(driver, f"#queue [data-violation-id='{vid}']", timeout_s=30)
    row.click()
    element(driver, "#violation-map")
    element(driver, "#sensor-timeline")
    wait_js(driver, "return document.querySelector('#violation-detail')"
                    " && document.querySelector('#violation-detail').textContent"
                    ".includes(arguments[0])", plate, what="the violation's details")
    reasons = Select(element(driver, "#review-reason"))
    wait_for(lambda: len(reasons.options) > 1, timeout_s=10)
    time.sleep(1.0)  # let the map draw the track before the screenshot
    shoot(driver, run_dir, "review")
    # choose a confirm reason, then confirm
    element(driver, "#review-confirm")
    confirm_codes = {r["code"] for r in api.get("officer", "/v1/reasons").json()
                     if r["decision"] == "confirm"}
    choice = next(o for o in reasons.options if o.get_attribute("value") in confirm_codes)
    reasons.select_by_value(choice.get_attribute("value"))
    element(driver, "#review-confirm").click()
    wait_js(driver, "const e = document.querySelector('#review-result');"
                    "return e && /confirmed/i.test(e.textContent)", what="the confirmation")
    assert api.sql("SELECT review FROM violations WHERE id = %s", (vid,))[0][0] == "confirmed"

    # playback reaches the violation's marker
    since, until = t0 - 10_000, t0 + 100_000
    driver.get(f"{url}/console/#/playback?plate={plate}&since={since}&until={until}")
    marker = f".timeline-violation[data-violation-id='{vid}']"
    element(driver, marker, timeout_s=30)
    Select(element(driver, "#playback-speed")).select_by_value("60")
    element(driver, "#playback-play").click()
    wait_js(driver, "const m = document.querySelector(arguments[0]);"
                    "return m && m.classList.contains('reached')", marker, timeout_s=30,
            what="the playhead reaching the violation")
    assert vid in js(driver, "return window.muckwatchConsole.playback.reached")
    shoot(driver, run_dir, "playback")

    # the company sees the confirmed violation cost it points
    score_after = company_score(driver, url, api.tokens["company"])
    assert score_after < score_before, (score_before, score_after)
