"""The real bot (discord.py, worker pool, SQLite file) logged in to the local Discord over a real socket."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.app import App
from bot.local import local_bot
from bot.local import settings_for as local_settings
from bot.localdiscord import LocalDiscord
from bot.settings import Settings


@dataclass
class Dreamgrid:
    """A running bot that can be stopped and started again on the same data, like a real restart."""

    discord: LocalDiscord
    settings: Settings
    app: App | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.app = await self._stack.enter_async_context(local_bot(self.discord, self.settings))

    async def stop(self) -> None:
        await self._stack.aclose()
        self.app = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def grid(self, user, prompt: str, timeout: float = 60):
        """/imagine and wait for the finished message (one with an attachment)."""
        ix = await self.discord.slash(user, "imagine", {"prompt": prompt})
        message = await ix.wait_original(lambda m: bool(m.attachments), timeout=timeout)
        return ix, message

    async def click(self, user, message, custom_id: str, timeout: float = 60):
        """Click a button and wait for the new job's finished message."""
        ix = await self.discord.click(user, message.id, custom_id)
        result = await ix.wait_original(lambda m: bool(m.attachments), timeout=timeout)
        return ix, result


def settings_for(discord: LocalDiscord, data_dir: Path, models_dir: Path, **overrides) -> Settings:
    # No live previews unless a test asks: a preview is an attachment, and tests wait for the grid's.
    values = dict(data_dir=data_dir, models_dir=models_dir, progress_interval=0.0, daily_images=40,
                  preview_interval=0.0, position_interval=0.2)
    values.update(overrides)
    return local_settings(discord, Settings.load(env={}, env_file=None), **values)


@pytest.fixture
async def local_discord():
    async with LocalDiscord() as discord:
        yield discord
        # Every request the bot sent must match Discord's OpenAPI spec.
        assert discord.spec_errors == []


@pytest.fixture
async def dreamgrid(local_discord, tmp_path, models_dir, request):
    overrides = getattr(request, "param", {})
    bot = Dreamgrid(local_discord, settings_for(local_discord, tmp_path / "data", models_dir, **overrides))
    await bot.start()
    yield bot
    if bot.app is not None:
        await bot.stop()
