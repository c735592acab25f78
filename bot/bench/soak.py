"""`dreamgrid bench soak`: mixed traffic from many users for N minutes while Discord misbehaves at random,
then an account of every job: delivered, refunded, lost, or shown twice.

The bot runs as it does in production (worker pool, SQLite file, discord.py) against the local Discord,
whose fault switchboard is flipped every few seconds: uploads that fail with 500s, connections reset
mid-upload, 429s, requests held and then dropped, gateway drops. Members /imagine, click U, V, 🔄 and ❌ at
random. The promise under test: every accepted job ends delivered exactly once, or failed and refunded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.settings import Settings

UPLOADS = r"/(webhooks|channels)/.*"
JOB = re.compile(r"job #(\d+)")
PROMPTS = ("a red circle", "a blue square on green", "a lighthouse at dusk", "a fox --ar 2:1",
           "a cat --chaos 40", "a harbour --tile", "a bird --no trees", "a tower --seed 7")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


async def _faults(discord: LocalDiscord, rng: random.Random, stop: asyncio.Event, fired: list[str]) -> None:
    """Every few seconds, one thing goes wrong."""
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(2, 6))
        kind = rng.choice(["500", "reset", "429", "hold", "gateway", "none"])
        faults = discord.faults
        if kind == "500":
            faults.fail(rng.randint(1, 6), status=rng.choice([500, 502, 503]), path=UPLOADS, uploads_only=True)
        elif kind == "reset":
            faults.reset(1, path=UPLOADS, uploads_only=True)
        elif kind == "429":
            faults.fail(rng.randint(1, 3), status=429, retry_after=rng.uniform(0.1, 1.0))
        elif kind == "hold":
            held = faults.hold(path=UPLOADS, uploads_only=True)
            await asyncio.sleep(rng.uniform(0.5, 3))
            held.drop() if rng.random() < 0.5 else held.release()
        elif kind == "gateway":
            faults.drop_gateway()
        fired.append(kind)
        await asyncio.sleep(rng.uniform(1, 3))
        faults.clear()


async def _member(discord: LocalDiscord, user, rng: random.Random, stop: asyncio.Event,
                  times: list[float]) -> None:
    """One member: /imagine, then now and then U, V, 🔄 or ❌ on what came back."""
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(1, 8))
        try:
            ix = await discord.slash(user, "imagine", {"prompt": rng.choice(PROMPTS)})
            started = time.monotonic()
            message = await ix.wait_original(shows_result, timeout=120)
        except (TimeoutError, RuntimeError, ValueError):
            continue  # refused (allowance, queue), cancelled, failed, or moved: the account settles it
        times.append(time.monotonic() - started)
        buttons = [c for c in message.custom_ids() if not c.startswith("dg:show")]
        if buttons and rng.random() < 0.5:
            try:
                await discord.click(user, message.id, rng.choice(buttons))
            except (ValueError, RuntimeError):
                pass


async def soak(minutes: float, users: int, seed: int, settings: Settings) -> dict:
    rng = random.Random(seed)
    async with LocalDiscord() as discord:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = settings_for(discord, settings, data_dir=Path(data_dir), daily_images=100_000,
                                    progress_interval=1.0, delivery_timeout=20.0, job_timeout=120.0)
            async with local_bot(discord, settings) as app:
                rss_start, stop, times, fired = _rss_mb(), asyncio.Event(), [], []
                members = [discord.add_user(f"member{n}") for n in range(users)]
                tasks = [asyncio.create_task(_member(discord, m, random.Random(rng.random()), stop, times))
                         for m in members]
                tasks.append(asyncio.create_task(_faults(discord, rng, stop, fired)))
                await asyncio.sleep(minutes * 60)
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                discord.faults.clear()
                settle = time.monotonic() + 180  # the queue drains and late deliveries land
                while time.monotonic() < settle and (await app.store.active_jobs() or await app.store.undelivered_jobs()):
                    await asyncio.sleep(1)
                account = await _account(app, discord)
                rss_end = _rss_mb()
            if discord.spec_errors:
                raise RuntimeError(f"requests broke Discord's spec: {discord.spec_errors[:3]}")
    times.sort()
    return {"bench": "soak", "minutes": minutes, "users": users, "seed": seed, **account,
            "faults": {kind: fired.count(kind) for kind in sorted(set(fired))},
            "p50_grid_s": round(statistics.median(times), 2) if times else None,
            "p99_grid_s": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2) if times else None,
            "rss_start_mb": rss_start, "rss_end_mb": rss_end}


async def _account(app, discord: LocalDiscord) -> dict:
    """Every job the store accepted, by how it ended; and how many messages showed each result."""
    jobs = await app.store.jobs("ORDER BY id")
    shown: dict[int, int] = {}
    for message in discord.messages.values():
        if not message.deleted and shows_result(message) and (ids := JOB.findall(message.content)):
            shown[int(ids[-1])] = shown.get(int(ids[-1]), 0) + 1
    delivered = [j for j in jobs if j.status == "done" and j.delivered_at]
    refunded = [j for j in jobs if j.status in ("failed", "cancelled")]
    unrefunded = [j for j in refunded if j.cost and sum(
        row["amount"] for row in await app.store.ledger(j.owner_id) if row["job_id"] == j.id) != 0]
    lost = [j.id for j in jobs if j not in delivered and j not in refunded]
    return {"jobs": len(jobs), "delivered": len(delivered), "refunded": len(refunded),
            "failed": sum(j.status == "failed" for j in jobs), "cancelled": sum(j.status == "cancelled" for j in jobs),
            "lost": len(lost), "lost_ids": lost[:20], "refund_missing": len(unrefunded),
            "duplicated": sum(1 for j in delivered if shown.get(j.id, 0) > 1),
            "delivered_not_shown": sum(1 for j in delivered if shown.get(j.id, 0) == 0)}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = asyncio.run(soak(args.minutes, args.users, args.seed, Settings.load()))
    if not args.json:
        print(f"soak {args.minutes} min, {args.users} users: {result['jobs']} jobs, {result['delivered']} delivered, "
              f"{result['refunded']} refunded, {result['lost']} lost, {result['duplicated']} shown twice")
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 and result["refund_missing"] == 0 else 1
