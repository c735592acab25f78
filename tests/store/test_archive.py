"""The archive against real SQLite files: the FTS index built by its migration and kept in step by triggers,
the prompt search (words, prefixes, diacritics, hostile text), the filters, the cursor and who sees what."""

from datetime import datetime, timedelta, timezone

import pytest

from bot.recipe import JobKind, JobStatus, Recipe
from bot.store import NewJob, Store
from bot.store.archive import Archive, prompt_search
from bot.store.quotas import Limits, Quotas

LIMITS = Limits(max_waiting=10_000, queue_limit=10_000, period_days=1, relax_allowed=True)
DAY = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    yield store
    await store.close()


async def add(store, prompt, *, owner=1, model="tiny", kind=JobKind.IMAGINE, width=64, height=64,
              status=JobStatus.DONE, created=None):
    recipe = Recipe(prompt=prompt, model=model, seed=1, width=width, height=height, steps=4, guidance=5.0)
    [job] = await Quotas(store).accept([NewJob(owner_id=owner, owner_name=f"user{owner}", guild_id=10,
                                               channel_id=20, kind=kind, recipe=recipe)], "relax", 0, LIMITS)
    async with store.transaction() as db:
        await db.execute("UPDATE jobs SET status = ?, created_at = ? WHERE id = ?",
                         (status, (created or DAY).isoformat(), job.id))
    return job.id


async def search(store, text, **filters):
    page = await Archive(store).page(viewer_ids=None, text=text, **filters)
    return [job.id for job in page.jobs]


async def test_the_migration_indexes_the_jobs_already_there(database_without):
    old, path = database_without("0009_jobs_fts")
    old.execute("INSERT INTO users VALUES (1, 'alice', 'then', 'fast', NULL)")
    for prompt in ("a red fox in the snow", "a blue whale", "un café crème"):
        old.execute("INSERT INTO jobs(owner_id, channel_id, kind, prompt, params, model, seed, cost, status,"
                    " created_at) VALUES (1, 2, 'imagine', ?, '{\"width\": 64, \"height\": 64, \"steps\": 4,"
                    " \"guidance\": 5}', 'tiny', 1, 4, 'done', ?)", (prompt, DAY.isoformat()))
    old.commit()
    old.close()

    store = await Store.open(path)
    try:
        assert "0009_jobs_fts" in await store.applied_migrations()
        assert await search(store, "fox") == [1] and await search(store, "whale") == [2]
        assert await search(store, "cafe creme") == [3]
        assert await store.value("SELECT COUNT(*) FROM jobs_fts WHERE jobs_fts MATCH 'a'") == 2
    finally:
        await store.close()
    store = await Store.open(path)  # applied once: opening again changes nothing
    try:
        assert await search(store, "fox") == [1]
    finally:
        await store.close()


async def test_triggers_keep_the_index_in_step(store):
    fox = await add(store, "a red fox")
    whale = await add(store, "a blue whale")
    assert await search(store, "fox") == [fox]
    async with store.transaction() as db:
        await db.execute("UPDATE jobs SET prompt = 'a grey wolf' WHERE id = ?", (fox,))
        await db.execute("UPDATE jobs SET status = 'done', error = NULL WHERE id = ?", (whale,))  # no prompt change
    assert await search(store, "fox") == [] and await search(store, "wolf") == [fox]
    assert await search(store, "whale") == [whale]
    async with store.transaction() as db:
        await db.execute("DELETE FROM jobs WHERE id = ?", (whale,))
    assert await search(store, "whale") == [] and await search(store, "a") == [fox]
    # The index agrees with its content table (FTS5's own check raises if not).
    async with store.transaction() as db:
        await db.execute("INSERT INTO jobs_fts(jobs_fts, rank) VALUES ('integrity-check', 1)")


async def test_search_finds_words_prefixes_and_ignores_case_and_diacritics(store):
    fox = await add(store, "A Red FOX in the snow")
    cafe = await add(store, "un café crème, Zürich")
    wolf = await add(store, "a grey wolf, red eyes")
    assert await search(store, "fox") == [fox]
    assert await search(store, "fo") == [fox]  # the word being typed
    assert await search(store, "fo ") == []  # finished: a whole word
    assert await search(store, "red") == [wolf, fox]
    assert await search(store, "snow red") == [fox]  # every word, any order
    assert await search(store, "red zebra") == []
    assert await search(store, "cafe") == [cafe] and await search(store, "CAFÉ") == [cafe]
    assert await search(store, "zurich creme") == [cafe]
    assert await search(store, "cafe\u0301") == [cafe]  # a decomposed accent
    assert await search(store, "") == await search(store, "   \n\t") == [wolf, cafe, fox]


async def test_hostile_text_is_searched_as_text_and_never_raises(store):
    plain = await add(store, "a red fox")
    odd = await add(store, 'the "best" fox* AND more, NEAR(a b) -x 100% under_score \\ 🦊 黒い猫です')
    cases = ['"', '""', '"fox', "*", "fox*", "AND", "foo AND", "OR", "NOT fox", "NEAR(a b)", "NEAR(", "-x",
             "-", "^fox", "fox:", "prompt:fox", "{prompt}: fox", "(", ")", "+", "a OR b", "'", "';--", "\\", "%",
             "_", "\x00", "a\x00b", "fo\x00", "\x07\x1b[31m", "\ud800", "fox\ud800", "🦊", "猫", "é" * 3,
             "x" * 1000, "red fox " * 125, ",,, ...", "\u0301", "\u200b", "ǅ", "a" * 10_000]
    for text in cases:
        await search(store, text)  # none raises
        await Quotas(store).history(1, 0, 10, text)
    assert await search(store, '"best"') == [odd]
    assert await search(store, "fox*") == [odd, plain]
    assert await search(store, "AND") == [odd]  # a word like any other
    assert await search(store, "NEAR(a") == [odd]
    assert await search(store, "-x") == [odd]
    assert await search(store, "*") == [odd] and await search(store, "%") == [odd] and await search(store, "_") == [odd]
    assert await search(store, "\\") == [odd]
    assert await search(store, "🦊") == [odd] and await search(store, "猫") == [odd]  # substrings, not words
    assert await search(store, "red fox " * 125) == [plain]
    assert await search(store, "x" * 1000) == []


def test_user_text_reaches_fts_only_as_quoted_strings():
    sql, args = prompt_search('say "hi" NEAR(a b) -x fo')
    assert args[0] == '"say" """hi""" "NEAR(a" "b)" "-x" "fo"*'
    assert prompt_search("   ") == ("", ())
    sql, args = prompt_search("🦊 fox")
    assert "LIKE" in sql and args == ('"fox"*', "%🦊%")


async def test_filters_narrow_and_combine(store):
    square = await add(store, "a fox", model="tiny", width=64, height=64, created=DAY)
    tall = await add(store, "a fox", model="tiny", width=48, height=64, created=DAY + timedelta(days=1))
    wide = await add(store, "a fox", model="big", width=96, height=64, created=DAY + timedelta(days=2))
    up = await add(store, "a fox", model="big", kind=JobKind.UPSCALE, created=DAY + timedelta(days=3))
    failed = await add(store, "a fox", status=JobStatus.FAILED, created=DAY + timedelta(days=4))
    queued = await add(store, "a fox", status=JobStatus.QUEUED)

    assert await search(store, "") == [up, wide, tall, square]  # finished jobs only, by default
    assert await search(store, "", statuses=None) == [queued, failed, up, wide, tall, square]
    assert await search(store, "", statuses=[JobStatus.FAILED, JobStatus.QUEUED]) == [queued, failed]
    assert await search(store, "", model="big") == [up, wide]
    assert await search(store, "", model="nope") == []
    assert await search(store, "", kind="upscale") == [up]
    assert await search(store, "", kind="imagine", model="big") == [wide]
    assert await search(store, "", aspect="square") == [up, square]
    assert await search(store, "", aspect="portrait") == [tall]
    assert await search(store, "", aspect="landscape") == [wide]
    assert await search(store, "", since=DAY + timedelta(days=1)) == [up, wide, tall]  # since: inclusive
    assert await search(store, "", until=DAY + timedelta(days=2)) == [tall, square]  # until: exclusive
    assert await search(store, "", since=DAY + timedelta(hours=1), until=DAY + timedelta(days=3)) == [wide, tall]
    naive = (DAY + timedelta(days=1)).replace(tzinfo=None)  # read as UTC
    assert await search(store, "", since=naive) == [up, wide, tall]
    paris = timezone(timedelta(hours=1))
    assert await search(store, "", since=(DAY + timedelta(days=1)).astimezone(paris)) == [up, wide, tall]
    assert await search(store, "fox", model="tiny", aspect="portrait", since=DAY) == [tall]
    assert await search(store, "wolf", model="tiny") == []
    for bad in ({"kind": "painting"}, {"aspect": "round"}, {"limit": 0}, {"statuses": ["lost"]}):
        with pytest.raises(ValueError):
            await search(store, "", **bad)


async def test_the_cursor_returns_every_job_once_newest_first(store):
    ids = [await add(store, f"a fox number {n}", status=JobStatus.FAILED if n % 5 == 0 else JobStatus.DONE)
           for n in range(23)]
    done = [job_id for n, job_id in enumerate(ids) if n % 5]
    archive, seen, before, pages = Archive(store), [], None, 0
    while True:
        page = await archive.page(viewer_ids=None, text="fox", before_id=before, limit=4)
        pages += 1
        assert len(page.jobs) <= 4
        seen += [job.id for job in page.jobs]
        if page.next_before_id is None:
            break
        assert page.next_before_id == page.jobs[-1].id
        before = page.next_before_id
    assert seen == sorted(done, reverse=True) and pages == 5  # 18 jobs: 4+4+4+4+2
    exact = await archive.page(viewer_ids=None, limit=len(done))
    assert len(exact.jobs) == len(done) and exact.next_before_id is None  # no empty page after the last
    assert (await archive.page(viewer_ids=None, before_id=1)).jobs == []
    assert (await archive.page(viewer_ids=None, before_id=-5)).jobs == []
    assert len((await archive.page(viewer_ids=None, before_id=2**70)).jobs) == len(done)
    assert len((await archive.page(viewer_ids=None, limit=10_000)).jobs) == len(done)  # capped at 200


async def test_members_see_only_the_owners_they_are_given(store):
    alice = await add(store, "alice's fox", owner=1)
    bob = await add(store, "bob's fox", owner=2)
    carol = await add(store, "carol's fox", owner=3)
    archive = Archive(store)

    async def seen(viewers):
        return [job.id for job in (await archive.page(viewer_ids=viewers, text="fox")).jobs]

    assert await seen(frozenset({1})) == [alice]
    assert await seen(frozenset({1, 3})) == [carol, alice]
    assert await seen(frozenset()) == []
    assert await seen(frozenset({99})) == []
    assert await seen(None) == [carol, bob, alice]
    assert await seen(frozenset({2, 2**63 - 1})) == [bob]


async def test_history_uses_the_same_search(store):
    fox = await add(store, "a red fox", status=JobStatus.CANCELLED)
    cafe = await add(store, "un café")
    await add(store, "a red fox", owner=2)
    quotas = Quotas(store)
    assert await quotas.history(1, 0, 10, "fox") == ([await store.get_job(fox)], 1)  # any status
    assert await quotas.history(1, 0, 10, "cafe") == ([await store.get_job(cafe)], 1)
    assert (await quotas.history(1, 0, 10, ""))[1] == 2
    assert await quotas.history(1, 0, 10, "zebra") == ([], 0)


async def test_the_facade_shows_members_their_own_jobs_and_admins_everyones(store):
    from bot.service import Accounts, Requester, UserError

    mine = await add(store, "my fox", owner=1)
    theirs = await add(store, "their fox", owner=2)
    accounts = Accounts(store, None, None, None, None)  # the archive needs only the store
    alice = Requester(user_id=1, name="alice", guild_id=10, channel_id=20)
    assert [job.id for job in (await accounts.archive(alice, False, text="fox")).jobs] == [mine]
    assert [job.id for job in (await accounts.archive(alice, True, text="fox")).jobs] == [theirs, mine]
    with pytest.raises(UserError, match="aspect"):
        await accounts.archive(alice, False, aspect="round")
