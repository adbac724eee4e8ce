"""A headless Chromium driven by Selenium through Debian's chromedriver, for the console's
tests and its load benchmark (selenium is a dev dependency: imported here only when used).

As root in a container with no GPU and no network beyond loopback: ``--no-sandbox``,
software WebGL (SwiftShader, which the map library needs), and the browser's background
services switched off (they would only try the internet, many connections at a time)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--lang=en-US")


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def headless_chromium(user_data: Path, *, width: int = 1400, height: int = 900):
    """A new Selenium WebDriver on a fresh profile in ``user_data``; quit() it when done.
    Browser console messages are kept (``driver.get_log("browser")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver
