"""LocalDiscord's fault switchboard (``d.faults``): injected 5xx/429 answers, connection resets,
held requests and gateway drops, seen by a raw aiohttp client and by the real discord.py."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import discord
import pytest

from bot.localdiscord import LocalDiscord
from bot.localdiscord.harness import running_client

MESSAGES = r"/channels/\d+/messages"
ORIGINAL = r"/webhooks/\d+/[^/]+/messages/@original"

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
async def local() -> Any:
    async with LocalDiscord(check_responses=True) as d:
        yield d
        assert d.response_errors == [], "LocalDiscord answered in a shape Discord's spec does not allow"


async def raw(local: LocalDiscord, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    """A request straight to the fake: (status, body, headers)."""
    headers = {"Authorization": f"Bot {local.bot_token}", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, local.api_base + path, headers=headers, **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, resp.headers


def upload(content: str) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", f'{{"content": "{content}", "attachments": [{{"id": 0, "filename": "a.txt"}}]}}',
                   content_type="application/json")
    form.add_field("files[0]", b"hello", filename="a.txt", content_type="text/plain")
    return form


def contents(local: LocalDiscord) -> list[str]:
    return [m.content for m in local.channel_messages()]


def make_bot() -> discord.Client:
    """A client with one command that defers, then edits its original answer with a file."""
    client = discord.Client(intents=discord.Intents.default())
    tree = discord.app_commands.CommandTree(client)

    @tree.command(description="Draw")
    async def draw(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        file = discord.File(io.BytesIO(b"\x89PNG fake"), filename="grid.png")
        await interaction.edit_original_response(content="done", attachments=[file])

    async def setup_hook() -> None:
        await tree.sync()

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    return client


async def test_fail_answers_n_requests_with_the_status_then_lets_them_through(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    rule = local.faults.fail(2, status=503, method="POST", path=MESSAGES)

    assert (await raw(local, "GET", messages))[0] == 200  # another method: not matched
    for _ in range(2):
        status, body, _ = await raw(local, "POST", messages, json={"content": "hi"})
        assert (status, body) == (503, {"message": "503: Service Unavailable", "code": 0})
    assert contents(local) == []  # not applied
    status, body, _ = await raw(local, "POST", messages, json={"content": "hi"})
    assert status == 200 and contents(local) == ["hi"]
    assert rule.remaining == 0 and rule.fired == 2 and local.faults.rules == []

    assert local.faults.fired == [("fail", "POST", messages)] * 2
    assert local.http_errors == [("POST", messages, 503, 0)] * 2  # like every error answer the fake gives
    assert local.spec_errors == []


async def test_a_malformed_request_is_still_a_spec_error_and_does_not_use_up_a_fault(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    local.faults.fail(1, status=500, path="/channels/{channel_id}/messages")  # the spec's template works too
    status, body, _ = await raw(local, "POST", messages, json={"content": 5})
    assert (status, body["code"]) == (400, 50035) and len(local.spec_errors) == 1
    status, body, _ = await raw(local, "POST", messages, json={"content": "ok"})
    assert (status, body["message"]) == (500, "500: Internal Server Error")
    assert local.faults.fired == [("fail", "POST", messages)]


async def test_429_carries_retry_after_and_discordpy_waits_and_retries(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    local.faults.fail(1, status=429, path=MESSAGES, retry_after=0.25)
    status, body, headers = await raw(local, "POST", messages, json={"content": "raw"})
    assert status == 429
    assert body == {"message": "You are being rate limited.", "code": 0, "retry_after": 0.25, "global": False}
    assert headers["Retry-After"] == "1" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset-After"] == "0.250" and "X-RateLimit-Bucket" in headers and headers["Via"]

    client = discord.Client(intents=discord.Intents.default())
    async with running_client(local, client):
        channel = client.get_channel(local.channel_id)
        local.faults.fail(2, status=429, method="POST", path=MESSAGES, retry_after=0.05)
        started = asyncio.get_running_loop().time()
        sent = await channel.send("after two 429s")  # type: ignore[union-attr]
        waited = asyncio.get_running_loop().time() - started
    assert 0.1 <= waited < 2 and contents(local) == ["after two 429s"] and sent.content == "after two 429s"
    assert [kind for kind, *_ in local.faults.fired] == ["fail"] * 3
    assert local.spec_errors == []


async def test_reset_cuts_the_connection_and_applies_nothing(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    local.faults.reset(1, method="POST", path=MESSAGES, uploads_only=True)

    assert (await raw(local, "POST", messages, json={"content": "no file"}))[0] == 200  # not an upload
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw(local, "POST", messages, data=upload("lost"))
    assert contents(local) == ["no file"]
    status, body, _ = await raw(local, "POST", messages, data=upload("kept"))
    assert status == 200 and body["attachments"][0]["filename"] == "a.txt"
    assert contents(local) == ["no file", "kept"]

    # discord.py sees it too, and does not retry it.
    client = discord.Client(intents=discord.Intents.default())
    async with running_client(local, client):
        local.faults.reset(1, method="POST", path=MESSAGES)
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.get_channel(local.channel_id).send("cut")  # type: ignore[union-attr]
    assert contents(local) == ["no file", "kept"]
    assert local.faults.fired == [("reset", "POST", messages)] * 2
    assert local.spec_errors == [] and local.http_errors == []  # no answer was given


async def test_hold_keeps_a_request_waiting_until_release(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    hold = local.faults.hold(method="POST", path=MESSAGES)
    pending = asyncio.create_task(raw(local, "POST", messages, json={"content": "held"}))
    assert await hold.arrived(timeout=2) == 1 and hold.count == 1
    await asyncio.sleep(0.05)
    assert not pending.done() and contents(local) == []
    assert (await raw(local, "GET", messages))[0] == 200  # only matching requests wait

    assert hold.release() == 1
    status, body, _ = await pending
    assert status == 200 and body["content"] == "held" and contents(local) == ["held"]
    assert hold.count == 0 and not hold.active
    assert (await raw(local, "POST", messages, json={"content": "after"}))[0] == 200  # the hold is over
    assert local.faults.fired == [("hold", "POST", messages)]
    with pytest.raises(TimeoutError):
        await hold.arrived(timeout=0.05)


async def test_a_dropped_hold_closes_the_connections_and_applies_nothing(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    hold = local.faults.hold(path=MESSAGES)
    pending = [asyncio.create_task(raw(local, "POST", messages, json={"content": f"m{i}"})) for i in range(2)]
    assert await hold.arrived(timeout=2, n=2) == 2
    assert hold.drop() == 2
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, aiohttp.ServerDisconnectedError) for r in results), results
    assert contents(local) == []
    assert sorted(local.faults.fired) == [("drop", "POST", messages)] * 2 + [("hold", "POST", messages)] * 2
    assert local.spec_errors == [] and local.http_errors == []


async def test_clear_removes_the_rules_and_releases_held_requests(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    local.faults.fail(5, path=MESSAGES, method="GET")
    hold = local.faults.hold(method="POST")
    pending = asyncio.create_task(raw(local, "POST", messages, json={"content": "released"}))
    await hold.arrived(timeout=2)
    local.faults.clear()
    assert (await pending)[0] == 200 and contents(local) == ["released"]
    assert (await raw(local, "GET", messages))[0] == 200 and local.faults.rules == []


async def test_a_held_upload_of_the_original_answer_lands_when_released(local: LocalDiscord) -> None:
    alice = local.add_user("alice")
    client = make_bot()
    async with running_client(local, client):
        await local.wait_for_commands({"draw"})
        hold = local.faults.hold(method="PATCH", path=ORIGINAL, uploads_only=True)
        ix = await local.slash(alice, "draw")
        await ix.wait_acked(timeout=2)
        await hold.arrived(timeout=2)
        original = local.messages[ix.original_message_id]  # type: ignore[index]
        assert original.loading and not original.attachments  # the edit has not happened
        hold.release()
        msg = await ix.wait_original(lambda m: m.attachments, timeout=2)
    assert msg.content == "done" and msg.attachments[0].filename == "grid.png"
    assert [(kind, method) for kind, method, _ in local.faults.fired] == [("hold", "PATCH")]
    assert local.spec_errors == []


async def test_gateway_drop_makes_discordpy_resume_and_keep_working(local: LocalDiscord) -> None:
    alice = local.add_user("alice")
    client = make_bot()
    async with running_client(local, client):
        await local.wait_for_commands({"draw"})
        assert local.faults.drop_gateway() == 1
        late = local.add_channel("late")  # dispatched while the socket is gone: replayed on RESUME
        await local.wait_until(lambda: local.gateway.resume_count == 1 and local.gateway.connected, 5, "a resume")
        assert local.gateway.identify_count == 1  # resumed, not a new session
        await local.wait_until(lambda: client.get_channel(late), 2, "the missed CHANNEL_CREATE")

        ix = await local.slash(alice, "draw")
        msg = await ix.wait_original(lambda m: m.attachments, timeout=2)
    assert msg.content == "done"
    assert local.faults.fired == [("drop_gateway", "WS", "/gateway")]
    assert local.spec_errors == []


async def test_closing_localdiscord_drops_held_requests_instead_of_waiting_for_them() -> None:
    async with LocalDiscord() as d:
        hold = d.faults.hold()
        pending = asyncio.create_task(raw(d, "POST", f"/channels/{d.channel_id}/messages", json={"content": "x"}))
        await hold.arrived(timeout=2)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await asyncio.wait_for(pending, 2)
    assert d.channel_messages() == []
