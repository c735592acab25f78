"""A real browser for the web pages: Debian's headless Chromium driven through Selenium (Playwright's own
browser download needs the internet). Where no Chromium is installed the browser tests skip with the reason;
CI installs it (.ci/run) and sets DREAMGRID_REQUIRE_BROWSER=1, so there they fail instead of skipping."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where the browser tests leave their screenshots (the README shows some of them).
SCREENSHOTS = Path(os.environ.get("DREAMGRID_SCREENSHOTS", ROOT / "screenshots"))


def _chromium() -> tuple[str, str] | None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="session")
def browser():
    found = _chromium()
    if found is None:
        if os.environ.get("DREAMGRID_REQUIRE_BROWSER"):
            pytest.fail("DREAMGRID_REQUIRE_BROWSER is set but chromium and chromedriver are not installed")
        pytest.skip("no Chromium here: install Debian's chromium and chromium-driver (.ci/run does) to run the "
                    "browser tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))  # no Selenium Manager download
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def screenshot(browser):
    """screenshot("archive-search"): the page as it is now, saved as screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        browser.save_screenshot(str(path))
        return path

    return take


@pytest.fixture
def until():
    """`await until(check)`: poll `check()` (in a thread: it may call the browser, which blocks, while the bot
    serves the page on the test's event loop) until it returns something truthy."""
    from selenium.common.exceptions import StaleElementReferenceException

    def checked(check):
        try:
            return check()
        except StaleElementReferenceException:  # the page redrew what it looked at: not there yet
            return None

    async def wait(check, timeout: float = 15.0, what: str = "the page"):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await asyncio.to_thread(checked, check)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    return wait
