"""The archive: every job, newest first, a page at a time (a cursor, for infinite scroll), narrowed by model,
kind, date, aspect ratio and a search of the prompts.

The search runs on `jobs_fts`, an FTS5 index of `jobs.prompt` that triggers keep in step with the table
(migration 0009_jobs_fts). Its tokenizer folds case and diacritics ("cafe" finds "café"). A search is
words, all of which a prompt must have, in any order; the last word may be unfinished (`fo` finds "fox"),
unless the text ends with a space. Members' text never reaches FTS5's query syntax: each word is quoted as
an FTS string, so `"`, `*`, `AND`, `NEAR(`, `-` are searched as text and no input raises an SQL error.
Words FTS cannot find go to a plain substring match (LIKE) instead: words with no letter or digit at all
(`🦊`, `!!`) and words in scripts written without spaces (Chinese, Japanese, Thai...), where FTS would
only see whole runs of text. /history's prompt filter is the same search (`prompt_search`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.recipe import JobKind, JobStatus
from bot.store.db import MAX_INTEGER, Job, Store

ASPECTS = ("square", "portrait", "landscape")
MAX_PAGE = 200  # jobs a page at most
MAX_WORDS = 64  # words of a search used; any after these are ignored (a page can only get longer)

# Scripts written without spaces between words: FTS's tokenizer sees a whole run as one token.
_UNSPACED = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
                       "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff]")


@dataclass(frozen=True)
class ArchivePage:
    jobs: list[Job]  # newest first
    next_before_id: int | None  # `before_id` for the next page; None: this is the last one


def prompt_search(text: str) -> tuple[str, tuple]:
    """A condition on `jobs` (SQL and its arguments) that holds for the prompts matching `text` (see the
    module's docstring); ("", ()) for a blank text, which matches every job."""
    text = text.encode("utf-8", "ignore").decode("utf-8")  # lone surrogates cannot be bound
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)  # FTS5 reads up to a NUL
    words = text.split()
    typing = -1 if text[-1:].isspace() else len(words) - 1  # the word being typed, if any
    words = words[:MAX_WORDS]
    phrases: list[str] = []
    clauses: list[str] = []
    args: list[str] = []
    for n, word in enumerate(words):
        if _UNSPACED.search(word) or not any(_is_token_char(c) for c in word):
            clauses.append("prompt LIKE ? ESCAPE '\\'")
            args.append("%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        else:
            phrases.append('"' + word.replace('"', '""') + '"' + ("*" if n == typing else ""))
    if phrases:
        clauses.insert(0, "id IN (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ?)")
        args.insert(0, " ".join(phrases))
    return " AND ".join(clauses), tuple(args)


def _is_token_char(char: str) -> bool:
    """What FTS5's unicode61 tokenizer keeps as part of a word: letters, numbers, private use."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "Co"


def _stamp(moment: datetime) -> str:
    """A moment as `jobs.created_at` spells it (UTC isoformat), so text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


class Archive:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def page(self, *, viewer_ids: frozenset[int] | None, public_guild_ids: Collection[int] = (),
                   every_guild_ids: Collection[int] = (), job_id: int | None = None, text: str = "",
                   model: str | None = None, kind: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, aspect: str | None = None, before_id: int | None = None,
                   limit: int = 50, statuses: Collection[JobStatus] | None = (JobStatus.DONE,)) -> ArchivePage:
        """One page of jobs, newest first.

        Who sees what: the jobs owned by one of `viewer_ids`, and the public jobs (not private, and made in a
        server: a DM is never public) of `public_guild_ids`, and every job of `every_guild_ids` (the servers
        where the viewer is an admin). viewer_ids None: everyone's, for admins (the guild sets do not matter
        then); all three empty: none.
        job_id: only that job (whether a viewer may open it: the same rule as the list).
        text: the prompt search (module docstring); model: its name, exactly; kind: a JobKind value;
        since <= created_at < until (naive datetimes are UTC); aspect: "square" | "portrait" | "landscape",
        from the job's width and height; before_id: the previous page's `next_before_id`;
        limit: 1..200 jobs a page; statuses: which jobs (None: all; by default only finished ones).
        Raises ValueError for an unknown kind, aspect or status, or a limit below 1."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        limit = min(limit, MAX_PAGE)
        if viewer_ids is not None and not (viewer_ids or public_guild_ids or every_guild_ids):
            return ArchivePage([], None)
        if before_id is not None and before_id <= 1:
            return ArchivePage([], None)
        conditions: list[str] = []
        args: list = []
        if viewer_ids is not None:
            conditions.append("(owner_id IN (SELECT value FROM json_each(?))"
                              " OR (private = 0 AND guild_id IN (SELECT value FROM json_each(?)))"
                              " OR guild_id IN (SELECT value FROM json_each(?)))")
            args.extend(json.dumps(sorted({int(i) for i in ids}))
                        for ids in (viewer_ids, public_guild_ids, every_guild_ids))
        if job_id is not None:
            conditions.append("id = ?")
            args.append(min(max(job_id, 0), MAX_INTEGER))
        if statuses is not None:
            wanted = sorted({JobStatus(status).value for status in statuses})
            if not wanted:
                return ArchivePage([], None)
            conditions.append(f"status IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if model is not None:
            conditions.append("model = ?")
            args.append(model)
        if kind is not None:
            if kind not in set(JobKind):
                raise ValueError(f"`{kind}` is not a kind of job: use one of {', '.join(JobKind)}")
            conditions.append("kind = ?")
            args.append(kind)
        if since is not None:
            conditions.append("created_at >= ?")
            args.append(_stamp(since))
        if until is not None:
            conditions.append("created_at < ?")
            args.append(_stamp(until))
        if aspect is not None:
            if aspect not in ASPECTS:
                raise ValueError(f"aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
            compare = {"square": "=", "portrait": "<", "landscape": ">"}[aspect]
            conditions.append("CAST(json_extract(params, '$.width') AS INTEGER)"
                              f" {compare} CAST(json_extract(params, '$.height') AS INTEGER)")
        if before_id is not None:
            conditions.append("id < ?")
            args.append(min(before_id, MAX_INTEGER))
        search, search_args = prompt_search(text)
        if search:
            conditions.append(search)
            args.extend(search_args)
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        jobs = await self.store.jobs(f"{where}ORDER BY id DESC LIMIT ?", (*args, limit + 1))
        more = len(jobs) > limit
        jobs = jobs[:limit]
        return ArchivePage(jobs, jobs[-1].id if more else None)
