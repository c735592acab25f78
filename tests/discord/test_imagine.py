"""The /imagine loop as a person sees it, over the local Discord: grid, U/V/🔄, restarts, quota, failures."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from PIL import Image

GRID_BUTTONS = ["upscale:{}:1", "upscale:{}:2", "upscale:{}:3", "upscale:{}:4", "reroll:{}:0",
                "vary:{}:1", "vary:{}:2", "vary:{}:3", "vary:{}:4", "show:{}"]


def png(message) -> Image.Image:
    (attachment,) = message.attachments
    assert attachment.filename.endswith(".png")
    return Image.open(io.BytesIO(attachment.data))


def job_id_of(message) -> int:
    """The job a message shows: named last, after the parent job an upscale or variation names."""
    return int(re.findall(r"job #(\d+)", message.content)[-1])


async def test_imagine_defers_at_once_then_posts_a_grid_with_its_buttons(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    ix, message = await dreamgrid.grid(alice, "a lighthouse at dusk")

    assert ix.ack_type == 5 and ix.ack_seconds < 3.0  # deferred well inside Discord's limit
    grid = png(message)
    assert grid.size == (128, 128)  # a 2x2 of the model's 64x64
    job_id = job_id_of(message)
    assert message.custom_ids() == [f"dg:{b.format(job_id)}" for b in GRID_BUTTONS]
    assert "a lighthouse at dusk" in message.content and "`tiny`" in message.content
    job = await dreamgrid.app.store.get_job(job_id)
    assert f"seed `{job.seed}`" in message.content and job.status == "done"
    assert job.message_id == message.id
    # Every single image is kept on disk for later U and V clicks.
    images = await dreamgrid.app.store.images(job_id)
    assert [i.index for i in images] == [1, 2, 3, 4]
    assert len({i.seed for i in images}) == 4
    assert all((dreamgrid.settings.data_dir / i.path).is_file() for i in images)


async def test_the_message_shows_the_queue_and_progress_before_the_grid(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    ix, _ = await dreamgrid.grid(alice, "a quiet harbour")
    contents = [m.content for m in ix.original_history]
    assert any("Queued (#" in c or "Starting" in c for c in contents)
    assert any(re.search(r"Generating… \d+%", c) for c in contents)


async def test_a_prompt_full_of_mentions_pings_nobody(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, message = await dreamgrid.grid(alice, "@everyone @here <@&1234> <@5678> a cat")
    assert message.allowed_mentions == {"parse": []}
    assert "@everyone" in message.content  # shown as text, never as a ping


async def test_upscale_posts_one_larger_image_with_vary_buttons_and_a_link_back(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, grid_message = await dreamgrid.grid(alice, "a red kite")
    grid_job = job_id_of(grid_message)

    ix, upscaled = await dreamgrid.click(alice, grid_message, f"dg:upscale:{grid_job}:2")

    assert upscaled.id != grid_message.id  # its own message
    assert png(upscaled).size == (128, 128)  # 2x the 64x64 image
    up_job = job_id_of(upscaled)
    assert upscaled.custom_ids()[:3] == [f"dg:subtle:{up_job}:0", f"dg:strong:{up_job}:0", f"dg:creative:{up_job}:0"]
    assert f"dg:show:{up_job}" in upscaled.custom_ids()  # and the canvas tools (tests/discord/test_canvas.py)
    assert f"/{grid_message.id}" in str(upscaled.components)  # the link button back to the grid
    job = await dreamgrid.app.store.get_job(up_job)
    assert (job.kind, job.parent_job_id, job.parent_index) == ("upscale", grid_job, 2)


async def test_vary_makes_a_new_grid_from_one_image(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, grid_message = await dreamgrid.grid(alice, "a blue door")
    parent = job_id_of(grid_message)

    _, varied = await dreamgrid.click(alice, grid_message, f"dg:vary:{parent}:3")

    assert png(varied).size == (128, 128)
    job = await dreamgrid.app.store.get_job(job_id_of(varied))
    assert (job.kind, job.parent_job_id, job.parent_index, job.prompt) == ("variation", parent, 3, "a blue door")
    assert varied.custom_ids()[0] == f"dg:upscale:{job.id}:1"


async def test_vary_subtle_and_strong_on_an_upscale(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, grid_message = await dreamgrid.grid(alice, "a green hill")
    _, upscaled = await dreamgrid.click(alice, grid_message, f"dg:upscale:{job_id_of(grid_message)}:1")
    up_job = job_id_of(upscaled)

    _, subtle = await dreamgrid.click(alice, upscaled, f"dg:subtle:{up_job}:0")
    _, strong = await dreamgrid.click(alice, upscaled, f"dg:strong:{up_job}:0")

    store = dreamgrid.app.store
    subtle_job, strong_job = await store.get_job(job_id_of(subtle)), await store.get_job(job_id_of(strong))
    assert png(subtle).size == png(strong).size == (128, 128)  # grids at the model's size, not the upscale's
    assert subtle_job.recipe.params()["strength"] < strong_job.recipe.params()["strength"]
    assert subtle_job.parent_job_id == up_job


async def test_reroll_makes_a_new_grid_with_the_same_prompt_and_another_seed(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, grid_message = await dreamgrid.grid(alice, "an orange moon")
    first = await dreamgrid.app.store.get_job(job_id_of(grid_message))

    _, rerolled = await dreamgrid.click(alice, grid_message, f"dg:reroll:{first.id}:0")

    second = await dreamgrid.app.store.get_job(job_id_of(rerolled))
    assert second.prompt == first.prompt and second.recipe.params() == first.recipe.params()
    assert second.seed != first.seed and second.kind == "reroll"
    assert png(rerolled).tobytes() != png(grid_message).tobytes()


async def test_buttons_of_a_message_from_before_a_restart_still_work(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, grid_message = await dreamgrid.grid(alice, "a paper boat")
    job_id = job_id_of(grid_message)

    await dreamgrid.restart()  # a new App (new pool, new SQLite connection) and a new discord.py client

    _, upscaled = await dreamgrid.click(alice, grid_message, f"dg:upscale:{job_id}:4")
    assert png(upscaled).size == (128, 128)
    assert (await dreamgrid.app.store.get_job(job_id_of(upscaled))).parent_job_id == job_id


async def test_another_users_click_is_refused_and_charges_nothing(dreamgrid):
    alice, bob = dreamgrid.discord.add_user("alice"), dreamgrid.discord.add_user("bob")
    _, grid_message = await dreamgrid.grid(alice, "a yellow tram")
    store = dreamgrid.app.store
    used_before = await store.used(alice.id)

    ix = await dreamgrid.discord.click(bob, grid_message.id, f"dg:upscale:{job_id_of(grid_message)}:1")
    refusal = await ix.wait_original(lambda m: True, timeout=10)

    assert refusal.flags & 64 and "not your job" in refusal.content
    assert await store.used(bob.id) == 0 and await store.used(alice.id) == used_before
    assert len(await store.recent_jobs(bob.id)) == 0


async def test_an_admin_may_use_anyones_buttons(dreamgrid):
    alice, boss = dreamgrid.discord.add_user("alice"), dreamgrid.discord.add_user("boss", manage_guild=True)
    _, grid_message = await dreamgrid.grid(alice, "a violet bridge")
    _, upscaled = await dreamgrid.click(boss, grid_message, f"dg:upscale:{job_id_of(grid_message)}:3")
    assert png(upscaled).size == (128, 128)


@pytest.mark.parametrize("dreamgrid", [{"daily_images": 5}], indirect=True)
async def test_over_the_allowance_is_refused_privately_and_queues_nothing(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    await dreamgrid.grid(alice, "a first grid")  # 4 of 5 used

    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a second grid"})
    refusal = await ix.wait_original(lambda m: True, timeout=10)

    assert refusal.flags & 64
    assert "1 image left" in refusal.content and "resets <t:" in refusal.content
    assert len(await dreamgrid.app.store.recent_jobs(alice.id)) == 1
    assert await dreamgrid.app.store.used(alice.id) == 4


async def test_a_job_whose_model_fails_is_refunded_and_says_so(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.app.jobs.policy.default_model = "broken"  # its UNet weights are corrupt: the load raises

    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a doomed picture"})
    message = await ix.wait_original(lambda m: "failed" in m.content, timeout=60)

    assert "❌" in message.content and "refunded" in message.content and message.custom_ids() == []
    (job,) = await dreamgrid.app.store.recent_jobs(alice.id)
    assert job.status == "failed" and job.error
    assert await dreamgrid.app.store.used(alice.id) == 0
    assert [row["reason"] for row in await dreamgrid.app.store.ledger(alice.id)] == ["charge", "refund"]


@pytest.mark.parametrize("prompt, complaint", [("", "empty"), ("   ", "empty"), ("x" * 5000, "5,000 characters")])
async def test_bad_prompts_get_a_private_error_and_charge_nothing(dreamgrid, prompt, complaint):
    alice = dreamgrid.discord.add_user("alice")
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": prompt})
    reply = await ix.wait_original(lambda m: True, timeout=10)
    assert reply.flags & 64 and complaint in reply.content
    assert await dreamgrid.app.store.used(alice.id) == 0
    # ...and the bot goes on serving the next command.
    _, message = await dreamgrid.grid(alice, "a fine prompt")
    assert png(message).size == (128, 128)


async def test_info_and_history_show_allowance_jobs_and_links(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, grid_message = await dreamgrid.grid(alice, "a silver fish")

    info = await (await dreamgrid.discord.slash(alice, "info", {})).wait_original(lambda m: True, timeout=10)
    assert info.flags & 64
    assert "36 of 40 images left" in info.content and "`tiny`" in info.content and "none queued" in info.content

    history = await (await dreamgrid.discord.slash(alice, "history", {})).wait_original(lambda m: True, timeout=10)
    assert history.flags & 64
    assert "a silver fish" in history.content and "done" in history.content
    assert f"/{grid_message.id})" in history.content


async def test_a_job_accepted_before_a_crash_is_finished_after_the_restart(dreamgrid):
    from bot.recipe import JobKind, Recipe
    from bot.store import NewJob, Store
    from bot.store.quotas import Limits, Quotas

    alice = dreamgrid.discord.add_user("alice")
    await dreamgrid.stop()
    # The crash: a job was charged and queued, and the process died before it ran.
    store = await Store.open(dreamgrid.settings.database_path)
    [job] = await Quotas(store).accept([NewJob(
        owner_id=alice.id, owner_name="alice", guild_id=dreamgrid.discord.guild_id,
        channel_id=dreamgrid.discord.channel_id, kind=JobKind.IMAGINE,
        recipe=Recipe(prompt="a survivor", model="tiny", seed=42, width=64, height=64, steps=4, guidance=5.0))],
        "fast", 40, Limits(max_waiting=10, queue_limit=100, period_days=1, relax_allowed=True))
    await store.close()

    await dreamgrid.start()

    message = await dreamgrid.discord.wait_for_message(
        lambda m: bool(m.attachments) and f"job #{job.id}" in m.content, timeout=60)
    assert png(message).size == (128, 128) and "a survivor" in message.content
    assert (await dreamgrid.app.store.get_job(job.id)).status == "done"
    assert await dreamgrid.app.store.used(alice.id) == 4  # charged once, not again on recovery


async def test_the_token_never_reaches_the_logs(dreamgrid, capfd):
    import logging

    from bot.logs import setup_logging

    token = dreamgrid.settings.discord_token
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("DEBUG", secrets=[token])  # what `dreamgrid run` installs
    try:
        await dreamgrid.restart()  # logs in again, with discord.py's HTTP and gateway debug logging
        await dreamgrid.grid(dreamgrid.discord.add_user("alice"), "a secret garden")
        logging.getLogger("test").info("leaking %s", token)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    logged = capfd.readouterr().err
    assert "discord." in logged and "leaking [redacted]" in logged
    assert token not in logged


async def test_a_burst_of_commands_is_acknowledged_in_time(dreamgrid):
    """Every interaction is answered within Discord's 3 s (the local Discord refuses later answers)."""
    users = [dreamgrid.discord.add_user(f"user{n}") for n in range(8)]
    burst = await asyncio.gather(*(dreamgrid.discord.slash(users[n % 8], "imagine", {"prompt": f"burst {n}"})
                                   for n in range(40)))
    await asyncio.gather(*(ix.wait_acked(timeout=10) for ix in burst))
    assert all(ix.late_callbacks == 0 for ix in burst)
    for job in await dreamgrid.app.store.active_jobs():
        dreamgrid.app.jobs.cancel(job.id)


@pytest.mark.parametrize("dreamgrid", [{"daily_images": 5}], indirect=True)
async def test_a_slow_decision_is_deferred_first_and_a_refusal_still_comes_privately(dreamgrid, monkeypatch):
    from bot.discord_ui import client

    alice = dreamgrid.discord.add_user("alice")
    await dreamgrid.grid(alice, "a first grid")  # 4 of 5 used
    monkeypatch.setattr(client, "ACK_BUDGET", 0.0)  # as if a burst made every decision slow

    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "one grid too many"})
    reply = await ix.wait_followup(lambda m: True, timeout=10)

    assert ix.ack_type == 5 and ix.original.deleted  # deferred at once; the public "thinking…" is gone
    assert reply.ephemeral and "1 image left" in reply.content
    assert await dreamgrid.app.store.used(alice.id) == 4
