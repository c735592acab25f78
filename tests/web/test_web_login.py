"""Login with Discord in a real browser (headless Chromium), against the local Discord's OAuth2: alice logs in on
its consent page and sees her own jobs and bob's public one in the server they share, never bob's private job,
a job in a server she is not in, nor one in a DM; those are 404s to her, detail and image alike. A server's
admin (Manage Server) sees every job of that server, an admin everywhere (ADMIN_USER_IDS) all of them and the
status page. Requests without the CSRF token are refused, forged and expired cookies are "not logged in",
logout ends the session, OAuth errors are clear pages; no secret, code or token reaches the logs.

Selenium blocks, and the bot serves the page on this test's event loop: every browser call runs in a thread."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest


@pytest.fixture
async def login_bot(tmp_path, models_dir):
    """The real bot on a local Discord with login on: (discord, app, root), root an admin everywhere; the role
    "Mods" is one of ADMIN_ROLE_IDS."""
    from bot.local import local_bot, settings_for
    from bot.localdiscord import LocalDiscord
    from bot.playground import free_port
    from bot.settings import Settings

    async with LocalDiscord() as discord:
        port = free_port()
        discord.oauth.allow_redirect(f"http://127.0.0.1:{port}/oauth/callback")
        root = discord.add_user("root")
        mods = discord.add_role("Mods")  # ADMIN_ROLE_IDS: admins of this server, by role only
        settings = settings_for(discord, Settings.load(env={}, env_file=None), data_dir=tmp_path / "data",
                                models_dir=models_dir, progress_interval=0.0, preview_interval=0.0, web_port=port,
                                discord_client_id=discord.oauth.client_id,
                                discord_client_secret=discord.oauth.client_secret,
                                discord_oauth_url=discord.base_url, admin_user_ids=frozenset({root.id}),
                                admin_role_ids=frozenset({mods}))
        async with local_bot(discord, settings) as app:
            yield discord, app, root
        assert discord.spec_errors == []


async def grid(discord, user, prompt):
    ix = await discord.slash(user, "imagine", {"prompt": prompt})
    await ix.wait_original(lambda m: bool(m.attachments), timeout=60)


async def copy_job(app, source_id: int, prompt: str, guild_id: int | None) -> int:
    """A job of the same owner somewhere the local Discord's one server is not (another server, a DM)."""
    async with app.store.transaction() as db:
        cursor = await db.execute(
            "INSERT INTO jobs(owner_id, guild_id, channel_id, kind, prompt, negative_prompt, params, model, seed,"
            " cost, status, created_at, lane, private) SELECT owner_id, ?, channel_id, kind, ?, negative_prompt,"
            " params, model, seed, 0, status, created_at, lane, 0 FROM jobs WHERE id = ?", (guild_id, prompt, source_id))
        return cursor.lastrowid


class Web:
    """HTTP to the bot's web server as one browser would, its cookies by hand (aiohttp keeps none for an IP)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, cookie: str | None = None) -> None:
        self.http, self.url, self.cookie = http, url, cookie

    def headers(self, extra: dict | None = None) -> dict:
        return {**({"Cookie": f"dg_session={self.cookie}"} if self.cookie else {}), **(extra or {})}

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.url + path, headers=self.headers(), allow_redirects=False) as answer:
            return answer.status, (await answer.read()).decode("utf-8", "replace"), answer

    async def json(self, path: str):
        status, text, _ = await self.get(path)
        return status, json.loads(text)

    async def post(self, path: str, headers: dict | None = None) -> int:
        async with self.http.post(self.url + path, headers=self.headers(headers), allow_redirects=False) as answer:
            return answer.status


async def oauth(http, discord, web_url, user, decision="authorize", state=None) -> aiohttp.ClientResponse:
    """/login, the consent form as `user`, and the callback: its answer (302 with the session, or a page)."""
    async with http.get(f"{web_url}/login?next=/archive", allow_redirects=False) as answer:
        assert answer.status == 302
        authorize, state_cookie = answer.headers["Location"], answer.cookies["dg_login"].value
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    assert authorize.startswith(f"{discord.base_url}/oauth2/authorize?") and query["scope"] == "identify guilds"
    form = {**query, "user": str(user.id), "decision": decision}
    async with http.post(f"{discord.base_url}/oauth2/authorize", data=form, allow_redirects=False) as answer:
        back = answer.headers["Location"]
    if state is not None:
        back = back.replace(f"state={query['state']}", f"state={state}")
    answer = await http.get(back, headers={"Cookie": f"dg_login={state_cookie}"}, allow_redirects=False)
    await answer.read()
    return answer


async def logged_in(http, discord, web_url, user) -> Web:
    answer = await oauth(http, discord, web_url, user)
    assert answer.status == 302 and answer.headers["Location"] == "/archive"
    cookie = answer.cookies["dg_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]  # http here
    return Web(http, web_url, cookie.value)


def cards(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return sorted(element.text.splitlines()[0] for element in browser.find_elements(By.CSS_SELECTOR, "#jobs .caption"))


async def members_and_jobs(discord, app):
    """alice and bob in the server, boss its manager; alice's job, bob's public and private ones, and bob's jobs
    in a server alice is not in and in a DM."""
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    boss = discord.add_user("boss", manage_guild=True)
    await grid(discord, alice, "a lighthouse in fog")
    await grid(discord, bob, "a whale at dawn")
    await app.accounts.update_preferences(bob.id, private=True)  # /settings: private replies
    await grid(discord, bob, "a secret fox")
    jobs = {job.prompt: job for job in await app.store.jobs("ORDER BY id")}
    whale, fox = jobs["a whale at dawn"], jobs["a secret fox"]
    assert fox.private and not whale.private
    elsewhere = await copy_job(app, whale.id, "a garden elsewhere", discord.ids.next())
    in_dm = await copy_job(app, whale.id, "a note in a dm", None)
    return (alice, bob, boss), (whale.id, fox.id, elsewhere, in_dm)


def watch_logs(caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="bot")
    caplog.set_level(logging.DEBUG, logger="aiohttp")


def assert_no_secrets_logged(discord, app, caplog):
    from bot.web.auth import LOGIN

    secrets = [discord.oauth.client_secret, *discord.oauth.issued, app.web.app[LOGIN].key.decode()]
    assert len(discord.oauth.issued) >= 3
    leaked = [secret for secret in secrets if secret in caplog.text]
    assert leaked == [], "a secret, code or token reached the logs"


async def test_alice_logs_in_in_the_browser_and_sees_hers_and_the_public_jobs(login_bot, browser, screenshot, until,
                                                                             caplog):
    from selenium.webdriver.common.by import By

    watch_logs(caplog)
    discord, app, _ = login_bot
    (alice, _, _), (whale, fox, elsewhere, in_dm) = await members_and_jobs(discord, app)
    url = app.web.url

    # The archive sends her to log in, the local Discord asks who, and back.
    await asyncio.to_thread(browser.delete_all_cookies)
    await asyncio.to_thread(browser.get, f"{url}/archive")
    await until(lambda: "/sign-in" in browser.current_url and browser.find_elements(By.ID, "login"),
                what="the login page")
    assert "Log in with Discord" in browser.find_element(By.ID, "login").text
    await asyncio.to_thread(browser.find_element(By.ID, "login").click)
    await until(lambda: browser.find_elements(By.ID, "user-alice"), what="the local Discord's consent page")
    await asyncio.to_thread(browser.find_element(By.ID, "user-alice").click)
    await asyncio.to_thread(screenshot, "login-consent")
    await asyncio.to_thread(browser.find_element(By.ID, "authorize").click)
    shown = await until(lambda: len(cards(browser)) == 2 and cards(browser), what="alice's archive")
    assert shown == ["a lighthouse in fog", "a whale at dawn"]
    assert browser.current_url == f"{url}/archive"
    await until(lambda: "alice" in browser.find_element(By.ID, "account").text, what="who is logged in")
    await asyncio.to_thread(screenshot, "archive-logged-in")

    async with aiohttp.ClientSession() as http:  # with the browser's own cookie
        as_alice = Web(http, url, browser.get_cookie("dg_session")["value"])
        for hidden in (fox, elsewhere, in_dm):
            assert (await as_alice.get(f"/api/jobs/{hidden}"))[0] == 404
        assert (await as_alice.get(f"/images/{whale}"))[0] == 200

    # Logout: the account bar's button; then the archive asks to log in again.
    await asyncio.to_thread(browser.find_element(By.ID, "logout").click)
    await until(lambda: "/sign-in" in browser.current_url, what="the login page after logout")
    await asyncio.to_thread(browser.get, f"{url}/archive")
    await until(lambda: "/sign-in" in browser.current_url, what="the archive asking to log in again")
    await asyncio.to_thread(browser.delete_all_cookies)
    assert_no_secrets_logged(discord, app, caplog)


async def test_who_sees_what_csrf_forged_cookies_and_oauth_errors(login_bot, caplog):
    from bot.web.auth import LOGIN, sign

    watch_logs(caplog)
    discord, app, root = login_bot
    (alice, bob, boss), (whale, fox, elsewhere, in_dm) = await members_and_jobs(discord, app)
    url = app.web.url

    async with aiohttp.ClientSession() as http:
        as_alice = await logged_in(http, discord, url, alice)
        status, found = await as_alice.json("/api/archive")
        assert sorted(j["prompt"] for j in found["jobs"]) == ["a lighthouse in fog", "a whale at dawn"]
        for hidden in (fox, elsewhere, in_dm):  # detail and image: a 404, as for a job that does not exist
            assert (await as_alice.get(f"/api/jobs/{hidden}"))[0] == 404
            assert (await as_alice.get(f"/images/{hidden}"))[0] == 404
        assert (await as_alice.get(f"/api/jobs/{whale}"))[0] == 200  # bob's public job, in their server
        assert (await as_alice.get(f"/images/{whale}"))[0] == 200
        assert (await as_alice.get("/api/status"))[0] == 403 and (await as_alice.get("/status"))[0] == 403
        status, me = await as_alice.json("/api/session")
        assert status == 200 and me["user"] == {"id": str(alice.id), "name": "alice"} and me["login"]
        assert me["admin"] is False

        # CSRF: without the session's token refused, with a forged one too; with it, logout works.
        assert await as_alice.post("/logout") == 403
        assert await as_alice.post("/logout", {"X-CSRF-Token": "forged"}) == 403
        assert (await as_alice.get("/api/archive"))[0] == 200  # still logged in

        # Forged, altered, expired: not logged in (401 for the API, the login page for pages).
        body, mac = as_alice.cookie.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        as_bob = base64.urlsafe_b64encode(json.dumps({**payload, "uid": str(bob.id)}).encode()).rstrip(b"=").decode()
        key = app.web.app[LOGIN].key
        expired = sign(key, "session", {k: v for k, v in payload.items() if k not in ("iat", "exp")}, 3600,
                       now=time.time() - 13 * 3600)
        for bad in (f"{as_bob}.{mac}", f"{body}.{mac[:-3]}abc", "garbage", expired, None):
            status, answer = await Web(http, url, bad).json("/api/archive")
            assert status == 401 and "log in" in answer["error"] and answer["login"].startswith("/sign-in")
            status, _, page = await Web(http, url, bad).get("/archive")
            location = urlsplit(page.headers["Location"])
            assert status == 302 and location.path == "/sign-in" and parse_qs(location.query)["next"] == ["/archive"]
        assert (await Web(http, url).get("/metrics"))[0] == 200 and (await Web(http, url).get("/healthz"))[0] == 200

        csrf = (await as_alice.json("/api/session"))[1]["csrf"]
        assert await as_alice.post("/logout", {"X-CSRF-Token": csrf}) == 200
        assert (await as_alice.get("/api/archive"))[0] == 401  # that session is over, even for a kept copy

        # A server's admin (Manage Server): every job of that server; an admin everywhere: all, and the status.
        as_boss = await logged_in(http, discord, url, boss)
        status, found = await as_boss.json("/api/archive")
        assert status == 200 and sorted(j["prompt"] for j in found["jobs"]) == [
            "a lighthouse in fog", "a secret fox", "a whale at dawn"]
        assert (await as_boss.get(f"/api/jobs/{elsewhere}"))[0] == 404
        assert (await as_boss.get("/api/status"))[0] == 403
        as_root = await logged_in(http, discord, url, root)
        status, found = await as_root.json("/api/archive")
        assert len(found["jobs"]) == 5 and (await as_root.get(f"/api/jobs/{in_dm}"))[0] == 200
        assert (await as_root.get("/api/status"))[0] == 200 and (await as_root.get("/status"))[0] == 200

        # OAuth's errors: clear pages, what to do, no traceback, no session.
        cancelled = await oauth(http, discord, url, alice, decision="deny")
        assert cancelled.status == 403 and "Login cancelled" in await cancelled.text()
        stale = await oauth(http, discord, url, alice, state="not-the-one")
        assert stale.status == 400 and "Log in again" in await stale.text()
        discord.faults.fail(1, status=503, path="/users/@me")
        down = await oauth(http, discord, url, alice)
        text = await down.text()
        assert down.status == 502 and "Discord answered 503" in text and "Traceback" not in text
        assert "dg_session" not in down.cookies
    assert_no_secrets_logged(discord, app, caplog)


async def test_an_admin_role_and_a_quota_tier_count_on_the_pages_as_in_discord(login_bot):
    """The scopes tell no roles: the bot reads them (its own view of the member), at login for ADMIN_ROLE_IDS
    and when a job is started from the page, for the member's quota tier."""
    discord, app, _ = login_bot
    (alice, bob, _), (whale, fox, elsewhere, _) = await members_and_jobs(discord, app)
    mods = next(role.id for role in discord.guild.roles.values() if role.name == "Mods")
    patron = discord.add_role("Patron")
    carol, dave = discord.add_user("carol", roles=[mods]), discord.add_user("dave", roles=[patron])
    await app.admin.quota.tier(discord.guild_id, patron, "Patron", 4)  # one grid a period
    url = app.web.url

    async with aiohttp.ClientSession() as http:
        as_carol = await logged_in(http, discord, url, carol)  # a Mod: every job of this server, as Manage Server
        status, found = await as_carol.json("/api/archive")
        assert status == 200 and sorted(j["prompt"] for j in found["jobs"]) == [
            "a lighthouse in fog", "a secret fox", "a whale at dawn"]
        assert (await as_carol.get(f"/api/jobs/{elsewhere}"))[0] == 404 and (await as_carol.get("/api/status"))[0] == 403
        csrf = {"X-CSRF-Token": (await as_carol.json("/api/session"))[1]["csrf"]}
        assert await as_carol.post(f"/api/jobs/{fox}/actions/reroll", csrf) == 202  # bob's job: an admin's buttons
        as_alice = await logged_in(http, discord, url, alice)
        csrf = {"X-CSRF-Token": (await as_alice.json("/api/session"))[1]["csrf"]}
        assert await as_alice.post(f"/api/jobs/{whale}/actions/reroll", csrf) == 403  # not hers, no role

        await grid(discord, dave, "a red kite")  # in Discord, as a Patron: the tier's one grid
        kite = next(job.id for job in await app.store.jobs("ORDER BY id") if job.prompt == "a red kite")
        as_dave = await logged_in(http, discord, url, dave)
        csrf = {"X-CSRF-Token": (await as_dave.json("/api/session"))[1]["csrf"]}
        async with http.post(f"{url}/api/jobs/{kite}/actions/reroll", headers=as_dave.headers(csrf)) as answer:
            refused = await answer.json()
        assert answer.status == 429 and "you have 0 images left" in refused["error"]  # the tier's, not the default
        async with http.post(f"{url}/api/jobs/{kite}/actions/upscale", json={"index": 1},
                             headers=as_dave.headers(csrf)) as answer:
            assert answer.status == 429  # an upscale costs 1: none left either
    assert discord.spec_errors == []


async def test_a_logged_out_cookie_stays_refused_after_a_restart(login_bot):
    from bot.app import App
    from bot.playground import free_port

    discord, app, _ = login_bot
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    async with aiohttp.ClientSession() as http:
        as_alice, as_bob = await logged_in(http, discord, app.web.url, alice), await logged_in(http, discord, app.web.url, bob)
        csrf = {"X-CSRF-Token": (await as_alice.json("/api/session"))[1]["csrf"]}
        assert await as_alice.post("/logout", csrf) == 200
        assert (await as_alice.get("/api/archive"))[0] == 401  # a kept copy of her cookie
        # The bot started again: its data folder (the signing key, the database), nothing of its memory.
        again = await App.open(dataclasses.replace(app.settings, web_port=free_port()))
        try:
            assert (await Web(http, again.web.url, as_alice.cookie).get("/api/archive"))[0] == 401
            assert (await Web(http, again.web.url, as_bob.cookie).get("/api/archive"))[0] == 200  # bob never left
        finally:
            await again.close()
