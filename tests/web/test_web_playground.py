"""The web playground in a real browser: the real bot against the local Discord, driven as a person would,
through the page — commands typed in the box, buttons clicked, a file picked, a form filled in."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from PIL import Image

from bot.local import local_bot
from bot.local import settings_for as local_settings
from bot.localdiscord import LocalDiscord
from bot.settings import Settings
from bot.web.playground import Bridge, add_players, mount_playground
from bot.playground import free_port

WAIT = 30  # seconds for the page to show something the bot does


@dataclass
class Running:
    url: str  # the page
    api: str  # its JSON API, ending in "/"
    home: str  # the web server's own address
    discord: LocalDiscord
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="module")
def playground(models_dir, tmp_path_factory):
    """The playground process's insides on a thread of its own (Selenium blocks; the bot must not)."""
    data = tmp_path_factory.mktemp("playground-data")
    loop = asyncio.new_event_loop()
    ready: list = []
    started, finished = threading.Event(), []
    stop = asyncio.Event()

    async def main() -> list[str]:
        async with LocalDiscord() as discord:
            settings = local_settings(discord, Settings.load(env={}, env_file=None), data_dir=data,
                                      models_dir=models_dir, progress_interval=0.0, preview_interval=0.0,
                                      daily_images=40, position_interval=0.2, web_port=free_port())
            bridge = Bridge(discord, add_players(discord))
            async with local_bot(discord, settings, lambda pages: mount_playground(pages, bridge)) as app:
                ready.append(Running(f"{app.web.url}/playground", f"{app.web.url}/playground/api/", app.web.url,
                                     discord, loop))
                started.set()
                await stop.wait()
            return list(discord.spec_errors)

    def run() -> None:
        try:
            finished.append(loop.run_until_complete(main()))
        except BaseException as error:  # noqa: BLE001 - reported below
            finished.append(error)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="playground", daemon=True)
    thread.start()
    assert started.wait(120)
    if not ready:
        raise RuntimeError(f"the playground did not start: {finished}")
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    assert finished == [[]], f"requests that broke Discord's spec, or a crash: {finished}"


# -- helpers ---------------------------------------------------------------------------------------------------

def _wait(browser, condition, what: str, timeout: float = WAIT):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A message's element is replaced by each new version of it: a stale one is looked up again.
    wait = WebDriverWait(browser, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(lambda b: condition(b), message=what)


def _open(browser, playground: Running, user: str) -> None:
    browser.get(f"{playground.url}?user={user}")
    _wait(browser, lambda b: b.execute_script(
        "return document.body.dataset.user === arguments[0] && document.querySelectorAll('#user option').length > 0",
        user), f"the page, as {user}")
    # Record every text a message shows, in order, as the page draws it (live edits included).
    browser.execute_script("""
        window.seen = [];
        new MutationObserver(() => {
          for (const m of document.querySelectorAll('.msg')) {
            const text = m.querySelector('.content')?.textContent || '';
            if (window.seen[window.seen.length - 1] !== m.id + ' ' + text) window.seen.push(m.id + ' ' + text);
          }
        }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
    """)
    _wait(browser, lambda b: b.execute_script("return !!window.EventSource && document.readyState === 'complete'"),
          "the page to load")


def _switch(browser, user: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "user")).select_by_visible_text(user)
    _wait(browser, lambda b: b.execute_script("return document.body.dataset.user") == user.split(" ")[0],
          f"the switch to {user}")


def _command(browser, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element("id", "box")
    box.clear()
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def _messages(browser) -> list[dict]:
    return browser.execute_script("""
        return [...document.querySelectorAll('.msg')].map(m => ({
          id: m.id, text: m.querySelector('.content')?.textContent || '', ephemeral: m.classList.contains('ephemeral'),
          images: [...m.querySelectorAll('.attachments img')].filter(i => i.complete && i.naturalWidth > 0)
                    .map(i => [i.getAttribute('alt'), i.naturalWidth]),
          buttons: [...m.querySelectorAll('.row button')].map(b => b.textContent)}));
    """)


def _last_with(browser, predicate, what: str) -> dict:
    return _wait(browser, lambda b: next((m for m in reversed(_messages(b)) if predicate(m)), None), what)


def _click(browser, message_id: str, label: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException

    def click(b) -> bool:
        try:
            next(e for e in b.find_elements("css selector", f"#{message_id} .row button") if e.text.strip() == label).click()
        except StaleElementReferenceException:  # redrawn between finding and clicking: again
            return False
        return True

    _wait(browser, click, f"a click on {label}")


def _grid(message: dict) -> bool:
    return any(alt == "grid.png" for alt, _ in message["images"])


# -- the tests -------------------------------------------------------------------------------------------------

def test_imagine_shows_live_progress_then_the_grid_and_its_buttons_work(browser, playground, screenshot):
    _open(browser, playground, "alice")
    _command(browser, "/imagine a red circle")
    grid = _last_with(browser, lambda m: _grid(m) and "a red circle" in m["text"], "the grid")
    assert {"U1", "U2", "V3", "🔄"} <= set(grid["buttons"]), grid["buttons"]
    live = [text for text in browser.execute_script("return window.seen") if text.startswith(grid["id"] + " ")]
    assert any("Queued" in text or "Generating" in text for text in live), live  # shown before the grid
    assert dict(grid["images"])["grid.png"] == 128  # the tiny model's 2x2 of 64x64
    screenshot("playground-grid")

    _click(browser, grid["id"], "U2")
    upscale = _last_with(browser, lambda m: m["id"] != grid["id"] and m["images"] and "Image #2" in m["text"],
                         "the upscale of image 2")
    assert upscale["images"][0][1] == 128  # image 2 (64x64), 2x
    _click(browser, grid["id"], "V3")
    _last_with(browser, lambda m: m["id"] not in (grid["id"], upscale["id"]) and _grid(m)
               and "Variations" in m["text"], "the variations of image 3")
    assert not browser.find_element("id", "error").text

    browser.set_window_size(390, 844)  # a phone: nothing wider than the screen, the box still there
    try:
        _wait(browser, lambda b: b.execute_script("return innerWidth") <= 400, "the phone width")
        assert browser.execute_script("return document.documentElement.scrollWidth <= innerWidth")
        assert browser.find_element("id", "box").is_displayed()
        screenshot("playground-phone")
    finally:
        browser.set_window_size(1100, 900)


def test_a_second_member_is_refused_privately_on_the_first_ones_buttons(browser, playground, screenshot):
    _open(browser, playground, "alice")
    _command(browser, "/imagine a blue square")
    grid = _last_with(browser, lambda m: _grid(m) and "a blue square" in m["text"], "alice's grid")
    _switch(browser, "bob")
    _last_with(browser, lambda m: m["id"] == grid["id"], "alice's grid, seen by bob")  # public
    _click(browser, grid["id"], "U1")
    refusal = _last_with(browser, lambda m: m["ephemeral"], "the bot's private refusal")
    assert "Only you can see this" in browser.find_element("id", refusal["id"]).text
    screenshot("playground-refusal")
    _switch(browser, "alice")
    _last_with(browser, lambda m: m["id"] == grid["id"], "alice's page again")
    assert refusal["id"] not in [m["id"] for m in _messages(browser)]  # bob's alone


def test_an_attachment_option_takes_a_file_from_the_file_input(browser, playground, tmp_path):
    picture = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (220, 30, 30)).save(picture)
    _open(browser, playground, "alice")
    box = browser.find_element("id", "box")
    box.send_keys("/imagine a green triangle")
    browser.find_element("id", "opt-image").send_keys(str(picture))
    _command_enter(browser)
    _last_with(browser, lambda m: _grid(m) and "a green triangle" in m["text"], "the grid from the image prompt")
    assert any(path.endswith("/red.png") for _, path in playground.discord.cdn_requests)  # the bot fetched it


def _command_enter(browser) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.find_element("id", "box").send_keys(Keys.ENTER)


def test_remix_opens_the_prompt_in_a_modal_escape_closes_it_and_submit_runs_it(browser, playground):
    from selenium.webdriver.common.keys import Keys

    _open(browser, playground, "bob")
    _command(browser, "/settings")
    settings = _last_with(browser, lambda m: m["ephemeral"] and "Your settings" in m["text"], "bob's /settings")
    _click(browser, settings["id"], "Remix mode")
    _wait(browser, lambda b: "Remix on" in b.find_element("id", settings["id"]).text, "Remix on")
    _command(browser, "/imagine a yellow circle")
    grid = _last_with(browser, lambda m: _grid(m) and "a yellow circle" in m["text"], "bob's grid")

    _click(browser, grid["id"], "🔄")
    _wait(browser, lambda b: b.find_element("id", "modal").is_displayed(), "the Remix form")
    field = browser.find_element("css selector", "#modal-fields textarea")
    assert "a yellow circle" in field.get_attribute("value")
    field.send_keys(Keys.ESCAPE)
    _wait(browser, lambda b: not b.find_element("id", "modal").is_displayed(), "Escape to close the form")

    _click(browser, grid["id"], "🔄")
    _wait(browser, lambda b: b.find_element("id", "modal").is_displayed(), "the Remix form again")
    field = browser.find_element("css selector", "#modal-fields textarea")
    field.clear()
    field.send_keys("a purple square")
    browser.find_element("id", "modal-submit").click()
    _last_with(browser, lambda m: _grid(m) and "a purple square" in m["text"], "the remixed grid")


def test_the_bridge_lists_commands_and_streams_json(playground):
    players = json.load(urllib.request.urlopen(playground.api + "state"))["players"]
    alice, admin = players[0], next(p for p in players if p["admin"])
    names = {c["name"] for c in json.load(urllib.request.urlopen(f"{playground.api}commands?user={alice['id']}"))}
    admin_names = {c["name"] for c in json.load(urllib.request.urlopen(f"{playground.api}commands?user={admin['id']}"))}
    assert {"imagine", "info", "settings"} <= names and "model use" in admin_names - names
    imagine = json.load(urllib.request.urlopen(f"{playground.api}commands?user={alice['id']}"))
    options = {o["name"]: o for c in imagine if c["name"] == "imagine" for o in c["options"]}
    assert options["prompt"]["required"] and options["image"]["type"] == "attachment"
    with urllib.request.urlopen(f"{playground.api}events?user={alice['id']}", timeout=10) as stream:
        first = stream.readline().decode()
        assert first.startswith("data: ")
        assert json.loads(first.removeprefix("data: "))["type"] == "reset"
    body = json.dumps({"user": alice["id"], "command": "imagine", "options": {}}).encode()
    forged = urllib.request.Request(playground.api + "command", method="POST", data=body,
                                    headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:  # another site's form, say: no CSRF token
        urllib.request.urlopen(forged)
    assert refused.value.code == 403 and "CSRF" in json.load(refused.value)["error"]
    with urllib.request.urlopen(playground.home + "/api/session") as answer:
        cookie, token = answer.headers["Set-Cookie"].split(";")[0], json.load(answer)["csrf"]
    request = urllib.request.Request(playground.api + "command", method="POST", data=body,
                                     headers={"Content-Type": "application/json", "Cookie": cookie,
                                              "X-CSRF-Token": token})
    with pytest.raises(urllib.error.HTTPError) as refused:  # what a client would not send
        urllib.request.urlopen(request)
    assert refused.value.code == 400 and "requires ['prompt']" in json.load(refused.value)["error"]
