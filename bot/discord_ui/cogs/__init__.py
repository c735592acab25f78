"""One cog per feature area."""

from bot.discord_ui.cogs.account import AccountCog
from bot.discord_ui.cogs.imagine import ImagineCog

COGS = (ImagineCog, AccountCog)
