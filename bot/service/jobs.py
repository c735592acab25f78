"""The life of a job: validate, charge, queue, run on the pool, keep the images, finish or refund.

This room knows the store and the engine, never Discord. Whoever shows a job to a person (the Discord
layer, the CLI) passes a `JobListener`; the job runs to its end whether or not anyone is listening, and a
listener that fails does not fail the job.
"""

from __future__ import annotations

import asyncio
import logging
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
    Progress,
    Started,
    UpscaleRequest,
    WorkerPool,
    make_grid,
)
from bot.store import Job, NewJob, Refused, Store, StoredImage

log = logging.getLogger(__name__)

GRID_SIZE = 4
COST = {"imagine": GRID_SIZE, "reroll": GRID_SIZE, "variation": GRID_SIZE, "upscale": 1}
# img2img strength of a variation: how far it may move from its source image.
VARIATION_STRENGTH = {"subtle": 0.35, "strong": 0.7}
UPSCALE_FACTOR = 2
MAX_SEED = 2**32 - 1


class UserError(Exception):
    """Bad input from a person. The message says what was wrong and what to do; nothing was changed."""


@dataclass(frozen=True)
class Requester:
    user_id: int
    name: str
    guild_id: int | None
    channel_id: int


class JobListener(Protocol):
    async def queued(self, job: Job, position: int) -> None: ...
    async def progress(self, job: Job, fraction: float) -> None: ...
    async def finished(self, job: Job, image: Path) -> None: ...
    async def failed(self, job: Job, reason: str) -> None: ...


class JobService:
    def __init__(self, store: Store, pool: WorkerPool, catalog: Catalog, data_dir: Path, *,
                 daily_images: int, max_prompt_chars: int, default_model: str | None = None) -> None:
        self.store = store
        self.pool = pool
        self.catalog = catalog
        self.data_dir = data_dir
        self.daily_images = daily_images
        self.max_prompt_chars = max_prompt_chars
        self.default_model = default_model or catalog.default
        self._tickets: dict[int, object] = {}
        self._tasks: set[asyncio.Task] = set()

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

    async def imagine(self, who: Requester, prompt: str) -> Job | Refused:
        text = self.check_prompt(prompt)
        spec = self.catalog.get(self.default_model)
        params = {"width": spec.width, "height": spec.height, "steps": spec.steps, "guidance": spec.guidance}
        return await self._accept(who, "imagine", text, spec.name, params)

    async def reroll(self, who: Requester, parent: Job) -> Job | Refused:
        params = _generation_params(parent)
        return await self._accept(who, "reroll", parent.prompt, parent.model, params, parent=(parent, None),
                                  negative_prompt=parent.negative_prompt)

    async def vary(self, who: Requester, parent: Job, index: int, strength: str) -> Job | Refused:
        await self._require_image(parent, index)
        params = {**_generation_params(parent), "strength": VARIATION_STRENGTH[strength]}
        return await self._accept(who, "variation", parent.prompt, parent.model, params, parent=(parent, index),
                                  negative_prompt=parent.negative_prompt)

    async def upscale(self, who: Requester, parent: Job, index: int) -> Job | Refused:
        source = await self._require_image(parent, index)
        # The generation parameters travel along, so Vary on the upscale works at the model's own size.
        params = {**_generation_params(parent), "scale": UPSCALE_FACTOR}
        return await self._accept(who, "upscale", parent.prompt, parent.model, params, parent=(parent, index),
                                  negative_prompt=parent.negative_prompt, seed=source.seed)

    async def _accept(self, who: Requester, kind: str, prompt: str, model: str, params: dict, *,
                      parent: tuple[Job, int | None] | None = None, negative_prompt: str = "",
                      seed: int | None = None) -> Job | Refused:
        new = NewJob(
            owner_id=who.user_id, owner_name=who.name, guild_id=who.guild_id, channel_id=who.channel_id,
            kind=kind, prompt=prompt, model=model, cost=COST[kind], params=params,
            seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
            negative_prompt=negative_prompt,
            parent_job_id=parent[0].id if parent else None, parent_index=parent[1] if parent else None,
        )
        return await self.store.accept_job(new, allowance=self.daily_images)

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
        task.add_done_callback(self._tasks.discard)
        return task

    def position(self, job_id: int) -> int | None:
        ticket = self._tickets.get(job_id)
        return ticket.position() if ticket else None

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
            ticket = self.pool.submit(request)
        except (EngineError, OSError, KeyError) as error:
            log.exception("job %s could not be queued", job.id)
            await self._fail(job, listener, f"it could not start ({error}); your images were refunded")
            return
        self._tickets[job.id] = ticket
        try:
            await _quietly(listener.queued(job, ticket.position() or 0))
            async for event in ticket.events():
                if isinstance(event, Started):
                    await self.store.mark_running(job.id)
                elif isinstance(event, Progress):
                    await _quietly(listener.progress(job, event.fraction))
            result = await ticket.result()
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
                      steps=p["steps"], guidance=p["guidance"])
        if job.kind != "variation":
            return GenerateRequest(width=p["width"], height=p["height"], **common)
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
            image.save(path)
            stored.append(StoredImage(job.id, index, seed, str(path.relative_to(self.data_dir)),
                                      image.width, image.height))
        if job.kind == "upscale":
            return stored, folder / "1.png"
        grid_path = folder / "grid.png"
        make_grid(result.images).save(grid_path)
        return stored, grid_path


def _generation_params(job: Job) -> dict:
    """What made a job's pictures: the part of its parameters a reroll or a variation starts from."""
    return {key: job.params[key] for key in ("width", "height", "steps", "guidance")}


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


async def _quietly(call) -> None:
    """Tell a listener something; a listener's failure (Discord down, message deleted) never fails the job."""
    try:
        await call
    except Exception:
        log.warning("a job listener failed", exc_info=True)
