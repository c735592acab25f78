"""The life of a job: validate, charge, queue, run on the pool, keep the images, finish or refund.

This room knows the store and the engine, never Discord. Whoever shows a job to a person (the Discord
layer, the CLI) passes a `JobListener`; the job runs to its end whether or not anyone is listening, and a
listener that fails does not fail the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from bot.engine import (
    Cancelled,
    Catalog,
    EngineError,
    GenerateRequest,
    GenerationResult,
    Preview,
    Progress,
    Started,
    UpscaleRequest,
    WorkerPool,
    make_grid,
    png_bytes,
)
from bot.engine.tokens import prompt_tokens
from bot.service.compose import Defaults, Plan, plan_job, shared_noise
from bot.service.prompt import PromptError
from bot.service.provenance import CHUNK, parameters_text, read_parameters
from bot.service.quota import QuotaError, QuotaRules, QuotaService
from bot.store import Job, NewJob, Refused, Store, StoredImage
from bot.store.preferences import Preferences

log = logging.getLogger(__name__)

GRID_SIZE = 4
COST = {"imagine": GRID_SIZE, "reroll": GRID_SIZE, "variation": GRID_SIZE, "upscale": 1}
# img2img strength of a variation: how far it may move from its source image.
VARIATION_STRENGTH = {"subtle": 0.35, "strong": 0.7}
UPSCALE_FACTOR = 2
MAX_SEED = 2**32 - 1


NSFW_REFUSED = ("the model's safety checker flagged its images as NSFW, and this server does not post those. "
                "Try a different prompt")


class UserError(Exception):
    """Bad input from a person. The message says what was wrong and what to do; nothing was changed."""


@dataclass(frozen=True)
class Requester:
    user_id: int
    name: str
    guild_id: int | None
    channel_id: int
    role_ids: tuple[int, ...] = ()  # for role quota tiers


class Policy(Protocol):
    """What admins decide (service/admin.py): who and what may run, and each server's default model."""
    async def admit(self, who: Requester, prompt: str, negative_prompt: str) -> None: ...  # raises UserError
    async def server_model(self, guild_id: int | None) -> str | None: ...  # None: the bot-wide default
    async def allow_nsfw(self, job: Job, flags: tuple[bool, ...]) -> bool: ...  # records the flags too


class JobListener(Protocol):
    async def queued(self, job: Job, position: int) -> None: ...
    async def progress(self, job: Job, fraction: float) -> None: ...
    async def preview(self, job: Job, png: bytes, fraction: float) -> None: ...  # the grid partway through
    async def finished(self, job: Job, image: Path) -> None: ...
    async def failed(self, job: Job, reason: str) -> None: ...


class JobService:
    def __init__(self, store: Store, pool: WorkerPool, catalog: Catalog, data_dir: Path, *,
                 daily_images: int, max_prompt_chars: int, default_model: str | None = None,
                 quota_rules: QuotaRules | None = None, position_interval: float = 0.0) -> None:
        self.store = store
        self.position_interval = position_interval  # 0: a waiting job's place in line is shown once
        self.pool = pool
        self.catalog = catalog
        self.data_dir = data_dir
        self.max_prompt_chars = max_prompt_chars
        self.default_model = default_model or catalog.default
        self.policy: Policy | None = None
        self.preferences = Preferences(store)
        self.quota = QuotaService(store, quota_rules or QuotaRules(fast_images=daily_images))
        self._tickets: dict[int, object] = {}
        self._tasks: set[asyncio.Task] = set()
        self._job_tasks: dict[int, asyncio.Task] = {}
        self._cancelled: set[int] = set()  # cancelled before they reached the pool

    # --- new jobs -------------------------------------------------------------------------------

    def check_prompt(self, prompt: str) -> str:
        text = " ".join(prompt.split())
        if not text:
            raise UserError("The prompt is empty: describe the picture you want, e.g. `/imagine prompt: a red fox`.")
        if len(text) > self.max_prompt_chars:
            raise UserError(
                f"The prompt is {len(text):,} characters long; the limit is {self.max_prompt_chars:,}. "
                "Shorten it and try again."
            )
        return text

    async def imagine(self, who: Requester, prompt: str) -> list[Job] | Refused:
        """One grid, or `--repeat N` grids: all accepted (each charged) or none."""
        plan = await self.plan(who, prompt)
        cost = COST["imagine"] * plan.repeat
        if plan.repeat > 1 and await self.quota.lane_for(who.user_id) == "fast":  # relax jobs are free
            account = await self.quota.account(who.user_id, who.guild_id, who.role_ids)
            if account.left < cost:
                return Refused(remaining=account.left, resets_at=account.resets_at,
                               relax_allowed=self.quota.rules.relax_allowed)
        jobs: list[Job] = []
        for _ in range(plan.repeat):
            try:
                job = await self._accept(who, "imagine", plan.prompt, plan.model, plan.params,
                                         negative_prompt=plan.negative_prompt, seed=plan.seed)
            except UserError:
                if jobs:  # a queue limit stopped the rest: the ones accepted (and charged) must still run
                    return jobs
                raise
            if isinstance(job, Refused):  # someone spent the allowance meanwhile: keep what was accepted
                return jobs or job
            jobs.append(job)
        return jobs

    async def plan(self, who: Requester, prompt: str, *, remix: bool = False) -> Plan:
        """The typed prompt with the user's settings and options applied, checked before anything is charged."""
        self.check_prompt(prompt)
        prefs = await self.preferences.get(who.user_id)
        # A remixed prompt is the parent's, which has the suffix in it already.
        defaults = Defaults(model=prefs.model, stylize=prefs.stylize, quality=prefs.quality,
                            suffix="" if remix else prefs.suffix, options=prefs.options)
        try:
            plan = plan_job(prompt, self.catalog, await self.model_for(who.guild_id), defaults)
        except PromptError as error:
            raise UserError(str(error)) from None
        if remix and plan.repeat > 1:
            raise UserError("`--repeat` works with /imagine only; remove it from the remixed prompt.")
        self.check_prompt(plan.prompt)
        await self._check_tokens(plan)
        return plan

    async def _check_tokens(self, plan: Plan) -> None:
        spec = self.catalog.get(plan.model)
        for what, text in (("prompt", plan.prompt), ("negative prompt (--no)", plan.negative_prompt)):
            if not text:
                continue
            tokens = await asyncio.to_thread(prompt_tokens, spec, self.pool.models_dir, text)
            if tokens is not None and tokens > spec.max_prompt_tokens:
                raise UserError(f"The {what} is {tokens} tokens long; model `{spec.name}` reads at most "
                                f"{spec.max_prompt_tokens} (about {spec.max_prompt_tokens * 3 // 4} words). "
                                "Shorten it and try again.")

    async def reroll(self, who: Requester, parent: Job, remix: str | None = None) -> Job | Refused:
        if remix is not None:
            plan = await self.plan(who, remix, remix=True)
            return await self._accept(who, "reroll", plan.prompt, plan.model, plan.params, parent=(parent, None),
                                      negative_prompt=plan.negative_prompt, seed=plan.seed)
        params = _generation_params(parent)
        return await self._accept(who, "reroll", parent.prompt, parent.model, params, parent=(parent, None),
                                  negative_prompt=parent.negative_prompt)

    async def vary(self, who: Requester, parent: Job, index: int, strength: str | None = None,
                   remix: str | None = None) -> Job | Refused:
        """Variations of one image; `strength` None takes the user's /settings (Subtle or Strong)."""
        await self._require_image(parent, index)
        strength = strength or (await self.preferences.get(who.user_id)).variation
        if remix is not None:
            plan = await self.plan(who, remix, remix=True)
            params = {**plan.params, "strength": VARIATION_STRENGTH[strength]}
            return await self._accept(who, "variation", plan.prompt, plan.model, params, parent=(parent, index),
                                      negative_prompt=plan.negative_prompt, seed=plan.seed)
        params = {**_generation_params(parent), "strength": VARIATION_STRENGTH[strength]}
        return await self._accept(who, "variation", parent.prompt, parent.model, params, parent=(parent, index),
                                  negative_prompt=parent.negative_prompt)

    async def upscale(self, who: Requester, parent: Job, index: int) -> Job | Refused:
        source = await self._require_image(parent, index)
        # The generation parameters travel along, so Vary on the upscale works at the model's own size.
        params = {**_generation_params(parent), "scale": UPSCALE_FACTOR}
        return await self._accept(who, "upscale", parent.prompt, parent.model, params, parent=(parent, index),
                                  negative_prompt=parent.negative_prompt, seed=source.seed)

    async def model_for(self, guild_id: int | None) -> str:
        """The model a new /imagine in this server uses."""
        chosen = await self.policy.server_model(guild_id) if self.policy else None
        return chosen or self.default_model

    async def _accept(self, who: Requester, kind: str, prompt: str, model: str, params: dict, *,
                      parent: tuple[Job, int | None] | None = None, negative_prompt: str = "",
                      seed: int | None = None) -> Job | Refused:
        if self.policy is not None:  # every new job, buttons included, before anything is charged
            await self.policy.admit(who, prompt, negative_prompt)
        new = NewJob(
            owner_id=who.user_id, owner_name=who.name, guild_id=who.guild_id, channel_id=who.channel_id,
            kind=kind, prompt=prompt, model=model, cost=COST[kind], params=params,
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            negative_prompt=negative_prompt,
            parent_job_id=parent[0].id if parent else None, parent_index=parent[1] if parent else None,
        )
        try:
            return await self.quota.accept(new, who.role_ids)
        except QuotaError as error:
            raise UserError(str(error)) from None

    async def _require_image(self, job: Job, index: int) -> StoredImage:
        for image in await self.store.images(job.id):
            if image.index == index and (self.data_dir / image.path).is_file():
                return image
        raise UserError(f"Image {index} of job #{job.id} is no longer stored, so it cannot be used. "
                        "Start a new /imagine instead.")

    # --- running ----------------------------------------------------------------------------------

    def start(self, job: Job, listener: JobListener) -> asyncio.Task:
        """Run an accepted job to its end in the background; the listener hears about it."""
        task = asyncio.create_task(self._run(job, listener), name=f"job-{job.id}")
        self._tasks.add(task)
        self._job_tasks[job.id] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._job_tasks.pop(job.id, None))
        return task

    def position(self, job_id: int) -> int | None:
        ticket = self._tickets.get(job_id)
        return ticket.position() if ticket else None

    async def stop(self, job_id: int) -> Job | None:
        """Cancel a queued or running job and wait until it has stopped (a running one stops at its next
        denoising step; an upscale has none and may finish instead). Returns the job as it ended."""
        task = self._job_tasks.get(job_id)
        if not self.cancel(job_id):
            if task is None:  # accepted but not running in this process: nothing else will touch it
                await self.store.fail_job(job_id, "cancelled", "cancelled")
                return await self.store.get_job(job_id)
            self._cancelled.add(job_id)  # not on the pool yet: cancelled the moment it gets there
        if task is not None:
            await asyncio.shield(task)
            self._cancelled.discard(job_id)
        return await self.store.get_job(job_id)

    def cancel(self, job_id: int) -> bool:
        ticket = self._tickets.get(job_id)
        if ticket is None:
            return False
        ticket.cancel()
        return True

    async def close(self) -> None:
        """Stop listening; unfinished jobs stay queued in the store and are recovered on the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs accepted before a stop or crash that never finished: they run again on start."""
        return await self.store.active_jobs()

    async def _run(self, job: Job, listener: JobListener) -> None:
        try:
            request = await self._request_for(job)
            ticket = self.pool.submit(request, owner=job.owner_id, lane=job.lane)
        except (EngineError, OSError, KeyError) as error:
            log.exception("job %s could not be queued", job.id)
            await self._fail(job, listener, f"it could not start ({error}); your images were refunded")
            return
        self._tickets[job.id] = ticket
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            ticket.cancel()
        try:
            position = ticket.position() or 0
            await _quietly(listener.queued(job, position))
            async with self._following_position(job, ticket, listener, position) as stop_following:
                async for event in ticket.events():
                    if isinstance(event, Started):
                        await stop_following()  # from here on the message shows progress
                        await self.store.mark_running(job.id)
                    elif isinstance(event, Progress):
                        await _quietly(listener.progress(job, event.fraction))
                    elif isinstance(event, Preview):
                        png = await asyncio.to_thread(png_bytes, event.image)  # encoding is CPU work: off the loop
                        await _quietly(listener.preview(job, png, event.fraction))
            result = await ticket.result()
            if any(result.nsfw) and self.policy is not None and not await self.policy.allow_nsfw(job, result.nsfw):
                await self._fail(job, listener, NSFW_REFUSED)  # nothing kept, nothing posted
                return
            images, posted = await asyncio.to_thread(self._save_images, job, result)
            await self.store.finish_job(job.id, images)
            await _quietly(listener.finished(await self.store.get_job(job.id), posted))
        except EngineError as error:
            status = "cancelled" if isinstance(error, Cancelled) else "failed"
            await self._fail(job, listener, str(error), status)
        except asyncio.CancelledError:
            ticket.cancel()  # the bot is stopping: the job stays queued in the store for recovery
            raise
        except Exception as error:  # a bug must still refund and report, never lose the job
            log.exception("job %s failed", job.id)
            await self._fail(job, listener, f"an internal error ({type(error).__name__})")
        finally:
            self._tickets.pop(job.id, None)

    @contextlib.asynccontextmanager
    async def _following_position(self, job: Job, ticket, listener: JobListener, shown: int):
        """While the job waits, tell the listener its new place in line every `position_interval` seconds
        when it changed. Yields `stop()`, which returns once no update is in flight (so none lands after the
        job's progress or result); leaving the block stops it too."""
        stop = asyncio.Event()

        async def follow(shown: int) -> None:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), self.position_interval)
                    return
                except asyncio.TimeoutError:
                    pass
                position = ticket.position()
                if position and position != shown:  # 0: running, None: done
                    shown = position
                    await _quietly(listener.queued(job, position))

        follower = asyncio.create_task(follow(shown)) if self.position_interval > 0 and shown else None

        async def stop_following() -> None:
            stop.set()
            if follower is not None:
                try:
                    await follower  # at once, unless an update is on its way to Discord
                except asyncio.CancelledError:
                    follower.cancel()
                    raise

        try:
            yield stop_following
        finally:
            await stop_following()

    async def _fail(self, job: Job, listener: JobListener, reason: str, status: str = "failed") -> None:
        if await self.store.fail_job(job.id, reason, status):
            await _quietly(listener.failed(await self.store.get_job(job.id), reason))

    async def _request_for(self, job: Job) -> GenerateRequest | UpscaleRequest:
        p = job.params
        if job.kind == "upscale":
            image = await self._load_image(job.parent_job_id, job.parent_index)
            return UpscaleRequest(model=job.model, image=image, scale=p["scale"])
        common = dict(model=job.model, prompt=job.prompt, negative_prompt=job.negative_prompt,
                      seeds=tuple((job.seed + i) % (MAX_SEED + 1) for i in range(GRID_SIZE)),
                      steps=p["steps"], guidance=p["guidance"], tile=bool(p.get("tile")))
        if job.kind != "variation":
            return GenerateRequest(width=p["width"], height=p["height"], shared_noise=shared_noise(p.get("chaos")),
                                   **common)
        # img2img takes its size from the source image: bring it to the size the job asks for.
        source = await self._load_image(job.parent_job_id, job.parent_index)
        init_image = source.resize((p["width"], p["height"]), Image.Resampling.LANCZOS)
        return GenerateRequest(init_image=init_image, strength=p["strength"], **common)

    async def _load_image(self, job_id: int, index: int) -> Image.Image:
        for stored in await self.store.images(job_id):
            if stored.index == index:
                return await asyncio.to_thread(_open_rgb, self.data_dir / stored.path)
        raise KeyError(f"image {index} of job #{job_id} is not stored")

    def _save_images(self, job: Job, result: GenerationResult) -> tuple[list[StoredImage], Path]:
        """Keep every single image on disk (U and V need them after a restart); return them and the file to
        post: the 2x2 grid for a grid job, the image itself for an upscale."""
        folder = self.data_dir / "images" / str(job.id)
        folder.mkdir(parents=True, exist_ok=True)
        seeds = [job.seed] if job.kind == "upscale" else result.seeds
        stored: list[StoredImage] = []
        for index, (image, seed) in enumerate(zip(result.images, seeds), start=1):
            path = folder / f"{index}.png"
            path.write_bytes(png_bytes(image, {CHUNK: self._provenance(job, result, seed, image)}))
            stored.append(StoredImage(job.id, index, seed, str(path.relative_to(self.data_dir)),
                                      image.width, image.height))
        if job.kind == "upscale":
            return stored, folder / "1.png"
        grid_path = folder / "grid.png"
        grid_text = self._provenance(job, result, result.seeds[0], result.images[0])  # as A1111 labels its grids
        grid_path.write_bytes(png_bytes(make_grid(result.images), {CHUNK: grid_text}))
        return stored, grid_path

    def _provenance(self, job: Job, result: GenerationResult, seed: int, image: Image.Image) -> str:
        """The AUTOMATIC1111 `parameters` text of one image (of a grid's first image, for the grid)."""
        p = job.params
        extra: dict[str, object] = {"Tiling": True} if p.get("tile") else {}
        if "chaos" in p:
            extra["Chaos"] = p["chaos"]
        if job.kind == "variation":
            extra["Denoising strength"] = p["strength"]
        if job.kind == "upscale":  # the source image's own text, and how it was enlarged
            source = self.data_dir / "images" / str(job.parent_job_id) / f"{job.parent_index}.png"
            upscaler = self.catalog.get(job.model).upscaler if job.model in self.catalog.models else "lanczos"
            text = re.sub(r", Dreamgrid job: \d+", "", read_parameters(source) or job.prompt)
            return text + (
                f", Postprocess upscaler: {upscaler}, Postprocess upscale by: {p['scale']}, Dreamgrid job: {job.id}")
        return parameters_text(
            prompt=job.prompt, negative_prompt=job.negative_prompt, steps=p["steps"], sampler=result.sampler,
            guidance=p["guidance"], seed=seed, width=image.width, height=image.height, model=job.model,
            extra={**extra, "Dreamgrid job": job.id})


def _generation_params(job: Job) -> dict:
    """What made a job's pictures (size, steps, guidance, --tile, --chaos...): what a reroll or a variation
    starts from. The strength and scale belong to the job's own kind."""
    return {key: value for key, value in job.params.items() if key not in ("strength", "scale")}


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


async def _quietly(call) -> None:
    """Tell a listener something; a listener's failure (Discord down, message deleted) never fails the job."""
    try:
        await call
    except Exception:
        log.warning("a job listener failed", exc_info=True)
