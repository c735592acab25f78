"""The bot as a real process, killed (SIGKILL) while its result upload is in flight, then started again on
the same data: the job is delivered exactly once, and charged once."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from bot.local import shows_result

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_EDIT = r"/webhooks/\d+/[^/]+/messages/@original"


async def bot_process(discord, data_dir: Path, models_dir: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DISCORD_TOKEN": discord.bot_token,
           "DISCORD_API_BASE": discord.api_base, "DISCORD_GATEWAY_URL": discord.gateway_url,
           "DATA_DIR": str(data_dir), "MODELS_DIR": str(models_dir), "TORCH_THREADS": "1",
           "PROGRESS_INTERVAL": "0", "PREVIEW_INTERVAL": "0", "POSITION_INTERVAL": "0", "LOG_LEVEL": "WARNING",
           "WEB_PORT": "0"}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    return process


async def test_a_bot_killed_during_its_upload_delivers_the_job_once_after_a_restart(local_discord, tmp_path,
                                                                                       models_dir):
    d, data = local_discord, tmp_path / "data"
    alice = d.add_user("alice")
    held = d.faults.hold(method="PATCH", path=UPLOAD_EDIT, uploads_only=True)  # the grid's upload hangs

    first = await bot_process(d, data, models_dir)
    try:
        await d.wait_for_commands({"imagine"}, timeout=90)
        await d.wait_connected(timeout=60)
        ix = await d.slash(alice, "imagine", {"prompt": "a grid that outlives its bot"})
        await held.arrived(timeout=90)
        first.send_signal(signal.SIGKILL)  # mid-upload: the job is saved, its message not yet edited
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
    held.drop()  # that upload never reaches Discord
    assert not any(shows_result(m) for m in d.messages.values())

    second = await bot_process(d, data, models_dir)
    try:
        shown = await d.wait_for_message(lambda m: shows_result(m), timeout=90)
        await asyncio.sleep(2)  # time for a second, wrong delivery to show itself
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(second.wait(), 30)
        except asyncio.TimeoutError:
            second.kill()

    results = [m for m in d.messages.values() if not m.deleted and shows_result(m)]
    assert results == [shown] and "a grid that outlives its bot" in shown.content
    assert shown.id == ix.original_message_id  # the job's own message, edited by id after the restart
    job_id = int(re.findall(r"job #(\d+)", shown.content)[-1])

    from bot.store import Store

    store = await Store.open(data / "dreamgrid.sqlite3")
    try:
        job = await store.get_job(job_id)
        assert job.status == "done" and job.delivered_at is not None and job.message_id == shown.id
        assert [row["reason"] for row in await store.ledger(alice.id)] == ["charge"]
    finally:
        await store.close()
