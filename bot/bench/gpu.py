"""`dreamgrid bench gpu`: images/s on a GPU, a plain diffusers bot against Dreamgrid's worker pool.

The model is architecture-only (bot/bench/architectures): the real SD-Turbo / SD 1.5 / SDXL / FLUX.1-schnell
/ SD 3.5 medium layers with random weights, built once into --cache-dir, so no download is needed and the
speed is the real model's.

The baseline is what a naive bot runs: the family's pipeline class (StableDiffusionPipeline,
FluxPipeline...) .from_pretrained(folder, torch_dtype=fp16, or bf16 for FLUX and SD3).to(device), one call
per job in the order the jobs came, 4 images per call, no negative prompt (FLUX and SD3 with the arch's T5
length). The pool serves the same jobs (submitted at once by several users) with its device options, fair
queue, cross-user batching and batch-size tuner. Both sides are warmed up first and the warm-up is not
timed: the baseline runs one job, the pool serves one whole round of the same jobs (first CUDA calls,
torch.compile, and the tuner's exploratory batch sizes all happen there; the JSON still gives that round as
`pool_first_round_images_per_s`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

from bot.bench.architectures import ARCHS, Arch, get_arch, parameter_counts
from bot.bench.pool import IMAGES_PER_JOB, jobs, pooled
from bot.engine import Catalog, DeviceOptions, GenerateRequest, ModelSpec, WorkerPool
from bot.engine.families import family_of
from bot.settings import Settings

DEFAULT_CACHE_DIR = Path(".bench-models")  # git-ignored; a built model folder is reused
# Off a GPU, random weights are initialised in float32 on the CPU: 4 bytes a parameter and minutes a
# billion. SD-Turbo and SD 1.5 (1.1-1.3 B) are still practical; SDXL, FLUX and SD3 are not.
CPU_PARAMETER_LIMIT = 2_000_000_000
NO_CUDA = ("no CUDA device here: `bench gpu` measures a GPU (torch sees none: no NVIDIA GPU, or a CPU-only "
           "torch build). Run it on a GPU machine with a CUDA build of torch; to check it runs on a CPU: "
           "--device cpu --arch tiny --size 64")


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sd-turbo", choices=list(ARCHS),
                        help="architecture-only model (default sd-turbo)")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the arch's own)")
    # SD-Turbo is usually run with 1 step; 4 (its multi-step setting) makes the UNet, not the text encoder
    # and VAE, dominate the time, as it does for every other model.
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image (default 4)")
    parser.add_argument("--jobs", type=int, default=16, help="concurrent jobs, each a grid of 4 images (default 16)")
    parser.add_argument("--users", type=int, default=4, help="users the jobs come from (default 4)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help=f"where the random-weight models are built and kept (default {DEFAULT_CACHE_DIR}/)")
    parser.add_argument("--max-batch-jobs", type=int, default=None, help="default: MAX_BATCH_JOBS")
    parser.add_argument("--channels-last", action="store_true", help="pool: UNet in channels-last (CHANNELS_LAST)")
    parser.add_argument("--compile", action="store_true",
                        help="pool: torch.compile the UNet or transformer (COMPILE_UNET)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = get_arch(args.arch).size

    problem = _problem(args)
    if problem:
        print(f"dreamgrid bench gpu: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings.load()
    result = asyncio.run(measure(args, settings))
    if not args.json:
        print(f"{result['arch']} at {result['size']} px, {result['steps']} steps, {result['jobs']} jobs of "
              f"{IMAGES_PER_JOB} on {result['machine']['device_name']}: baseline "
              f"{result['baseline_images_per_s']} images/s, pool {result['pool_images_per_s']} images/s "
              f"({result['ratio']}x)")
    print(json.dumps(result))
    return 0


def _problem(args: argparse.Namespace) -> str | None:
    """What makes this run impossible, said so that the reader knows what to change; None if nothing."""
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return NO_CUDA
    arch = get_arch(args.arch)
    family = family_of(arch.pipeline)
    if args.size <= 0 or args.size % family.size_multiple:
        return (f"--size must be a positive multiple of {family.size_multiple} for {arch.name} (the size rule of "
                f"{family.label} models), got {args.size}")
    if args.steps < 1 or args.jobs < 1 or args.users < 1:
        return "--steps, --jobs and --users must each be at least 1"
    if torch.device(args.device).type != "cuda":
        parameters = sum(parameter_counts(arch.name).values())
        if parameters > CPU_PARAMETER_LIMIT:
            return (f"--arch {arch.name} has {parameters / 1e9:.1f} B parameters: building them at random on "
                    f"{args.device} would take {parameters * 4 / 2**30:.0f} GB of memory and a long time. Run it "
                    "on a GPU (--device cuda); on a CPU use --arch tiny or tiny-flux")
    return None


async def measure(args: argparse.Namespace, settings: Settings) -> dict:
    import diffusers
    import torch

    from bot.bench.architectures import build_random_model
    from bot.engine.pipelines import dtype_for

    arch, device = get_arch(args.arch), args.device
    family = family_of(arch.pipeline)
    options = DeviceOptions(dtype=settings.torch_dtype, attention=settings.attention,
                            channels_last=args.channels_last or settings.channels_last,
                            compile_unet=args.compile or settings.compile_unet, vae_tiling=settings.vae_tiling)
    dtype = dtype_for(device, options.dtype, family)
    max_batch_jobs = args.max_batch_jobs or settings.max_batch_jobs
    folder = await asyncio.to_thread(build_random_model, arch.name, args.cache_dir, dtype, 0, device)
    spec = ModelSpec(name=arch.name, source=folder.name, pipeline=arch.pipeline, width=args.size,
                     height=args.size, steps=args.steps, guidance=arch.guidance,
                     max_prompt_tokens=arch.prompt_tokens,
                     description=f"{arch.upstream or arch.name} architecture, random weights")
    catalog = Catalog(default=spec.name, models={spec.name: spec})
    on_cuda = torch.device(device).type == "cuda"
    threads = settings.torch_threads

    def round_of(number: int) -> list[tuple[str, GenerateRequest]]:
        return jobs(spec.name, args.jobs, args.users, args.size, args.steps, spec.guidance, number)

    baseline_seconds, baseline_peak = await asyncio.to_thread(_baseline, folder, arch, dtype, device, round_of(0),
                                                              threads)

    pool = WorkerPool(catalog, args.cache_dir, devices=[device], torch_threads=threads,
                      max_batch_jobs=max_batch_jobs, max_running_per_owner=settings.max_running_per_user,
                      device_options=options)
    await pool.start(preload=[spec.name])
    try:
        # Warm-up round (not the timed one): first CUDA calls, compilation, the tuner's exploration.
        first_seconds, _ = await pooled(pool, round_of(50))
        _reset_peak(device)
        _synchronize(device)
        pool_seconds, batched = await pooled(pool, round_of(0))
        pool_peak = _peak_mb(device)
        tuned = pool.batching()[device]
    finally:
        await pool.close()

    images = args.jobs * IMAGES_PER_JOB
    baseline_rate, pool_rate = images / baseline_seconds, images / pool_seconds
    result = {
        "bench": "gpu",
        "machine": {"cores": os.cpu_count(), "device": device, "device_name": _device_name(device),
                    "torch": torch.__version__, "diffusers": diffusers.__version__,
                    "python": platform.python_version(), "torch_threads": threads},
        "arch": arch.name, "upstream": arch.upstream, "family": arch.pipeline,
        "parameters": parameter_counts(arch.name),
        "size": args.size, "steps": args.steps, "arch_usual_steps": arch.steps, "guidance": arch.guidance,
        "dtype": str(dtype).removeprefix("torch."), "jobs": args.jobs, "users": args.users,
        "images_per_job": IMAGES_PER_JOB,
        "baseline_images_per_s": round(baseline_rate, 3), "pool_images_per_s": round(pool_rate, 3),
        "ratio": round(pool_rate / baseline_rate, 3),
        "pool_first_round_images_per_s": round(images / first_seconds, 3),
        "pool_options": {**dataclasses.asdict(options), "max_batch_jobs": max_batch_jobs,
                         "max_running_per_user": settings.max_running_per_user},
        "jobs_per_call": sorted(set(batched)),
        # images/s the pool's tuner measured per jobs-per-call, warm-up round included.
        "batching": {str(count): rate for rates in tuned.values() for count, rate in rates.items()},
        "warmup": "baseline: 1 job; pool: 1 untimed round of the same jobs (CUDA start-up, compile, tuner tries)",
        "model_folder": str(folder),
    }
    if on_cuda:
        result["peak_memory_mb"] = {"baseline": baseline_peak, "pool": pool_peak}
    return result


def _baseline(folder: Path, arch: Arch, dtype, device: str, batch: list[tuple[str, GenerateRequest]],
              threads: int) -> tuple[float, float | None]:
    """Seconds for a plain diffusers pipeline to run every job, one call each, in order; and its peak MB."""
    import diffusers
    import torch

    torch.set_num_threads(threads)
    family = family_of(arch.pipeline)
    pipeline_class = getattr(diffusers, family.pipeline_classes[0])
    pipe = pipeline_class.from_pretrained(folder, torch_dtype=dtype, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    # T5 pads every prompt to max_sequence_length: the same length as the pool's (its catalog entry's).
    extra = {"max_sequence_length": arch.prompt_tokens} if family.takes_sequence_length else {}

    def call(request: GenerateRequest) -> None:
        pipe(prompt=request.prompt, num_images_per_prompt=len(request.seeds), width=request.width,
             height=request.height, num_inference_steps=request.steps, guidance_scale=request.guidance,
             generator=[torch.Generator("cpu").manual_seed(seed) for seed in request.seeds], **extra)

    try:
        call(batch[0][1])  # warm-up: the first CUDA calls pick kernels and allocate
        _reset_peak(device)
        _synchronize(device)
        started = time.perf_counter()
        for _, request in batch:
            call(request)
        _synchronize(device)
        return time.perf_counter() - started, _peak_mb(device)
    finally:
        del pipe
        gc.collect()  # free the baseline's weights before the pool loads its own copy
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()


def _synchronize(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: str) -> float | None:
    import torch

    if torch.device(device).type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _device_name(device: str) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or device
