"""`dreamgrid bench previews`: what live previews cost: /imagine's time to the grid with previews on vs off.

The real bot over the local Discord, one job at a time, first with PREVIEW_INTERVAL=0 (off), then with
previews every `--interval` seconds (far more often than the bot's default, to make the cost visible).
The default model runs at `--size` (128 px by default) so a job lasts long enough for previews to show.
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
from bot.engine import ModelSpec, load_catalog
from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.service.prompt import MAX_STEPS
from bot.settings import Settings


def default_spec(settings: Settings) -> ModelSpec:
    catalog = load_catalog(settings.catalog_path)
    return catalog.get(settings.default_model or catalog.default)


def models_at_size(settings: Settings, spec: ModelSpec, size: int, folder: Path) -> Path:
    """A models dir holding a one-model catalog: `spec` at `size` x `size` (a bigger picture, a longer
    job), its files linked from the real models dir."""
    models = folder / "models"
    models.mkdir()
    if (settings.models_dir / spec.source).is_dir():
        (models / spec.source).parent.mkdir(parents=True, exist_ok=True)
        (models / spec.source).symlink_to((settings.models_dir / spec.source).resolve(), target_is_directory=True)
    (models / "catalog.toml").write_text(
        f'default = "{spec.name}"\n\n[models.{spec.name}]\nsource = {json.dumps(spec.source)}\n'
        f'pipeline = {json.dumps(spec.pipeline)}\nwidth = {size}\nheight = {size}\n'
        f'steps = {spec.steps}\nguidance = {spec.guidance}\n')
    return models


async def run(settings: Settings, spec: ModelSpec, interval: float, runs: int, steps: int,
              size: int) -> tuple[list[float], list[int]]:
    """Milliseconds from /imagine to the grid, per run (after one warm-up run), and previews shown per run."""
    times, previews = [], []
    async with LocalDiscord() as discord:
        with tempfile.TemporaryDirectory() as data_dir:
            models = models_at_size(settings, spec, size, Path(data_dir))
            bot_settings = settings_for(discord, settings, data_dir=Path(data_dir), daily_images=4 * (runs + 1),
                                        preview_interval=interval, models_dir=models, default_model="")
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


async def measure(settings: Settings, runs: int, steps: int, interval: float, size: int) -> dict:
    spec = default_spec(settings)
    off, _ = await run(settings, spec, 0.0, runs, steps, size)
    on, shown = await run(settings, spec, interval, runs, steps, size)
    off_ms, on_ms = statistics.median(off), statistics.median(on)
    return {"bench": "previews", "runs": runs, "steps": steps, "size": size, "preview_interval_s": interval,
            "model": spec.name, "machine": machine(settings),
            "off_median_ms": round(off_ms, 1), "on_median_ms": round(on_ms, 1),
            "previews_per_job": round(statistics.mean(shown), 1), "ratio": round(on_ms / off_ms, 3)}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench previews", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="jobs timed each way (after one warm-up)")
    parser.add_argument("--steps", type=int, default=40, help=f"denoising steps per job (1-{MAX_STEPS})")
    parser.add_argument("--size", type=int, default=128, help="picture side in pixels, a multiple of 8 (default 128)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between previews when on")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if not 1 <= args.steps <= MAX_STEPS:  # /imagine would refuse the job and the bench wait for nothing
        parser.error(f"--steps must be 1-{MAX_STEPS} (what /imagine accepts), got {args.steps}")
    if args.size <= 0 or args.size % 8:
        parser.error(f"--size must be a positive multiple of 8, got {args.size}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(measure(Settings.load(), args.runs, args.steps, args.interval, args.size))
    if not args.json:
        print(f"previews every {args.interval} s: {result['on_median_ms']} ms to the grid vs "
              f"{result['off_median_ms']} ms off ({result['ratio']}x, {result['previews_per_job']} previews a job)")
    print(json.dumps(result))
    return 0
