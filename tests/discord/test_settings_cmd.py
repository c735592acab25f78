"""/settings, /prefer and Remix over the local Discord: defaults the next /imagine uses, prompt parameters
over them, and a Remix modal whose edits reach the new job."""

from __future__ import annotations

from bot.service.provenance import read_parameters
from test_imagine import job_id_of, png


async def _settings(dreamgrid, user):
    message = await (await dreamgrid.discord.slash(user, "settings", {})).wait_original(timeout=10)
    assert message.flags & 64  # only the user sees their settings
    return message


async def _choose(dreamgrid, user, message, custom_id, value=None):
    """Pick in a select (value) or press a button; wait until the /settings message shows the change."""
    before = message.content
    if value is None:
        await dreamgrid.discord.click(user, message.id, custom_id)
    else:
        await dreamgrid.discord.select(user, message.id, custom_id, [value])
    await dreamgrid.discord.wait_until(lambda: message.content != before or None, 10, "the settings to change")


async def test_settings_change_the_defaults_of_the_next_imagine_and_prompt_parameters_override_them(dreamgrid):
    alice, bob = dreamgrid.discord.add_user("alice"), dreamgrid.discord.add_user("bob")
    panel = await _settings(dreamgrid, alice)
    assert "Stylize Med (100)" in panel.content and "Remix off" in panel.content
    await _choose(dreamgrid, alice, panel, "dg:set:stylize", "750")
    await _choose(dreamgrid, alice, panel, "dg:set:quality", "0.5")
    assert "Stylize Very High (750)" in panel.content and "Quality 0.5" in panel.content
    assert panel.component("dg:set:stylize")["options"][3]["default"] is True

    store = dreamgrid.app.store
    _, mine = await dreamgrid.grid(alice, "a clay teapot")
    job = await store.get_job(job_id_of(mine))
    assert (job.recipe.params()["guidance"], job.recipe.params()["steps"]) == (8.611, 2)  # 5 x (1 + 650/900); 4 x .5

    _, typed = await dreamgrid.grid(alice, "a clay teapot --s 0 --steps 3")
    job = await store.get_job(job_id_of(typed))
    assert (job.recipe.params()["guidance"], job.recipe.params()["steps"]) == (2.5, 3)

    _, others = await dreamgrid.grid(bob, "a clay teapot")  # settings are per user
    job = await store.get_job(job_id_of(others))
    assert (job.recipe.params()["guidance"], job.recipe.params()["steps"]) == (5.0, 4)


async def test_variation_strength_and_private_replies_from_settings(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    panel = await _settings(dreamgrid, alice)
    await _choose(dreamgrid, alice, panel, "dg:set:variation:subtle")
    await _choose(dreamgrid, alice, panel, "dg:set:private:on")
    assert "V buttons: Subtle" in panel.content and "Replies private" in panel.content

    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a quiet pond"})
    grid = await ix.wait_original(lambda m: bool(m.attachments), timeout=60)
    assert grid.flags & 64  # only alice sees it, and its buttons still work for her
    _, varied = await dreamgrid.click(alice, grid, f"dg:vary:{job_id_of(grid)}:2")
    assert (await dreamgrid.app.store.get_job(job_id_of(varied))).recipe.params()["strength"] == 0.35
    assert "Denoising strength: 0.35" in read_parameters(varied.attachments[0].data)


async def test_remix_opens_the_prompt_and_the_edit_reaches_the_new_job(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    await (await dreamgrid.discord.slash(alice, "prefer suffix", {"value": "in ink"})).wait_original()
    _, grid = await dreamgrid.grid(alice, "a red kite --no clouds --s 250")
    parent = job_id_of(grid)
    panel = await _settings(dreamgrid, alice)
    await _choose(dreamgrid, alice, panel, "dg:set:remix:on")
    assert "Remix on" in panel.content

    click = await dreamgrid.discord.click(alice, grid.id, f"dg:vary:{parent}:1")
    modal = await click.wait_modal()
    assert modal["components"][0]["components"][0]["value"] == (
        "a red kite in ink --no clouds --stylize 250 --steps 4 --model tiny")
    assert await dreamgrid.app.store.used(alice.id) == 4  # nothing charged until submitted

    submit = await dreamgrid.discord.submit_modal(alice, click, {"prompt": "a blue kite in ink --ar 1:2 --no clouds"})
    varied = await submit.wait_original(lambda m: bool(m.attachments), timeout=60)
    job = await dreamgrid.app.store.get_job(job_id_of(varied))
    assert (job.kind, job.parent_job_id, job.prompt, job.negative_prompt) == (
        "variation", parent, "a blue kite in ink", "clouds")
    assert png(varied).size == (96, 176) and "stylize" not in job.recipe.params()

    bad = await dreamgrid.discord.submit_modal(
        alice, await _reroll_modal(dreamgrid, alice, grid, parent), {"prompt": "a kite --chaos 900"})
    refusal = await bad.wait_original(timeout=10)
    assert refusal.flags & 64 and "--chaos 900" in refusal.content
    assert await dreamgrid.app.store.used(alice.id) == 8


async def test_a_remix_opened_before_a_restart_is_submitted_after_it(dreamgrid):
    """The modal's state is its custom_id, like the buttons': a restart between opening and submitting
    loses nothing."""
    alice = dreamgrid.discord.add_user("alice")
    _, grid = await dreamgrid.grid(alice, "a paper boat")
    await _choose(dreamgrid, alice, await _settings(dreamgrid, alice), "dg:set:remix:on")
    shown = await _reroll_modal(dreamgrid, alice, grid, job_id_of(grid))

    await dreamgrid.restart()

    submit = await dreamgrid.discord.submit_modal(alice, shown, {"prompt": "a paper boat on a pond --seed 5"})
    rerolled = await submit.wait_original(lambda m: bool(m.attachments), timeout=60)
    job = await dreamgrid.app.store.get_job(job_id_of(rerolled))
    assert (job.kind, job.prompt, job.seed) == ("reroll", "a paper boat on a pond", 5)
    assert await dreamgrid.app.store.used(alice.id) == 8


async def _reroll_modal(dreamgrid, user, grid, job_id):
    click = await dreamgrid.discord.click(user, grid.id, f"dg:reroll:{job_id}:0")
    await click.wait_modal()
    return click


async def test_prefer_suffix_and_custom_options(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    say = dreamgrid.discord.slash

    reply = await (await say(alice, "prefer option set", {"name": "wide", "value": "--ar 2:1 --seed 3"})).wait_original()
    assert reply.flags & 64 and "`--wide` now stands for `--ar 2:1 --seed 3`" in reply.content
    reply = await (await say(alice, "prefer option set", {"name": "seed", "value": "--ar 2:1"})).wait_original()
    assert "already a parameter" in reply.content
    reply = await (await say(alice, "prefer suffix", {"value": "in oil paint --tile --sed 2"})).wait_original()
    assert "`--sed`" in reply.content and "Nothing was changed" in reply.content
    await (await say(alice, "prefer suffix", {"value": "in oil paint --tile"})).wait_original()

    _, message = await dreamgrid.grid(alice, "a harbour --wide --seed 8")
    job = await dreamgrid.app.store.get_job(job_id_of(message))
    assert (job.prompt, job.seed, job.recipe.params()["width"], job.recipe.params()["tile"]) == ("a harbour in oil paint", 8, 88, True)

    listed = await (await say(alice, "prefer option list", {})).wait_original()
    assert "`--wide` → `--ar 2:1 --seed 3`" in listed.content
    await (await say(alice, "prefer option delete", {"name": "wide"})).wait_original()
    refusal = await (await say(alice, "imagine", {"prompt": "a harbour --wide"})).wait_original()
    assert refusal.flags & 64 and "`--wide` is not a parameter" in refusal.content
