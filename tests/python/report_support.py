"""Helpers of the report tests: a real headless Chromium through selenium and chromedriver
(Debian's `chromium` and `chromium-driver`; `make browser` installs them), and what a drawn page
holds."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest


def chrome(width: int = 1300, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not driver_path or not browser:
        pytest.fail("the report tests need Debian's chromium and chromium-driver: run `make browser`")
    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def open_report(driver: Any, path: Path, timeout: float = 60.0) -> float:
    """Loads the report and waits until every chart is drawn; returns the seconds it took."""
    started = time.perf_counter()
    driver.get(path.resolve().as_uri())
    while time.perf_counter() - started < timeout:
        if driver.execute_script("return !!(window.rustybt && window.rustybt.done)"):
            return time.perf_counter() - started
        time.sleep(0.05)
    raise AssertionError(f"the report's charts were not all drawn within {timeout} s")


def requested_urls(driver: Any) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def drawn_charts(driver: Any) -> dict[str, Any]:
    """Per chart id: whether plotly drew an SVG, and each trace's name, type, points and values
    (as plotly holds them after drawing)."""
    return driver.execute_script("""
        const out = {};
        for (const id of window.rustybt.charts) {
          const gd = document.getElementById(id);
          out[id] = {
            svg: !!gd.querySelector('svg.main-svg'),
            traces: (gd.data || []).map(t => ({
              name: t.name, type: t.type, x: t.x || [], y: t.y || [], z: t.z || null,
              yaxis: t.yaxis || 'y'})),
            shapes: ((gd.layout || {}).shapes || []).length,
          };
        }
        return out;""")


@pytest.fixture(scope="module")
def browser() -> Any:
    """One headless Chromium per test module (import this fixture into the module)."""
    driver = chrome()
    yield driver
    driver.quit()


def page_state(driver: Any) -> dict[str, Any]:
    """What a drawn page holds: its charts, their order, the URLs it requested and console errors."""
    return {"charts": drawn_charts(driver), "order": driver.execute_script("return window.rustybt.charts"),
            "urls": requested_urls(driver), "errors": console_errors(driver)}
