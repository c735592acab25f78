"""A local Discord for tests and the playground: REST + gateway on 127.0.0.1 that the real
discord.py client logs in to, validating every request against Discord's OpenAPI spec."""

from .errors import DiscordHTTPError
from .models import Attachment, Command, Interaction, Message, User
from .server import ClientRefused, LocalDiscord

__all__ = [
    "Attachment",
    "ClientRefused",
    "Command",
    "DiscordHTTPError",
    "Interaction",
    "LocalDiscord",
    "Message",
    "User",
]
