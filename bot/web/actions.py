"""The archive's buttons: Rerun, U1–U4 and V1–V4 under a grid, the tools under an upscaled image (Vary (Region)
with a brush, Custom Zoom with its factor). Each starts its job exactly as the Discord button does: the same
table of actions and facade calls (bot/service/actions.py), the same quota (the member's role tier there), the
same ownership rule (owner or admin), banned members refused, a forged action (U on an upscale, V5) refused.

    POST /api/jobs/<id>/actions/<action>   {"index": 2}, {"prompt": "…"} for a remixable action
    POST /api/jobs/<id>/region             {"mask": "<base64 PNG: white repaint, black keep>", "prompt": "…"}
    POST /api/jobs/<id>/zoom               {"factor": 1.3, "prompt": "…"}: Custom Zoom, as its Discord form

Each answers 202 with the new job ({"job": {"id", "status", …}}; `GET /api/jobs/<id>` follows it), or a
JSON {"error": "…"} that says what to do: 400 (what the bot refused, as Discord would say it), 403 (not
yours, banned; or no CSRF token, from the middleware), 404, 429 (the fast allowance). Never a traceback.

A job started here runs in the parent job's server and channel: where a Discord bot runs, its result is
posted there too, as a job with no interaction (`JobStarter.listener_for`, set where the bot is made); with
no bot it just runs and the page shows it."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import timezone
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from bot.service import Accounts, Admin, Job, JobListener, Jobs, Refused, UserError
from bot.service.actions import ACTIONS, NOT_HERE, NOT_YOURS, acting_for, may_act_on
from bot.service.policy import BANNED
from bot.service.quota import allowance_refusal
from bot.web.auth import Viewer, viewer_of, with_roles

log = logging.getLogger(__name__)

INTERNAL = ("Something went wrong on our side before your job started; nothing was charged. Please try again, "
            "and tell an admin if it keeps happening.")
TOO_BIG = "The request is too big for the bot to read (the mask is at most about 1 MB). Paint on a smaller image."


class PageOnly:
    """The listener of a job started from the page with no Discord bot running: the page polls the job, so
    there is nothing to tell; its result counts as shown (0: in no message)."""

    async def queued(self, job: Job, position: int) -> None:
        pass

    async def progress(self, job: Job, fraction: float) -> None:
        pass

    async def preview(self, job: Job, png: bytes, fraction: float) -> None:
        pass

    async def finished(self, job: Job, image: Path, spoiler: bool, *, fresh: bool = False) -> int | None:
        return 0

    async def failed(self, job: Job, reason: str) -> None:
        pass


class JobStarter:
    """Starts a job the page had accepted. `listener_for(job)`: who shows it besides the page — set where a
    Discord bot is made (bot/app.py: its JobMessage, posting in the job's channel); None: nobody."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.listener_for: Callable[[Job], JobListener] | None = None

    def __call__(self, job: Job) -> None:
        self.jobs.start(job, self.listener_for(job) if self.listener_for is not None else PageOnly())


def action_routes(jobs: Jobs, accounts: Accounts, admin: Admin | None, start: JobStarter,
                  viewer: Callable[[web.Request], Viewer] = viewer_of) -> list[web.RouteDef]:
    """`viewer`: who is asking (bot/web/auth.py's `viewer_of`; a test may give its own)."""
    is_banned = admin.is_banned if admin is not None else jobs.policy.is_banned

    async def usable(request: web.Request, what: str) -> tuple[Job, Viewer]:
        """The job acted on and who acts, or the HTTP answer (raised) that says why not. A job this viewer
        may not see (the archive's rule) is answered as one that does not exist."""
        who = viewer(request)
        job = await accounts.visible_job(who.requester, who.is_admin, _number(request.match_info["job"]),
                                         guild_ids=who.guild_ids, admin_guild_ids=who.admin_guild_ids)
        if job is None:
            raise ApiError(404, f"Job #{request.match_info['job']} does not exist.")
        who = await with_roles(request, who, job.guild_id)  # their roles there: quota tier, ADMIN_ROLE_IDS
        admin_here = who.is_admin_in(job.guild_id)  # as Discord's rule: the bot's admins, or Manage Server there
        if not admin_here and await is_banned(job.guild_id, who.user_id):  # admins cannot be locked out
            raise ApiError(403, BANNED)
        if not may_act_on(job, who.user_id, admin_here):
            raise ApiError(403, NOT_YOURS.format(what=what))
        return job, who

    async def act(request: web.Request) -> web.Response:
        name = request.match_info["action"]
        todo = ACTIONS.get(name)
        if todo is None:
            raise ApiError(400, f"There is no action {name!r}; the actions are {', '.join(ACTIONS)}.")
        job, who = await usable(request, "use its buttons")
        body = await _body(request)
        index, prompt = body.get("index", 0), _prompt(body)
        if isinstance(index, bool) or not isinstance(index, int) or not todo.fits(job, index):
            raise ApiError(400, NOT_HERE.format(job=job.id))
        if prompt is not None and not todo.remixable:
            raise ApiError(400, f"{name} takes no prompt; send it without one.")
        return await accepted(todo.start(jobs, acting_for(who.requester, job), job, index, prompt))

    async def region(request: web.Request) -> web.Response:
        job, who = await usable(request, "paint on it")
        body = await _body(request)
        mask = body.get("mask")
        if not isinstance(mask, str) or not mask:
            raise ApiError(400, "Send the mask you painted (a PNG, white where to repaint) with the request.")
        _, _, data = mask.rpartition(",")  # a data: URL, or the base64 alone
        try:
            png = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "The mask is not a base64 PNG; paint it again and resubmit.")
        return await accepted(jobs.paint_region(acting_for(who.requester, job), job, png, _prompt(body)))

    async def zoom(request: web.Request) -> web.Response:
        job, who = await usable(request, "use its buttons")
        body = await _body(request)
        factor = body.get("factor")
        typed = isinstance(factor, (int, float, str)) and not isinstance(factor, bool)
        if not typed or not 0 < len(str(factor).strip()) <= 20:  # 20: the Discord form's field
            raise ApiError(400, "Send the zoom factor, a number from 1.0 to 2.0, with the request.")
        # The canvas checks the factor, with the words the Discord form's refusal uses.
        return await accepted(jobs.canvas(acting_for(who.requester, job), job, f"zoom {str(factor).strip()}",
                                          _prompt(body)))

    async def accepted(accepting: Awaitable[Job | Refused]) -> web.Response:
        try:
            outcome = await accepting
        except UserError as error:
            raise ApiError(400, str(error)) from None
        except Exception:
            log.exception("could not accept a job from the web page")
            raise ApiError(500, INTERNAL) from None
        if isinstance(outcome, Refused):
            resets = outcome.resets_at
            resets = resets.astimezone(timezone.utc) if resets.tzinfo else resets.replace(tzinfo=timezone.utc)
            raise ApiError(429, allowance_refusal(outcome, f"at {resets:%Y-%m-%d %H:%M} UTC"))
        start(outcome)
        return web.json_response({"job": {"id": outcome.id, "kind": str(outcome.kind), "status": str(outcome.status),
                                          "prompt": outcome.prompt, "parent": outcome.parent_job_id}},
                                 status=202)

    return [web.post(r"/api/jobs/{job:\d{1,19}}/actions/{action:[a-z0-9]{1,20}}", _answered(act)),
            web.post(r"/api/jobs/{job:\d{1,19}}/region", _answered(region)),
            web.post(r"/api/jobs/{job:\d{1,19}}/zoom", _answered(zoom))]


class ApiError(Exception):
    """An answer that is not the job: its HTTP status and what the person is told."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def _answered(handler: Callable[[web.Request], Awaitable[web.Response]]):
    """The handler, with every ApiError it raises as JSON {"error": text}."""
    async def answer(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as error:
            return web.json_response({"error": error.text}, status=error.status)

    return answer


async def _body(request: web.Request) -> dict:
    try:
        body = await request.json() if request.can_read_body else {}
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, TOO_BIG) from None
    except ValueError:
        raise ApiError(400, "The request's body is not JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request's body must be a JSON object.")
    return body


def _prompt(body: dict) -> str | None:
    prompt = body.get("prompt")
    if prompt is None:
        return None
    if not isinstance(prompt, str):
        raise ApiError(400, "The prompt must be text.")
    return prompt if prompt.strip() else None


def _number(text: str) -> int:
    number = int(text)  # the route allows 1-19 digits only
    return number if number < 2**63 else 0  # past SQLite's integers: no such job
