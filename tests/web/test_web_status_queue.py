"""The status page's queue while jobs wait and run, in a real browser: per lane and per member, as SQLite
has them. The jobs are accepted in the bot's own store (queued, one marked running) but never handed to the
pool, so they stay in line for as long as the page is looked at."""

from __future__ import annotations

import asyncio

from bot.recipe import JobKind, Recipe
from bot.store import NewJob
from bot.store.quotas import Limits, Quotas

LIMITS = Limits(max_waiting=100, queue_limit=100, period_days=1, relax_allowed=True)


async def accept(store, owner: int, name: str, lane: str, count: int) -> list[int]:
    recipe = Recipe(prompt=f"{name}'s picture", model="tiny", seed=1, width=64, height=64, steps=2, guidance=5.0)
    jobs = await Quotas(store).accept([NewJob(owner_id=owner, owner_name=name, guild_id=10, channel_id=20,
                                              kind=JobKind.IMAGINE, recipe=recipe) for _ in range(count)],
                                      lane, 100, LIMITS)
    return [job.id for job in jobs]


def table(browser, table_id: str) -> dict[str, list[str]]:
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return {row.find_element(By.CSS_SELECTOR, "th, td").text:
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")][-2:] for row in rows}


async def test_the_status_page_shows_who_waits_and_runs_in_which_lane(web_bot, browser, until):
    from selenium.webdriver.common.by import By

    discord, app = web_bot
    carol = await accept(app.store, 501, "carol", "fast", 3)
    await accept(app.store, 502, "dave", "relax", 2)
    await accept(app.store, 502, "dave", "fast", 1)
    await app.store.mark_running(carol[0])

    await asyncio.to_thread(browser.get, f"{app.web.url}/status")
    await until(lambda: "carol" in " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#users")),
                what="the members in line")
    assert table(browser, "users") == {"carol": ["2", "1"], "dave": ["3", "0"]}  # waiting, running
    assert table(browser, "lanes") == {"fast": ["3", "1"], "relax": ["2", "0"]}
    assert not browser.find_element(By.ID, "no-users").is_displayed()
