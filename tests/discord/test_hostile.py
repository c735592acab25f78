"""Hostile and odd input, over the local Discord: every interaction is answered, politely and privately,
with no traceback and nothing charged; valid prompts that are awkward to show are still delivered."""

from __future__ import annotations

import asyncio
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.localdiscord.models import MESSAGE_COMPONENT, MODAL_SUBMIT

BUTTON, SELECT = 2, 3
HUGE = str(2**64)


def tracebacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def forged(dreamgrid, user, custom_id: str, *, kind: int = MESSAGE_COMPONENT, message=None,
                 values: list[str] | None = None):
    """Send what no real client would, and wait until the bot answers it."""
    data = {"custom_id": custom_id}
    if kind == MESSAGE_COMPONENT:
        data["component_type"] = SELECT if values is not None else BUTTON
        if values is not None:
            data["values"] = values
    else:
        data["components"] = [{"type": 1, "components": [{"type": 4, "custom_id": "prompt", "value": "a cat"}]}]
    ix = await dreamgrid.discord.forge(user, kind, data, message_id=message.id if message else None)
    await ix.wait_acked(timeout=10)
    return ix


def malformed(job: int, upscale: int) -> list[tuple[str, int, list[str] | None]]:
    """The ids that went unanswered or raised before: wrong numbers, unknown actions, huge ids, long ids."""
    ids = [f"dg:upscale:abc:{1}", f"dg:upscale:{job}:9", f"dg:upscale:{job}:5", f"dg:explode:{job}:1",
           f"dg:upscale:{HUGE}:1", f"dg:show:{HUGE}", f"dg:vary:{'9' * 19}:2", "dg:" + "x" * 97, "y" * 100,
           "dg:" + "1:" * 149, f"dgh:1:abc:", f"dgh:{HUGE}:0:", "dgh:1:99999999999:", "dg:set:reset:on",
           "dg:set:remix:maybe", f"dg:upscale:{upscale}:1", f"dg:vary:{upscale}:1", f"dg:reroll:{upscale}:0",
           f"dg:subtle:{job}:0", f"dg:upscale:{job}:0", f"dg:reroll:{job}:3", "", "dg:cancel:0:0"]
    forms = [(i, MESSAGE_COMPONENT, None) for i in ids]
    forms += [("dg:set:stylize", MESSAGE_COMPONENT, ["abc"]), ("dg:set:quality", MESSAGE_COMPONENT, ["1e309"]),
              ("dg:set:model", MESSAGE_COMPONENT, ["../../etc"]), ("dg:set:stylize", MESSAGE_COMPONENT, [])]
    forms += [(f"dg:remix:vary:{job}:7", MODAL_SUBMIT, None), (f"dg:remix:reroll:{HUGE}:0", MODAL_SUBMIT, None),
              ("dg:remix:boom:1:1", MODAL_SUBMIT, None), ("nonsense", MODAL_SUBMIT, None)]
    return forms


async def test_every_malformed_or_forged_component_gets_a_private_answer_and_nothing_is_charged(dreamgrid, caplog):
    alice = dreamgrid.discord.add_user("alice")
    _, grid = await dreamgrid.grid(alice, "a red fox")
    job = int(grid.custom_ids()[0].split(":")[2])
    _, upscaled = await dreamgrid.click(alice, grid, f"dg:upscale:{job}:1")
    upscale = int(upscaled.custom_ids()[0].split(":")[2])
    used = await dreamgrid.app.store.used(alice.id)

    for custom_id, kind, values in malformed(job, upscale):
        ix = await forged(dreamgrid, alice, custom_id, kind=kind, message=grid, values=values)
        assert ix.ack_type == 4 and ix.ephemeral, custom_id  # a private message, not a deferral or a job
        assert "nothing was done" in ix.original.content or "no longer exists" in ix.original.content, (
            custom_id, ix.original.content)

    assert tracebacks(caplog) == []
    assert await dreamgrid.app.store.used(alice.id) == used  # no forged id charged anything
    _, again = await dreamgrid.grid(alice, "the next one works")
    assert again.attachments


async def test_random_custom_ids_and_values_are_always_answered_without_a_traceback(dreamgrid, caplog):
    alice = dreamgrid.discord.add_user("alice")
    _, grid = await dreamgrid.grid(alice, "a blue bird")
    job = grid.custom_ids()[0].split(":")[2]
    loop = asyncio.get_running_loop()
    numbers = st.one_of(st.just(job), st.integers(-5, 2**70).map(str), st.text("0123456789abc", max_size=25))
    ids = st.one_of(
        st.text(max_size=100),
        st.builds(lambda a, n, i: f"dg:{a}:{n}:{i}",
                  st.sampled_from(["upscale", "vary", "reroll", "subtle", "strong", "cancel", "show", "remix", "x"]),
                  numbers, st.text("0123456789-x", max_size=3)),
        st.builds(lambda o, p, t: f"dgh:{o}:{p}:{t}", numbers, numbers, st.text(max_size=60)),
        st.builds(lambda f, v: f"dg:set:{f}:{v}", st.sampled_from(["model", "stylize", "variation", "reset", "?"]),
                  st.text(max_size=8)),
    )
    answered: list[str] = []

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(custom_id=ids, kind=st.sampled_from([MESSAGE_COMPONENT, MODAL_SUBMIT]),
           values=st.one_of(st.none(), st.lists(st.text(max_size=20), max_size=3)))
    def probe(custom_id, kind, values):
        # Each example runs on the bot's loop; hypothesis drives them from this worker thread.
        asyncio.run_coroutine_threadsafe(
            forged(dreamgrid, alice, custom_id, kind=kind, message=grid, values=values), loop).result(timeout=30)
        answered.append(custom_id)

    await asyncio.to_thread(probe)
    assert len(answered) >= 60
    assert tracebacks(caplog) == []


async def test_a_prompt_whose_escaping_doubles_it_past_discords_limit_is_still_delivered(dreamgrid):
    alice = dreamgrid.discord.add_user("alice")
    prompt = "_" * 980 + " --model tiny"  # 993 characters, 66 tokens: within every limit
    ix, message = await dreamgrid.grid(alice, prompt)
    assert message.attachments and len(message.content) <= 2000
    assert "…" in message.content  # the prompt is shortened for display; the PNG keeps it whole
    assert all(len(m.content) <= 2000 for m in ix.original_history)


async def test_a_lone_surrogate_in_a_prompt_is_dropped_not_a_traceback(dreamgrid, caplog):
    alice = dreamgrid.discord.add_user("alice")
    _, message = await dreamgrid.grid(alice, "a cat \ud800 in a hat")
    assert "a cat  in a hat" in message.content or "a cat in a hat" in message.content
    assert tracebacks(caplog) == []
