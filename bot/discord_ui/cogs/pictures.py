"""Pictures in: /blend (2-5 uploads mixed into a grid) and /describe (four prompts for a picture, each with a
button that runs it as an /imagine). The /imagine `image` option is in imagine.py. Every picture is fetched
by the service from Discord's CDN only."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_ui import render
from bot.discord_ui.custom_ids import DESCRIBE_BUTTON, number
from bot.service import Description, Upload, UserError

if TYPE_CHECKING:
    from bot.discord_ui.client import DreamgridBot

SHAPES = [app_commands.Choice(name=name, value=name) for name in ("square", "portrait", "landscape")]
PROMPT_CHARS = 400  # of each prompt as /describe shows it (the button runs the whole prompt)


def upload(attachment: discord.Attachment | None) -> Upload | None:
    """What the service needs of an attachment: its CDN link and the size Discord reported."""
    if attachment is None:
        return None
    return Upload(url=attachment.url, size=attachment.size, filename=attachment.filename)


class PicturesCog(commands.Cog):
    def __init__(self, bot: DreamgridBot) -> None:
        self.bot = bot

    @app_commands.command(name="blend", description="Mix 2 to 5 images into a grid of four")
    @app_commands.describe(image1="The first image", image2="The second image", image3="A third image",
                           image4="A fourth image", image5="A fifth image",
                           dimensions="The grid's shape: square (1:1), portrait (2:3) or landscape (3:2)")
    @app_commands.choices(dimensions=SHAPES)
    async def blend(self, interaction: discord.Interaction, image1: discord.Attachment, image2: discord.Attachment,
                    image3: discord.Attachment | None = None, image4: discord.Attachment | None = None,
                    image5: discord.Attachment | None = None,
                    dimensions: app_commands.Choice[str] | None = None) -> None:
        images = [upload(image) for image in (image1, image2, image3, image4, image5) if image is not None]
        shape = dimensions.value if dimensions else "square"
        await self.bot.start_job(interaction, self.bot.jobs.blend(self.bot.requester(interaction), images, shape))

    @app_commands.command(name="describe", description="Get four prompts that describe an image")
    @app_commands.describe(image="The image to describe", link="Or the link of an image posted on Discord")
    async def describe(self, interaction: discord.Interaction, image: discord.Attachment | None = None,
                       link: str | None = None) -> None:
        # Downloading and describing take longer than Discord's 3 s: think first, answer when done.
        await interaction.response.defer(thinking=True)
        try:
            description = await self.bot.jobs.describe(self.bot.requester(interaction), upload(image), link)
        except UserError as error:
            await interaction.delete_original_response()  # a public "thinking…" cannot turn private
            await interaction.followup.send(str(error), ephemeral=True, allowed_mentions=render.NO_PINGS)
            return
        await interaction.edit_original_response(content=described(description, interaction.user.id),
                                                 view=describe_view(description), allowed_mentions=render.NO_PINGS)


def described(description: Description, user_id: int) -> str:
    lines = [f"Four prompts for <@{user_id}>'s image (model `{description.model}`); a button runs one:"]
    lines += [f"**{n}.** {render.short_prompt(prompt, PROMPT_CHARS)}"
              for n, prompt in enumerate(description.prompts, start=1)]
    return render.fit("\n".join(lines))


def describe_view(description: Description) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for n in range(1, len(description.prompts) + 1):
        view.add_item(DescribeButton(description.id, n))
    return view


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button], template=DESCRIBE_BUTTON):
    """`dg:describe:<answer>:<n>`: run prompt n of a /describe answer as an /imagine, from SQLite."""

    def __init__(self, description_id: int, index: int) -> None:
        self.description_id, self.index = description_id, index
        super().__init__(discord.ui.Button(label=str(index), style=discord.ButtonStyle.primary,
                                           custom_id=f"dg:describe:{description_id}:{index}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> DescribeButton:
        return cls(number(match["description"]) or 0, int(match["index"]))

    async def interaction_check(self, interaction: discord.Interaction[DreamgridBot], /) -> bool:
        from bot.discord_ui.guard import refuse_banned

        return not await refuse_banned(interaction)

    async def callback(self, interaction: discord.Interaction[DreamgridBot]) -> None:
        bot = interaction.client
        description = await bot.jobs.description(self.description_id)
        if description is None or self.index > len(description.prompts):
            await interaction.response.send_message("That /describe answer is not stored here, so its buttons do "
                                                    "nothing. Run /describe again.", ephemeral=True)
            return
        if description.owner_id != interaction.user.id and not bot.is_admin(interaction):
            await interaction.response.send_message(f"Those prompts are <@{description.owner_id}>'s; run "
                                                    "/describe on your own image to get yours.", ephemeral=True,
                                                    allowed_mentions=render.NO_PINGS)
            return
        # Written by that model's describer, so run on that model.
        prompt = f"{description.prompts[self.index - 1]} --model {description.model}"
        await bot.start_job(interaction, bot.jobs.imagine(bot.requester(interaction), prompt))
