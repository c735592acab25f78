"""Slash-command attachment options (``d.upload``) and the CDN that serves them (and the bot's own
files), including the CDN faults a downloader must survive: redirects, missing or lying
Content-Length, slow bodies."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp
import discord
import pytest
from PIL import Image

from bot.localdiscord import Attachment, ClientRefused, LocalDiscord
from bot.localdiscord.cdn import EPHEMERAL_ROUTE, GONE
from bot.localdiscord.harness import running_client
from bot.localdiscord.server import ATTACHMENT_SIZE_LIMIT

pytestmark = pytest.mark.timeout(15)

UPLOADS = r"/ephemeral-attachments/.*"


def png(size: tuple[int, int] = (12, 7)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 128, 255)).save(out, format="PNG")
    return out.getvalue()


def jpeg(size: tuple[int, int] = (20, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
async def local() -> Any:
    async with LocalDiscord(check_responses=True) as d:
        yield d
        assert d.response_errors == [], "LocalDiscord answered in a shape Discord's spec does not allow"


def make_bot() -> discord.Client:
    """/imagine prompt image [mask]: reads both the attachment's fields and its bytes (via its url
    with aiohttp, and via discord.py's Attachment.read()); /grid posts a file of its own."""
    client = discord.Client(intents=discord.Intents.default())
    tree = discord.app_commands.CommandTree(client)
    client.seen = []  # type: ignore[attr-defined]

    @tree.command(description="Imagine from an image")
    async def imagine(
        interaction: discord.Interaction, prompt: str, image: discord.Attachment, mask: discord.Attachment | None = None
    ) -> None:
        await interaction.response.defer()
        async with aiohttp.ClientSession() as session, session.get(image.url) as resp:
            downloaded = await resp.read()
            headers = dict(resp.headers)
        via_discordpy = await image.read()
        client.seen.append((image, downloaded, via_discordpy, headers, mask))  # type: ignore[attr-defined]
        await interaction.edit_original_response(content=f"{prompt}: {image.filename} {len(downloaded)}")

    @tree.command(description="Post a grid")
    async def grid(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(file=discord.File(io.BytesIO(png((8, 8))), filename="grid.png"))

    async def setup_hook() -> None:
        await tree.sync()

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    return client


async def get(url: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:
        return resp.status, await resp.read(), resp.headers


async def test_a_discordpy_attachment_option_gets_the_upload_and_downloads_it_from_the_cdn(local: LocalDiscord) -> None:
    alice = local.add_user("alice")
    client = make_bot()
    data = png()
    up = local.upload("cat.png", data)
    assert (up.content_type, up.size, up.ephemeral) == ("image/png", len(data), True)
    assert up.url.startswith(f"{local.cdn_origin}/ephemeral-attachments/{local.application_id}/{up.id}/cat.png?ex=")
    assert (await get(up.url))[0] == 404  # not on the CDN until an interaction carries it

    async with running_client(local, client):
        await local.wait_for_commands({"imagine"})
        ix = await local.slash(alice, "imagine", {"prompt": "x", "image": up})
        msg = await ix.wait_original(lambda m: m.content, timeout=5)
    assert msg.content == f"x: cat.png {len(data)}"

    options = {o["name"]: o for o in ix.payload["data"]["options"]}
    assert options["image"] == {"name": "image", "type": 11, "value": str(up.id)}
    assert ix.payload["data"]["resolved"]["attachments"] == {
        str(up.id): {
            "id": str(up.id), "filename": "cat.png", "size": len(data), "url": up.url, "proxy_url": up.url,
            "content_type": "image/png", "width": 12, "height": 7, "ephemeral": True,
        }
    }
    image, downloaded, via_discordpy, headers, mask = client.seen[0]  # type: ignore[attr-defined]
    assert (image.id, image.filename, image.size, image.content_type) == (up.id, "cat.png", len(data), "image/png")
    assert (image.width, image.height, image.ephemeral, image.url) == (12, 7, True, up.url)
    assert downloaded == via_discordpy == data and mask is None
    assert headers["Content-Type"] == "image/png" and headers["Content-Length"] == str(len(data))
    assert local.cdn_requests == [("GET", f"/ephemeral-attachments/{local.application_id}/{up.id}/cat.png")] * 3
    assert local.spec_errors == []


async def test_uploads_guess_or_take_their_content_type_and_links_are_signed(local: LocalDiscord) -> None:
    alice = local.add_user("alice")
    notes = local.upload("notes.txt", b"hello")
    photo = local.upload("photo.jpg", jpeg())
    raw = local.upload("blob", b"\x00\x01", content_type="application/x-thing")
    assert (notes.content_type, photo.content_type, raw.content_type) == ("text/plain", "image/jpeg", "application/x-thing")
    assert notes.to_json().keys() == {"id", "filename", "size", "url", "proxy_url", "content_type", "ephemeral"}
    assert (photo.to_json()["width"], photo.to_json()["height"]) == (20, 10)  # Pillow reads JPEGs too

    async with running_client(local, make_bot()):
        await local.wait_for_commands({"imagine"})
        await (await local.slash(alice, "imagine", {"prompt": "a", "image": photo, "mask": notes})).wait_acked()
        status, body, headers = await get(notes.url)
        assert (status, body, headers["Content-Type"], headers["Content-Length"]) == (200, b"hello", "text/plain", "5")
        bare = notes.url.split("?")[0]
        assert (await get(bare))[:2] == (404, GONE.encode())  # Discord refuses unsigned links
        tampered = notes.url.replace("hm=", "hm=0")
        assert (await get(tampered))[:2] == (404, GONE.encode())
        other_name = notes.url.replace("/notes.txt?", "/other.txt?")
        assert (await get(other_name))[0] == 404
        assert (await get(raw.url))[0] == 404  # never sent

        # The bot's own files stay at /attachments/{channel_id}/..., unsigned, and can be linked.
        ix = await local.slash(alice, "grid")
        grid = (await ix.wait_original(lambda m: m.attachments)).attachments[0]
        assert grid.url == f"{local.cdn_origin}/attachments/{local.channel_id}/{grid.id}/grid.png"
        status, body, headers = await get(grid.url)
        assert (status, body, headers["Content-Type"]) == (200, grid.data, "image/png")
    assert local.spec_errors == []


async def test_the_client_refuses_what_discord_would_not_send(local: LocalDiscord) -> None:
    alice = local.add_user("alice")
    async with running_client(local, make_bot()):
        await local.wait_for_commands({"imagine", "grid"})
        with pytest.raises(ClientRefused, match="requires"):
            await local.slash(alice, "imagine", {"prompt": "no image"})
        with pytest.raises(ClientRefused, match="uploaded"):
            await local.slash(alice, "imagine", {"prompt": "x", "image": "https://example.com/cat.png"})
        ix = await local.slash(alice, "grid")
        grid = (await ix.wait_original(lambda m: m.attachments)).attachments[0]
        with pytest.raises(ClientRefused, match="of a message"):
            await local.slash(alice, "imagine", {"prompt": "x", "image": grid})
        forged = Attachment(12345, "x.png", "image/png", b"x", "http://example.com/x.png", ephemeral=True)
        with pytest.raises(ClientRefused):
            await local.slash(alice, "imagine", {"prompt": "x", "image": forged})
        up = local.upload("t.png", png())
        with pytest.raises(ClientRefused, match="string"):
            await local.slash(alice, "imagine", {"prompt": up, "image": up})  # a file for a string option

        assert ix.payload["attachment_size_limit"] == ATTACHMENT_SIZE_LIMIT == 10 * 1024 * 1024
        big = local.upload("big.png", bytes(ATTACHMENT_SIZE_LIMIT + 1))
        with pytest.raises(ClientRefused, match="upload limit"):
            await local.slash(alice, "imagine", {"prompt": "x", "image": big})
        local.attachment_size_limit = 1000  # a guild's limit is the fake's to set
        with pytest.raises(ClientRefused, match="upload limit"):
            await local.slash(alice, "imagine", {"prompt": "x", "image": local.upload("a.png", png() + bytes(1000))})
        assert local.ephemeral_files == {}  # nothing refused reached the CDN
        with pytest.raises(ValueError):
            local.upload("dir/a.png", b"x")
    assert local.spec_errors == []


async def sent_upload(local: LocalDiscord, data: bytes, filename: str = "cat.png") -> Attachment:
    """An upload on the CDN, without a bot: an interaction needs a gateway, so mark it sent."""
    up = local.upload(filename, data)
    local.ephemeral_files[up.id] = up
    return up


async def test_cdn_redirects(local: LocalDiscord) -> None:
    up = await sent_upload(local, b"real bytes")
    elsewhere = await sent_upload(local, b"other bytes", "other.png")
    rule = local.faults.redirect("http://169.254.169.254/latest/meta-data", status=301, path=UPLOADS)
    status, body, headers = await get(up.url, allow_redirects=False)
    assert (status, body, headers["Location"]) == (301, b"", "http://169.254.169.254/latest/meta-data")
    assert rule.fired == 1 and local.faults.rules == []
    assert (await get(up.url))[:2] == (200, b"real bytes")  # used up

    only_up = rf"/ephemeral-attachments/\d+/{up.id}/.*"
    local.faults.redirect(elsewhere.url, n=None, status=307, path=only_up)
    for _ in range(2):
        status, body, _ = await get(up.url)  # aiohttp follows it: to another file on the same CDN
        assert (status, body) == (200, b"other bytes")
    local.faults.clear()
    local.faults.redirect("/elsewhere", path=EPHEMERAL_ROUTE)  # the template matches too; relative is fine
    assert (await get(up.url, allow_redirects=False))[2]["Location"] == "/elsewhere"
    with pytest.raises(ValueError):
        local.faults.redirect("http://x", status=200)
    assert [k for k, *_ in local.faults.fired] == ["redirect"] * 4
    assert local.cdn_requests[-1] == ("GET", f"/ephemeral-attachments/{local.application_id}/{up.id}/cat.png")


async def test_cdn_chunked_and_lying_content_length(local: LocalDiscord) -> None:
    data = bytes(range(256)) * 1000
    up = await sent_upload(local, data)
    local.faults.chunked(path=UPLOADS)
    async with aiohttp.ClientSession() as session, session.get(up.url) as resp:
        assert resp.status == 200 and "Content-Length" not in resp.headers and resp.content_length is None
        assert resp.headers["Transfer-Encoding"] == "chunked" and resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == data

    huge = b"\xff" * (3 * 1024 * 1024)
    local.faults.chunked(path=UPLOADS, body=huge)  # far more than the file, with no length to warn
    async with aiohttp.ClientSession() as session, session.get(up.url) as resp:
        received = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            received += len(chunk)
            if received > 1024 * 1024:
                break  # a careful client stops counting at its own limit
    assert received > 1024 * 1024

    local.faults.lying_length(100, path=UPLOADS)
    with pytest.raises(aiohttp.ClientResponseError, match="Data after"):  # aiohttp refuses the surplus
        await get(up.url)
    local.faults.lying_length(len(data) * 2, path=UPLOADS)
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(up.url)  # the body ends before the length it claimed
    assert (await get(up.url))[1] == data  # rules used up: served normally again
    assert [k for k, *_ in local.faults.fired] == ["chunked", "chunked", "lying_length", "lying_length"]


async def test_cdn_slow_body_and_what_api_rules_do_not_touch(local: LocalDiscord) -> None:
    up = await sent_upload(local, b"s" * 400)
    local.faults.slow(path=UPLOADS, delay=0.05, chunk_size=100)
    started = time.monotonic()
    status, body, headers = await get(up.url)
    assert (status, body, headers["Content-Length"]) == (200, b"s" * 400, "400")
    assert 0.2 <= time.monotonic() - started < 2

    local.faults.slow(path=UPLOADS, delay=5, chunk_size=100)
    with pytest.raises(asyncio.TimeoutError):
        await get(up.url, timeout=aiohttp.ClientTimeout(sock_read=0.2))  # the client's read timeout fires

    # API rules (no cdn=True) never match a download; CDN rules never match the API.
    local.faults.fail(1, status=500)
    local.faults.chunked(n=None, path=r"/channels/.*")
    assert (await get(up.url))[0] == 200
    local.faults.clear()
    local.faults.fail(1, status=503, path=UPLOADS, cdn=True)
    status, body, _ = await get(up.url)
    assert (status, body) == (503, b"503: Service Unavailable")
    local.faults.reset(1, path=UPLOADS, cdn=True)
    assert (await get(up.url))[0] == 200  # aiohttp retries a GET once on a cut connection
    local.faults.reset(2, path=UPLOADS, cdn=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(up.url)
    hold = local.faults.hold(path=UPLOADS, cdn=True)
    pending = asyncio.create_task(get(up.url))
    await hold.arrived(timeout=2)
    hold.release()
    assert (await pending)[:2] == (200, b"s" * 400)
    with pytest.raises(ValueError):
        local.faults.fail(1, cdn=True, uploads_only=True)
    assert local.http_errors == [] and local.spec_errors == []


async def test_closing_ends_a_slow_download_at_once() -> None:
    async with LocalDiscord() as d:
        up = await sent_upload(d, b"x" * 1000)
        d.faults.slow(path=UPLOADS, delay=30, chunk_size=10)
        pending = asyncio.create_task(get(up.url))
        await d.wait_until(lambda: d.cdn_requests, 2, "the download to start")
        await asyncio.sleep(0.05)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(pending, 2)
