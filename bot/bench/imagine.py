"""`dreamgrid bench imagine`: one /imagine at a time over the local Discord, with the real bot, pool and
SQLite file. Measures what a person waits for: INTERACTION_CREATE to the defer callback, and to the grid."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.settings import Settings


def machine(settings: Settings) -> dict:
    return {"cores": os.cpu_count(), "devices": list(settings.devices), "torch_threads": settings.torch_threads,
            "python": platform.python_version()}


def summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
            "max_ms": round(ordered[-1], 1)}


async def measure(runs: int, settings: Settings) -> dict:
    acks, grids = [], []
    async with LocalDiscord() as discord:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = settings_for(discord, settings, data_dir=Path(data_dir), daily_images=4 * (runs + 1))
            async with local_bot(discord, settings) as app:
                user = discord.add_user("bench")
                for run in range(runs + 1):  # the first run warms up and is not counted
                    started = time.monotonic()
                    ix = await discord.slash(user, "imagine", {"prompt": f"a red circle, run {run}"})
                    await ix.wait_original(shows_result, timeout=300)
                    if run:
                        acks.append(ix.ack_seconds * 1000)
                        grids.append((time.monotonic() - started) * 1000)
            if discord.spec_errors:
                raise RuntimeError(f"requests broke Discord's spec: {discord.spec_errors}")
    return {"bench": "imagine", "runs": runs, "model": app.jobs.policy.default_model,
            "machine": machine(settings), "defer": summary(acks), "grid": summary(grids)}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench imagine")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(measure(args.runs, Settings.load()))
    if not args.json:
        print(f"/imagine x{args.runs}: defer p50 {result['defer']['p50_ms']} ms, "
              f"grid p50 {result['grid']['p50_ms']} ms")
    print(json.dumps(result))
    return 0
