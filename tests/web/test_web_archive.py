"""The archive in a real browser (headless Chromium): jobs made over the local Discord appear newest first,
the search finds a prompt word, the filters narrow, a job's detail shows its parameters and Escape closes it.

Selenium blocks, and the bot serves the page on this test's event loop: every browser call runs in a thread."""

from __future__ import annotations

import asyncio

from aiohttp import ClientSession



def cards(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#jobs .caption")]


async def grid(discord, user, prompt):
    ix = await discord.slash(user, "imagine", {"prompt": prompt})
    return await ix.wait_original(lambda m: bool(m.attachments), timeout=60)


async def test_the_archive_lists_searches_filters_and_shows_a_job(web_bot, browser, screenshot, until):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    discord, app = web_bot
    alice = discord.add_user("alice")
    for prompt in ("a lighthouse in fog", "a red circle on a blue background --model shapes", "a whale at dawn"):
        await grid(discord, alice, prompt)

    await asyncio.to_thread(browser.get, f"{app.web.url}/archive")
    shown = await until(lambda: len(cards(browser)) == 3 and cards(browser), what="three jobs")
    assert [text.splitlines()[0] for text in shown] == ["a whale at dawn", "a red circle on a blue background",
                                                        "a lighthouse in fog"]  # newest first
    await asyncio.to_thread(screenshot, "archive")

    search = browser.find_element(By.ID, "text")
    await asyncio.to_thread(search.send_keys, "whal")  # a prefix, as one types
    await until(lambda: [t.splitlines()[0] for t in cards(browser)] == ["a whale at dawn"], what="the search")
    await asyncio.to_thread(search.clear)
    await asyncio.to_thread(search.send_keys, '" NEAR( -')  # FTS syntax is searched as text, never an error
    await until(lambda: browser.find_element(By.ID, "status").text == "No jobs match.", what="no match")
    await asyncio.to_thread(search.send_keys, Keys.CONTROL, "a")
    await asyncio.to_thread(search.send_keys, Keys.BACKSPACE)
    await until(lambda: len(cards(browser)) == 3, what="every job again")

    await asyncio.to_thread(Select(browser.find_element(By.ID, "model")).select_by_value, "shapes")
    await until(lambda: [t.splitlines()[0] for t in cards(browser)] == ["a red circle on a blue background"],
                what="the model filter")

    first = browser.find_element(By.CSS_SELECTOR, "#jobs button")
    await asyncio.to_thread(first.click)
    dialog = browser.find_element(By.ID, "detail")
    await until(lambda: dialog.is_displayed() and "Seed:" in browser.find_element(By.ID, "detail-parameters").text,
                what="the job's parameters")
    assert "Model: shapes" in browser.find_element(By.ID, "detail-parameters").text
    await asyncio.to_thread(screenshot, "archive-detail")
    await asyncio.to_thread(browser.find_element(By.TAG_NAME, "body").send_keys, Keys.ESCAPE)
    await until(lambda: not dialog.is_displayed(), what="Escape to close the detail")

    async with ClientSession() as http:  # the page's API refuses what it cannot read, as a clear 400
        async with http.get(f"{app.web.url}/api/archive", params={"kind": "poem"}) as response:
            assert response.status == 400 and "kind" in (await response.json())["error"]
        async with http.get(f"{app.web.url}/images/99999") as response:
            assert response.status == 404
