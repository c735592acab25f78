"""The archive's buttons over HTTP (bot/web/actions.py), against the real bot on the local Discord: a job started
from the page is the job the Discord button starts (same rules: owner or admin, bans, quota, forged actions
refused) and lands in the job's Discord channel too; every refusal is JSON that says what to do.

Who is asking is simulated here without any login: the action routes take their `viewer` function, and these
tests mount them on a small app of their own with a viewer they choose (a member, not an admin). The real web
server's own viewer (the local admin, until login with Discord) is used for the CSRF check and the polling."""

from __future__ import annotations

import asyncio
import base64
import io
import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from bot.local import shows_result
from bot.service import Requester
from bot.web.actions import action_routes
from bot.web.auth import Viewer


def member(user, admin: bool = False, guilds: frozenset[int] = frozenset()) -> Viewer:
    """A viewer as a login makes it: `guilds`, the servers they share with the bot."""
    return Viewer(Requester(user_id=user.id, name=user.name, guild_id=None, channel_id=0), admin, guilds)


@pytest.fixture
async def as_member(web_bot):
    """(client, asking): the action routes on an app of the test's own, asking as `asking[0]`."""
    _, app = web_bot
    asking: list[Viewer] = []
    pages = web.Application()
    pages.add_routes(action_routes(app.jobs, app.accounts, app.admin, app.starter, viewer=lambda request: asking[0]))
    async with TestClient(TestServer(pages)) as client:
        yield client, asking


async def grid(discord, user, prompt):
    ix = await discord.slash(user, "imagine", {"prompt": prompt})
    message = await ix.wait_original(lambda m: shows_result(m), timeout=60)
    return int(re.findall(r"job #(\d+)", message.content)[-1])


async def finished(url, job_id, timeout=60):
    """GET /api/jobs/<id> until the job has ended (as the page polls it)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout / 0.2)):
            async with http.get(f"{url}/api/jobs/{job_id}") as response:
                job = await response.json()
            if job["status"] not in ("queued", "running"):
                return job
            await asyncio.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not end")


async def test_a_members_web_actions_follow_the_discord_buttons_rules(web_bot, as_member):
    discord, app = web_bot
    client, asking = as_member
    alice, bob = discord.add_user("alice"), discord.add_user("bob")
    job_id = await grid(discord, alice, "a lighthouse --seed 3")
    parent = await app.jobs.get(job_id)

    asking[:] = [member(bob)]  # a job of a server bob does not share with the bot: as if it did not exist
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", json={"index": 2})
    assert response.status == 404 and "does not exist" in (await response.json())["error"]
    asking[:] = [member(bob, guilds=frozenset({parent.guild_id}))]  # another member's public job: refused
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", json={"index": 2})
    assert response.status == 403 and "not your job" in (await response.json())["error"]
    assert await app.store.used(bob.id) == 0

    asking[:] = [member(alice)]
    for action, body in (("upscale", {"index": 5}), ("upscale", {"index": "2"}), ("subtle", {}),
                         ("vary", {"index": 0}), ("upscale", {"index": True})):
        response = await client.post(f"/api/jobs/{job_id}/actions/{action}", json=body)
        assert response.status == 400, (action, body)
        assert "does not belong to job" in (await response.json())["error"]  # forged: as Discord answers it
    response = await client.post(f"/api/jobs/{job_id}/actions/explode", json={})
    assert response.status == 400 and "no action 'explode'" in (await response.json())["error"]
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", data=b"{not json")
    assert response.status == 400 and "not JSON" in (await response.json())["error"]
    response = await client.post("/api/jobs/999999/actions/upscale", json={"index": 1})
    assert response.status == 404
    response = await client.post(f"/api/jobs/{job_id}/region", json={"mask": "AAAA"})
    assert response.status == 400 and "is a grid" in (await response.json())["error"]  # a UserError, as text

    used = await app.store.used(alice.id)
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", json={"index": 2})
    assert response.status == 202
    new = (await response.json())["job"]
    assert new["status"] == "queued" and new["kind"] == "upscale" and new["parent"] == job_id
    done = await finished(app.web.url, new["id"])
    assert done["status"] == "done" and done["grid"] is False and done["stored"] is True
    started = await app.jobs.get(new["id"])
    assert (started.owner_id, started.guild_id, started.channel_id) == (alice.id, parent.guild_id, parent.channel_id)
    assert await app.store.used(alice.id) == used + 1  # charged as the U button is
    # ... and posted in the grid's Discord channel, like a job with no interaction.
    posted = await discord.wait_for_message(lambda m: f"job #{new['id']}" in m.content and shows_result(m),
                                            timeout=30)
    assert posted.channel_id == parent.channel_id

    # The fast allowance: the bot's own refusal text, with when it resets, as a 429.
    await app.admin.quota.set_images(alice.id, "alice", await app.store.used(alice.id) + 1)
    response = await client.post(f"/api/jobs/{job_id}/actions/reroll", json={})
    answer = await response.json()
    assert response.status == 429
    assert answer["error"].startswith("Not enough fast allowance left: you have 1 image left")
    assert "UTC" in answer["error"] and "Nothing was queued or charged" in answer["error"]

    # Banned members are refused every button; admins are never locked out.
    admin = Requester(user_id=discord.add_user("root").id, name="root", guild_id=parent.guild_id, channel_id=0)
    await app.admin.moderation.ban(admin, alice.id)
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", json={"index": 1})
    assert response.status == 403 and "banned" in (await response.json())["error"]
    asking[:] = [member(bob, admin=True)]  # an admin may act on anyone's job
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", json={"index": 3})
    assert response.status == 202
    assert (await finished(app.web.url, (await response.json())["job"]["id"]))["status"] == "done"


async def test_the_real_server_refuses_a_post_without_its_csrf_token_and_answers_with_one(web_bot):
    discord, app = web_bot
    alice = discord.add_user("alice")
    job_id = await grid(discord, alice, "a whale --seed 4")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{app.web.url}/api/jobs/{job_id}/actions/reroll", json={}) as response:
            assert response.status == 403 and "CSRF" in (await response.json())["error"]
        async with http.get(f"{app.web.url}/api/session") as response:
            token = (await response.json())["csrf"]
        async with http.post(f"{app.web.url}/api/jobs/{job_id}/actions/reroll", json={},
                             headers={"X-CSRF-Token": "wrong"}) as response:
            assert response.status == 403
        async with http.post(f"{app.web.url}/api/jobs/{job_id}/actions/reroll",  # Remix: a longer one
                             json={"prompt": "a whale --seed 4 --steps 40"},
                             headers={"X-CSRF-Token": token}) as response:
            assert response.status == 202, await response.text()
            new = (await response.json())["job"]
        seen = []  # what the page shows while it runs: how far it is
        deadline = asyncio.get_running_loop().time() + 120  # the other xdist worker may be starting Ray
        while asyncio.get_running_loop().time() < deadline:
            async with http.get(f"{app.web.url}/api/jobs/{new['id']}") as response:
                job = await response.json()
            if job["status"] not in ("queued", "running"):
                break
            seen.append(job["progress"])
            await asyncio.sleep(0.02)
    done = await finished(app.web.url, new["id"])
    assert done["status"] == "done" and done["kind"] == "reroll" and done["grid"] is True
    assert done["progress"] is None
    fractions = [fraction for fraction in seen if fraction is not None]
    assert fractions and all(0 < fraction <= 1 for fraction in fractions), seen
    assert fractions == sorted(fractions)


async def test_a_painted_region_and_a_custom_zoom_from_the_api_and_their_refusals(web_bot, as_member):
    discord, app = web_bot
    client, asking = as_member
    erin = discord.add_user("erin")
    asking[:] = [member(erin)]
    job_id = await grid(discord, erin, "a harbour --seed 5")
    response = await client.post(f"/api/jobs/{job_id}/actions/upscale", json={"index": 1})
    big = (await finished(app.web.url, (await response.json())["job"]["id"]))["id"]

    def mask(box) -> str:
        image = Image.new("L", (128, 128), 0)
        if box:
            image.paste(255, box)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    for body, said in (({"mask": mask(None)}, "The mask is empty"), ({"mask": mask((0, 0, 128, 128))}, "whole image"),
                       ({"mask": "!!!"}, "not a base64 PNG"), ({}, "Send the mask"),
                       ({"mask": mask((0, 0, 64, 64)), "prompt": 7}, "prompt must be text")):
        response = await client.post(f"/api/jobs/{big}/region", json=body)
        assert response.status == 400 and said in (await response.json())["error"], body
    response = await client.post(f"/api/jobs/{big}/region", json={"mask": "A" * (2 * 2**20)})
    assert response.status == 413 and "too big" in (await response.json())["error"]

    response = await client.post(f"/api/jobs/{big}/actions/panleft", json={})  # the other tools, likewise
    assert response.status == 202
    panned = await finished(app.web.url, (await response.json())["job"]["id"])
    assert panned["status"] == "done" and panned["kind"] == "pan" and panned["grid"] is True
    assert (panned["width"], panned["height"]) != (128, 128)  # the image grew to the left

    response = await client.post(f"/api/jobs/{big}/region", json={"mask": mask((0, 0, 64, 64)),
                                                                  "prompt": "a harbour at dusk"})
    assert response.status == 202
    done = await finished(app.web.url, (await response.json())["job"]["id"])
    assert done["status"] == "done" and done["kind"] == "region" and done["prompt"] == "a harbour at dusk"
    assert "Mask: painted" in done["parameters"]

    # Custom Zoom: its factor and prompt, as the Discord form; a factor out of range, or none, says what to send.
    for body, said in (({"factor": 2.5}, "must be 1 to 2, got 2.5"), ({"factor": "wide"}, "must be a number"),
                       ({}, "Send the zoom factor"), ({"factor": True}, "Send the zoom factor"),
                       ({"factor": "1" * 30}, "Send the zoom factor")):
        response = await client.post(f"/api/jobs/{big}/zoom", json=body)
        assert response.status == 400 and said in (await response.json())["error"], body
    response = await client.post(f"/api/jobs/{job_id}/zoom", json={"factor": 1.5})
    assert response.status == 400 and "is a grid" in (await response.json())["error"]
    response = await client.post(f"/api/jobs/{big}/zoom", json={"factor": "1.25", "prompt": "a harbour in fog"})
    assert response.status == 202
    zoomed = await finished(app.web.url, (await response.json())["job"]["id"])
    assert zoomed["status"] == "done" and zoomed["kind"] == "zoom" and zoomed["prompt"] == "a harbour in fog"
    assert "Zoom: 1.25" in zoomed["parameters"]
