"""`dreamgrid playground`: try the bot with no Discord account. The real bot logs in to a local Discord and
you play its members: in a browser page that looks like a Discord channel (the default; bot/web/playground.py),
or, with `--terminal`, in this terminal, where the images land in a folder you can open.

The terminal's commands:

    imagine a red circle     /imagine prompt:a red circle
    U2 / V3 / reroll         click a button of the last grid (Vary: subtle / strong, after an upscale)
    info / history           /info and /history
    fast / relax             /fast and /relax (relax: free jobs that wait for fast ones)
    quit
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path

from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.settings import Settings, is_loopback

DEFAULT_PORT = 8765  # the web playground's


def _label(custom_id: str) -> str:
    """What a person calls a button: dg:upscale:7:2 is U2, dg:vary:7:3 is V3, dg:reroll:7:0 is reroll."""
    parts = custom_id.split(":")
    action, index = parts[1], parts[-1]
    return {"upscale": f"U{index}", "vary": f"V{index}"}.get(action, action)


class Playground:
    def __init__(self, discord: LocalDiscord, out_dir: Path) -> None:
        self.discord = discord
        self.out_dir = out_dir
        self.user = discord.add_user("you")
        self.last = None  # the last message with buttons

    async def handle(self, line: str) -> str:
        word, _, rest = line.strip().partition(" ")
        word = word.lower()
        if word == "imagine":
            return await self._show(await self.discord.slash(self.user, "imagine", {"prompt": rest}))
        if word in ("info", "history", "fast", "relax"):
            return await self._show(await self.discord.slash(self.user, word, {}))
        if self.last is None:
            return "Start with: imagine <prompt>"
        custom_id = self._button(word)
        if custom_id is None:
            return f"No button {word!r} here. Buttons: {', '.join(self._labels())}"
        return await self._show(await self.discord.click(self.user, self.last.id, custom_id))

    def _button(self, word: str) -> str | None:
        return next((cid for cid in self.last.custom_ids() if _label(cid).lower() == word), None)

    def _labels(self) -> list[str]:
        return [_label(cid) for cid in self.last.custom_ids()]

    async def _show(self, ix) -> str:
        seen = ""
        while True:  # print the message as it changes: queued, progress, result
            message = await ix.wait_original(lambda m: m.content != seen or shows_result(m), timeout=600)
            if message.ephemeral:
                return message.content
            if message.content != seen:
                print(f"  {message.content.splitlines()[-1]}")
                seen = message.content
            if shows_result(message) or "❌" in message.content:
                break
        for attachment in message.attachments:
            path = self.out_dir / f"{message.id}-{attachment.filename}"
            path.write_bytes(attachment.data)
            print(f"  saved {path}")
        if message.custom_ids():
            self.last = message
            return "  buttons: " + " ".join(self._labels())
        return ""


async def play(settings: Settings, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with LocalDiscord() as discord:
        async with local_bot(discord, settings_for(discord, settings)):
            playground = Playground(discord, out_dir)
            print(__doc__.split("\n\n", 2)[2])
            while True:
                line = await asyncio.to_thread(_read_line)
                if line is None or line.strip().lower() in ("quit", "exit"):
                    break
                if line.strip():
                    print(await playground.handle(line))


def _read_line() -> str | None:
    try:
        return input("dreamgrid> ")
    except EOFError:
        return None


async def play_web(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                   open_browser: bool = False) -> None:
    """The web playground: the bot against the local Discord, its web server with the playground page at `/`
    (the archive and the status page beside it), until ^C."""
    from bot.web.playground import Bridge, add_players, mount_playground

    async with LocalDiscord(guild_name="Dreamgrid Playground") as discord:
        bridge = Bridge(discord, add_players(discord))
        local = settings_for(discord, settings, web_host=host, web_port=free_port(host, port))
        async with local_bot(discord, local, lambda pages: mount_playground(pages, bridge)) as app:
            url = f"{app.web.url}/"
            print(f"Dreamgrid playground: open {url} (members alice and bob, and an admin; ^C stops it)", flush=True)
            if open_browser:
                import webbrowser

                webbrowser.open(url)
            await asyncio.Event().wait()


def free_port(host: str = "127.0.0.1", port: int = 0) -> int:
    """`port` if nothing listens there, else a free one (a second playground, or a stale one, has it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            probe.bind((host, 0))
        return probe.getsockname()[1]


def web(settings: Settings, open_browser: bool = False, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
    """Run the web playground until ^C (`dreamgrid run` without a token, at a terminal, comes here too)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        asyncio.run(play_web(settings, host, port, open_browser))
    except KeyboardInterrupt:
        pass
    return 0


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid playground", description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminal", action="store_true", help="play in this terminal instead of a browser")
    parser.add_argument("--out", type=Path, default=Path("data/playground"),
                        help="--terminal: where images are saved")
    parser.add_argument("--host", default="127.0.0.1", help="the page's address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"the page's port (default {DEFAULT_PORT}; a free one if it is taken)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):  # every player is an admin of the local Discord: nobody else may reach it
        parser.error(f"--host {args.host}: the playground has no login, so it only listens on this machine "
                     "(127.0.0.1, ::1 or localhost)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.terminal:
        asyncio.run(play(Settings.load(), args.out))
        return 0
    return web(Settings.load(), args.open, args.host, args.port)
