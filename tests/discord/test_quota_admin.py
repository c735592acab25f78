"""/quota set|grant|reset|tier for admins, in the ledger and the audit table; /info agrees with the ledger."""

from __future__ import annotations

import re

import pytest

from bot.localdiscord import ClientRefused
from bot.store.admin import AdminStore


async def reply(dreamgrid, user, command, options=None):
    ix = await dreamgrid.discord.slash(user, command, options or {})
    return await ix.wait_original(lambda m: not m.loading, timeout=30)


async def left(dreamgrid, user) -> str:
    info = await reply(dreamgrid, user, "info")
    return re.search(r"Fast allowance:\*\* (.*?) this period", info.content).group(1)


async def ledger_left(dreamgrid, user, allowance) -> int:
    return allowance - sum(row["amount"] for row in await dreamgrid.app.store.ledger(user.id))


async def test_set_grant_and_reset_move_the_allowance_and_the_ledger_agrees(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice, boss = d.add_user("alice"), d.add_user("boss", manage_guild=True)

    said = await reply(dreamgrid, boss, "quota set", {"user": alice, "images": 8})
    assert said.flags & 64 and "8 fast images a period" in said.content
    assert await left(dreamgrid, alice) == "8 of 8 images left"
    await dreamgrid.grid(alice, "a first grid")
    assert await left(dreamgrid, alice) == "4 of 8 images left" and await ledger_left(dreamgrid, alice, 8) == 4

    assert "back to 0 (it was 4)" in (await reply(dreamgrid, boss, "quota reset", {"user": alice})).content
    assert await left(dreamgrid, alice) == "8 of 8 images left"
    await reply(dreamgrid, boss, "quota grant", {"user": alice, "images": 4})
    assert await left(dreamgrid, alice) == "12 images left (8 a period + 4 granted)"
    assert await ledger_left(dreamgrid, alice, 8) == 12
    assert [r["reason"] for r in await store.ledger(alice.id)] == ["charge", "reset", "grant"]

    audit = await AdminStore(store).audit_log(d.guild_id)
    assert [(a.action, a.user_name, a.outcome) for a in reversed(audit)] == [
        ("quota set", "boss", "done"), ("quota reset", "boss", "done"), ("quota grant", "boss", "done")]
    assert f"user={alice.id}" in audit[0].detail


async def test_a_role_tier_sets_its_members_allowance_unless_set_per_user(dreamgrid):
    d = dreamgrid.discord
    boss = d.add_user("boss", manage_guild=True)
    patron = d.add_role("Patron")
    carol, dave = d.add_user("carol", roles=[patron]), d.add_user("dave")

    said = await reply(dreamgrid, boss, "quota tier", {"role": patron, "images": 100})
    assert "Patron" in said.content and "100 fast images" in said.content
    assert await left(dreamgrid, carol) == "100 of 100 images left"
    assert await left(dreamgrid, dave) == "40 of 40 images left"  # no tier: the default
    await reply(dreamgrid, boss, "quota set", {"user": carol, "images": 12})
    assert await left(dreamgrid, carol) == "12 of 12 images left"


async def test_non_admins_are_refused_and_the_attempt_is_audited(dreamgrid):
    d, store = dreamgrid.discord, dreamgrid.app.store
    alice = d.add_user("alice")
    with pytest.raises(ClientRefused, match="needs permissions"):  # Discord hides /quota from them...
        await d.slash(alice, "quota grant", {"user": alice, "images": 1000})
    d.open_commands.add("quota")  # ...unless a server opens it to everyone: the bot still refuses

    refused = await reply(dreamgrid, alice, "quota grant", {"user": alice, "images": 1000})

    assert refused.flags & 64 and "Only server admins" in refused.content and "Nothing was changed" in refused.content
    assert await store.ledger(alice.id) == []
    (entry,) = await AdminStore(store).audit_log(d.guild_id)
    assert (entry.action, entry.user_name, entry.outcome) == ("quota grant", "alice", "refused: not an admin")


async def test_reset_after_a_grant_zeroes_the_usage_and_keeps_the_grant(dreamgrid):
    d = dreamgrid.discord
    alice, boss = d.add_user("alice"), d.add_user("boss", manage_guild=True)
    await reply(dreamgrid, boss, "quota set", {"user": alice, "images": 8})
    await reply(dreamgrid, boss, "quota grant", {"user": alice, "images": 8})
    await dreamgrid.grid(alice, "a granted grid")
    assert (await left(dreamgrid, alice)).startswith("12 images left")  # 8 + 8 granted, 4 used

    said = await reply(dreamgrid, boss, "quota reset", {"user": alice})
    assert "back to 0 (it was 4)" in said.content
    assert await left(dreamgrid, alice) == "16 images left (8 a period + 8 granted)"
    assert await ledger_left(dreamgrid, alice, 8) == 16
    assert "it was 0" in (await reply(dreamgrid, boss, "quota reset", {"user": alice})).content  # nothing to undo
    assert await left(dreamgrid, alice) == "16 images left (8 a period + 8 granted)"
