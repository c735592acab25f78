"""Admission: a new job is planned (its recipe resolved once), checked, admitted by the server's rules and
charged — or refused with a clear message and nothing changed. `--repeat N` is one transaction: all N
grids are accepted and charged, or none."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

from PIL import Image

from bot.engine import Catalog
from bot.engine.families import family_of
from bot.engine.loras import LORAS_DIR, LoraError, find_lora, lora_family
from bot.engine.tokens import prompt_tokens
from bot.recipe import JobKind, Recipe
from bot.service.canvas import CanvasError, check_operation, paint_canvas
from bot.service.compose import Defaults, Plan, plan_job
from bot.service.images import ImageFiles
from bot.service.policy import Policy
from bot.service.prompt import PromptError, normalise
from bot.service.quota import QuotaError, QuotaService
from bot.service.users import Requester, UserError
from bot.store import Job, NewJob, Refused, Store, StoredImage
from bot.store.preferences import Preferences


log = logging.getLogger(__name__)

# A canvas operation's first word -> the kind of job it is
KIND_OF_OPERATION = {"zoom": JobKind.ZOOM, "square": JobKind.ZOOM, "pan": JobKind.PAN, "region": JobKind.REGION}

STORAGE_DOWN = ("The bot cannot save anything right now (its database is read-only or its disk is full), so "
                "nothing was queued or charged. Please tell a server admin; try again once it is fixed.")


class Admission:
    def __init__(self, store: Store, catalog: Catalog, models_dir: Path, images: ImageFiles, policy: Policy,
                 preferences: Preferences, quota: QuotaService, *, max_prompt_chars: int) -> None:
        self.store = store
        self.catalog = catalog
        self.models_dir = models_dir
        self.images = images
        self.policy = policy
        self.preferences = preferences
        self.quota = quota
        self.max_prompt_chars = max_prompt_chars

    async def imagine(self, who: Requester, prompt: str) -> list[Job] | Refused:
        """One grid, or `--repeat N` grids: all accepted (each charged) or none."""
        plan = await self.plan(who, prompt)
        return await self._accept(who, JobKind.IMAGINE, plan.recipes())

    async def reroll(self, who: Requester, parent: Job, remix: str | None = None) -> Job | Refused:
        if parent.kind.is_canvas:  # 🔄 under a zoom, pan or region grid paints the same canvas again
            source = await self.store.get_job(parent.parent_job_id)
            if source is None:
                raise UserError(f"The image job #{parent.id} painted on is gone, so it cannot be rerolled.")
            return await self.canvas(who, source, parent.recipe.canvas, remix, again=parent)
        return await self._accept_one(who, JobKind.REROLL, await self._start_from(who, parent, remix), parent)

    async def vary(self, who: Requester, parent: Job, index: int, strength: str | None = None,
                   remix: str | None = None) -> Job | Refused:
        """Variations of one image; `strength` None takes the user's /settings (Subtle or Strong)."""
        await self._require_image(parent, index)
        strength = strength or (await self.preferences.get(who.user_id)).variation
        recipe = (await self._start_from(who, parent, remix)).variation(strength)
        return await self._accept_one(who, JobKind.VARIATION, recipe, parent, index)

    async def upscale(self, who: Requester, parent: Job, index: int) -> Job | Refused:
        if not parent.kind.is_grid:
            raise UserError(f"Job #{parent.id} is an upscale already; upscale an image of a grid instead.")
        source = await self._require_image(parent, index)
        return await self._accept_one(who, JobKind.UPSCALE, parent.recipe.upscale(source.seed), parent, index)

    async def canvas(self, who: Requester, parent: Job, operation: str, remix: str | None = None, *,
                     again: Job | None = None) -> Job | Refused:
        """Zoom Out, Make Square, Pan or Vary (Region) on an upscaled image: a grid painted on a canvas made
        from it (bot/service/canvas.py), with the prompt (or what Remix made of it). `again`: the canvas job
        a 🔄 paints once more, with its own recipe."""
        if parent.kind.is_grid:
            raise UserError(f"Job #{parent.id} is a grid: upscale one of its images (U1–U4) first, then use the "
                            "tools under it.")
        try:
            operation = check_operation(operation)
        except CanvasError as error:
            raise UserError(f"{str(error)[0].upper()}{str(error)[1:]}.") from None
        await self._require_image(parent, 1)
        base = (again or parent).recipe.again() if remix is None else (await self.plan(who, remix, remix=True)).recipe
        spec = self.catalog.get(base.model)
        source = parent.recipe  # the upscale keeps the size its image was generated at
        if operation == "square" and source.width == source.height:
            raise UserError(f"Image of job #{parent.id} is square already; Make Square pads a wide or tall image.")
        # The canvas's size and strength, from a blank image of the source's size (Pillow work: off the loop).
        painted = await asyncio.to_thread(paint_canvas, operation, Image.new("RGB", (source.width, source.height)),
                                          model_size=(spec.width, spec.height), multiple=spec.family.size_multiple)
        recipe = base.painted(operation, *painted.image.size, painted.strength)
        return await self._accept_one(who, KIND_OF_OPERATION[operation.split()[0]], recipe, parent, 1)

    async def creative(self, who: Requester, parent: Job) -> Job | Refused:
        """Upscale (Creative): the upscaled image through a low-strength img2img pass that adds detail."""
        if parent.kind is not JobKind.UPSCALE:
            raise UserError(f"Upscale (Creative) works on an upscaled image; job #{parent.id} is not one.")
        await self._require_image(parent, 1)
        return await self._accept_one(who, JobKind.CREATIVE, parent.recipe.creative(), parent, 1)

    async def _start_from(self, who: Requester, parent: Job, remix: str | None) -> Recipe:
        """What 🔄 and V make: the parent's recipe with a new seed, or what the user typed under Remix."""
        if remix is None:
            return parent.recipe.again()
        return (await self.plan(who, remix, remix=True)).recipe

    # --- planning ------------------------------------------------------------------------------------

    async def plan(self, who: Requester, prompt: str, *, remix: bool = False) -> Plan:
        """The typed prompt with the user's settings and options applied, checked before anything is charged."""
        prompt = normalise(prompt)
        self.check_prompt(prompt)
        prefs = await self.preferences.get(who.user_id)
        # A remixed prompt is the parent's, which has the suffix in it already.
        defaults = Defaults(model=prefs.model, stylize=prefs.stylize, quality=prefs.quality,
                            suffix="" if remix else prefs.suffix, options=prefs.options)
        try:
            plan = plan_job(prompt, self.catalog, await self.policy.model_for(who.guild_id), defaults)
        except PromptError as error:
            raise UserError(str(error)) from None
        if remix and plan.repeat > 1:
            raise UserError("`--repeat` works with /imagine only; remove it from the remixed prompt.")
        self.check_prompt(plan.recipe.prompt)
        self._check_family(plan.recipe)
        await self._check_tokens(plan.recipe)
        return plan

    def check_prompt(self, prompt: str) -> str:
        text = " ".join(prompt.split())
        if not text:
            raise UserError("The prompt is empty: describe the picture you want, e.g. `/imagine prompt: a red fox`.")
        if len(text) > self.max_prompt_chars:
            raise UserError(
                f"The prompt is {len(text):,} characters long; the limit is {self.max_prompt_chars:,}. "
                "Shorten it and try again.")
        return text

    def _check_family(self, recipe: Recipe) -> None:
        """What the model's family cannot do (--tile on a transformer, --no without a negative branch), and
        LoRAs that are missing or for another family."""
        spec = self.catalog.get(recipe.model)
        refusal = spec.family.refusal(spec.name, negative_prompt=recipe.negative_prompt, tile=recipe.tile,
                                      guidance=recipe.guidance)
        if refusal:
            raise UserError(refusal[0].upper() + refusal[1:])
        for name, _ in recipe.loras:  # before charging: a missing or unfit LoRA would fail the job
            try:
                path = find_lora(self.models_dir / LORAS_DIR, name)
            except LoraError as error:
                raise UserError(f"{str(error)[0].upper()}{str(error)[1:]}. `/model info` lists the LoRAs "
                                f"model `{spec.name}` can use.") from None
            family = lora_family(path)
            if family not in (None, spec.pipeline):
                raise UserError(f"LoRA {name} is for {family_of(family).label} models; model `{spec.name}` is "
                                f"{spec.family.label}. Remove it or pick a {family_of(family).label} model.")

    async def _check_tokens(self, recipe: Recipe) -> None:
        spec = self.catalog.get(recipe.model)
        for what, text in (("prompt", recipe.prompt), ("negative prompt (--no)", recipe.negative_prompt)):
            if not text:
                continue
            tokens = await asyncio.to_thread(prompt_tokens, spec, self.models_dir, text)
            if tokens is not None and tokens > spec.max_prompt_tokens:
                raise UserError(f"The {what} is {tokens} tokens long; model `{spec.name}` reads at most "
                                f"{spec.max_prompt_tokens} (about {spec.max_prompt_tokens * 3 // 4} words). "
                                "Shorten it and try again.")

    async def _require_image(self, job: Job, index: int) -> StoredImage:
        for image in await self.store.images(job.id):
            if image.index == index and self.images.stored(image).is_file():
                return image
        raise UserError(f"Image {index} of job #{job.id} is no longer stored, so it cannot be used. "
                        "Start a new /imagine instead.")

    # --- charging ------------------------------------------------------------------------------------

    async def _accept_one(self, who: Requester, kind: JobKind, recipe: Recipe, parent: Job,
                          index: int | None = None) -> Job | Refused:
        outcome = await self._accept(who, kind, [recipe], parent, index)
        return outcome if isinstance(outcome, Refused) else outcome[0]

    async def _accept(self, who: Requester, kind: JobKind, recipes: list[Recipe], parent: Job | None = None,
                      index: int | None = None) -> list[Job] | Refused:
        # Every new job, buttons included, before anything is charged; a --repeat's grids share their prompts.
        for prompt, negative_prompt in dict.fromkeys((r.prompt, r.negative_prompt) for r in recipes):
            await self.policy.admit(who, prompt, negative_prompt)
        new = [NewJob(owner_id=who.user_id, owner_name=who.name, guild_id=who.guild_id, channel_id=who.channel_id,
                      kind=kind, recipe=recipe, parent_job_id=parent.id if parent else None, parent_index=index)
               for recipe in recipes]
        try:
            return await self.quota.accept(new, who.role_ids)
        except QuotaError as error:
            raise UserError(str(error)) from None
        except sqlite3.OperationalError as error:  # read-only, disk full, locked past the busy timeout
            log.error("cannot accept a job: the database refused the write (%s)", error)
            raise UserError(STORAGE_DOWN) from None
