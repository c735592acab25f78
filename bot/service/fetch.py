"""Fetching the images people give the bot: image prompts, --sref/--oref, /describe and /blend.

Only Discord's own CDN is ever asked (an interaction's attachments live there too): a link to anything else,
a redirect off those hosts, or a CDN host that resolves to a local address is refused, so a prompt can
never make the bot reach into its own network (SSRF). The size is checked before the download (the
attachment's size, Content-Length) and while streaming; the pixel count before decoding (decompression
bombs). PNG, JPEG, WebP and GIF (its first frame) only; EXIF orientation applied.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
import warnings
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from PIL import Image, ImageOps, UnidentifiedImageError
from yarl import URL

from bot.service.users import UserError
from bot.text import shorten

DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
MAX_REDIRECTS = 3
TIMEOUT_SECONDS = 30.0
CHUNK = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)


class ImageRefused(UserError):
    """An image the bot will not fetch or read; the message says why and what to do."""


@dataclass(frozen=True)
class Upload:
    """A file a member attached to a command: where Discord keeps it and the size it reported."""

    url: str
    size: int
    filename: str


@dataclass(frozen=True)
class Origin:
    """A host images may come from: a bare host (HTTPS, public addresses only) or, for a local Discord, a
    full origin such as `http://127.0.0.1:8080`, trusted as configured."""

    scheme: str
    host: str
    port: int
    trusted: bool  # configured with its scheme and port: a local test Discord may be on a private address

    @classmethod
    def parse(cls, entry: str) -> Origin:
        entry = entry.strip().lower().rstrip("/")
        if "://" not in entry:
            return cls("https", entry.rstrip("."), 443, False)
        url = URL(entry)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise ValueError(f"{entry!r} is not a host or an origin like http://127.0.0.1:8080")
        return cls(url.scheme, url.host, url.port, True)

    def matches(self, url: URL) -> bool:
        return (url.scheme == self.scheme and (url.host or "").lower().rstrip(".") == self.host
                and url.port == self.port)


def parse_hosts(text: str) -> tuple[Origin, ...]:
    """IMAGE_HOSTS: comma-separated hosts or origins."""
    return tuple(Origin.parse(part) for part in text.split(",") if part.strip())


class _PublicOnly(AbstractResolver):
    """Resolves names to public addresses only, on the very lookup the connection uses (no DNS rebinding
    between a check and the connect). Trusted origins (a local Discord) resolve as they are."""

    def __init__(self, trusted: set[str]) -> None:
        self._inner = DefaultResolver()
        self._trusted = trusted

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        found = await self._inner.resolve(host, port, family)
        if host in self._trusted:
            return found
        public = [item for item in found if ipaddress.ip_address(item["host"]).is_global]
        if not public:
            raise OSError(f"{host} resolves to a local address")
        return public

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    def __init__(self, origins: tuple[Origin, ...], *, max_bytes: int, max_pixels: int) -> None:
        self.origins = origins
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._session: aiohttp.ClientSession | None = None

    def allowed(self, url: URL) -> bool:
        if url.user is not None or url.password is not None:  # `https://cdn.discordapp.com@evil.example/`
            return False
        return any(origin.matches(url) for origin in self.origins)

    def check_link(self, link: str) -> URL:
        """A link as typed, refused unless it is on Discord's CDN."""
        try:
            url = URL(link)
        except ValueError:
            url = None
        if url is None or not url.is_absolute() or not self.allowed(url):
            shown = shorten(link.replace("`", "'"), 80)
            raise ImageRefused(f"`{shown}` is not an image on Discord: the bot only reads images uploaded "
                               "to Discord. Upload the picture (the `image` option), or copy the link of an image "
                               "posted in a channel, and try again.")
        return url

    async def fetch(self, link: str, *, size: int | None = None, name: str = "The image") -> Image.Image:
        """The picture behind a CDN link, checked and decoded (off the event loop). `size`: the byte size
        Discord reported for an attachment, checked before anything is downloaded."""
        url = self.check_link(link)
        if size is not None and size > self.max_bytes:
            raise self._too_big(name, size)
        data = await self._download(url, name)
        return await asyncio.to_thread(decode, data, self.max_pixels, name)

    async def _download(self, url: URL, name: str) -> bytes:
        session = self._open()
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        target = url.join(URL(response.headers.get("Location", "")))
                        if not self.allowed(target):
                            raise ImageRefused(f"{name}'s link leads away from Discord's CDN, so the bot did not "
                                               "follow it. Upload the picture instead.")
                        url = target
                        continue
                    if response.status != 200:
                        raise ImageRefused(f"{name} could not be downloaded (Discord's CDN answered "
                                           f"{response.status}; the link may have expired). Upload it again.")
                    if response.content_length is not None and response.content_length > self.max_bytes:
                        raise self._too_big(name, response.content_length)
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(CHUNK):
                        data += chunk
                        if len(data) > self.max_bytes:  # no Content-Length, or one that lied
                            raise self._too_big(name, None)
                    return bytes(data)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                raise ImageRefused(f"{name} could not be downloaded from Discord's CDN. Upload it again, or "
                                   "try again in a minute.") from None
        raise ImageRefused(f"{name}'s link redirects too many times; upload the picture instead.")

    def _too_big(self, name: str, size: int | None) -> ImageRefused:
        limit = f"{self.max_bytes / 2**20:.3g} MB"
        if size is None:
            return ImageRefused(f"{name} is larger than {limit}, the most the bot reads. Send a smaller file.")
        return ImageRefused(f"{name} is {size / 2**20:.3g} MB; the bot reads images up to {limit}. "
                            "Send a smaller file.")

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trusted = {origin.host for origin in self.origins if origin.trusted}
            connector = aiohttp.TCPConnector(resolver=_PublicOnly(trusted), limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
                headers={"User-Agent": "Dreamgrid (image prompts)"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def decode(data: bytes, max_pixels: int, name: str = "The image") -> Image.Image:
    """Bytes -> an RGB picture: the format and the pixel count checked before any pixel is decoded, a GIF's
    first frame, EXIF orientation applied, transparency over white."""
    kinds = "PNG, JPEG, WebP or GIF"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below is ours
            opened = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageRefused(f"{name} is {width}×{height} pixels; the bot reads images up to "
                                   f"{max_pixels / 1e6:g} megapixels. Send a smaller picture.")
            opened.seek(0)  # an animation's first frame
            picture = ImageOps.exif_transpose(opened)
            picture.load()
    except ImageRefused:
        raise
    except Image.DecompressionBombError:  # past Pillow's own hard limit, before ours could look
        raise ImageRefused(f"{name} has too many pixels to read safely; the bot reads images up to "
                           f"{max_pixels / 1e6:g} megapixels. Send a smaller picture.") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError):
        raise ImageRefused(f"{name} is not a picture the bot can read: send a {kinds} file.") from None
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")

