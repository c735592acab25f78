"""Admission: a new job is planned (its recipe resolved once), checked, admitted by the server's rules and
charged — or refused with a clear message and nothing changed. `--repeat N` is one transaction: all N
grids are accepted and charged, or none."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from pathlib import Path

from PIL import Image

from bot.engine import Catalog
from bot.engine.families import family_of
from bot.engine.loras import LORAS_DIR, LoraError, find_lora, lora_family
from bot.engine.tokens import prompt_tokens
from bot.recipe import MAX_IMAGES, JobKind, Recipe
from bot.service.canvas import PAINTED, CanvasError, brush_mask, check_operation, paint_canvas
from bot.service.compose import Defaults, Links, Plan, plan_job
from bot.service.fetch import ImageFetcher, Upload, decode
from bot.service.images import ImageFiles
from bot.service.policy import Policy
from bot.service.prompt import PromptError, normalise
from bot.service.quota import QuotaError, QuotaService
from bot.service.sources import SourceImages
from bot.service.users import Requester, UserError
from bot.store import Job, NewJob, Refused, Store, StoredImage
from bot.store.preferences import Preferences


log = logging.getLogger(__name__)


def _sentence(error: Exception) -> str:
    """A CanvasError's text ("the box must…") as a sentence for the member."""
    text = str(error)
    return f"{text[0].upper()}{text[1:]}."

# A canvas operation's first word -> the kind of job it is
KIND_OF_OPERATION = {"zoom": JobKind.ZOOM, "square": JobKind.ZOOM, "pan": JobKind.PAN, "region": JobKind.REGION}

STORAGE_DOWN = ("The bot cannot save anything right now (its database is read-only or its disk is full), so "
                "nothing was queued or charged. Please tell a server admin; try again once it is fixed.")


# /blend's dimensions -> the aspect ratio of its grid
BLEND_SHAPES = {"square": (1, 1), "portrait": (2, 3), "landscape": (3, 2)}


class Admission:
    def __init__(self, store: Store, catalog: Catalog, models_dir: Path, images: ImageFiles, policy: Policy,
                 preferences: Preferences, quota: QuotaService, fetcher: ImageFetcher, sources: SourceImages, *,
                 max_prompt_chars: int) -> None:
        self.store = store
        self.fetcher = fetcher
        self.sources = sources
        self.catalog = catalog
        self.models_dir = models_dir
        self.images = images
        self.policy = policy
        self.preferences = preferences
        self.quota = quota
        self.max_prompt_chars = max_prompt_chars

    async def imagine(self, who: Requester, prompt: str, image: Upload | None = None) -> list[Job] | Refused:
        """One grid, or `--repeat N` grids: all accepted (each charged) or none. `image`: an uploaded image
        prompt, before any the prompt links to."""
        plan = await self.plan(who, prompt, pictures=image is not None)
        uploads = [image] if image is not None else []
        pictures = (await self._with_pictures(plan.recipe, plan.links, *uploads)).pictures()
        return await self._accept(who, JobKind.IMAGINE, [dataclasses.replace(r, **pictures) for r in plan.recipes()])

    async def blend(self, who: Requester, images: list[Upload], shape: str = "square") -> list[Job] | Refused:
        """/blend: 2-5 uploaded pictures mixed into one grid of the given shape (no text prompt)."""
        if not 2 <= len(images) <= MAX_IMAGES:
            raise UserError(f"/blend mixes 2 to {MAX_IMAGES} images; you gave {len(images)}.")
        if shape not in BLEND_SHAPES:
            raise UserError(f"`{shape}` is not a shape /blend knows: use {', '.join(BLEND_SHAPES)}.")
        plan = await self.plan(who, "--ar {}:{}".format(*BLEND_SHAPES[shape]), remix=True, pictures=True)
        recipe = await self._with_pictures(plan.recipe, Links(), *images)
        return await self._accept(who, JobKind.BLEND, [recipe])

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
                     again: Job | None = None, mask: str | None = None) -> Job | Refused:
        """Zoom Out, Make Square, Pan or Vary (Region) on an upscaled image: a grid painted on a canvas made
        from it (bot/service/canvas.py), with the prompt (or what Remix made of it). `again`: the canvas job
        a 🔄 paints once more, with its own recipe. `mask`: the kept mask of "region painted" (a 🔄 takes
        its job's)."""
        if parent.kind.is_grid:
            raise UserError(f"Job #{parent.id} is a grid: upscale one of its images (U1–U4) first, then use the "
                            "tools under it.")
        try:
            operation = check_operation(operation)
        except CanvasError as error:
            raise UserError(_sentence(error)) from None
        mask = mask or (again.recipe.mask if again is not None else None)
        if operation == f"region {PAINTED}" and (mask is None or not self.sources.exists(mask)):
            raise UserError("A painted region needs its mask, and there is none (or it is no longer stored): "
                            "paint the region with the brush in the archive's page, or pick a region or a box.")
        await self._require_image(parent, 1)
        base = (again or parent).recipe.again() if remix is None else await self._remixed(who, remix, parent.recipe)
        spec = self.catalog.get(base.model)
        source = parent.recipe  # the upscale keeps the size its image was generated at
        if operation == "square" and source.width == source.height:
            raise UserError(f"Image of job #{parent.id} is square already; Make Square pads a wide or tall image.")
        # The canvas's size and strength, from a blank image of the source's size (Pillow work: off the loop).
        painted = await asyncio.to_thread(
            lambda: paint_canvas(operation, Image.new("RGB", (source.width, source.height)),
                                 model_size=(spec.width, spec.height), multiple=spec.family.size_multiple,
                                 mask=self.sources.open(mask) if mask else None))
        recipe = base.painted(operation, *painted.image.size, painted.strength,
                              mask=mask if operation == f"region {PAINTED}" else None)
        return await self._accept_one(who, KIND_OF_OPERATION[operation.split()[0]], recipe, parent, 1)

    async def painted_region(self, who: Requester, parent: Job, mask_png: bytes,
                             remix: str | None = None) -> Job | Refused:
        """Vary (Region) with a brush: `mask_png` white where to repaint, black where to keep, painted on the
        upscaled image (any size of its shape). The mask is brought to the image's generation size,
        thresholded and kept by digest (bot/service/sources.py); then it is the same job as the Discord
        Vary (Region), through the same Remix path when a prompt comes with it."""
        if parent.kind.is_grid:
            raise UserError(f"Job #{parent.id} is a grid: upscale one of its images (U1–U4) first, then paint "
                            "on the upscaled image.")
        if len(mask_png) > self.fetcher.max_bytes:
            raise UserError(f"The mask is {len(mask_png) / 2**20:.1f} MB; the bot reads pictures up to "
                            f"{self.fetcher.max_bytes / 2**20:g} MB.")
        size = (parent.recipe.width, parent.recipe.height)

        def keep() -> str:
            try:
                mask = brush_mask(decode(mask_png, self.fetcher.max_pixels, "The mask"), size)
            except CanvasError as error:
                raise UserError(_sentence(error)) from None
            return self.sources.put(mask)

        digest = await asyncio.to_thread(keep)
        return await self.canvas(who, parent, f"region {PAINTED}", remix, mask=digest)

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
        return await self._remixed(who, remix, parent.recipe)

    async def _remixed(self, who: Requester, remix: str, parent: Recipe) -> Recipe:
        """A remixed prompt's recipe; the pictures it does not give anew are its parent's."""
        plan = await self.plan(who, remix, remix=True, pictures=bool(parent.image_prompts))
        return await self._with_pictures(plan.recipe, plan.links, inherited=parent)

    # --- pictures ------------------------------------------------------------------------------------

    async def _with_pictures(self, recipe: Recipe, links: Links, *uploads: Upload,
                             inherited: Recipe | None = None) -> Recipe:
        """The recipe with its pictures fetched (Discord's CDN only), checked and kept by digest; the roles a
        remix gives none for keep `inherited`'s. Every link is checked before anything is downloaded."""
        spec = self.catalog.get(recipe.model)
        for link in (*links.image, *links.style, *links.object):
            self.fetcher.check_link(link)
        if len(uploads) + len(links.image) > MAX_IMAGES:
            raise UserError(f"A prompt takes at most {MAX_IMAGES} image prompts; this one has "
                            f"{len(uploads) + len(links.image)}.")
        if links.style or links.object or recipe.style_code is not None:  # before anything is downloaded
            self._check_references(spec)
        fetched = []
        for n, upload in enumerate(uploads, start=1):
            shown = f"The image `{upload.filename}`" if len(uploads) == 1 else f"Image {n} (`{upload.filename}`)"
            fetched.append(await self.fetcher.fetch(upload.url, size=upload.size, name=shown))
        prompts = [*fetched, *[await self.fetcher.fetch(link, name=f"Image prompt {n}")
                               for n, link in enumerate(links.image, start=len(uploads) + 1)]]
        styles = [await self.fetcher.fetch(link, name="The `--sref` image") for link in links.style]
        objects = [await self.fetcher.fetch(link, name="The `--oref` image") for link in links.object]

        def keep(pictures: list) -> tuple[str, ...]:
            return tuple(self.sources.put(picture) for picture in pictures)

        kept = await asyncio.to_thread(lambda: [keep(prompts), keep(styles), keep(objects)])
        recipe = dataclasses.replace(recipe, image_prompts=kept[0], style_refs=kept[1], object_refs=kept[2])
        if inherited is not None:
            recipe = recipe.keeping_pictures_of(inherited)
            if recipe.has_references:  # the parent's, on a model the remix switched to
                self._check_references(spec)
        self._check_weights(recipe)
        return recipe

    def _check_references(self, spec) -> None:
        if not spec.takes_references:
            raise UserError(f"Model `{spec.name}` has no IP-Adapter, so it cannot use `--sref` or `--oref`. "
                            f"{self._reference_models()}")

    @staticmethod
    def _check_weights(recipe: Recipe) -> None:
        if recipe.image_weight is not None and not recipe.image_prompts:
            raise UserError("`--iw` sets how much an image prompt counts, and this prompt has none: add an image "
                            "(the `image` option, or a Discord image link at the start of the prompt) or remove "
                            "`--iw`.")
        if recipe.style_weight is not None and not (recipe.style_refs or recipe.style_code is not None):
            raise UserError("`--sw` sets how much a style reference counts, and this prompt has none: add "
                            "`--sref` with an image link or a style code, or remove `--sw`.")
        if len(recipe.image_prompts) > 1 and recipe.object_refs:
            raise UserError("Several image prompts are blended through the object reference's slot, so they cannot "
                            "take `--oref` too: use one image prompt with `--oref`, or remove `--oref`.")
        if recipe.object_weight is not None and not recipe.object_refs:
            raise UserError("`--ow` sets how much an object reference counts, and this prompt has none: add "
                            "`--oref` with an image link, or remove `--ow`.")

    def _reference_models(self) -> str:
        able = [f"`{name}`" for name, spec in self.catalog.models.items() if spec.takes_references]
        if not able:
            return "No model here has one; an admin can add IP-Adapter weights to a model's catalog entry."
        return f"Models that can: {', '.join(able)} (pick one with `--model NAME` or /settings)."

    # --- planning ------------------------------------------------------------------------------------

    async def plan(self, who: Requester, prompt: str, *, remix: bool = False, pictures: bool = False) -> Plan:
        """The typed prompt with the user's settings and options applied, checked before anything is charged.
        `pictures`: an image prompt comes with it, so the text may be only parameters (or nothing)."""
        prompt = normalise(prompt)
        if not pictures:
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
        if not (pictures or plan.links.image):
            self.check_prompt(plan.recipe.prompt)
        elif len(prompt) > self.max_prompt_chars:
            self.check_prompt(prompt)
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
        # Private (its replies only the owner's, as /settings says now): recorded, so the web archive never
        # shows it to other members.
        private = (await self.preferences.get(who.user_id)).private
        new = [NewJob(owner_id=who.user_id, owner_name=who.name, guild_id=who.guild_id, channel_id=who.channel_id,
                      kind=kind, recipe=recipe, parent_job_id=parent.id if parent else None, parent_index=index,
                      private=private)
               for recipe in recipes]
        try:
            return await self.quota.accept(new, who.role_ids)
        except QuotaError as error:
            raise UserError(str(error)) from None
        except sqlite3.OperationalError as error:  # read-only, disk full, locked past the busy timeout
            log.error("cannot accept a job: the database refused the write (%s)", error)
            raise UserError(STORAGE_DOWN) from None
