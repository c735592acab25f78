"""One cog per feature area."""

from bot.discord_ui.cogs.account import AccountCog
from bot.discord_ui.cogs.history import HistoryCog
from bot.discord_ui.cogs.imagine import ImagineCog
from bot.discord_ui.cogs.models import ModelCog
from bot.discord_ui.cogs.moderation import ModerationCog
from bot.discord_ui.cogs.pictures import PicturesCog
from bot.discord_ui.cogs.queue import QueueCog
from bot.discord_ui.cogs.quota import QuotaCog
from bot.discord_ui.cogs.settings import SettingsCog

COGS = (ImagineCog, PicturesCog, AccountCog, ModelCog, ModerationCog, SettingsCog, QueueCog, HistoryCog, QuotaCog)
