"""The real bot, logged in to a local Discord: what the playground, the benchmarks and the tests run."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import AsyncIterator, Callable

from aiohttp import web

from bot.app import App
from bot.discord_ui.job_message import PREVIEW_NAME
from bot.localdiscord import LocalDiscord
from bot.localdiscord.harness import running_client
from bot.settings import Settings


def shows_result(message) -> bool:
    """Whether a job's message (in the local Discord) carries its result, not just a live preview."""
    return any(attachment.filename != PREVIEW_NAME for attachment in message.attachments)


def settings_for(discord: LocalDiscord, settings: Settings, **overrides: object) -> Settings:
    """`settings`, pointed at the local Discord; no web server of its own (WEB_PORT) and no login with Discord
    (the .env's client id is not the local Discord's) unless `overrides` ask."""
    return replace(settings, discord_token=discord.bot_token, discord_api_base=discord.api_base,
                   discord_gateway_url=discord.gateway_url, image_hosts=discord.cdn_origin,
                   **{"web_port": 0, "discord_client_id": "", "discord_client_secret": "", **overrides})


@contextlib.asynccontextmanager
async def local_bot(discord: LocalDiscord, settings: Settings,
                    add_pages: Callable[[web.Application], None] | None = None) -> AsyncIterator[App]:
    """Open the app, log its bot in to `discord` and wait for its slash commands; close both on exit.
    `add_pages`: more pages on its web server (App.open)."""
    app = await App.open(settings, add_pages)
    try:
        async with running_client(discord, app.discord_bot(), settings.discord_token):
            await discord.wait_for_commands({"imagine"}, timeout=15)
            yield app
    finally:
        await app.close()
