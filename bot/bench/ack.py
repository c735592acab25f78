"""`dreamgrid bench ack`: how fast /imagine is acknowledged while the worker is busy and jobs are queued.

Discord drops an interaction that is not acknowledged within 3 s; a bot whose event loop waits on the GPU,
or on a lock the worker holds, misses that under load. This fills the queue first, then measures the time
from INTERACTION_CREATE to the defer callback of further /imagine commands, over the local Discord."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path

from bot.bench.imagine import machine, summary
from bot.local import local_bot, settings_for
from bot.localdiscord import LocalDiscord
from bot.settings import Settings

USERS = 10  # the queue is filled by several users, as on a real server (per-user limits apply)


async def measure(queued: int, probes: int, settings: Settings) -> dict:
    async with LocalDiscord() as discord:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = settings_for(discord, settings, data_dir=Path(data_dir), daily_images=10_000)
            async with local_bot(discord, settings) as app:
                users = [discord.add_user(f"user{n}") for n in range(USERS)]
                filling = [await discord.slash(users[n % USERS], "imagine", {"prompt": f"filler {n}"})
                           for n in range(queued)]
                await asyncio.gather(*(ix.wait_acked(timeout=30) for ix in filling))
                waiting = app.pool.queued
                acks = []
                for n in range(probes):  # one at a time, while the queue drains
                    ix = await discord.slash(users[n % USERS], "info", {}) if n % 2 else \
                        await discord.slash(users[n % USERS], "imagine", {"prompt": f"probe {n}"})
                    await ix.wait_acked(timeout=30)
                    acks.append(ix.ack_seconds * 1000)
                    await asyncio.sleep(0.05)
                for job in await app.store.active_jobs():
                    app.jobs.cancel(job.id)
            if discord.spec_errors:
                raise RuntimeError(f"requests broke Discord's spec: {discord.spec_errors}")
    return {"bench": "ack", "queued": waiting, "probes": probes, "model": app.jobs.policy.default_model,
            "machine": machine(settings), **summary(acks)}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench ack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=50, help="jobs queued before measuring")
    parser.add_argument("--probes", type=int, default=40, help="commands whose acknowledgement is timed")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(measure(args.queued, args.probes, Settings.load()))
    if not args.json:
        print(f"ack with {result['queued']} queued: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    print(json.dumps(result))
    return 0
