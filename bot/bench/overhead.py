"""`dreamgrid bench overhead`: what the bot adds around the pipeline, per job, over the local Discord.

One /imagine at a time: the time from sending INTERACTION_CREATE to the grid being in the job's message,
minus the seconds the pipeline call itself took (the pool records them). What is left is the bot: the
acknowledgement, SQLite, queueing, PNG encoding and saving, the grid, and the upload."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bot.bench.imagine import machine
from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.settings import Settings


async def measure(settings: Settings, runs: int) -> dict:
    overhead, pipeline = [], []
    async with LocalDiscord() as discord:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = settings_for(discord, settings, data_dir=Path(data_dir), daily_images=4 * (runs + 1),
                                    preview_interval=0.0, progress_interval=1.5)
            async with local_bot(discord, settings) as app:
                user = discord.add_user("bench")
                for run in range(runs + 1):  # the first run warms up and is not counted
                    calls = len(app.pool.call_seconds)
                    started = time.monotonic()
                    ix = await discord.slash(user, "imagine", {"prompt": f"a lighthouse, run {run}"})
                    await ix.wait_original(shows_result, timeout=300)
                    total = time.monotonic() - started
                    if run and len(app.pool.call_seconds) == calls + 1:
                        seconds = app.pool.call_seconds[-1]
                        pipeline.append(seconds * 1000)
                        overhead.append((total - seconds) * 1000)
            if discord.spec_errors:
                raise RuntimeError(f"requests broke Discord's spec: {discord.spec_errors}")
    return {"bench": "overhead", "runs": len(overhead), "model": app.jobs.policy.default_model,
            "machine": machine(settings), "median_ms": round(statistics.median(overhead), 1),
            "min_ms": round(min(overhead), 1), "max_ms": round(max(overhead), 1), "pipeline_median_ms": round(statistics.median(pipeline), 1)}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(measure(Settings.load(), args.runs))
    if not args.json:
        print(f"overhead per job: median {result['median_ms']} ms (pipeline {result['pipeline_median_ms']} ms)")
    print(json.dumps(result))
    return 0
