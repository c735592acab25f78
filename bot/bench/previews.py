"""`dreamgrid bench previews`: what live previews cost: /imagine's time to the grid with previews on vs off.

The real bot over the local Discord, one job at a time, first with PREVIEW_INTERVAL=0 (off), then with
previews every `--interval` seconds (far more often than the bot's default, to make the cost visible).
A preview is a linear latent-to-RGB projection on the worker thread, PNG-encoded off the loop and posted
with edit_original_response; the figure that matters is `ratio` (on / off, median time to the grid)."""

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
from bot.discord_ui.job_message import PREVIEW_NAME
from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.settings import Settings



async def run(settings: Settings, interval: float, runs: int, steps: int) -> tuple[list[float], list[int]]:
    """Milliseconds from /imagine to the grid, per run (after one warm-up run), and previews shown per run."""
    times, previews = [], []
    async with LocalDiscord() as discord:
        with tempfile.TemporaryDirectory() as data_dir:
            bot_settings = settings_for(discord, settings, data_dir=Path(data_dir), daily_images=4 * (runs + 1),
                                        preview_interval=interval)
            async with local_bot(discord, bot_settings):
                user = discord.add_user("bench")
                for run_ in range(runs + 1):
                    started = time.monotonic()
                    ix = await discord.slash(user, "imagine", {"prompt": f"a lighthouse, run {run_} --steps {steps}"})
                    await ix.wait_original(shows_result, timeout=600)
                    if run_:
                        times.append((time.monotonic() - started) * 1000)
                        previews.append(len({a.id for version in ix.original.history
                                             for a in version.attachments if a.filename == PREVIEW_NAME}))
            if discord.spec_errors:
                raise RuntimeError(f"requests broke Discord's spec: {discord.spec_errors}")
    return times, previews


async def measure(settings: Settings, runs: int, steps: int, interval: float) -> dict:
    off, _ = await run(settings, 0.0, runs, steps)
    on, shown = await run(settings, interval, runs, steps)
    off_ms, on_ms = statistics.median(off), statistics.median(on)
    return {"bench": "previews", "runs": runs, "steps": steps, "preview_interval_s": interval,
            "model": settings.default_model or "catalog default", "machine": machine(settings),
            "off_median_ms": round(off_ms, 1), "on_median_ms": round(on_ms, 1),
            "previews_per_job": round(statistics.mean(shown), 1), "ratio": round(on_ms / off_ms, 3)}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench previews", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="jobs timed each way (after one warm-up)")
    parser.add_argument("--steps", type=int, default=40, help="denoising steps per job")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between previews when on")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(measure(Settings.load(), args.runs, args.steps, args.interval))
    if not args.json:
        print(f"previews every {args.interval} s: {result['on_median_ms']} ms to the grid vs "
              f"{result['off_median_ms']} ms off ({result['ratio']}x, {result['previews_per_job']} previews a job)")
    print(json.dumps(result))
    return 0
