"""One catalog model loaded on one device: txt2img and img2img sharing a single set of weights.

Only ever used from the worker thread that owns the device (see pool.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image
from PIL import Image

from bot.engine.catalog import ModelSpec
from bot.engine.families import TRUE_CFG_SCALE, Family, NegativePrompt
from bot.engine.requests import DeviceOptions, EngineError, GenerateRequest, GenerationResult, image_hash
from bot.engine.loras import LORAS_DIR, LoraSlots, LoraUse, check_compatible, find_lora, lora_hash
from bot.engine.safety import load_safety_checker
from bot.engine.tokens import count_tokens

log = logging.getLogger(__name__)

# Recent diffusers renamed from_pretrained/from_pipe's `torch_dtype` to `dtype`; older ones (which
# pyproject.toml still allows) only know `torch_dtype`, which every version accepts. Use it, quietly.
warnings.filterwarnings("ignore", message="`torch_dtype` is deprecated", category=FutureWarning)

# on_step(steps_done, steps_total): called after every denoising step; raising from it stops the run.
StepCallback = Callable[[int, int], None]
# on_latents(steps_done, steps_total, latents): the batch's latents after a step (for live previews).
LatentsCallback = Callable[[int, int, "torch.Tensor"], None]


# scheduler class -> the sampler name AUTOMATIC1111 writes in its `parameters` text.
A1111_SAMPLERS = {
    "EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a", "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS", "LMSDiscreteScheduler": "LMS", "HeunDiscreteScheduler": "Heun",
    "DPMSolverMultistepScheduler": "DPM++ 2M", "UniPCMultistepScheduler": "UniPC", "LCMScheduler": "LCM",
    "DPMSolverSinglestepScheduler": "DPM++ SDE", "KDPM2DiscreteScheduler": "DPM2",
    "FlowMatchEulerDiscreteScheduler": "Euler",  # SD3's and FLUX's (Forge writes it so too)
}


def sampler_name(scheduler: object) -> str:
    name = type(scheduler).__name__
    return A1111_SAMPLERS.get(name, name)


@contextlib.contextmanager
def circular_padding(convolutions: list[torch.nn.Conv2d]):
    """Pad with the opposite edge instead of zeros for one run (--tile), then put every conv back."""
    saved = [conv.padding_mode for conv in convolutions]
    try:
        for conv in convolutions:
            conv.padding_mode = "circular"
        yield
    finally:
        for conv, mode in zip(convolutions, saved):
            conv.padding_mode = mode


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def dtype_for(device: str, choice: str = "auto", family: Family | None = None) -> torch.dtype:
    if choice != "auto":
        return _DTYPES[choice]
    # Half precision halves memory and doubles speed on CUDA; CPUs have no fast float16 kernels. T5 (SD3,
    # FLUX) overflows in float16: those families take bfloat16.
    if torch.device(device).type != "cuda":
        return torch.float32
    return torch.bfloat16 if family is not None and family.bfloat16 else torch.float16


class LoadedModel:
    def __init__(self, spec: ModelSpec, models_dir: Path, device: str, options: DeviceOptions | None = None):
        self.spec = spec
        self.device = device
        self.options = options = options or DeviceOptions()
        self.family = family = spec.family
        self.dtype = dtype_for(device, options.dtype, family)
        source = spec.resolve(models_dir)
        self.loras = LoraSlots(Path(models_dir) / LORAS_DIR)
        started = time.perf_counter()
        if spec.single_file:
            txt2img, folder = self._from_single_file(source, Path(models_dir))
        else:
            # The family's own pipeline class comes from the folder's model_index.json; its safety checker
            # is loaded on its own (safety.py), so the pipeline never blocks images itself.
            extra = {"safety_checker": None} if family.safety_checker else {}
            txt2img = AutoPipelineForText2Image.from_pretrained(
                source, local_files_only=Path(source).is_dir(), torch_dtype=self.dtype, **extra)
            folder = source
        if type(txt2img).__name__ not in family.pipeline_classes:
            raise EngineError(f"model {spec.name} is a {type(txt2img).__name__}, but its catalog entry says "
                              f"pipeline = \"{family.pipeline}\"; fix the entry's `pipeline`")
        if options.cpu_offload and torch.device(device).type != "cpu":
            # Weights stay in RAM; each model moves to the GPU while it runs (diffusers + accelerate).
            txt2img.enable_model_cpu_offload(device=device)
            self.txt2img = txt2img
        else:
            self.txt2img = txt2img.to(device)
        self.denoiser = getattr(self.txt2img, family.denoiser)  # the UNet or the transformer
        self._apply(options)
        # from_pipe reuses the same modules (no second copy of the weights). It casts to float32 unless
        # told otherwise, which would also cast the shared txt2img modules: pass our dtype.
        self.img2img = AutoPipelineForImage2Image.from_pipe(self.txt2img, torch_dtype=self.dtype)
        # Inpainting with the same weights: an ordinary checkpoint keeps the unmasked area by re-noising the
        # original there at every step (the canvas tools paste the kept pixels back exactly afterwards). A
        # dedicated inpainting model (its UNet also sees the mask) is better at it, where the entry names one.
        self.inpaint, self.inpaint_loras = self._inpainting(Path(models_dir))
        for pipe in (self.txt2img, self.img2img, self.inpaint):
            pipe.set_progress_bar_config(disable=True)
        self.safety = load_safety_checker(folder, device, self.dtype)
        self._models_dir = Path(models_dir)
        # The IP-Adapter (--sref, --oref, /blend through it), loaded on the first request that needs one.
        self.references = None
        log.info("loaded model %s from %s on %s in %.1f s", spec.name, source, device, time.perf_counter() - started)

    def _inpainting(self, models_dir: Path):
        """The inpainting pipeline, and the LoRA slots of its modules (the txt2img ones, when shared)."""
        if not self.spec.inpaint_source:
            return AutoPipelineForInpainting.from_pipe(self.txt2img, torch_dtype=self.dtype), self.loras
        source = self.spec.resolve(models_dir, self.spec.inpaint_source)
        extra = {"safety_checker": None} if self.family.safety_checker else {}
        pipe = AutoPipelineForInpainting.from_pretrained(source, local_files_only=Path(source).is_dir(),
                                                         torch_dtype=self.dtype, **extra)
        # An inpainting model's denoiser reads the mask and the masked image besides the latents.
        channels = [getattr(part, self.family.denoiser).config.in_channels for part in (self.txt2img, pipe)]
        if type(pipe) is not type(AutoPipelineForInpainting.from_pipe(self.txt2img)) or channels[1] <= channels[0]:
            raise EngineError(f"model {self.spec.name}: its inpaint_source is not an inpainting model of its "
                              f"family ({self.family.label}: a {self.family.denoiser} that also reads the mask)")
        return pipe.to(self.device), LoraSlots(models_dir / LORAS_DIR)

    def _from_single_file(self, source: str, models_dir: Path):
        """A single-file checkpoint's txt2img pipeline, and the config folder it was assembled with."""
        from bot.engine.checkpoints import CheckpointError, config_folder, load_single_file

        try:
            config = config_folder(source, self.spec.config, models_dir)
            return load_single_file(source, self.family.pipeline, config, self.dtype, models_dir), str(config)
        except CheckpointError as exc:
            raise EngineError(f"model {self.spec.name}: {exc}") from None

    def _apply(self, options: DeviceOptions) -> None:
        """The device options that change modules in place (shared by img2img through from_pipe)."""
        pipe, unet = self.txt2img, self.family.denoiser == "unet"
        # Transformers (SD3, FLUX) bring their own attention processors (joint attention, rotary
        # embeddings), all on scaled_dot_product_attention; only a UNet's can be swapped for the classic one.
        if unet and options.attention == "classic":
            from diffusers.models.attention_processor import AttnProcessor

            pipe.unet.set_attn_processor(AttnProcessor())
            pipe.vae.set_attn_processor(AttnProcessor())
        elif unet:  # diffusers' default on torch 2: F.scaled_dot_product_attention
            from diffusers.models.attention_processor import AttnProcessor2_0

            pipe.unet.set_attn_processor(AttnProcessor2_0())
        if options.channels_last and unet:  # NHWC helps convolutions; a transformer has none
            pipe.unet.to(memory_format=torch.channels_last)
        if options.vae_tiling:
            pipe.vae.enable_tiling()
        if options.compile_unet:
            self.denoiser = torch.compile(self.denoiser)
            setattr(pipe, self.family.denoiser, self.denoiser)

    def prompt_tokens(self, text: str) -> int:
        """Tokens `text` takes in the text encoder that reads the whole prompt, start and end tokens included."""
        return count_tokens(getattr(self.txt2img, self.family.prompt_tokenizer), text, self.family)

    def run(self, request: GenerateRequest, on_step: StepCallback,
            on_latents: LatentsCallback | None = None) -> GenerationResult:
        """One request on its own (tests, benches): the pool checks its tickets itself before run_batch."""
        self.check(request)
        return self.run_batch([request], on_step, on_latents)[0]

    def check(self, request: GenerateRequest) -> None:
        """Raise EngineError (a user-safe message) for a request this model cannot run, before running it.

        The one place that refuses a request. Callers call it once per request; run_batch does not repeat
        it (it tokenises the prompts, which is not free)."""
        refusal = self.family.refusal(self.spec.name, negative_prompt=request.negative_prompt, tile=request.tile,
                                      guidance=request.guidance)
        if refusal:
            raise EngineError(refusal)
        multiple = self.family.size_multiple
        if request.is_img2img and int(request.steps * request.strength) < 1:
            raise EngineError(f"{request.steps} steps at strength {request.strength} leaves no denoising step; "
                              "use more steps")
        if request.has_references and not self.spec.takes_references:
            raise EngineError(f"model {self.spec.name} has no IP-Adapter (its catalog entry names none), so "
                              "--sref/--oref cannot be used; pick a model that has one with /model")
        if request.blend_images:
            if not self.spec.takes_references and int(request.steps * request.strength) < 1:
                raise EngineError(f"{request.steps} steps at strength {request.strength} leaves no denoising step "
                                  "for the blend; use more steps")
            if request.width % multiple or request.height % multiple:
                raise EngineError(f"a blend of {request.width}x{request.height}: model {self.spec.name} needs both "
                                  f"sides multiples of {multiple}")
        for name, _ in request.loras:
            check_compatible(self.txt2img, find_lora(self.loras.loras_dir, name), name)
        self._check_prompt_length(request.prompt, "prompt")
        self._check_prompt_length(request.negative_prompt, "negative prompt")
        if request.init_image is not None and (request.init_image.width % multiple
                                               or request.init_image.height % multiple):
            # diffusers would silently crop to a multiple; say so instead.
            raise EngineError(f"the source image is {request.init_image.width}x{request.init_image.height}; "
                              f"model {self.spec.name} needs both sides multiples of {multiple}")

    def run_batch(self, requests: list[GenerateRequest], on_step: StepCallback,
                  on_latents: LatentsCallback | None = None) -> list[GenerationResult]:
        """Several requests with the same batch key (bot/engine/batching.py) in one pipeline call: prompts,
        negative prompts and seeds may differ. Each must have passed check(). Returns one result per request,
        in order."""
        first = requests[0]
        spec, family = self.spec, self.family
        steps, guidance = first.steps, first.guidance
        width, height = first.init_image.size if first.init_image is not None else (first.width, first.height)

        # One generator per image, each seeded with its own seed: image i depends only on seeds[i], so it
        # is the same alone or in a batch. CPU generators give the same noise on every device (a reroll
        # may run on another GPU than the original); diffusers moves the noise to the device.
        generators = [torch.Generator("cpu").manual_seed(seed) for request in requests for seed in request.seeds]

        def step_end(pipe, step_index, timestep, tensors):
            # num_timesteps counts the steps this call really runs (fewer for img2img).
            on_step(step_index + 1, pipe.num_timesteps)
            if on_latents is not None:
                latents = tensors["latents"]
                if family.packed_latents:  # back to (batch, channels, height, width) for the projection
                    latents = type(pipe)._unpack_latents(latents, height, width, pipe.vae_scale_factor)
                on_latents(step_index + 1, pipe.num_timesteps, latents)
            return tensors

        common = dict(
            prompt=[request.prompt for request in requests for _ in request.seeds],
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            callback_on_step_end=step_end,
            output_type="pil",
        )
        common.update(self._prompt_options(requests))
        if first.style_reference is not None or first.object_reference is not None or (
                first.blend_images and self.spec.takes_references):
            self._load_references()  # once; from then on every call passes both slots
        started = time.perf_counter()
        # The model's own LoRAs, then the job's (a job's weight wins); every call sets them, none included.
        uses = [LoraUse(name, weight) for name, weight in {**dict(spec.loras), **dict(first.loras)}.items()]
        if first.mask_image is not None:
            paths = self.inpaint_loras.apply(self.inpaint, uses)
        else:
            paths = self.loras.apply(self.txt2img, uses)
        with circular_padding(self._convolutions() if first.tile else []):
            output = self._generate(requests, common)
        seconds = time.perf_counter() - started
        loras = tuple((use.name, use.weight, lora_hash(path)) for use, path in zip(uses, paths))

        images = list(output.images)
        if first.mask_image is not None:
            images = self._kept_pixels_back(requests, images)
        flags = tuple(self.safety.flags(images)) if self.safety else ()
        results, at = [], 0
        for request in requests:
            count = len(request.seeds)
            mine = images[at:at + count]
            results.append(GenerationResult(
                images=mine,
                seeds=request.seeds,
                width=mine[0].width,
                height=mine[0].height,
                steps=steps,
                guidance=guidance,
                model=spec.name,
                device=self.device,
                seconds=seconds,
                sampler=sampler_name(self.txt2img.scheduler),
                nsfw=flags[at:at + count],
                batched=len(requests),
                loras=loras,
                blend_method=self._blend_method(request),
            ))
            at += count
        return results

    def _load_references(self) -> None:
        if self.references is None:
            from bot.engine.ip_adapter import ImageReferences

            self.references = ImageReferences(self.spec, self._models_dir, self.device, self.dtype,
                                              [self.txt2img, self.img2img, self.inpaint], self.options.attention)

    def _blend_method(self, request: GenerateRequest) -> str:
        if not request.blend_images:
            return ""
        return "ip-adapter" if self.spec.takes_references else "latent interpolation"

    def _call(self, pipe, requests: list[GenerateRequest], common: dict, **options):
        """One pipeline call; with the IP-Adapter loaded, both slots' scales set and embeddings passed."""
        if self.references is not None:
            options.update(self.references.call_options(pipe, requests, common["guidance_scale"]))
        return pipe(**common, **options)

    def _generate(self, requests: list[GenerateRequest], common: dict):
        first = requests[0]
        if first.blend_images and not self.spec.takes_references:
            # No IP-Adapter: the pictures' latents averaged, decoded, then img2img at the request's strength.
            blends: dict[tuple, Image.Image] = {}
            for request in requests:
                key = tuple(map(image_hash, request.blend_images))
                if key not in blends:
                    blends[key] = self.blend_picture(request.blend_images, request.width, request.height)
            images = [blends[tuple(map(image_hash, request.blend_images))] for request in requests
                      for _ in request.seeds]
            if self.family.img2img_needs_size:
                common.update(width=first.width, height=first.height)
            return self._call(self.img2img, requests, common, image=images, strength=first.strength)
        if first.init_image is not None:
            # One copy of each init image per seed, so every image gets its own VAE sample and noise.
            images = [request.init_image.convert("RGB") for request in requests for _ in request.seeds]
            if first.mask_image is not None:  # every inpainting pipeline otherwise resizes to its own default
                masks = [request.mask_image.convert("L") for request in requests for _ in request.seeds]
                return self._call(self.inpaint, requests, common, image=images, mask_image=masks,
                                  strength=first.strength, width=first.init_image.width,
                                  height=first.init_image.height)
            if self.family.img2img_needs_size:
                common.update(width=first.init_image.width, height=first.init_image.height)
            return self._call(self.img2img, requests, common, image=images, strength=first.strength)
        width, height = first.width, first.height
        if any(request.shared_noise > 0 for request in requests):
            # The noise the pipeline would draw (one generator per image), each request's own --chaos applied.
            generators, parts, at = common["generator"], [], 0
            for request in requests:
                count = len(request.seeds)
                parts.append(self._shared_latents(generators[at:at + count], width, height, request.shared_noise))
                at += count
            common["latents"] = torch.cat(parts)
        return self._call(self.txt2img, requests, common, width=width, height=height)

    @torch.no_grad()
    def blend_picture(self, pictures: tuple[Image.Image, ...], width: int, height: int) -> Image.Image:
        """/blend without an IP-Adapter: each picture resized and centre-cropped to width x height by the
        pipeline's own image processor, VAE-encoded (the latent distribution's mean: deterministic), put in
        the model's latent space (the VAE's shift and scaling factors), averaged with equal weights, and
        decoded back into one picture, which img2img then denoises."""
        pipe = self.txt2img
        vae, processor = pipe.vae, pipe.image_processor
        device = pipe._execution_device
        upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        if upcast:  # SDXL's VAE overflows in float16 (its pipelines upcast it the same way)
            vae.to(torch.float32)
        try:
            pixels = processor.preprocess([picture.convert("RGB") for picture in pictures], height=height,
                                          width=width, resize_mode="crop").to(device, vae.dtype)
            scale, shift = vae.config.scaling_factor, getattr(vae.config, "shift_factor", None) or 0.0
            latents = (vae.encode(pixels).latent_dist.mean - shift) * scale
            mean = latents.mean(dim=0, keepdim=True)
            decoded = vae.decode(mean / scale + shift, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)
        return processor.postprocess(decoded.float(), output_type="pil")[0]

    @staticmethod
    def _kept_pixels_back(requests: list[GenerateRequest], images: list) -> list:
        """Inpainting keeps the unmasked area only approximately (it goes through the VAE): paste the source's
        pixels back where the mask is black, so what was kept is exactly what was there."""
        sources = [(request.init_image.convert("RGB"), request.mask_image.convert("L").point(
            lambda value: 255 if value == 0 else 0)) for request in requests for _ in request.seeds]
        return [Image.composite(source, image, keep) for (source, keep), image in zip(sources, images)]

    def _shared_latents(self, generators: list, width: int, height: int, share: float) -> torch.Tensor:
        """The noise the pipeline would draw, with `share` of every image's taken from the first image's:
        the images start closer together (a lower --chaos). Variance stays 1."""
        from diffusers.utils.torch_utils import randn_tensor

        pipe = self.txt2img
        channels = pipe.vae.config.latent_channels
        shape = (len(generators), channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        noise = randn_tensor(shape, generator=generators, device=torch.device(self.device), dtype=self.dtype)
        if share > 0:
            mixed = noise * (1 - share) ** 0.5 + noise[:1] * share ** 0.5
            mixed[0] = noise[0]
            noise = mixed
        if self.family.packed_latents:  # the pipeline takes its latents packed, as it draws them
            noise = type(pipe)._pack_latents(noise, len(generators), channels, *shape[2:])
        return noise

    def _prompt_options(self, requests: list[GenerateRequest]) -> dict:
        """The call's negative prompts and text length, as this family takes them."""
        family, options = self.family, {}
        negatives = [request.negative_prompt for request in requests for _ in request.seeds]
        if family.negative_prompt is NegativePrompt.CFG:
            options["negative_prompt"] = negatives
        elif family.true_cfg(requests[0].negative_prompt):  # the batch key keeps these batches uniform
            options.update(negative_prompt=negatives, true_cfg_scale=TRUE_CFG_SCALE)
        if family.takes_sequence_length:  # T5 pads every prompt to this: the entry's limit, no longer
            options["max_sequence_length"] = self.spec.max_prompt_tokens
        return options

    def _convolutions(self) -> list[torch.nn.Conv2d]:
        # txt2img and img2img share these modules (from_pipe), so one switch covers both.
        return [m for part in (self.denoiser, self.txt2img.vae) for m in part.modules()
                if isinstance(m, torch.nn.Conv2d)]

    def _check_prompt_length(self, text: str, what: str) -> None:
        # The pipeline would silently cut the prompt at the text encoder's limit; tell the user instead.
        limit = self.spec.max_prompt_tokens
        if text and (tokens := self.prompt_tokens(text)) > limit:
            raise EngineError(f"the {what} is {tokens} tokens long; model {self.spec.name} takes at most {limit}")
