"""Run a real discord.py client against a LocalDiscord for the length of a ``with`` block."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import discord

from bot.discord_ui.endpoints import use_discord_endpoints

from .server import LocalDiscord


@contextlib.asynccontextmanager
async def running_client(
    local: LocalDiscord,
    client: discord.Client,
    token: str | None = None,
    *,
    ready_timeout: float = 15.0,
    guild_ready_timeout: float | None = 0.05,
) -> AsyncIterator[asyncio.Task[None]]:
    """Start ``client.start(token)`` as a task and wait until the client is ready.

    If the task dies first (a KeyError in a gateway parser, a failing setup_hook, a refused
    login) its exception is raised here instead of hanging; while the block runs the task is
    watched by ``local``, so ``wait_*`` helpers fail fast too. On exit the client is closed and
    an exception the task died of is raised.

    ``guild_ready_timeout``: discord.py waits this long after the last GUILD_CREATE before
    ``on_ready`` (2 s by default); LocalDiscord sends its one guild at once, so a short wait is
    enough. None keeps the client's own setting.
    """
    use_discord_endpoints(local.api_base, local.gateway_url)
    if guild_ready_timeout is not None:
        client._connection.guild_ready_timeout = guild_ready_timeout  # no public setter after __init__
    task = asyncio.create_task(client.start(token or local.bot_token), name=f"discord client {client!r}")
    local.watch(task)
    try:
        await _wait_ready(client, task, ready_timeout)
        yield task
    finally:
        local.unwatch(task)
        await _stop(client, task)


async def _wait_ready(client: discord.Client, task: asyncio.Task[None], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not client.is_ready():
        if task.done():
            exc = task.exception()
            if exc is not None:
                raise exc
            raise RuntimeError("client.start() returned before the client was ready")
        if loop.time() > deadline:
            raise TimeoutError(f"the client was not ready after {timeout}s")
        await asyncio.sleep(0.02)


async def _stop(client: discord.Client, task: asyncio.Task[None]) -> None:
    died = task.exception() if task.done() and not task.cancelled() else None
    await client.close()
    try:
        await asyncio.wait_for(task, timeout=5)
    except asyncio.TimeoutError:
        task.cancel()
    except Exception as exc:  # the task's own failure: reported below if it happened first
        died = died or exc
    if died is not None:
        raise died
