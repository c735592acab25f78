"""Point discord.py at another Discord (LocalDiscord in tests and the playground).

discord.py builds every REST URL from ``Route.BASE`` and a plain ``Client`` connects to
``DiscordWebSocket.DEFAULT_GATEWAY`` (it does not ask GET /gateway/bot; AutoShardedClient
does, and then uses the URL that answers). After READY it resumes at ``resume_gateway_url``.
It adds ``?v=10&encoding=json&compress=zlib-stream`` to the gateway URL itself
(``zstd-stream`` when the ``zstandard`` module is installed); LocalDiscord answers zlib-stream,
and zstd-stream when it can import zstandard too.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import yarl

REAL_API_BASE = "https://discord.com/api/v10"
REAL_GATEWAY = "wss://gateway.discord.gg/"


def use_discord_endpoints(api_base: str | None, gateway_url: str | None) -> None:
    """Use ``api_base`` (e.g. http://127.0.0.1:PORT/api/v10) and ``gateway_url`` (a ws:// URL)
    for every discord.py client in this process. None leaves that one as it is (real Discord)."""
    if api_base is not None:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url is not None:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

