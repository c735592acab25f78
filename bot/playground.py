"""`dreamgrid playground`: try the bot with no Discord account. The real bot logs in to the local Discord
and you play the member, typing commands; the images land in a folder you can open.

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
from pathlib import Path

from bot.local import local_bot, settings_for, shows_result
from bot.localdiscord import LocalDiscord
from bot.settings import Settings



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
            print(__doc__.split("\n\n", 1)[1])
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


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid playground", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/playground"), help="where images are saved")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(play(Settings.load(), args.out))
    return 0
