"""Members' pictures: only Discord's CDN is fetched (no other host, no redirect off it, no local address),
the size is limited before and while downloading, the pixels before decoding, and only PNG/JPEG/WebP/GIF
are read (a GIF's first frame, EXIF orientation applied). A CDN is played by a real aiohttp server."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from aiohttp import web
from PIL import Image

from bot.service.fetch import ImageFetcher, ImageRefused, decode, parse_hosts


def png(size=(8, 8), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels in a few bytes: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class Cdn:
    """A local CDN whose routes misbehave on request; `hits` counts the requests it got."""

    def __init__(self) -> None:
        self.hits = 0
        self.origin = ""

    async def __aenter__(self) -> "Cdn":
        app = web.Application()
        app.router.add_get("/{name}", self.serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        name = request.match_info["name"]
        if name == "red.png":
            return web.Response(body=png(), content_type="image/png")
        if name == "hop.png":  # a redirect that stays on the CDN
            raise web.HTTPFound("/red.png")
        if name == "away.png":  # a redirect off the CDN, to a local service
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data")
        if name == "loop.png":
            raise web.HTTPFound("/loop.png")
        if name == "big.png":  # honest Content-Length, too big
            return web.Response(body=b"\0" * 5000, content_type="image/png")
        if name == "streamed.png":  # no Content-Length at all: chunked, too big
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(10):
                await response.write(b"\0" * 1000)
            await response.write_eof()
            return response
        if name == "gone.png":
            raise web.HTTPNotFound()
        raise web.HTTPNotFound()


@pytest.fixture
async def cdn():
    async with Cdn() as server:
        yield server


def fetcher_for(origin: str, max_bytes: int = 4000, max_pixels: int = 1_000_000) -> ImageFetcher:
    return ImageFetcher(parse_hosts(f"cdn.discordapp.com,media.discordapp.net,{origin}"), max_bytes=max_bytes,
                        max_pixels=max_pixels)


async def test_a_cdn_picture_is_fetched_and_decoded(cdn):
    fetcher = fetcher_for(cdn.origin)
    try:
        picture = await fetcher.fetch(f"{cdn.origin}/red.png")
        assert picture.mode == "RGB" and picture.size == (8, 8) and picture.getpixel((0, 0)) == (200, 30, 30)
        assert (await fetcher.fetch(f"{cdn.origin}/hop.png")).size == (8, 8)  # a redirect on the CDN is fine
    finally:
        await fetcher.close()


@pytest.mark.parametrize("link", [
    "https://example.com/cat.png",
    "http://cdn.discordapp.com/attachments/1/2/cat.png",  # not HTTPS
    "https://cdn.discordapp.com.evil.example/cat.png",
    "https://cdn.discordapp.com@127.0.0.1/cat.png",  # userinfo that looks like the host
    "https://127.0.0.1/cat.png",
    "https://[::1]/cat.png",
    "file:///etc/passwd",
    "cdn.discordapp.com/cat.png",
])
async def test_links_off_discords_cdn_are_refused_without_a_request(cdn, link):
    fetcher = fetcher_for(cdn.origin)
    with pytest.raises(ImageRefused, match="only reads images uploaded to Discord"):
        await fetcher.fetch(link)
    assert cdn.hits == 0
    await fetcher.close()


async def test_the_cdns_own_port_is_the_only_one(cdn):
    other_port = cdn.origin.rsplit(":", 1)[0] + ":1"
    with pytest.raises(ImageRefused, match="only reads images uploaded to Discord"):
        await fetcher_for(cdn.origin).fetch(f"{other_port}/red.png")


async def test_a_redirect_off_the_cdn_is_not_followed(cdn):
    fetcher = fetcher_for(cdn.origin)
    with pytest.raises(ImageRefused, match="leads away from Discord's CDN"):
        await fetcher.fetch(f"{cdn.origin}/away.png")
    with pytest.raises(ImageRefused, match="redirects too many times"):
        await fetcher.fetch(f"{cdn.origin}/loop.png")
    await fetcher.close()


async def test_a_cdn_name_that_resolves_to_a_local_address_is_refused(cdn):
    """A bare host (not a configured origin) may only resolve to public addresses: `localhost` is not one."""
    fetcher = ImageFetcher(parse_hosts("localhost"), max_bytes=4000, max_pixels=10**6)
    with pytest.raises(ImageRefused, match="could not be downloaded"):
        await fetcher.fetch("https://localhost/red.png")
    await fetcher.close()


async def test_sizes_are_limited_before_and_while_downloading(cdn):
    fetcher = fetcher_for(cdn.origin)
    with pytest.raises(ImageRefused, match="is 954 MB; the bot reads images up to"):
        await fetcher.fetch(f"{cdn.origin}/red.png", size=10**9)  # the attachment's reported size
    assert cdn.hits == 0
    with pytest.raises(ImageRefused, match="reads images up to 0.00381 MB"):
        await fetcher.fetch(f"{cdn.origin}/big.png")  # Content-Length
    with pytest.raises(ImageRefused, match="larger than"):
        await fetcher.fetch(f"{cdn.origin}/streamed.png")  # counted while streaming
    with pytest.raises(ImageRefused, match="answered 404"):
        await fetcher.fetch(f"{cdn.origin}/gone.png")
    await fetcher.close()


def test_a_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageRefused, match="12000×12000 pixels; the bot reads images up to 40 megapixels"):
        decode(huge_png_header(12000, 12000), max_pixels=40_000_000)
    with pytest.raises(ImageRefused, match="too many pixels to read safely"):  # past Pillow's own limit
        decode(huge_png_header(30000, 30000), max_pixels=40_000_000)


@pytest.mark.parametrize("kind", ["BMP", "TIFF", "ICO"])
def test_only_png_jpeg_webp_and_gif_are_read(kind):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format=kind)
    with pytest.raises(ImageRefused, match="PNG, JPEG, WebP or GIF"):
        decode(buffer.getvalue(), 10**6)
    with pytest.raises(ImageRefused, match="PNG, JPEG, WebP or GIF"):
        decode(b"<html>not a picture</html>", 10**6)


def test_formats_first_frame_orientation_and_transparency():
    frames = [Image.new("RGB", (10, 6), colour) for colour in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    first = decode(gif.getvalue(), 10**6)
    assert first.size == (10, 6) and first.getpixel((0, 0))[0] > 200  # red, the first frame

    jpeg = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    Image.new("RGB", (40, 20), "green").save(jpeg, format="JPEG", exif=exif)
    assert decode(jpeg.getvalue(), 10**6).size == (20, 40)

    webp = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(webp, format="WEBP", lossless=True)
    assert decode(webp.getvalue(), 10**6).getpixel((4, 4)) == (255, 255, 255)  # transparent -> white
