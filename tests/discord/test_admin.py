"""Admin commands over the local Discord: models changed without downtime, bans, banned words, /stats and
the audit table; and non-admins refused by the bot itself even where the server shows them the commands."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest

from bot.engine.safety import create_tiny_safety_checker
from bot.localdiscord.server import ClientRefused

ADMIN_CATALOG = """\
default = "tiny"

[models.tiny]
source = "tiny-sd"
width = 64
height = 64
steps = 4
guidance = 5.0

[models.other]
source = "tiny-sd"
width = 64
height = 64
steps = 2
guidance = 5.0
description = "The tiny model again, under another name: a second model to switch to."

[models.broken]
source = "broken-sd"
width = 64
height = 64
steps = 4
guidance = 5.0

[models.flagged]
source = "flagged-sd"
width = 64
height = 64
steps = 2
guidance = 5.0
description = "tiny with a safety checker that flags every image."

[models.checked]
source = "checked-sd"
width = 64
height = 64
steps = 2
guidance = 5.0
description = "tiny with a safety checker that flags no image."
"""

EPHEMERAL = 64


@pytest.fixture(scope="module")
def models_dir(models_dir, tmp_path_factory):
    """The shared tiny and broken models, a catalog with a second working model, and a checkpoint file
    that no catalog entry uses (so /model list has something found but not offered)."""
    folder = tmp_path_factory.mktemp("admin-models")
    for name in ("tiny-sd", "broken-sd"):
        (folder / name).symlink_to(models_dir / name, target_is_directory=True)
    for name, flag_everything in (("flagged-sd", True), ("checked-sd", False)):
        (folder / name).mkdir()
        for part in (models_dir / "tiny-sd").iterdir():
            (folder / name / part.name).symlink_to(part)
        create_tiny_safety_checker(folder / name, flag_everything=flag_everything)
    (folder / "catalog.toml").write_text(ADMIN_CATALOG)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "dreamshaper.safetensors").write_bytes(b"weights would be here")
    return folder


async def answer(discord, user, command: str, options: dict | None = None, *, until=None, timeout=30):
    """Run a command and return its private answer, once `until` holds for it (default: any answer)."""
    ix = await discord.slash(user, command, options or {})
    message = await ix.wait_original(until or (lambda m: not m.loading), timeout=timeout)
    assert message.flags & EPHEMERAL, f"/{command} answered in public: {message.content}"
    assert message.allowed_mentions == {"parse": []}
    return message


async def audit_log(dreamgrid, count: int):
    """The audit table once it has `count` entries (each is written just after the admin's answer)."""
    async def entries():
        while len(rows := await dreamgrid.app.admin.moderation.audit_log(dreamgrid.discord.guild_id, 50)) < count:
            await asyncio.sleep(0.02)
        return rows
    return await asyncio.wait_for(entries(), 10)


def done(message) -> bool:
    return "⏳" not in message.content  # past the "Loading…" note


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


async def test_model_use_switches_the_default_while_jobs_are_queued_and_survives_a_restart(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)
    queued = [await discord.slash(alice, "imagine", {"prompt": f"queued picture {i}"}) for i in range(3)]
    for ix in queued:
        await ix.wait_acked()

    reply = await answer(discord, boss, "model use", {"name": "other"}, until=done)
    assert "`other` is now this server's default" in reply.content and "was `tiny`" in reply.content

    # The jobs accepted before the switch finish on the model they were accepted with...
    for ix in queued:
        grid = await ix.wait_original(lambda m: bool(m.attachments), timeout=60)
        assert "Model `tiny`" in grid.content
    # ...and new ones use the new default, also after a restart (the choice is kept in SQLite).
    _, grid = await dreamgrid.grid(alice, "after the switch")
    assert "Model `other`" in grid.content
    await dreamgrid.restart()
    _, grid = await dreamgrid.grid(alice, "after the restart")
    assert "Model `other`" in grid.content
    info = await answer(discord, alice, "info")
    assert "`other`" in info.content


async def test_the_presence_names_the_default_model(dreamgrid):
    discord = dreamgrid.discord
    boss = discord.add_user("boss", manage_guild=True)
    await discord.wait_until(lambda: discord.presence, 10, "a presence")
    assert "model tiny" in discord.presence["activities"][0]["name"]

    await answer(discord, boss, "model use", {"name": "other"}, until=done)

    await discord.wait_until(lambda: "model other" in discord.presence["activities"][0]["name"], 10,
                             "the presence to name the new model")


async def test_a_model_that_fails_to_load_leaves_the_old_one_serving_and_says_why(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)

    reply = await answer(discord, boss, "model use", {"name": "broken"}, until=done, timeout=60)

    assert "could not be loaded" in reply.content and "`tiny` is still the default" in reply.content
    assert "Unable to load weights" in reply.content  # why, in the words of the loader
    _, grid = await dreamgrid.grid(alice, "still served")
    assert "Model `tiny`" in grid.content
    (entry,) = await audit_log(dreamgrid, 1)
    assert (entry.user_id, entry.action, entry.detail) == (boss.id, "model use", "name=broken")
    assert entry.outcome.startswith("failed: Model `broken` could not be loaded")


async def test_only_catalog_names_can_be_loaded(dreamgrid):
    discord = dreamgrid.discord
    boss = discord.add_user("boss", manage_guild=True)
    loaded_before = dreamgrid.app.pool.loaded()

    names = ("../../etc/passwd", "/etc/passwd", "tiny-sd", "../broken-sd", "checkpoints/dreamshaper.safetensors")
    for name in names:
        for command in ("model use", "model load", "model info"):
            reply = await answer(discord, boss, command, {"name": name})
            assert "There is no model called" in reply.content
            assert "`broken`, `checked`, `flagged`, `other`, `tiny`" in reply.content  # what can be picked
    assert dreamgrid.app.pool.loaded() == loaded_before
    assert await dreamgrid.app.jobs.model_for(discord.guild_id) == "tiny"


async def test_list_info_load_and_unload(dreamgrid):
    discord = dreamgrid.discord
    boss = discord.add_user("boss", manage_guild=True)

    listing = await answer(discord, boss, "model list")
    assert re.search(r"`tiny` ★ default here — loaded on cpu \(\d+\.\d MB\) · 64×64, 4 steps", listing.content)
    assert "`other` — not loaded" in listing.content
    # found, but no catalog entry uses it (and this one is not a checkpoint at all)
    assert ("`checkpoints/dreamshaper.safetensors` (checkpoint: cannot be used: checkpoints/dreamshaper.safetensors "
            "is not a valid .safetensors file") in listing.content
    assert "`tiny-sd`" not in listing.content  # a folder the catalog already offers is not listed twice

    loaded = await answer(discord, boss, "model load", {"name": "other"}, until=done)
    assert re.search(r"`other` is loaded on cpu in \d+\.\d s", loaded.content)
    assert "`other` — loaded on cpu" in (await answer(discord, boss, "model list")).content

    info = await answer(discord, boss, "model info", {"name": "other"})
    assert "Source: `tiny-sd` (a folder under models/)" in info.content
    assert "64×64 · 2 steps · guidance 5" in info.content and "default: no" in info.content
    assert "loaded on cpu" in info.content

    unloaded = await answer(discord, boss, "model unload", {"name": "other"})
    assert "`other` was unloaded from cpu" in unloaded.content
    assert {s.name for s in dreamgrid.app.pool.loaded()} == {"tiny"}
    refused = await answer(discord, boss, "model unload", {"name": "tiny"})
    assert "default model, so it stays loaded" in refused.content


ADMIN_COMMANDS = [
    ("model list", {}), ("model use", {"name": "other"}), ("model load", {"name": "other"}),
    ("model unload", {"name": "tiny"}), ("model info", {"name": "tiny"}), ("stats", {}),
    ("ban", {"user": "VICTIM"}), ("unban", {"user": "VICTIM"}), ("moderation words add", {"word": "boat"}),
    ("moderation words remove", {"word": "boat"}), ("moderation words list", {}), ("moderation audit", {}),
]


async def test_non_admins_are_refused_every_admin_command_even_when_the_server_shows_it(dreamgrid):
    discord = dreamgrid.discord
    mallory, victim = discord.add_user("mallory"), discord.add_user("victim")

    # Discord hides the commands from members without Manage Server (default_member_permissions)...
    for command, _ in ADMIN_COMMANDS:
        with pytest.raises(ClientRefused, match="needs permissions"):
            await discord.slash(mallory, command, {})
    # ...and a server may open them to everyone anyway: then the bot refuses by itself.
    discord.open_commands.update({"model", "stats", "ban", "unban", "moderation"})
    for command, options in ADMIN_COMMANDS:
        options = {k: victim if v == "VICTIM" else v for k, v in options.items()}
        reply = await answer(discord, mallory, command, options)
        assert reply.content.startswith(f"Only server admins can use /{command}"), reply.content

    app = dreamgrid.app
    assert await app.jobs.model_for(discord.guild_id) == "tiny"
    assert {s.name for s in app.pool.loaded()} == {"tiny"}
    assert not await app.admin.is_banned(discord.guild_id, victim.id)
    assert await app.admin.moderation.words(discord.guild_id) == []
    audit = await audit_log(dreamgrid, len(ADMIN_COMMANDS))
    assert len(audit) == len(ADMIN_COMMANDS)
    assert {(e.user_id, e.outcome) for e in audit} == {(mallory.id, "refused: not an admin")}
    assert {e.action for e in audit} == {command for command, _ in ADMIN_COMMANDS}


async def test_admins_named_by_role_or_id_in_the_settings_are_admins(dreamgrid):
    discord = dreamgrid.discord
    role = discord.add_role("Dreamgrid admins")
    by_role, by_id = discord.add_user("by-role", roles=[role]), discord.add_user("by-id")
    await dreamgrid.stop()
    dreamgrid.settings = dataclasses.replace(dreamgrid.settings, admin_role_ids=frozenset({role}),
                                             admin_user_ids=frozenset({by_id.id}))
    await dreamgrid.start()
    discord.open_commands.add("moderation")  # the server let everyone see it; Manage Server is not needed

    for user in (by_role, by_id):
        reply = await answer(discord, user, "moderation words list")
        assert "No banned words" in reply.content


async def test_a_banned_member_is_refused_everything_politely_until_unbanned(dreamgrid):
    discord = dreamgrid.discord
    bob, boss = discord.add_user("bob"), discord.add_user("boss", manage_guild=True)
    _, old_grid = await dreamgrid.grid(bob, "before the ban")
    store = dreamgrid.app.store
    used = await store.used(bob.id)

    reply = await answer(discord, boss, "ban", {"user": bob, "reason": "spam"})
    assert "can no longer use Dreamgrid" in reply.content

    for command, options in (("imagine", {"prompt": "a banned picture"}), ("info", {}), ("history", {})):
        refusal = await answer(discord, bob, command, options)
        assert "You are banned from using Dreamgrid on this server" in refusal.content
    ix = await discord.click(bob, old_grid.id, f"dg:upscale:{job_id_of(old_grid)}:1")
    refusal = await ix.wait_original(timeout=10)
    assert refusal.flags & EPHEMERAL and "You are banned" in refusal.content
    assert await store.used(bob.id) == used and len(await store.recent_jobs(bob.id)) == 1

    assert "is an admin and cannot be banned" in (await answer(discord, boss, "ban", {"user": boss})).content
    assert "banned already" in (await answer(discord, boss, "ban", {"user": bob})).content

    assert "may use Dreamgrid again" in (await answer(discord, boss, "unban", {"user": bob})).content
    _, grid = await dreamgrid.grid(bob, "after the ban")
    assert grid.attachments


async def test_banned_words_are_refused_without_being_named_whole_words_any_case(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)
    _, earlier = await dreamgrid.grid(alice, "a dragon over the sea")  # fine when it was made

    for word in ("Dragon", "red  fox"):
        assert "are now refused" in (await answer(discord, boss, "moderation words add", {"word": word})).content
    listing = await answer(discord, boss, "moderation words list")
    assert "`dragon`, `red fox`" in listing.content

    for prompt, where in (("a DRAGON!", "prompt"), ("the red\tfox sleeps", "prompt"), ("dragon", "prompt"),
                          ("a quiet sea --no dragon", "negative prompt")):
        refusal = await answer(discord, alice, "imagine", {"prompt": prompt})
        assert f"Your {where} contains a word this server does not allow" in refusal.content
        assert "dragon" not in refusal.content.lower() and "fox" not in refusal.content.lower()
    # A variation or reroll of a job whose prompt now has a banned word is refused the same way.
    ix = await discord.click(alice, earlier.id, f"dg:vary:{job_id_of(earlier)}:1")
    refusal = await ix.wait_original(timeout=10)
    assert refusal.flags & EPHEMERAL and "does not allow" in refusal.content and "dragon" not in refusal.content
    assert await dreamgrid.app.store.used(alice.id) == 4  # only the first grid was charged

    # Whole words only: "dragonfly" and "redfox" are other words.
    _, grid = await dreamgrid.grid(alice, "a dragonfly near a redfox den")
    assert grid.attachments

    await answer(discord, boss, "moderation words remove", {"word": "DRAGON"})
    _, grid = await dreamgrid.grid(alice, "a dragon again")
    assert grid.attachments


async def test_stats_and_the_audit_log(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)
    await dreamgrid.grid(alice, "one grid")
    await asyncio.gather(*(dreamgrid.grid(alice, f"grid {i}") for i in range(2)))

    stats = await answer(discord, boss, "stats")
    assert "**Queue:** 0 queued, 0 running" in stats.content
    assert "**Last hour:** 3 jobs, 12 images" in stats.content
    assert re.search(r"`tiny`: 3 jobs, 12 images, \d+\.\d s a job", stats.content)
    assert re.search(r"cpu \d+\.\d MB", stats.content)

    await answer(discord, boss, "moderation words add", {"word": "kraken"})
    await audit_log(dreamgrid, 2)
    audit = await answer(discord, boss, "moderation audit")
    lines = audit.content.splitlines()
    assert re.match(rf"• <t:\d+:R> <@{boss.id}> /moderation words add word=kraken — done", lines[1])
    assert re.match(rf"• <t:\d+:R> <@{boss.id}> /stats — done", lines[2])


async def test_model_names_autocomplete_for_admins_only(dreamgrid):
    discord = dreamgrid.discord
    boss, mallory = discord.add_user("boss", manage_guild=True), discord.add_user("mallory")
    discord.open_commands.add("model")

    ix = await discord.autocomplete(boss, "model use", {"name": "t"}, focused="name")
    assert await ix.wait_acked() == 8
    assert ix.choices == [{"name": "other", "value": "other"}, {"name": "tiny", "value": "tiny"}]

    ix = await discord.autocomplete(mallory, "model info", {"name": ""}, focused="name")
    assert await ix.wait_acked() == 8 and ix.choices == []


def is_spoiler(message) -> bool:
    (attachment,) = message.attachments
    return attachment.filename.startswith("SPOILER_")


async def test_images_the_safety_checker_flags_are_spoilered_or_refused_as_the_admins_say(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)
    await answer(discord, boss, "model use", {"name": "flagged"}, until=done)

    _, grid = await dreamgrid.grid(alice, "a harmless teapot")  # the default: spoilers
    assert is_spoiler(grid)
    _, upscaled = await dreamgrid.click(alice, grid, f"dg:upscale:{job_id_of(grid)}:2")
    assert is_spoiler(upscaled)  # an enlarged flagged image is still hidden
    shown = await (await discord.click(alice, grid.id, f"dg:show:{job_id_of(grid)}")).wait_original(
        lambda m: bool(m.attachments), timeout=30)
    assert is_spoiler(shown)  # and so is its repost by 📋

    reply = await answer(discord, boss, "moderation nsfw", {"mode": "refuse"})
    assert "refused (nothing posted, the images refunded), in every channel" in reply.content
    used = await dreamgrid.app.store.used(alice.id)
    ix = await discord.slash(alice, "imagine", {"prompt": "another teapot"})
    failed = await ix.wait_original(lambda m: "failed" in m.content, timeout=60)
    assert "safety checker flagged its images as NSFW" in failed.content and "refunded" in failed.content
    assert not failed.attachments and failed.custom_ids() == []
    assert await dreamgrid.app.store.used(alice.id) == used

    # Age-restricted channels show them as they are, once the admins say so.
    await answer(discord, boss, "moderation nsfw", {"mode": "refuse", "age_restricted": True})
    adults = discord.add_channel("adults-only", nsfw=True)
    ix = await discord.slash(alice, "imagine", {"prompt": "a third teapot"}, channel_id=adults)
    grid = await ix.wait_original(lambda m: bool(m.attachments), timeout=60)
    assert not is_spoiler(grid)


async def test_a_safety_checker_that_flags_nothing_lets_images_through(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)
    info = await answer(discord, boss, "model info", {"name": "checked"})
    assert "NSFW check: the model's safety checker" in info.content
    await answer(discord, boss, "model use", {"name": "checked"}, until=done)
    await answer(discord, boss, "moderation nsfw", {"mode": "refuse"})

    _, grid = await dreamgrid.grid(alice, "a harmless teapot")

    assert not is_spoiler(grid) and "Model `checked`" in grid.content


async def test_a_remix_that_adds_a_banned_word_is_refused(dreamgrid):
    discord = dreamgrid.discord
    alice, boss = discord.add_user("alice"), discord.add_user("boss", manage_guild=True)
    _, grid = await dreamgrid.grid(alice, "a quiet harbour")
    await answer(discord, boss, "moderation words add", {"word": "kraken"})
    settings = await answer(discord, alice, "settings")
    await (await discord.click(alice, settings.id, "dg:set:remix:on")).wait_acked()
    used = await dreamgrid.app.store.used(alice.id)

    shown = await discord.click(alice, grid.id, f"dg:vary:{job_id_of(grid)}:1")
    await shown.wait_modal()
    ix = await discord.submit_modal(alice, shown, {"prompt": "a quiet harbour with a Kraken"})

    refusal = await ix.wait_original(timeout=10)
    assert refusal.flags & EPHEMERAL and "contains a word this server does not allow" in refusal.content
    assert "kraken" not in refusal.content.lower()
    assert await dreamgrid.app.store.used(alice.id) == used


async def test_panels_and_a_remix_opened_before_a_ban_are_refused_after_it(dreamgrid):
    """Buttons, selects and modals are gated like commands: a /settings panel, /history pages or a Remix
    modal that was open when the ban came changes nothing and starts nothing."""
    discord = dreamgrid.discord
    bob, boss = discord.add_user("bob"), discord.add_user("boss", manage_guild=True)
    _, grid = await dreamgrid.grid(bob, "a quiet harbour")
    settings = await answer(discord, bob, "settings")
    await (await discord.click(bob, settings.id, "dg:set:remix:on")).wait_acked()
    shown = await discord.click(bob, grid.id, f"dg:vary:{job_id_of(grid)}:1")
    await shown.wait_modal()
    store = dreamgrid.app.store
    used, prefs = await store.used(bob.id), await dreamgrid.app.accounts.preferences(bob.id)

    await answer(discord, boss, "ban", {"user": bob, "reason": "spam"})

    for ix in (await discord.click(bob, settings.id, "dg:set:private:on"),
               await discord.select(bob, settings.id, "dg:set:stylize", ["750"]),
               await discord.submit_modal(bob, shown, {"prompt": "a quiet harbour at night"})):
        refusal = await ix.wait_original(timeout=10)
        assert refusal.flags & EPHEMERAL and "You are banned" in refusal.content
    assert await dreamgrid.app.accounts.preferences(bob.id) == prefs
    assert await store.used(bob.id) == used and len(await store.recent_jobs(bob.id)) == 1


async def test_a_banned_members_admin_commands_are_refused_and_audited(dreamgrid):
    discord, app = dreamgrid.discord, dreamgrid.app
    bob, boss, victim = discord.add_user("bob"), discord.add_user("boss", manage_guild=True), discord.add_user("victim")
    await answer(discord, boss, "ban", {"user": bob, "reason": "spam"})
    discord.open_commands.update({"ban", "moderation", "quota"})  # the server shows them to everyone

    for command, options in (("ban", {"user": victim}), ("moderation words add", {"word": "boat"}),
                             ("quota grant", {"user": bob, "images": 1000}), ("info", {})):
        refusal = await answer(discord, bob, command, options)
        assert "You are banned from using Dreamgrid on this server" in refusal.content

    await audit_log(dreamgrid, 4)  # boss's ban, then bob's three admin commands...
    await asyncio.sleep(0.2)  # ...and nothing more (not /info)
    audit = await app.admin.moderation.audit_log(discord.guild_id, 50)
    assert [(e.action, e.user_id, e.outcome) for e in reversed(audit)] == [
        ("ban", boss.id, "done"), ("ban", bob.id, "refused: banned"),
        ("moderation words add", bob.id, "refused: banned"), ("quota grant", bob.id, "refused: banned")]
    assert f"user={victim.id}" in audit[2].detail and "word=boat" in audit[1].detail
    assert "images=1000" in audit[0].detail
    assert not await app.admin.is_banned(discord.guild_id, victim.id)
    assert await app.admin.moderation.words(discord.guild_id) == [] and await app.store.ledger(bob.id) == []
