"""The pages' files (bot/web/static: HTML, CSS, JS modules; no build step), served by one route for every page:
a fixed set of names read once, so no path from a request ever reaches the disk."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
FILES = frozenset(path.name for path in STATIC.iterdir() if path.suffix in TYPES)


def page(name: str) -> web.FileResponse:
    """One of the pages' files (`archive.html`), never cached stale: they change with the bot."""
    if name not in FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Content-Type": TYPES[Path(name).suffix],
                                                   "Cache-Control": "no-cache"})


async def _static(request: web.Request) -> web.FileResponse:
    return page(request.match_info["name"])


STATIC_ROUTE = web.get("/static/{name}", _static)
