"""`dreamgrid bench ray`: what going through Ray Serve costs, against the in-process pool on one machine.

A local Ray cluster in this process (all cores, no dashboard) runs the Serve application twice, with 1 and
with 2 replicas (one torch thread each), beside an in-process WorkerPool on one device (TORCH_THREADS);
the same jobs (grids of 4 at 64 px by default, the default model) go to each, through the very RemotePool
the bot uses with ENGINE=ray. Two figures, interleaved for `--rounds` rounds (each ratio is the median of
the rounds', with min and max):
- jobs/s: `--jobs` jobs from 4 users submitted at once, until the last result;
- per-job overhead: one job at a time, its wall time (submit to result) minus the pipeline seconds the call
  itself reported, median of `--single` jobs; `extra_ms` is Ray's minus the local pool's (goal: <= 50 ms).
On 2 cores expect no gain in jobs/s: the replicas share the cores the local pool has."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

from bot.bench.imagine import machine
from bot.bench.pool import IMAGES_PER_JOB
from bot.engine import GenerateRequest, WorkerPool, load_catalog
from bot.settings import Settings


def job(model: str, size: int, steps: int, guidance: float, n: int, round_: int) -> GenerateRequest:
    seed = 10_000 * round_ + IMAGES_PER_JOB * n
    return GenerateRequest(model=model, prompt=f"a red circle on a blue background, job {n}",
                           seeds=tuple(range(seed, seed + IMAGES_PER_JOB)), width=size, height=size, steps=steps,
                           guidance=guidance)


async def throughput(pool, requests: list[GenerateRequest]) -> float:
    started = time.perf_counter()
    tickets = [pool.submit(request, owner=f"user{n % 4}") for n, request in enumerate(requests)]
    await asyncio.gather(*(ticket.result() for ticket in tickets))
    return len(requests) / (time.perf_counter() - started)


async def overhead(pool, requests: list[GenerateRequest]) -> float:
    """Median ms per job around its pipeline call, one job at a time."""
    extra = []
    for request in requests:
        started = time.perf_counter()
        result = await pool.submit(request, owner="solo").result()
        extra.append((time.perf_counter() - started - result.seconds) * 1000)
    return statistics.median(extra)


def _figures(values: list[float], local: list[float]) -> dict:
    ratios = [value / base for value, base in zip(values, local)]
    return {"median": round(statistics.median(values), 3), "ratio": round(statistics.median(ratios), 3),
            "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)}


async def measure(settings: Settings, model: str, size: int, steps: int, jobs: int, single: int, rounds: int,
                  urls: dict[str, str]) -> dict:
    from bot.engine.remote import RemotePool

    catalog = load_catalog(settings.catalog_path)
    spec = catalog.get(model)
    local = WorkerPool(catalog, settings.models_dir, devices=[settings.devices[0]], torch_threads=settings.torch_threads,
                       max_batch_jobs=settings.max_batch_jobs)
    pools = {"local": local, **{name: RemotePool(catalog, url, max_batch_jobs=settings.max_batch_jobs)
                                for name, url in urls.items()}}
    rates = {name: [] for name in pools}
    extras = {name: [] for name in pools}
    for pool in pools.values():
        await pool.start(preload=[model])
    try:
        for name, pool in pools.items():  # warm-up: the tuner's first sizes, the first call's imports
            await throughput(pool, [job(model, size, steps, spec.guidance, n, 99) for n in range(jobs)])
        for round_ in range(rounds):
            for name, pool in pools.items():
                rates[name].append(await throughput(pool, [job(model, size, steps, spec.guidance, n, round_)
                                                            for n in range(jobs)]))
                extras[name].append(await overhead(pool, [job(model, size, steps, spec.guidance, 100 + n, round_)
                                                          for n in range(single)]))
            print(f"ray bench round {round_ + 1}: jobs/s {({n: round(r[-1], 2) for n, r in rates.items()})}, "
                  f"overhead ms {({n: round(e[-1], 1) for n, e in extras.items()})}", file=sys.stderr, flush=True)
        retries = {name: pool.retries for name, pool in pools.items() if name != "local"}
    finally:
        for pool in pools.values():
            await pool.close()
    results = {"local": {"jobs_per_s": round(statistics.median(rates["local"]), 3),
                         "overhead_ms": round(statistics.median(extras["local"]), 1)}}
    for name in urls:
        extra = [ray - base for ray, base in zip(extras[name], extras["local"])]
        results[name] = {"jobs_per_s": _figures(rates[name], rates["local"]),
                         "overhead_ms": round(statistics.median(extras[name]), 1),
                         "extra_ms": round(statistics.median(extra), 1), "extra_ms_min": round(min(extra), 1),
                         "extra_ms_max": round(max(extra), 1), "retries": retries[name]}
    return {"bench": "ray", "model": model, "size": size, "steps": steps, "jobs": jobs, "single_jobs": single,
            "rounds": rounds, "images_per_job": IMAGES_PER_JOB, "machine": machine(settings), "results": results}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench ray", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a catalog model (default: the default model)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=8, help="jobs submitted at once, for jobs/s")
    parser.add_argument("--single", type=int, default=5, help="jobs one at a time, for the overhead")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    settings = Settings.load()
    model = args.model or settings.default_model or load_catalog(settings.catalog_path).default

    import ray
    from ray import serve

    from bot.playground import free_port
    from bot.serve.app import deploy

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        urls = {f"ray_{n}_replica{'s' if n > 1 else ''}": deploy(
            settings.models_dir.resolve(), port=port, replicas=n, num_cpus=0.5, torch_threads=1,
            route_prefix=f"/bench{n}", name=f"bench{n}") for n in (1, 2)}
        result = asyncio.run(measure(settings, model, args.size, args.steps, args.jobs, args.single, args.rounds,
                                     urls))
    finally:
        serve.shutdown()
        ray.shutdown()
    if not args.json:
        for name, row in result["results"].items():
            if name != "local":
                print(f"{name}: {row['jobs_per_s']['median']} jobs/s ({row['jobs_per_s']['ratio']}x the local "
                      f"pool), {row['extra_ms']} ms more per job than the local pool")
    print(json.dumps(result))
    return 0
