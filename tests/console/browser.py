"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, with
polling under deadlines and the browser's console log at hand."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")
DEADLINE_S = 60.0
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def find_chromium() -> tuple[str, str] | None:
    browser = next((path for path in CHROMIUM if os.access(path, os.X_OK)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def start_chromium(profile: Path) -> webdriver.Chrome:
    found = find_chromium()
    if found is None:
        message = (
            "Chromium not found: install 'chromium' and 'chromium-driver' "
            "(bash scripts/ensure-system-deps.sh as root)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def eventually(probe: Callable[[], T | None], what: str, *, deadline_s: float = DEADLINE_S) -> T:
    """Poll `probe` until it returns something truthy; fail saying `what` never happened."""
    until = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < until:
        try:
            value = probe()
        except (StaleElementReferenceException, WebDriverException, LookupError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} within {deadline_s} s (last error: {last!r})")


def element(driver: webdriver.Chrome, css: str, *, deadline_s: float = DEADLINE_S) -> WebElement:
    def probe() -> WebElement | None:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found and found[0].is_displayed() else None

    return eventually(probe, f"no visible {css!r}", deadline_s=deadline_s)


def text_of(driver: webdriver.Chrome, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def console_errors(driver: webdriver.Chrome, *, expected: tuple[str, ...] = ()) -> list[Any]:
    """The browser log's errors since the last call, but those naming an expected URL."""
    entries = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        e
        for e in entries
        if e["level"] == "SEVERE" and not any(marker in e["message"] for marker in expected)
    ]
