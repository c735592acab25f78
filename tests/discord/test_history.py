"""/history pages and filters, /show reposts with working buttons, and retention prunes images cleanly."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.service.retention import prune_images
from bot.recipe import JobKind, JobStatus, Recipe
from bot.store import NewJob, utcnow
from bot.store.quotas import Limits, Quotas

LIMITS = Limits(max_waiting=10_000, queue_limit=10_000, period_days=1, relax_allowed=True)


async def past_jobs(dreamgrid, user, prompts):
    """Jobs from long ago that were cancelled: rows for the history (running them would only cost time)."""
    store, d = dreamgrid.app.store, dreamgrid.discord
    ids = []
    for prompt in prompts:
        recipe = Recipe(prompt=prompt, model="tiny", seed=1, width=64, height=64, steps=4, guidance=5.0)
        [job] = await Quotas(store).accept([NewJob(
            owner_id=user.id, owner_name=user.username, guild_id=d.guild_id, channel_id=d.channel_id,
            kind=JobKind.IMAGINE, recipe=recipe)], "fast", 10_000, LIMITS)
        await store.fail_job(job.id, "cancelled", JobStatus.CANCELLED)
        ids.append(job.id)
    return ids


async def reply(dreamgrid, user, command, options=None):
    ix = await dreamgrid.discord.slash(user, command, options or {})
    return await ix.wait_original(lambda m: not m.loading, timeout=30)


def lines(message):
    return [line for line in message.content.splitlines() if line.startswith("• ")]


async def test_history_pages_through_every_job_and_filters_by_prompt(dreamgrid):
    d = dreamgrid.discord
    alice = d.add_user("alice")
    old = await past_jobs(dreamgrid, alice, [f"a still life number {n}" for n in range(11)] + ["a grey fox"])
    _, grid = await dreamgrid.grid(alice, "a red fox")
    newest = int(grid.content.rsplit("job #", 1)[1])

    page = await reply(dreamgrid, alice, "history")
    assert page.flags & 64 and "13 jobs, page 1 of 2" in page.content
    assert len(lines(page)) == 10 and f"[#{newest}](" in lines(page)[0] and "done" in lines(page)[0]
    newer, older = page.custom_ids()
    assert page.component(newer)["disabled"] and not page.component(older).get("disabled")

    click = await d.click(alice, page.id, older)
    await click.wait_acked()
    second = d.messages[page.id]
    assert "page 2 of 2" in second.content
    assert [line.split()[1] for line in lines(second)] == [f"#{i}" for i in (old[2], old[1], old[0])]

    foxes = await reply(dreamgrid, alice, "history", {"prompt": "fox"})
    assert "2 jobs, page 1 of 1" in foxes.content and len(lines(foxes)) == 2
    assert all("fox" in line for line in lines(foxes)) and "cancelled" in lines(foxes)[1]
    none = await reply(dreamgrid, alice, "history", {"prompt": "zebra"})
    assert "none" in none.content and none.custom_ids() == []


async def test_history_of_someone_else_is_for_admins_only(dreamgrid):
    d = dreamgrid.discord
    alice, bob, boss = d.add_user("alice"), d.add_user("bob"), d.add_user("boss", manage_guild=True)
    await past_jobs(dreamgrid, alice, ["a private sketch"])

    refused = await reply(dreamgrid, bob, "history", {"user": alice})
    assert refused.flags & 64 and "Only admins" in refused.content and "sketch" not in refused.content
    seen = await reply(dreamgrid, boss, "history", {"user": alice})
    assert "a private sketch" in seen.content and f"<@{alice.id}>" in seen.content
    assert seen.allowed_mentions == {"parse": []}


async def test_show_reposts_a_result_whose_buttons_work_for_owner_and_admin_only(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice, bob, boss = d.add_user("alice"), d.add_user("bob"), d.add_user("boss", manage_guild=True)
    _, grid = await dreamgrid.grid(alice, "a tall ship")
    job_id = int(grid.content.rsplit("job #", 1)[1])

    shown = await reply(dreamgrid, alice, "show", {"job": job_id})
    assert shown.id != grid.id and not shown.flags & 64
    assert shown.attachments and f"dg:upscale:{job_id}:1" in shown.custom_ids()
    _, upscaled = await dreamgrid.click(alice, shown, f"dg:upscale:{job_id}:1")  # the buttons work
    assert (await store.get_job(int(upscaled.content.rsplit("job #", 1)[1]))).parent_job_id == job_id

    refused = await reply(dreamgrid, bob, "show", {"job": job_id})
    assert refused.flags & 64 and f"no job #{job_id}" in refused.content and not refused.attachments
    by_admin = await reply(dreamgrid, boss, "show", {"job": job_id})
    assert by_admin.attachments


async def test_pruned_images_are_reported_instead_of_breaking(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice = d.add_user("alice")
    _, grid = await dreamgrid.grid(alice, "a fading photo")
    job_id = int(grid.content.rsplit("job #", 1)[1])
    data = dreamgrid.settings.data_dir

    assert await prune_images(store, data, days=30) == []  # too young
    assert await prune_images(store, data, days=30, now=utcnow() + timedelta(days=31)) == [job_id]
    assert not (data / "images" / str(job_id)).exists()

    shown = await reply(dreamgrid, alice, "show", {"job": job_id})
    assert shown.flags & 64 and "were deleted" in shown.content and not shown.attachments
    assert "images deleted" in (await reply(dreamgrid, alice, "history")).content
    used = await store.used(alice.id)
    click = await d.click(alice, grid.id, f"dg:upscale:{job_id}:2")
    said = await click.wait_original(timeout=10)
    assert said.flags & 64 and "no longer stored" in said.content
    assert await store.used(alice.id) == used  # nothing charged


async def test_history_with_nothing_to_show_or_an_overlong_filter_answers_cleanly(dreamgrid, caplog, monkeypatch):
    """No jobs, a filter matching nothing, and a forged 5,000-character filter (Discord's max_length binds
    only its own clients): each gets one private answer within 2,000 characters, and no traceback."""
    import logging

    caplog.set_level(logging.ERROR, logger="discord")
    d = dreamgrid.discord
    alice = d.add_user("alice")

    empty = await reply(dreamgrid, alice, "history")
    assert empty.flags & 64 and "Your jobs: none" in empty.content and empty.custom_ids() == []
    await past_jobs(dreamgrid, alice, ["a quiet harbour"])
    nothing = await reply(dreamgrid, alice, "history", {"prompt": "zebra"})
    assert nothing.flags & 64 and 'none with "zebra"' in nothing.content and nothing.custom_ids() == []

    [command] = [c for c in d.registered_commands() if c.name == "history"]
    [option] = [o for o in command.payload["options"] if o["name"] == "prompt"]
    monkeypatch.setitem(option, "max_length", 6000)  # a forged client sends what it likes
    forged = await reply(dreamgrid, alice, "history", {"prompt": "harbour " * 625})
    assert forged.flags & 64 and len(forged.content) <= 2000
    assert "The filter is 5,000 characters; the most is 60" in forged.content and forged.custom_ids() == []

    await asyncio.sleep(0.2)  # a failure after the answer would be logged just after it
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
