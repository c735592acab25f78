"""Running accepted jobs: queue each on the worker pool, follow it, keep its images, finish or refund it.

Whoever shows a job to a person (the Discord layer, the CLI) passes a `JobListener`; the job runs to its
end whether or not anyone is listening, and a listener that fails does not fail the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageOps

from bot.engine import (
    Cancelled,
    Catalog,
    EngineError,
    EnginePool,
    GenerateRequest,
    GenerationResult,
    Preview,
    Progress,
    Started,
    Ticket,
    UpscaleRequest,
    png_bytes,
)
from bot.recipe import GRID_SIZE, JobKind, JobStatus, Recipe
from bot.service.canvas import Canvas, paint_canvas
from bot.service.images import ImageFiles
from bot.service.policy import Policy
from bot.service.provenance import read_parameters, recipe_text, upscaled_text
from bot.service.sources import SourceImages
from bot.store import Job, Store

log = logging.getLogger(__name__)

NSFW_REFUSED = ("the model's safety checker flagged its images as NSFW, and this server does not post those. "
                "Try a different prompt")
UNDELIVERABLE = "its images were made, but Discord would not let the bot show them"
STALLED = "it stopped making progress for {seconds:g} s, so it was stopped"
FIRST_RETRY, LONGEST_RETRY = 1.0, 30.0  # seconds between delivery attempts: doubling, at most this


class JobListener(Protocol):
    """Tells a person how their job is doing. Every call but `finished` is best effort."""

    async def queued(self, job: Job, position: int) -> None: ...
    async def progress(self, job: Job, fraction: float) -> None: ...
    async def preview(self, job: Job, png: bytes, fraction: float) -> None: ...  # the grid partway through

    async def finished(self, job: Job, image: Path, spoiler: bool, *, fresh: bool = False) -> int | None:
        """Show the result (`spoiler`: flagged as NSFW). Returns the id of the message that shows it (0: shown
        in no message, e.g. only in the web page), None if there is nowhere to show it; raises if it could not
        be shown this time (it is tried again).
        `fresh`: post it as a new message, the job's own message having failed for too long. Showing the
        same job twice must edit, never post a second result."""
        ...

    async def failed(self, job: Job, reason: str) -> None: ...


class JobMetrics(Protocol):
    """What the Runner tells the operators' metrics (bot/web/metrics.py). Labels are fixed words and
    catalog names, never a member's text: `kind` a JobKind value, `outcome` done|failed|cancelled, `reason`
    one of FAILURE_REASONS."""

    def saved(self, model: str, kind: str, seconds: float, images: int) -> None: ...
    def ended(self, kind: str, outcome: str, reason: str | None = None) -> None: ...


FAILURE_REASONS = ("engine", "nsfw", "cancelled", "stalled", "storage", "undeliverable", "internal")


class NoMetrics:
    def saved(self, model: str, kind: str, seconds: float, images: int) -> None:
        pass

    def ended(self, kind: str, outcome: str, reason: str | None = None) -> None:
        pass


class Stalled(EngineError):
    """A running job went `job_timeout` seconds without progress."""


@dataclass(frozen=True)
class Pictures:
    """A recipe's pictures, opened (bot/service/sources.py): image prompts, --sref and --oref references."""
    prompts: tuple[Image.Image, ...] = ()
    styles: tuple[Image.Image, ...] = ()
    objects: tuple[Image.Image, ...] = ()


def generate_request(recipe: Recipe, init_image: Image.Image | None = None, mask_image: Image.Image | None = None,
                     images: int = GRID_SIZE, pictures: Pictures = Pictures()) -> GenerateRequest:
    """The engine request a recipe makes: txt2img; img2img from `init_image` brought to the recipe's size;
    inpainting where `mask_image` (the canvas tools, at the strength their recipe has); without an
    `init_image`, img2img from an image prompt (a blend of several) at the --iw strength. References go along
    to every kind. The one place requests are built, for the bot's jobs and `dreamgrid generate` alike."""
    common = dict(model=recipe.model, prompt=recipe.prompt, negative_prompt=recipe.negative_prompt,
                  seeds=recipe.seeds(images), steps=recipe.steps, guidance=recipe.guidance, tile=recipe.tile,
                  loras=recipe.loras, style_images=pictures.styles, style_code=recipe.style_code,
                  style_scale=recipe.style_scale if pictures.styles or recipe.style_code is not None else 0.0,
                  object_images=pictures.objects, object_scale=recipe.object_scale if pictures.objects else 0.0)
    if init_image is None and len(pictures.prompts) > 1:
        return GenerateRequest(width=recipe.width, height=recipe.height, strength=recipe.image_strength,
                               blend_images=tuple(_fitted(p, recipe.output_size) for p in pictures.prompts), **common)
    if init_image is None and pictures.prompts:  # cropped to the job's aspect ratio, not squeezed
        return GenerateRequest(init_image=_fitted(pictures.prompts[0], recipe.output_size),
                               strength=recipe.image_strength, **common)
    if init_image is None:
        return GenerateRequest(width=recipe.width, height=recipe.height, shared_noise=recipe.shared_noise, **common)
    # img2img takes its size from the source image: bring it to the size the job asks for.
    init_image = init_image.resize(recipe.output_size, Image.Resampling.LANCZOS)
    if mask_image is not None:
        return GenerateRequest(init_image=init_image, mask_image=mask_image.resize(init_image.size),
                               strength=recipe.strength, **common)
    return GenerateRequest(init_image=init_image, strength=recipe.strength, **common)


def _fitted(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    return ImageOps.fit(picture, size, Image.Resampling.LANCZOS)


class Runner:
    def __init__(self, store: Store, pool: EnginePool, catalog: Catalog, images: ImageFiles, policy: Policy,
                 sources: SourceImages, *,
                 position_interval: float = 0.0, job_timeout: float = 0.0, delivery_timeout: float = 600.0,
                 metrics: JobMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics or NoMetrics()
        self.pool = pool
        self.catalog = catalog
        self.images = images
        self.policy = policy
        self.sources = sources
        self.position_interval = position_interval  # 0: a waiting job's place in line is shown once
        self.job_timeout = job_timeout  # seconds a running job may go without progress (0: forever)
        self.delivery_timeout = delivery_timeout  # seconds its message is retried before a new one is posted
        self._tickets: dict[int, Ticket] = {}
        self._progress: dict[int, float] = {}  # running jobs: the fraction of their steps done
        self._tasks: set[asyncio.Task] = set()
        self._job_tasks: dict[int, asyncio.Task] = {}
        self._cancelled: set[int] = set()  # cancelled before they reached the pool
        self._closing = False

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

    def progress(self, job_id: int) -> float | None:
        """How far a running job is (0..1), None if it is not running here."""
        return self._progress.get(job_id)

    async def stop(self, job_id: int) -> Job | None:
        """Cancel a queued or running job and wait until it has stopped (a running one stops at its next
        denoising step; an upscale has none and may finish instead). Returns the job as it ended."""
        task = self._job_tasks.get(job_id)
        if not self.cancel(job_id):
            if task is None:  # accepted but not running in this process: nothing else will touch it
                await self.store.fail_job(job_id, "cancelled", JobStatus.CANCELLED)
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
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job: Job, listener: JobListener) -> None:
        try:
            if job.status is JobStatus.DONE:  # saved before a stop or crash, never shown: show it now
                await self._deliver(job, listener)
            else:
                await self._generate(job, listener)
        except asyncio.CancelledError:
            raise  # the bot is stopping: the job stays in the store for recovery
        except Exception:  # the store itself failed (disk full, read-only): the job runs again on restart
            log.exception("job %s: could not record its outcome; it runs again when the bot restarts", job.id)
            self.metrics.ended(job.kind.value, JobStatus.FAILED.value, "storage")
            await _quietly(listener.failed(job, "the bot could not record its outcome (its storage failed); "
                                                "it runs again when the bot restarts"))

    async def _generate(self, job: Job, listener: JobListener) -> None:
        try:
            ticket = self.pool.submit(await self._request_for(job), owner=job.owner_id, lane=job.lane)
        except (EngineError, OSError, KeyError) as error:
            log.exception("job %s could not be queued", job.id)
            why = str(error) if isinstance(error, EngineError) else "its source image could not be read"
            await self._fail(job, listener, f"it could not start ({why}); your images were refunded",
                             why="engine" if isinstance(error, EngineError) else "storage")
            return
        self._tickets[job.id] = ticket
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            ticket.cancel()
        started = asyncio.get_running_loop().time()  # from a worker taking it (Started) to its images saved
        try:
            position = ticket.position() or 0
            await _quietly(listener.queued(job, position))
            async with self._following_position(job, ticket, listener, position) as stop_following:
                async for event in self._watched(ticket):
                    if isinstance(event, Started):
                        await stop_following()  # from here on the message shows progress
                        started = asyncio.get_running_loop().time()
                        await self.store.mark_running(job.id)
                    elif isinstance(event, Progress):
                        self._progress[job.id] = event.fraction
                        await _quietly(listener.progress(job, event.fraction))
                    elif isinstance(event, Preview):
                        png = await asyncio.to_thread(png_bytes, event.image)  # encoding is CPU work: off the loop
                        await _quietly(listener.preview(job, png, event.fraction))
            await self._keep(job, await ticket.result(), listener, started)
        except EngineError as error:
            status = JobStatus.CANCELLED if isinstance(error, Cancelled) else JobStatus.FAILED
            why = "cancelled" if isinstance(error, Cancelled) else "stalled" if isinstance(error, Stalled) else "engine"
            await self._fail(job, listener, str(error), status, why=why)
        except asyncio.CancelledError:
            ticket.cancel()  # the bot is stopping: the job stays queued in the store for recovery
            raise
        except Exception as error:  # a bug must still refund and report, never lose the job
            log.exception("job %s failed", job.id)
            await self._fail(job, listener, f"an internal error ({type(error).__name__})", why="internal")
        finally:
            self._tickets.pop(job.id, None)
            self._progress.pop(job.id, None)

    async def _keep(self, job: Job, result: GenerationResult, listener: JobListener, started: float) -> None:
        """A finished pipeline's images: refused (NSFW), or saved, recorded as done, and delivered."""
        if any(result.nsfw) and not await self.policy.allow_nsfw(job, result.nsfw):
            await self._fail(job, listener, NSFW_REFUSED, why="nsfw")  # nothing kept, nothing posted
            return
        try:
            stored = await asyncio.to_thread(self.images.save, job, result, self._text_of(job, result))
        except OSError as error:  # the disk is full or gone: nothing half-saved is shown
            log.error("job %s: could not save its images: %s", job.id, error)
            await asyncio.to_thread(self.images.remove, job.id)
            await self._fail(job, listener, "its images could not be saved (the bot's disk is full or "
                                            "unavailable); tell an admin", why="storage")
            return
        await self.store.finish_job(job.id, stored)
        self.metrics.saved(job.model, job.kind.value, asyncio.get_running_loop().time() - started, len(stored))
        await self._deliver(await self.store.get_job(job.id), listener)

    async def _watched(self, ticket: Ticket):
        """The ticket's events; once it runs, each must come within `job_timeout` seconds, or the job is
        cancelled on its device and ends as failed (a stuck pipeline, a hung GPU)."""
        events = ticket.events().__aiter__()
        running = False
        while True:
            try:
                if running and self.job_timeout > 0:
                    event = await asyncio.wait_for(events.__anext__(), self.job_timeout)
                else:
                    event = await events.__anext__()
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                ticket.cancel()
                raise Stalled(STALLED.format(seconds=self.job_timeout)) from None
            running = running or isinstance(event, Started)
            yield event

    async def _deliver(self, job: Job, listener: JobListener) -> None:
        """Show a saved job's result: its own message, tried again with backoff for `delivery_timeout`
        seconds; then a new message; only if even that cannot be, the job fails and is refunded."""
        loop = asyncio.get_running_loop()
        image, spoiler = self.images.result_file(job), await self.policy.spoiler(job)
        deadline, delay = loop.time() + self.delivery_timeout, FIRST_RETRY
        for fresh in (False, True):
            while True:
                try:
                    message_id = await listener.finished(job, image, spoiler, fresh=fresh)
                except Exception as error:
                    _still_cancelled()
                    log.warning("job %s: showing its result failed (%s: %s)", job.id, type(error).__name__, error)
                    if self._closing:  # the bot is stopping: shown after the restart
                        return
                    if fresh or loop.time() + delay > deadline:
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, LONGEST_RETRY)
                    continue
                if message_id is not None:  # 0: shown, in no message (the web page, with no bot)
                    await self.store.mark_delivered(job.id, message_id or None)
                    self.metrics.ended(job.kind.value, JobStatus.DONE.value)
                    return
                break  # nowhere to show it this way
        log.error("job %s: its result could not be shown; it is refunded", job.id)
        if await self.store.give_up_delivery(job.id, UNDELIVERABLE):
            self.metrics.ended(job.kind.value, JobStatus.FAILED.value, "undeliverable")
            await _quietly(listener.failed(await self.store.get_job(job.id), UNDELIVERABLE))

    @contextlib.asynccontextmanager
    async def _following_position(self, job: Job, ticket: Ticket, listener: JobListener, shown: int):
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

    async def _fail(self, job: Job, listener: JobListener, reason: str,
                    status: JobStatus = JobStatus.FAILED, *, why: str) -> None:
        """`reason` is told to the member; `why`, one of FAILURE_REASONS, is counted."""
        if await self.store.fail_job(job.id, reason, status):
            self.metrics.ended(job.kind.value, status.value, why)
            await _quietly(listener.failed(await self.store.get_job(job.id), reason))

    async def _request_for(self, job: Job) -> GenerateRequest | UpscaleRequest:
        if job.kind is not JobKind.UPSCALE:
            pictures = await asyncio.to_thread(self._pictures, job.recipe)
        if job.kind.is_canvas:
            canvas = await asyncio.to_thread(self._canvas, job, await self._generated_image(job))
            return generate_request(job.recipe, canvas.image, canvas.mask, pictures=pictures)
        source = await self._source_image(job) if job.kind.needs_source else None
        if job.kind is JobKind.UPSCALE:
            return UpscaleRequest(model=job.model, image=source, scale=job.recipe.scale)
        return generate_request(job.recipe, source, images=job.kind.images, pictures=pictures)

    def _pictures(self, recipe: Recipe) -> Pictures:
        """The recipe's pictures from the content-addressed store (never fetched again)."""
        def opened(digests: tuple[str, ...]) -> tuple[Image.Image, ...]:
            return tuple(self.sources.open(digest) for digest in digests)

        return Pictures(opened(recipe.image_prompts), opened(recipe.style_refs), opened(recipe.object_refs))

    def _canvas(self, job: Job, source: Image.Image) -> Canvas:
        spec = self.catalog.get(job.model)
        mask = self.sources.open(job.recipe.mask) if job.recipe.mask else None  # Vary (Region) with a brush
        return paint_canvas(job.recipe.canvas, source, model_size=(spec.width, spec.height),
                            multiple=spec.family.size_multiple, mask=mask)

    async def _generated_image(self, job: Job) -> Image.Image:
        """What a canvas job paints around: its upscaled image at the size it was generated at (the model's
        pixel budget). For an upscale that is the grid image it enlarged, so kept pixels are exactly those."""
        upscaled = await self.store.get_job(job.parent_job_id)
        if upscaled.kind is JobKind.UPSCALE:
            return await self._source_image(upscaled)
        size = (upscaled.recipe.width, upscaled.recipe.height)  # Upscale (Creative): its image, made smaller
        return (await self._source_image(job)).resize(size, Image.Resampling.LANCZOS)

    async def _source_image(self, job: Job) -> Image.Image:
        for stored in await self.store.images(job.parent_job_id):
            if stored.index == job.parent_index:
                return await asyncio.to_thread(self.images.open_rgb, stored)
        raise KeyError(f"image {job.parent_index} of job #{job.parent_job_id} is not stored")

    def _text_of(self, job: Job, result: GenerationResult):
        """The AUTOMATIC1111 `parameters` text of each image the job saves: text_of(seed, image)."""
        if job.kind is JobKind.UPSCALE:  # the source image's own text, and how it was enlarged
            source = self.images.image(job.parent_job_id, job.parent_index)
            upscaler = self.catalog.get(job.model).upscaler if job.model in self.catalog.models else "lanczos"
            return lambda seed, image: upscaled_text(read_parameters(source) or job.prompt, upscaler=upscaler,
                                                     scale=job.recipe.scale, job_id=job.id)
        return lambda seed, image: recipe_text(job.recipe, sampler=result.sampler, seed=seed, width=image.width,
                                               height=image.height, job_id=job.id, loras=result.loras,
                                               blend_method=result.blend_method)


async def _quietly(call) -> None:
    """Tell a listener something; a listener's failure (Discord down, message deleted) never fails the job."""
    try:
        await call
    except Exception:
        _still_cancelled()
        log.warning("a job listener failed", exc_info=True)


def _still_cancelled() -> None:
    """An HTTP client may turn the cancellation of a request into an error of its own (a closed session):
    the task is still being cancelled (the bot is stopping), so stop, rather than run on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
