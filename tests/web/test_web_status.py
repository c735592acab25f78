"""The operators' status page in a real browser (headless Chromium): after one job done and one failed over
the local Discord, it shows the loaded model on its device, 1 done and 1 failed in the last 24 hours, the
failure with the reason its member was told (and no local path), and an empty queue; /api/status as JSON.

Selenium blocks, and the bot serves the page on this test's event loop: every browser call runs in a thread."""

from __future__ import annotations

import asyncio
import re

from aiohttp import ClientSession



def text(browser, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(element.text for element in browser.find_elements(By.CSS_SELECTOR, selector))


async def test_the_status_page_shows_queue_devices_hours_and_failures(web_bot, browser, screenshot, until,
                                                                      models_dir, tmp_path):
    from selenium.webdriver.common.by import By

    discord, app = web_bot
    alice = discord.add_user("alice")
    done = await discord.slash(alice, "imagine", {"prompt": "a lighthouse in fog"})
    await done.wait_original(lambda m: bool(m.attachments), timeout=60)
    ix = await discord.slash(alice, "imagine", {"prompt": "a doomed picture --model broken"})
    await ix.wait_original(lambda m: "failed" in m.content, timeout=60)

    async with ClientSession() as http:
        async with http.get(f"{app.web.url}/api/status") as response:
            assert response.status == 200
            status = await response.json()
        async with http.get(f"{app.web.url}/static/status.js") as response:
            assert response.status == 200 and "text/javascript" in response.headers["Content-Type"]
        async with http.get(f"{app.web.url}/static/archive.css") as response:  # the archive's still served
            assert response.status == 200
    assert status["queue"]["waiting"] == {"fast": 0, "relax": 0} and status["queue"]["users"] == []
    assert len(status["hours"]) == 24
    assert sum(h["done"] for h in status["hours"]) == 1 and sum(h["failed"] for h in status["hours"]) == 1
    (failure,) = status["failures"]
    assert failure["model"] == "broken" and failure["kind"] == "imagine" and failure["error"]
    (device,) = status["devices"]
    loaded = [m["name"] for m in device["models"]]
    assert device["device"] == "cpu" and loaded and "broken" not in loaded  # the default model, loaded at start
    assert status["process_rss"] is None or status["process_rss"] > 0

    await asyncio.to_thread(browser.get, f"{app.web.url}/status")
    await until(lambda: "1 done" in text(browser, "#totals"), what="the jobs per hour")
    assert text(browser, "#totals") == "1 done · 1 failed"
    devices = text(browser, "#devices")
    assert device["device"] in devices and all(name in devices for name in loaded), devices
    failures = text(browser, "#failures")
    assert f"job #{failure['id']}" in failures and failure["error"].splitlines()[0] in failures
    assert str(models_dir) not in failures and str(tmp_path) not in failures
    assert not re.search(r"(?<![\w.])/[^\s/'\"]+/", failures), failures  # no absolute path at all
    lanes = {row.find_element(By.TAG_NAME, "th").text: [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
             for row in browser.find_elements(By.CSS_SELECTOR, "#lanes tbody tr")}
    assert lanes == {"fast": ["0", "0"], "relax": ["0", "0"]}
    assert browser.find_element(By.ID, "no-users").is_displayed()
    await asyncio.to_thread(screenshot, "status")

    await asyncio.to_thread(browser.set_window_size, 390, 844)  # a phone: nothing wider than the screen
    try:
        await until(lambda: browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"), what="the page at phone width")
        await asyncio.to_thread(screenshot, "status-phone")
    finally:
        await asyncio.to_thread(browser.set_window_size, 1100, 900)
