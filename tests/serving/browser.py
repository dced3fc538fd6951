"""Real-browser tests: Debian's headless Chromium driven by Selenium through Debian's chromedriver
(never Selenium Manager, which would download a browser and report usage over the internet), and
screenshots kept as test artifacts for a person to look at."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS_ENV = "CTSCREEN_TEST_ARTIFACTS"
# seen working here for WebGL (OHIF's viewports) without a GPU; the rest keeps Chromium from its own network chatter
FLAGS = ("--headless=new", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--window-size=1400,900",
         "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update")


@contextmanager
def chromium_driver() -> Iterator:
    """A fresh headless Chromium (its own profile in a temporary folder), quit afterwards; the
    test is skipped where Chromium or chromedriver is not installed. Console and network events
    are logged for ``console_messages`` and ``requested_urls``."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(f"real-browser test: {', '.join(missing)} not installed (Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="ctscreen-chromium-") as profile:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def artifacts_dir() -> Path:
    """``$CTSCREEN_TEST_ARTIFACTS``, or the checkout's test-artifacts/screenshots (ignored by git)."""
    folder = Path(os.environ.get(ARTIFACTS_ENV) or REPO / "test-artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(driver, name: str) -> Path:
    """The browser's window as ``<artifacts>/<name>.png``; the path written."""
    path = artifacts_dir() / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}.png"
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"Chromium could not write the screenshot {path}")
    return path


def console_messages(driver) -> list[dict]:
    """The console entries logged since the last call (level, message, source)."""
    return driver.get_log("browser")


def requested_urls(driver) -> list[str]:
    """Every URL the page requested since the last call (from Chromium's network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
