"""/model list | use | load | unload | info, and /stats: admins change models without stopping the bot.

Loads run between jobs (on the worker threads, or on every Ray Serve replica with ENGINE=ray), so the bot
keeps answering and queued jobs keep the model they were accepted with. The bot's presence shows the default model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui.checks import requester
from bot.discord_ui.guard import AdminCog
from bot.discord_ui.render import fit
from bot.service.models import ModelRow

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

log = logging.getLogger(__name__)

ADMINS_ONLY = discord.Permissions(manage_guild=True)


async def model_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """Autocomplete: the catalog's model names containing what was typed (admins only see them)."""
    bot: DreamgridBot = interaction.client
    if not bot.is_admin(interaction):
        return []
    return [app_commands.Choice(name=name, value=name) for name in bot.admin.models.model_names(current)]


class ModelCog(AdminCog):
    model = app_commands.Group(name="model", description="Which models the bot offers, and this server's default",
                               default_permissions=ADMINS_ONLY, guild_only=True)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        await show_default_model(self.bot)

    @model.command(name="list", description="Every model: state, device, memory, default size and steps")
    async def list_models(self, interaction: discord.Interaction) -> None:
        async def work() -> str:
            rows = await self.admin.models.models(interaction.guild_id)
            lines = ["**Models**"] + [_row(row) for row in rows]
            disabled = self.admin.models.disabled()
            if disabled:
                lines.append("Disabled in the catalog: " + ", ".join(f"`{n}`" for n in disabled))
            uncatalogued = [f for f in self.admin.models.found_models() if f.in_catalog is None]
            if uncatalogued:
                lines.append("**Found under models/, not in the catalog** (add an entry to models/catalog.toml "
                             "to offer one):")
                lines += [f"• `{f.path}` ({f.kind}{': ' + f.note if f.note else ''})" for f in uncatalogued]
            return "\n".join(lines)
        await self.act(interaction, work)

    @model.command(name="use", description="Make a model this server's default for /imagine")
    @app_commands.describe(name="A model from /model list")
    @app_commands.autocomplete(name=model_choices)
    async def use(self, interaction: discord.Interaction, name: str) -> None:
        async def work() -> str:
            spec = self.admin.models.model(name)
            await _loading(interaction, spec.name)
            previous, states = await self.admin.models.use(requester(interaction), spec.name)
            await show_default_model(self.bot)
            return (f"✅ `{spec.name}` is now this server's default model (it was `{previous}`); "
                    f"loaded {_where(states)}. Jobs already queued finish on the model they were started with.")
        await self.act(interaction, work)

    @model.command(name="load", description="Load a model now, so its first job starts at once")
    @app_commands.describe(name="A model from /model list")
    @app_commands.autocomplete(name=model_choices)
    async def load(self, interaction: discord.Interaction, name: str) -> None:
        async def work() -> str:
            spec = self.admin.models.model(name)
            await _loading(interaction, spec.name)
            states = await self.admin.models.load(requester(interaction), spec.name)
            return f"✅ `{spec.name}` is loaded {_where(states)}."
        await self.act(interaction, work)

    @model.command(name="unload", description="Free a model's memory (a later job that needs it loads it again)")
    @app_commands.describe(name="A loaded model from /model list")
    @app_commands.autocomplete(name=model_choices)
    async def unload(self, interaction: discord.Interaction, name: str) -> None:
        async def work() -> str:
            devices = await self.admin.models.unload(requester(interaction), name)
            return f"✅ `{self.admin.models.model(name).name}` was unloaded from {', '.join(devices)}."
        await self.act(interaction, work)

    @model.command(name="info", description="One model's catalog entry and where it is loaded")
    @app_commands.describe(name="A model from /model list")
    @app_commands.autocomplete(name=model_choices)
    async def info(self, interaction: discord.Interaction, name: str) -> None:
        async def work() -> str:
            spec = self.admin.models.model(name)
            row = next(r for r in await self.admin.models.models(interaction.guild_id) if r.spec.name == spec.name)
            source = self.admin.models.source_kind(spec)
            own = ", ".join(f"`{name}` ({weight:g})" for name, weight in spec.loras)
            usable = ", ".join(f"`{lora.name}`" for lora in self.admin.models.loras_for(spec))
            return fit("\n".join([
                f"**`{spec.name}`**{' — ' + spec.description if spec.description else ''}",
                f"Source: `{spec.source}` ({source}) · pipeline {spec.pipeline}",
                f"Default size {spec.width}×{spec.height} · {spec.steps} steps · guidance {spec.guidance:g} · "
                f"prompts up to {spec.max_prompt_tokens} tokens · upscaler {spec.upscaler}",
                f"State: {_state(row)}",
                "NSFW check: " + ("the model's safety checker (see /moderation nsfw)"
                                  if self.admin.models.has_safety_checker(spec) else "none"),
                f"This server's default: {'yes' if row.is_default else 'no'}",
                *([f"LoRAs it always uses: {own}"] if own else []),
                "LoRAs a prompt can add (`<lora:name:0.8>`): " + (usable or "none in models/loras/"),
            ]))
        await self.act(interaction, work)

    @app_commands.command(name="stats", description="Queue, jobs and images in the last hour, time per job, memory")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def stats(self, interaction: discord.Interaction) -> None:
        async def work() -> str:
            stats = await self.admin.models.stats()
            lines = [f"**Queue:** {stats.queued} queued, {stats.running} running",
                     f"**Last hour:** {stats.jobs} jobs, {stats.images} images"]
            for m in stats.per_model:
                mean = f"{m.mean_seconds:.1f} s a job" if m.mean_seconds is not None else "no timing"
                lines.append(f"• `{m.model}`: {m.jobs} jobs, {m.images} images, {mean}")
            lines.append("**Memory (loaded weights):** "
                         + ", ".join(f"{device} {_mb(size)}" + _names(stats.models.get(device))
                                     for device, size in stats.memory.items()))
            return "\n".join(lines)
        await self.act(interaction, work)


def _names(models: list[str] | None) -> str:
    return f" ({', '.join(f'`{name}`' for name in models)})" if models else ""


async def show_default_model(bot: DreamgridBot) -> None:
    """The presence names the default model: this server's when the bot is in one server (the usual
    self-hosted case), the bot-wide default otherwise."""
    guild_id = bot.guilds[0].id if len(bot.guilds) == 1 else None
    name = await bot.jobs.model_for(guild_id)
    try:
        await bot.change_presence(activity=discord.Game(name=f"/imagine · model {name}"))
    except Exception:  # a presence is cosmetic: never fail a command over it
        log.warning("could not update the presence", exc_info=True)


async def _loading(interaction: discord.Interaction, name: str) -> None:
    await interaction.response.send_message(
        f"⏳ Loading `{name}` on the workers, between jobs; the bot keeps serving meanwhile…", ephemeral=True)


def _row(row: ModelRow) -> str:
    spec = row.spec
    star = " ★ default here" if row.is_default else ""
    return (f"• `{spec.name}`{star} — {_state(row)} · {spec.width}×{spec.height}, {spec.steps} steps, "
            f"guidance {spec.guidance:g}")


def _state(row: ModelRow) -> str:
    if not row.loaded:
        return "not loaded"
    return "loaded on " + ", ".join(f"{s.device} ({_mb(s.weight_bytes)})" for s in row.loaded)


def _where(states) -> str:
    return "on " + ", ".join(f"{s.device} in {s.seconds:.1f} s ({_mb(s.weight_bytes)})" for s in states)


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size < 2**30 else f"{size / 2**30:.2f} GB"

