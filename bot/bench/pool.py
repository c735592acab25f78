"""`dreamgrid bench pool`: images/s of the worker pool against a naive bot, on the same jobs.

The naive bot is what most open-source Discord bots do: one pipeline call per job, in the order the jobs
came. The pool serves the same jobs (4 users, each job a grid of 4 images) with its fair queue, cross-user
batching and batch-size tuner. Both run on one worker thread with the same torch threads, in this process,
on the default device, with a catalog model (`--model`) or the tiny random-weight model of a family
(`--family`, built into the models dir if missing). Before each size is measured the pool serves one warm-up
round of the same jobs, so its tuner has measured the batch sizes it tries, as in a bot that has been
running a while (the JSON also gives the warm-up round, `pool_first_round_images_per_s`); the naive bot
warms up with one job. The machine is noisy, so naive and pool run interleaved for `--rounds` rounds (new
prompts and seeds each round) and the ratio reported is the median of the rounds' ratios, with their min and
max."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time

from bot.engine import Catalog, GenerateRequest, ModelSpec, WorkerPool, load_catalog
from bot.engine.families import family_of
from bot.settings import Settings

IMAGES_PER_JOB = 4
# bot/engine/tiny.py's family -> (catalog pipeline, guidance), as the tiny models' catalog entries have them.
# FLUX's tiny model is FLUX.1-dev-shaped, so it takes the distilled guidance; Z-Image Turbo runs without.
TINY_ENTRIES = {"sd": ("stable-diffusion", 5.0), "sdxl": ("stable-diffusion-xl", 5.0), "flux": ("flux", 3.5),
                "sd3": ("stable-diffusion-3", 5.0), "zimage": ("z-image", 0.0)}


def jobs(model: str, count: int, users: int, size: int, steps: int, guidance: float,
         round_: int) -> list[tuple[str, GenerateRequest]]:
    """`count` jobs from `users` users, interleaved as they arrive on a busy server; every prompt differs."""
    out = []
    for n in range(count):
        user = f"user{n % users}"
        seed = 1000 * round_ + n * IMAGES_PER_JOB
        out.append((user, GenerateRequest(model=model, prompt=f"{user}'s picture number {n}, a lighthouse at dusk",
                                          seeds=tuple(range(seed, seed + IMAGES_PER_JOB)), width=size,
                                          height=size, steps=steps, guidance=guidance)))
    return out


def naive(model, batch: list[tuple[str, GenerateRequest]], threads: int) -> float:
    """Seconds to run every job one pipeline call at a time, in order, on one thread (like the pool's)."""
    import torch

    seconds: list[float] = []

    def work():
        torch.set_num_threads(threads)
        started = time.perf_counter()
        for _, request in batch:
            model.run(request, lambda done, total: None)
        seconds.append(time.perf_counter() - started)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return seconds[0]


async def pooled(pool: WorkerPool, batch: list[tuple[str, GenerateRequest]]) -> tuple[float, list[int]]:
    """Seconds for the pool to serve every job submitted at once; and how many jobs each call took."""
    started = time.perf_counter()
    tickets = [pool.submit(request, owner=user) for user, request in batch]
    results = await asyncio.gather(*(ticket.result() for ticket in tickets))
    return time.perf_counter() - started, [result.batched for result in results]


def tiny_catalog(settings: Settings, family: str) -> Catalog:
    """A one-entry catalog for the tiny model of `family`, built into the models dir first if it is missing."""
    from bot.engine.tiny import create_tiny_model

    source = f"tiny-{family}"
    create_tiny_model(settings.models_dir / source, family=family)
    pipeline, guidance = TINY_ENTRIES[family]
    # The family's own prompt-length limit, as a catalog entry without max_prompt_tokens gets it.
    spec = ModelSpec(name=source, source=source, pipeline=pipeline, width=64, height=64, steps=4, guidance=guidance,
                     max_prompt_tokens=family_of(pipeline).max_prompt_tokens,
                     description=f"tiny {family} model, random weights")
    return Catalog(default=spec.name, models={spec.name: spec})


async def measure(settings: Settings, catalog: Catalog, spec: ModelSpec, configs: list[tuple[int, int]], count: int,
                  users: int, max_batch_jobs: int, rounds: int = 3) -> dict:
    from bot.engine.pipelines import LoadedModel

    device = settings.devices[0]
    threads = settings.torch_threads
    guidance = spec.guidance  # --configs sets size and steps; guidance stays the model's
    naive_model = await asyncio.to_thread(LoadedModel, spec, settings.models_dir, device)
    results = []
    images = count * IMAGES_PER_JOB
    for config, (size, steps) in enumerate(configs):
        naive(naive_model, jobs(spec.name, 1, 1, size, steps, guidance, 99), threads)  # warm-up
        pool = WorkerPool(catalog, settings.models_dir, devices=[device], torch_threads=threads,
                          max_batch_jobs=max_batch_jobs, max_running_per_owner=settings.max_running_per_user)
        await pool.start(preload=[spec.name])
        naive_rates, pool_rates, batched = [], [], []
        try:
            first_seconds, _ = await pooled(pool, jobs(spec.name, count, users, size, steps, guidance, 50 + config))
            for round_ in range(rounds):  # interleaved: both sides see the same noise
                key = 100 * config + round_
                naive_rates.append(images / naive(naive_model, jobs(spec.name, count, users, size, steps, guidance,
                                                                    key), threads))
                pool_seconds, calls = await pooled(pool, jobs(spec.name, count, users, size, steps, guidance, key))
                pool_rates.append(images / pool_seconds)
                batched += calls
            tuned = pool.batching()[device]
        finally:
            await pool.close()
        ratios = [p / n for p, n in zip(pool_rates, naive_rates)]
        results.append({
            "size": size, "steps": steps, "jobs": count, "users": users, "rounds": rounds,
            "naive_images_per_s": round(statistics.median(naive_rates), 3),
            "pool_images_per_s": round(statistics.median(pool_rates), 3),
            "ratio": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3),
            "pool_first_round_images_per_s": round(images / first_seconds, 3),
            "jobs_per_call": sorted(set(batched)),
            "measured_images_per_s": {str(jobs): rate for shape, rates in tuned.items() for jobs, rate in rates.items()},
        })
        print(f"pool bench: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    return {"bench": "pool", "model": spec.name, "family": spec.pipeline, "device": device,
            "max_batch_jobs": max_batch_jobs, "images_per_job": IMAGES_PER_JOB,
            "machine": {"cores": os.cpu_count(), "torch_threads": threads, "python": platform.python_version()},
            "results": results}


def _config(text: str) -> tuple[int, int]:
    size, _, steps = text.partition("/")
    return int(size), int(steps)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench pool", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", type=_config, default=[(64, 4), (64, 20), (128, 20), (256, 4)],
                        metavar="SIZE/STEPS", help="image sizes and steps to measure (default: 64/4 64/20 128/20 256/4)")
    parser.add_argument("--jobs", type=int, default=16, help="concurrent jobs (grids of 4) per size")
    parser.add_argument("--users", type=int, default=4, help="users the jobs come from")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help="a catalog model (default: the default model)")
    which.add_argument("--family", choices=list(TINY_ENTRIES), default=None,
                       help="the tiny random-weight model of this family instead (built into MODELS_DIR if missing)")
    parser.add_argument("--max-batch-jobs", type=int, default=None, help="default: MAX_BATCH_JOBS")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved naive/pool rounds per size (median ratio)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings.load()
    if args.family:
        catalog = tiny_catalog(settings, args.family)
        spec = catalog.get(catalog.default)
    else:
        catalog = load_catalog(settings.catalog_path)
        spec = catalog.get(args.model or settings.default_model or catalog.default)
    result = asyncio.run(measure(settings, catalog, spec, args.configs, args.jobs, args.users,
                                 args.max_batch_jobs or settings.max_batch_jobs, args.rounds))
    if not args.json:
        for row in result["results"]:
            print(f"{row['size']} px / {row['steps']} steps: naive {row['naive_images_per_s']} images/s, "
                  f"pool {row['pool_images_per_s']} images/s ({row['ratio']}x; jobs per call {row['jobs_per_call']})")
    print(json.dumps(result))
    return 0
