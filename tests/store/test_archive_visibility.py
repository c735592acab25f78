"""Who sees which jobs in the archive (bot/store/archive.py): a member their own and the public jobs of the
servers they share with the bot (never a private one, never one in a DM), a server's admin every job of it,
an admin everywhere all; one job by id under the same rule. And migration 0010 records `private`."""


import pytest

from bot.recipe import JobKind, Recipe
from bot.store import NewJob, Store
from bot.store.archive import Archive
from bot.store.quotas import Limits, Quotas

LIMITS = Limits(max_waiting=10_000, queue_limit=10_000, period_days=1, relax_allowed=True)
SERVER, OTHER = 10, 11


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    yield store
    await store.close()


async def add(store, owner, guild_id, private=False):
    recipe = Recipe(prompt=f"job of {owner}", model="tiny", seed=1, width=64, height=64, steps=4, guidance=5.0)
    [job] = await Quotas(store).accept([NewJob(owner_id=owner, owner_name=f"user{owner}", guild_id=guild_id,
                                               channel_id=20, kind=JobKind.IMAGINE, recipe=recipe,
                                               private=private)], "relax", 0, LIMITS)
    return job


async def seen(store, **who):
    return [job.id for job in (await Archive(store).page(statuses=None, **who)).jobs]


async def test_members_see_their_own_and_the_public_jobs_of_shared_servers(store):
    mine = await add(store, 1, SERVER)
    public = await add(store, 2, SERVER)
    private = await add(store, 2, SERVER, private=True)
    elsewhere = await add(store, 2, OTHER)
    in_dm = await add(store, 2, None)
    my_private_dm = await add(store, 1, None, private=True)
    assert private.private and not public.private

    assert await seen(store, viewer_ids=frozenset({1}), public_guild_ids={SERVER}) == [my_private_dm.id, public.id,
                                                                                       mine.id]
    assert await seen(store, viewer_ids=frozenset({1})) == [my_private_dm.id, mine.id]
    assert await seen(store, viewer_ids=frozenset({3}), public_guild_ids={SERVER}) == [public.id, mine.id]
    assert await seen(store, viewer_ids=frozenset({3}), public_guild_ids={SERVER},
                      every_guild_ids={SERVER}) == [private.id, public.id, mine.id]  # that server's admin
    assert await seen(store, viewer_ids=None) == [my_private_dm.id, in_dm.id, elsewhere.id, private.id, public.id,
                                                  mine.id]
    assert await seen(store, viewer_ids=frozenset()) == []

    one = {"viewer_ids": frozenset({1}), "public_guild_ids": {SERVER}}
    assert await seen(store, job_id=public.id, **one) == [public.id]
    for hidden in (private, elsewhere, in_dm):
        assert await seen(store, job_id=hidden.id, **one) == []
    assert await seen(store, job_id=2**70, **one) == [] and await seen(store, job_id=-1, **one) == []


async def test_the_migration_takes_private_from_the_owners_setting(database_without):
    old, path = database_without("0010_jobs_private")
    old.execute("INSERT INTO users VALUES (1, 'alice', 'then', 'fast', NULL)")
    old.execute("INSERT INTO users VALUES (2, 'bob', 'then', 'fast', NULL)")
    old.execute("INSERT INTO preferences(user_id, private) VALUES (2, 1)")
    for owner in (1, 2):
        old.execute("INSERT INTO jobs(owner_id, guild_id, channel_id, kind, prompt, params, model, seed, cost, status,"
                    " created_at) VALUES (?, 10, 2, 'imagine', 'p', '{\"width\": 64, \"height\": 64, \"steps\": 4,"
                    " \"guidance\": 5}', 'tiny', 1, 4, 'done', 'then')", (owner,))
    old.commit()
    old.close()
    store = await Store.open(path)
    try:
        assert [job.private for job in await store.jobs("ORDER BY id")] == [False, True]
    finally:
        await store.close()
