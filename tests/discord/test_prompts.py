"""Midjourney's prompt language over the local Discord: parameters shape the job, survive a reroll, are
refused with a private message that charges nothing, and every PNG says how it was made (📋 shows it)."""

from __future__ import annotations

import pytest

from bot.service.provenance import read_parameters
from test_imagine import job_id_of, png


async def test_parameters_shape_the_job_and_a_reroll_keeps_them(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, message = await dreamgrid.grid(alice, "a red kite --ar 2:1 --seed 7 --no clouds, rain --tile --chaos 10 --s 250")

    assert png(message).size == (176, 96)  # 2x2 of 88x48: the 64x64 budget at 2:1, multiples of 8
    assert "**a red kite**" in message.content and "--" not in message.content.split("\n")[0]
    assert "`--ar 2:1 --no clouds, rain --stylize 250 --chaos 10 --tile` · Model `tiny`" in message.content
    job = await dreamgrid.app.store.get_job(job_id_of(message))
    assert (job.prompt, job.negative_prompt, job.seed) == ("a red kite", "clouds, rain", 7)
    assert job.recipe.params() == {"ar": "2:1", "width": 88, "height": 48, "steps": 4, "guidance": 5.833, "stylize": 250,
                          "chaos": 10, "tile": True}
    assert [image.seed for image in await dreamgrid.app.store.images(job.id)] == [7, 8, 9, 10]

    _, rerolled = await dreamgrid.click(alice, message, f"dg:reroll:{job.id}:0")
    again = await dreamgrid.app.store.get_job(job_id_of(rerolled))
    assert png(rerolled).size == (176, 96)
    assert (again.recipe.params(), again.negative_prompt) == (job.recipe.params(), job.negative_prompt) and again.seed != 7


async def test_the_same_seed_draws_the_same_grid(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, first = await dreamgrid.grid(alice, "a paper crane --seed 1234")
    _, second = await dreamgrid.grid(alice, "a paper crane --seed 1234")
    _, other = await dreamgrid.grid(alice, "a paper crane --seed 1235")
    assert png(first).tobytes() == png(second).tobytes() != png(other).tobytes()


async def test_every_png_carries_its_parameters_for_automatic1111(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    _, message = await dreamgrid.grid(alice, "a glass apple --seed 42 --no worms --ar 1:2")
    job_id = job_id_of(message)

    text = read_parameters(message.attachments[0].data)  # exactly the bytes the local Discord received
    assert text == ("a glass apple\nNegative prompt: worms\nSteps: 4, Sampler: Euler, CFG scale: 5.0, Seed: 42, "
                    f"Size: 48x88, Model: tiny, Dreamgrid job: {job_id}")
    single = read_parameters(dreamgrid.settings.data_dir / "images" / str(job_id) / "3.png")
    assert "Seed: 44, Size: 48x88" in single

    _, upscaled = await dreamgrid.click(alice, message, f"dg:upscale:{job_id}:2")
    assert read_parameters(upscaled.attachments[0].data) == (
        "a glass apple\nNegative prompt: worms\nSteps: 4, Sampler: Euler, CFG scale: 5.0, Seed: 43, Size: 48x88, "
        f"Model: tiny, Postprocess upscaler: realesr-animevideov3, Postprocess upscale by: 2, Dreamgrid job: {job_id_of(upscaled)}")


async def test_the_clipboard_button_shows_the_parameters_and_reposts_a_working_grid(dreamgrid):
    alice, bob = dreamgrid.discord.add_user("alice"), dreamgrid.discord.add_user("bob")
    _, message = await dreamgrid.grid(alice, "a brass owl --seed 99 --s 50")
    job_id = job_id_of(message)

    shown = await (await dreamgrid.discord.click(alice, message.id, f"dg:show:{job_id}")).wait_original(timeout=10)
    assert not shown.flags & 64 and shown.id != message.id
    assert "Seed: 99" in shown.content and "CFG scale: 3.75" in shown.content
    assert "--stylize 50 --steps 4 --model tiny --seed 99" in shown.content
    assert png(shown).tobytes() == png(message).tobytes()
    _, upscaled = await dreamgrid.click(alice, shown, f"dg:upscale:{job_id}:1")  # its buttons work
    assert png(upscaled).size == (128, 128)

    peek = await (await dreamgrid.discord.click(bob, message.id, f"dg:show:{job_id}")).wait_original(timeout=10)
    assert peek.flags & 64 and "Seed: 99" in peek.content  # others may look, privately


@pytest.mark.parametrize("prompt, complaint", [
    ("a cat --chaos 500", "`--chaos 500` is out of range: `--chaos` takes a whole number from 0 to 100"),
    ("a cat --sed 4", "Known parameters: --ar"),
    ("a cat --seed 4 sitting", "write the description first"),
    ("a cat --ar 8:1", "takes ratios up to 4:1"),
    ("a cat --niji", "has none"),
    ("--ar 2:1", "The prompt is empty"),
    ("a cat " * 40, "tokens long; model `tiny` reads at most 77"),
    ("a cat --no " + "dog " * 80, "negative prompt (--no) is 82 tokens long"),
])
async def test_a_bad_prompt_is_refused_privately_and_charges_nothing(dreamgrid, prompt, complaint):
    alice = dreamgrid.discord.add_user("alice")
    reply = await (await dreamgrid.discord.slash(alice, "imagine", {"prompt": prompt})).wait_original(timeout=10)
    assert reply.flags & 64 and complaint in reply.content
    assert await dreamgrid.app.store.used(alice.id) == 0
    assert await dreamgrid.app.store.recent_jobs(alice.id) == []


@pytest.mark.parametrize("dreamgrid", [{"daily_images": 12}], indirect=True)
async def test_repeat_makes_that_many_grids_each_charged(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a tin robot --repeat 2 --seed 5"})
    first = await ix.wait_original(lambda m: bool(m.attachments), timeout=60)
    second = await ix.wait_followup(lambda m: bool(m.attachments), timeout=60)

    jobs = {job_id_of(first), job_id_of(second)}
    assert len(jobs) == 2 and await dreamgrid.app.store.used(alice.id) == 8
    assert all(m.custom_ids()[0].startswith("dg:upscale:") for m in (first, second))

    refusal = await (await dreamgrid.discord.slash(alice, "imagine", {"prompt": "more --repeat 2"})).wait_original(
        timeout=10)
    assert refusal.flags & 64 and "4 images left" in refusal.content
    assert await dreamgrid.app.store.used(alice.id) == 8  # all or nothing
