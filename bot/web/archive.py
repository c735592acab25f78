"""The archive in the browser: every job as a thumbnail, newest first, page by page as the list scrolls;
filters by model, kind, date and shape, and a search of prompts (SQLite FTS5, bot/store/archive.py); a job's
detail with its images and parameters. Read through the service's facades only.

Who sees what (bot/web/auth.py, Accounts.archive): without login, whoever opens the page is on the bot's own
machine and sees every job; with login with Discord, a member sees their own jobs and the public ones of the
servers they share with the bot, an admin what the bot's admin rule gives. A job one may not see is a 404 in
/api/jobs/<id> and /images/<id>, the same as one that does not exist.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from aiohttp import web

from bot.service import Accounts, Jobs, UserError
from bot.service.actions import ACTIONS, remix_text
from bot.service.provenance import read_parameters
from bot.web.auth import viewer_of, visible_job
from bot.web.pages import page

PAGE = 40


def archive_routes(jobs: Jobs, accounts: Accounts) -> list[web.RouteDef]:
    async def archive(request: web.Request) -> web.FileResponse:
        return page("archive.html")

    async def listing(request: web.Request) -> web.Response:
        query, viewer = request.query, viewer_of(request)
        try:
            found = await accounts.archive(
                viewer.requester, viewer.is_admin, guild_ids=viewer.guild_ids,
                admin_guild_ids=viewer.admin_guild_ids, text=query.get("text", ""), model=query.get("model") or None,
                kind=query.get("kind") or None, aspect=query.get("aspect") or None,
                since=_day(query.get("since")), before_id=_number(query.get("before")), limit=PAGE)
        except UserError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"jobs": [_summary(job) for job in found.jobs],
                                  "next_before": found.next_before_id})

    async def detail(request: web.Request) -> web.Response:
        job = await visible_job(request, accounts, _number(request.match_info["job"]) or 0)
        if job is None:  # or not one this viewer may see: the same answer
            raise web.HTTPNotFound(text="no such job")
        images = await jobs.images(job.id)
        path = jobs.result_file(job)
        stored = path.is_file()  # not yet while it runs (the page polls it then), or no longer kept
        parameters = await asyncio.to_thread(read_parameters, path) if stored else None
        return web.json_response({**_summary(job), "width": job.recipe.width, "height": job.recipe.height,
                                  "seeds": [image.seed for image in images], "parameters": parameters or "",
                                  "link": _discord_link(job), **_state(jobs, job, stored)})

    async def image(request: web.Request) -> web.FileResponse:
        job = await visible_job(request, accounts, _number(request.match_info["job"]) or 0)
        if job is None:  # or not one this viewer may see: the same answer
            raise web.HTTPNotFound(text="no such job")
        path = jobs.result_file(job)  # the one file a job shows: never a path taken from the request
        if not path.is_file():
            raise web.HTTPNotFound(text="its images are no longer stored")
        return web.FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})

    async def models(request: web.Request) -> web.Response:
        return web.json_response(accounts.model_names)

    return [web.get("/archive", archive), web.get("/api/archive", listing),
            web.get(r"/api/jobs/{job:\d{1,19}}", detail), web.get(r"/images/{job:\d{1,19}}", image),
            web.get("/api/models", models)]


def _summary(job) -> dict:
    return {"id": job.id, "prompt": job.prompt, "model": job.model, "kind": str(job.kind), "seed": job.seed,
            "created_at": job.created_at, "image": f"/images/{job.id}"}


def _state(jobs: Jobs, job, stored: bool) -> dict:
    """Where the job is (the page polls it while it runs), what its buttons are, and Remix's text."""
    return {"status": str(job.status), "error": job.error, "position": jobs.position(job.id),
            "progress": jobs.progress(job.id),
            "grid": job.kind.is_grid, "stored": stored, "parent": job.parent_job_id, "remix": remix_text(job),
            # the buttons of this job that take Remix's prompt (bot/service/actions.py's one table)
            "remixable": [name for name, action in ACTIONS.items() if action.remixable and action.under(job)]}


def _discord_link(job) -> str | None:
    if not job.message_id:
        return None
    return f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}/{job.message_id}"


def _number(text: str | None) -> int | None:
    if not text or not text.isdigit() or len(text) > 19:
        return None
    return int(text)


def _day(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise web.HTTPBadRequest(text="since must be a date like 2026-12-01") from None
