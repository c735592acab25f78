"""LocalDiscord against the real discord.py client: the flows Dreamgrid depends on, and the
strictness that makes the fake worth trusting (spec validation, 3 s ack, Discord's errors)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import discord
import pytest
from discord.ext import commands
from PIL import Image

from bot.localdiscord import ClientRefused, LocalDiscord
from bot.localdiscord.harness import running_client


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


class UpscaleButton(discord.ui.DynamicItem[discord.ui.Button], template=r"t:up:(?P<job>\d+):(?P<n>[1-4])"):
    def __init__(self, job: int, n: int) -> None:
        super().__init__(discord.ui.Button(label=f"U{n}", custom_id=f"t:up:{job}:{n}"))
        self.job, self.n = job, n

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any) -> UpscaleButton:
        return cls(int(match["job"]), int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.clicks.append((self.job, self.n, interaction.user.name))  # type: ignore[attr-defined]
        await interaction.response.send_message(f"U{self.n} of job {self.job}", ephemeral=True)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="Your feedback", custom_id="fb:text", max_length=100
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks for: {self.text.value}", ephemeral=True)


def make_bot(*, guild_id: int | None = None, **kwargs: Any) -> commands.Bot:
    """A tiny bot shaped like Dreamgrid's: DynamicItem buttons, app commands, sync in setup_hook."""
    bot = commands.Bot(command_prefix=commands.when_mentioned, intents=discord.Intents.default(), **kwargs)
    bot.clicks = []  # type: ignore[attr-defined]
    bot.failures = []  # type: ignore[attr-defined]

    @bot.tree.command(description="Imagine an image")
    async def imagine(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer()
        view = discord.ui.View(timeout=None)
        view.add_item(UpscaleButton(job=7, n=1))
        grid = discord.File(io.BytesIO(png((255, 0, 0))), filename="grid.png")
        await interaction.edit_original_response(content=f"**{prompt}**", attachments=[grid], view=view)

    @bot.tree.command(description="Answers after Discord's 3 s")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(3.2)
        try:
            await interaction.response.send_message("too late")
        except discord.NotFound as exc:
            bot.failures.append(exc)  # type: ignore[attr-defined]

    @bot.tree.command(description="Server settings")
    @discord.app_commands.default_permissions(manage_guild=True)
    async def settings(interaction: discord.Interaction) -> None:
        perms = interaction.user.guild_permissions  # type: ignore[union-attr]
        await interaction.response.send_message(f"manage_guild={perms.manage_guild}", ephemeral=True)

    @bot.tree.command(description="Tell us what you think")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal())

    async def setup_hook() -> None:
        bot.add_dynamic_items(UpscaleButton)
        if guild_id is None:
            await bot.tree.sync()
        else:
            guild = discord.Object(guild_id)
            bot.tree.copy_global_to(guild=guild)
            await bot.tree.sync(guild=guild)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


@pytest.fixture
async def local() -> Any:
    async with LocalDiscord(check_responses=True) as d:
        yield d
        assert d.response_errors == [], "LocalDiscord answered in a shape Discord's spec does not allow"


async def raw(local: LocalDiscord, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """A request straight to the fake, bypassing discord.py."""
    headers = {"Authorization": f"Bot {local.bot_token}", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, local.api_base + path, headers=headers, **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body


async def test_slash_defer_then_file_and_button_then_click(local: LocalDiscord) -> None:
    bot = make_bot(guild_id=local.guild_id)
    alice, bob = local.add_user("alice"), local.add_user("bob")
    async with running_client(local, bot):
        commands_ = await local.wait_for_commands({"imagine", "slow", "feedback"}, timeout=5)
        assert {c.guild_id for c in commands_} == {local.guild_id}  # registered as guild commands

        ix = await local.slash(alice, "imagine", {"prompt": "a red square"})
        assert await ix.wait_acked(timeout=3) == 5  # deferred
        assert ix.ack_seconds is not None and ix.ack_seconds < 3
        msg = await ix.wait_original(lambda m: m.attachments, timeout=10)
        assert msg.content == "**a red square**" and not msg.loading and not msg.ephemeral
        attachment = msg.attachments[0]
        assert (attachment.filename, attachment.content_type) == ("grid.png", "image/png")
        image = Image.open(io.BytesIO(attachment.data))
        assert image.size == (8, 8) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
        async with aiohttp.ClientSession() as session, session.get(attachment.url) as resp:
            assert await resp.read() == attachment.data
        assert msg.custom_ids() == ["t:up:7:1"]
        assert [(v.loading, v.content) for v in ix.original_history] == [(True, ""), (False, "**a red square**")]

        click = await local.click(bob, msg.id, "t:up:7:1")
        reply = await click.wait_original(timeout=5)
        assert bot.clicks == [(7, 1, "bob")]  # type: ignore[attr-defined]
        assert reply.content == "U1 of job 7" and reply.ephemeral and click.ack_type == 4

        with pytest.raises(ClientRefused):
            await local.click(bob, msg.id, "t:up:7:2")  # not on the message: a client cannot click it
        with pytest.raises(ValueError):
            await local.slash(alice, "imagine", {"prompt": "x", "steps": 3})  # no such option

        # default_member_permissions hides /settings from members without Manage Server.
        with pytest.raises(ClientRefused):
            await local.slash(alice, "settings")
        boss = local.add_user("boss", manage_guild=True)
        settings = await local.slash(boss, "settings")
        assert (await settings.wait_original()).content == "manage_guild=True"

        # A second acknowledgement of the same interaction is refused like Discord does.
        again = {"type": 4, "data": {"content": "again"}}
        status, body = await raw(local, "POST", f"/interactions/{ix.id}/{ix.token}/callback", json=again)
        assert (status, body["code"]) == (400, 40060)
    assert local.spec_errors == []


async def test_requests_that_break_the_spec_get_400_and_are_recorded(local: LocalDiscord) -> None:
    messages = f"/channels/{local.channel_id}/messages"
    status, body = await raw(local, "POST", messages, json={"content": 5})
    assert status == 400 and body["code"] == 50035 and "content" in body["errors"]
    assert len(local.spec_errors) == 1 and "content" in local.spec_errors[0]

    def row(custom_id: str) -> dict[str, Any]:
        return {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": custom_id}]}

    bad_bodies = [
        {"content": "x" * 2001},  # bots get 2000 characters, whatever the spec allows
        {"content": "x", "components": [row(f"c{i}") for i in range(6)]},  # 6 action rows
        {"content": "x", "components": [row("x" * 101)]},  # custom_id over 100
        {"content": "x", "components": [row("same"), row("same")]},  # duplicated custom_id
        {"content": ""},  # an empty message
    ]
    for bad in bad_bodies:
        status, body = await raw(local, "POST", messages, json=bad)
        assert status == 400, bad
    status, _ = await raw(local, "POST", messages, data='{"content": "hi"}', headers={"Content-Type": "text/plain"})
    assert status == 400
    status, _ = await raw(local, "GET", "/no/such/route")
    assert status == 404
    assert len(local.spec_errors) == 8

    # Runtime errors are Discord's answers, not spec violations.
    status, body = await raw(local, "PATCH", f"{messages}/123456789", json={"content": "edit"})
    assert (status, body["code"]) == (404, 10008)
    status, _ = await raw(local, "GET", "/users/@me", headers={"Authorization": "Bot wrong"})
    assert status == 401
    assert len(local.spec_errors) == 8

    status, body = await raw(local, "POST", messages, json={"content": "fine", "allowed_mentions": {"parse": []}})
    assert status == 200 and body["content"] == "fine"


async def test_late_acknowledgement_gets_unknown_interaction(local: LocalDiscord) -> None:
    bot = make_bot()
    alice = local.add_user("alice")
    async with running_client(local, bot):
        await local.wait_for_commands({"slow"})
        ix = await local.slash(alice, "slow")
        await local.wait_until(lambda: bot.failures, 6, "the late answer to fail")  # type: ignore[attr-defined]
    failure = bot.failures[0]  # type: ignore[attr-defined]
    assert isinstance(failure, discord.NotFound) and failure.code == 10062
    assert not ix.acked and ix.late_callbacks == 1
    assert local.spec_errors == []


async def test_restarted_bot_sees_old_messages_and_handles_their_buttons(local: LocalDiscord) -> None:
    alice = local.add_user("alice")
    first = make_bot()
    async with running_client(local, first):
        await local.wait_for_commands({"imagine"})
        ix = await local.slash(alice, "imagine", {"prompt": "before the restart"})
        old = await ix.wait_original(lambda m: m.custom_ids())
    assert first.is_closed()

    second = make_bot()
    async with running_client(local, second):
        assert local.messages[old.id] is old and old.custom_ids() == ["t:up:7:1"]
        click = await local.click(alice, old.id, "t:up:7:1")
        await click.wait_original(timeout=5)
        fetched = await second.get_channel(local.channel_id).fetch_message(old.id)  # type: ignore[union-attr]
        assert fetched.attachments[0].filename == "grid.png"
    assert second.clicks == [(7, 1, "alice")] and first.clicks == []  # type: ignore[attr-defined]
    assert local.gateway.identify_count == 2
    assert local.spec_errors == []


async def test_the_bots_allowed_mentions_travel_with_its_messages(local: LocalDiscord) -> None:
    bot = make_bot(allowed_mentions=discord.AllowedMentions.none())
    alice = local.add_user("alice")
    async with running_client(local, bot):
        await local.wait_for_commands({"imagine"})
        ix = await local.slash(alice, "imagine", {"prompt": "@everyone look"})
        msg = await ix.wait_original(lambda m: m.attachments)
    assert msg.allowed_mentions == {"parse": []}
    assert local.spec_errors == []


async def test_modal_submit_and_gateway_resume(local: LocalDiscord) -> None:
    bot = make_bot()
    alice, bob = local.add_user("alice"), local.add_user("bob")
    async with running_client(local, bot):
        await local.wait_for_commands({"feedback"})
        await local.request_reconnect()  # op 7: discord.py reconnects and RESUMEs the session
        await local.wait_until(lambda: local.gateway.resume_count == 1, 10, "the client to resume")
        assert local.gateway.identify_count == 1

        ix = await local.slash(alice, "feedback")
        modal = await ix.wait_modal()
        assert modal["title"] == "Feedback" and ix.ack_type == 9
        with pytest.raises(ClientRefused):
            await local.submit_modal(bob, ix, {"fb:text": "not my modal"})
        with pytest.raises(ClientRefused):
            await local.submit_modal(alice, ix, {"fb:nope": "x"})
        submit = await local.submit_modal(alice, ix, {"fb:text": "lovely"})
        reply = await submit.wait_original()
    assert reply.content == "thanks for: lovely" and reply.ephemeral
    assert local.spec_errors == []


async def test_harness_raises_what_killed_the_client(local: LocalDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    # A READY without "user" makes discord.py's parser raise KeyError, which ends client.start().
    full = local.ready_payload
    monkeypatch.setattr(local, "ready_payload", lambda sid: {k: v for k, v in full(sid).items() if k != "user"})
    with pytest.raises(KeyError):
        async with running_client(local, make_bot(), ready_timeout=10):
            pass
