"""The archive's buttons in a real browser (headless Chromium): from a grid's detail, U2 and Rerun start jobs
that the page follows to their images and that land in the local Discord's channel too; from an upscaled
image, Vary (Region) with a brush: paint, submit, and the painted part is repainted while the rest stays,
pixel for pixel; Custom Zoom with its factor. Escape closes the brush's dialog; it fits a phone's width.

Selenium blocks, and the bot serves the page on this test's event loop: every browser call runs in a thread."""

from __future__ import annotations

import asyncio
import re

import numpy as np
from PIL import Image

from bot.local import shows_result
from bot.service.sources import SourceImages

WAIT = 60


async def grid(discord, user, prompt) -> int:
    ix = await discord.slash(user, "imagine", {"prompt": prompt})
    message = await ix.wait_original(lambda m: shows_result(m), timeout=WAIT)
    return int(re.findall(r"job #(\d+)", message.content)[-1])


def started(browser, status: str | None = None) -> list[int]:
    """The jobs in "Started from here", newest first (with that status, if given)."""
    from selenium.webdriver.common.by import By

    items = browser.find_elements(By.CSS_SELECTOR, "#started li[data-job]")
    return [int(item.get_attribute("data-job")) for item in items
            if status is None or item.get_attribute("data-status") == status]


def button(browser, label: str):
    """A button of the detail's actions, by its text or its accessible label."""
    from selenium.webdriver.common.by import By

    for element in browser.find_elements(By.CSS_SELECTOR, "#job-actions button"):
        if label in (element.text, element.get_attribute("aria-label")):
            return element
    return None


async def open_detail(browser, until, url: str, job_id: int) -> None:
    from selenium.webdriver.common.by import By

    await asyncio.to_thread(browser.get, f"{url}/archive")
    card = await until(lambda: next((b for b in browser.find_elements(By.CSS_SELECTOR, "#jobs button")
                                     if b.get_attribute("data-job") == str(job_id)), None), what="the job's card")
    await asyncio.to_thread(card.click)
    await until(lambda: browser.find_element(By.ID, "job-actions").find_elements(By.TAG_NAME, "button"),
                what="the job's buttons")


async def test_u2_and_rerun_from_the_archive_run_and_land_in_discord_too(web_bot, browser, screenshot, until):
    discord, app = web_bot
    alice = discord.add_user("alice")
    job_id = await grid(discord, alice, "a red circle on a blue background --model shapes --seed 7")
    parent = await app.jobs.get(job_id)
    await open_detail(browser, until, app.web.url, job_id)
    labels = [b.text for b in browser.find_elements("css selector", "#job-actions button")]
    assert labels == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]

    await asyncio.to_thread(button(browser, "U2").click)
    await until(lambda: len(started(browser, "done")) == 1, timeout=WAIT, what="U2's job to finish")
    await asyncio.to_thread(button(browser, "Rerun").click)
    await until(lambda: len(started(browser, "done")) == 2, timeout=WAIT, what="the rerun to finish")
    rerun, upscale = started(browser)
    await asyncio.to_thread(screenshot, "archive-actions")

    for new, kind in ((upscale, "upscale"), (rerun, "reroll")):
        job = await app.jobs.get(new)
        assert (job.kind, job.parent_job_id, job.channel_id) == (kind, job_id, parent.channel_id)
        assert job.parent_index == (2 if kind == "upscale" else None)
        # The page shows it, and the bot posted it in the grid's channel, as any job with no interaction.
        message = await discord.wait_for_message(lambda m: f"job #{new}" in m.content and shows_result(m),
                                                 timeout=WAIT)
        assert message.channel_id == parent.channel_id
    texts = [item.text for item in browser.find_elements("css selector", "#started li")]
    assert any(f"→ job #{upscale}: done" in text for text in texts)

    # Remix: V3 with an edited prompt runs that prompt; unticked, the parent's prompt again.
    remix, box = browser.find_element("id", "remix"), browser.find_element("id", "remix-prompt")
    assert not box.is_displayed()
    await asyncio.to_thread(remix.click)
    assert box.get_attribute("value").startswith("a red circle on a blue background")
    await asyncio.to_thread(box.clear)
    await asyncio.to_thread(box.send_keys, "a yellow square on a blue background --model shapes")
    await asyncio.to_thread(button(browser, "V3").click)
    await until(lambda: len(started(browser, "done")) == 3, timeout=WAIT, what="the remixed V3 to finish")
    remixed = await app.jobs.get(started(browser)[0])
    assert (remixed.kind, remixed.parent_index) == ("variation", 3)
    assert remixed.prompt == "a yellow square on a blue background"


async def test_vary_region_with_the_brush_repaints_only_what_was_painted(web_bot, browser, screenshot, until):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    discord, app = web_bot
    dave = discord.add_user("dave")
    job_id = await grid(discord, dave, "a lighthouse --seed 2")
    await open_detail(browser, until, app.web.url, job_id)
    await asyncio.to_thread(button(browser, "U1").click)
    await until(lambda: started(browser, "done"), timeout=WAIT, what="the upscale")
    big = started(browser)[0]
    opener = browser.find_element(By.XPATH, f"//ul[@id='started']//button[text()='Open #{big}']")
    await asyncio.to_thread(opener.click)
    await until(lambda: button(browser, "Vary (Region)") is not None, what="the upscale's buttons")
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#job-actions button")] == [
        "Vary (Subtle)", "Vary (Strong)", "Vary (Region)", "Upscale (Creative)", "Zoom Out 2x", "Zoom Out 1.5x",
        "Custom Zoom", "⬅️", "➡️", "⬆️", "⬇️"]  # as under its Discord message (a square image: no Make Square)

    await asyncio.to_thread(button(browser, "Vary (Region)").click)
    region = browser.find_element(By.ID, "region")
    await until(region.is_displayed, what="the brush's dialog")
    prompt = browser.find_element(By.ID, "region-prompt").get_attribute("value")
    assert prompt.startswith("a lighthouse --steps 4 --model tiny")  # the job's prompt, as Remix gives it
    canvas = browser.find_element(By.ID, "region-canvas")
    width = canvas.size["width"]

    def paint() -> None:  # a stroke across the top left quarter, in screen pixels from the canvas's centre
        quarter = width // 4
        (ActionChains(browser).move_to_element_with_offset(canvas, -quarter - 20, -quarter)
         .click_and_hold().move_by_offset(quarter // 2, 0).move_by_offset(quarter // 2, quarter // 3)
         .release().perform())

    await asyncio.to_thread(paint)
    await asyncio.to_thread(screenshot, "archive-region-brush")
    # Escape closes the brush's dialog, not the detail under it; opening it again starts a fresh mask.
    await asyncio.to_thread(canvas.send_keys, Keys.ESCAPE)
    await until(lambda: not region.is_displayed(), what="Escape to close the brush")
    assert browser.find_element(By.ID, "detail").is_displayed()
    await asyncio.to_thread(button(browser, "Vary (Region)").click)
    await until(region.is_displayed, what="the brush's dialog again")
    await asyncio.to_thread(browser.find_element(By.ID, "region-submit").click)
    await until(lambda: "Paint over" in browser.find_element(By.ID, "region-status").text, what="nothing painted")
    await asyncio.to_thread(paint)
    box = browser.find_element(By.ID, "region-prompt")  # the prompt is editable: the new one is what runs
    await asyncio.to_thread(box.clear)
    await asyncio.to_thread(box.send_keys, "a lighthouse at night")
    await asyncio.to_thread(browser.find_element(By.ID, "region-submit").click)
    try:
        await until(lambda: not region.is_displayed(), what="the dialog to close on submit")
    except TimeoutError:
        raise AssertionError(f"the page said: {browser.find_element(By.ID, 'region-status').text!r}") from None
    await until(lambda: len(started(browser, "done")) == 2, timeout=WAIT, what="the region job to finish")
    painted = started(browser)[0]
    await asyncio.to_thread(screenshot, "archive-region-done")

    job = await app.jobs.get(painted)
    assert (job.kind, job.recipe.canvas, job.parent_job_id) == ("region", "region painted", big)
    assert job.prompt == "a lighthouse at night"
    mask = np.asarray(SourceImages(app.settings.data_dir).open(job.recipe.mask).convert("L"))
    paint_area, keep = mask == 255, mask == 0
    assert 0 < paint_area.sum() < mask.size / 4
    rows, columns = np.nonzero(paint_area)
    assert rows.max() < 40 and columns.max() < 40  # where the stroke went: the top left
    source = np.asarray(Image.open(app.settings.data_dir / "images" / str(job_id) / "1.png").convert("RGB"),
                        dtype=np.int16)
    for index in range(1, 5):
        image = np.asarray(Image.open(app.settings.data_dir / "images" / str(painted) / f"{index}.png")
                           .convert("RGB"), dtype=np.int16)
        assert np.array_equal(image[keep], source[keep])
        assert not np.array_equal(image[paint_area], source[paint_area])
    await discord.wait_for_message(lambda m: f"job #{painted}" in m.content and shows_result(m), timeout=WAIT)

    # Custom Zoom: a factor out of range is refused in the dialog, which stays open; 1.2 zooms out.
    await asyncio.to_thread(button(browser, "Custom Zoom").click)
    zoom = browser.find_element(By.ID, "zoom")
    await until(zoom.is_displayed, what="the Custom Zoom dialog")
    assert browser.find_element(By.ID, "zoom-prompt").get_attribute("value").startswith("a lighthouse --steps 4")
    factor = browser.find_element(By.ID, "zoom-factor")
    await asyncio.to_thread(factor.clear)
    await asyncio.to_thread(factor.send_keys, "3")
    await asyncio.to_thread(browser.find_element(By.ID, "zoom-submit").click)
    await until(lambda: "got 3" in browser.find_element(By.ID, "zoom-status").text, what="the refusal")
    await asyncio.to_thread(screenshot, "archive-custom-zoom")
    assert zoom.is_displayed()
    await asyncio.to_thread(factor.clear)
    await asyncio.to_thread(factor.send_keys, "1.2")
    await asyncio.to_thread(browser.find_element(By.ID, "zoom-submit").click)
    await until(lambda: not zoom.is_displayed(), what="the dialog to close on submit")
    await until(lambda: len(started(browser, "done")) == 3, timeout=WAIT, what="the zoom to finish")
    zoomed = await app.jobs.get(started(browser)[0])
    assert (zoomed.kind, zoomed.recipe.canvas, zoomed.parent_job_id) == ("zoom", "zoom 1.2", big)

    # At a phone's width the brush still fits the screen.
    await asyncio.to_thread(browser.set_window_size, 390, 844)
    try:
        await asyncio.to_thread(button(browser, "Vary (Region)").click)  # the detail still shows the upscale
        await until(region.is_displayed, what="the brush at phone width")
        right = browser.execute_script(
            "return Math.max(...[...document.querySelectorAll('#region, #region *')]"
            ".map(e => e.getBoundingClientRect().right)) - window.innerWidth")
        assert right <= 0
        await asyncio.to_thread(screenshot, "archive-region-phone")
    finally:
        await asyncio.to_thread(browser.set_window_size, 1100, 900)
