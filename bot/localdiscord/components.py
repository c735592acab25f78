"""Message components as Discord stores and returns them.

Discord answers with every component numbered (``id``), nulls dropped, defaults filled in,
and media (``attachment://name`` or URLs) unfurled into media objects.
"""

from __future__ import annotations

from typing import Any, Callable

from .models import Attachment

CONTAINER, THUMBNAIL, MEDIA_GALLERY, FILE = 17, 11, 12, 13


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def render_components(
    components: list[dict[str, Any]], attachments: list[Attachment], next_id: Callable[[], int]
) -> list[dict[str, Any]]:
    clean = drop_nulls(components)
    by_name = {a.filename: a for a in attachments}
    counter = 0

    def media(item: dict[str, Any]) -> dict[str, Any]:
        url = str(item.get("url", ""))
        found = by_name.get(url.removeprefix("attachment://")) if url.startswith("attachment://") else None
        if found is None:
            return {"id": str(next_id()), "url": url, "proxy_url": url}
        unfurled = found.to_json()
        out = {"id": str(next_id()), "url": found.url, "proxy_url": found.url, "attachment_id": str(found.id),
               "content_type": found.content_type}
        for key in ("width", "height"):
            if key in unfurled:
                out[key] = unfurled[key]
        return out

    def walk(items: list[dict[str, Any]]) -> None:
        nonlocal counter
        for item in items:
            counter += 1
            item.setdefault("id", counter)
            kind = item.get("type")
            if kind == CONTAINER:
                item.setdefault("accent_color", None)
                item.setdefault("spoiler", False)
            elif kind == THUMBNAIL:
                item["media"] = media(item.get("media") or {})
                item.setdefault("description", None)
                item.setdefault("spoiler", False)
            elif kind == MEDIA_GALLERY:
                for entry in item.get("items") or []:
                    entry["media"] = media(entry.get("media") or {})
                    entry.setdefault("description", None)
                    entry.setdefault("spoiler", False)
            elif kind == FILE:
                file = item.get("file") or {}
                attachment = by_name.get(str(file.get("url", "")).removeprefix("attachment://"))
                item["file"] = media(file)
                item.setdefault("name", attachment.filename if attachment else "")
                item.setdefault("size", attachment.size if attachment else 0)
                item.setdefault("spoiler", False)
            walk(item.get("components") or [])
            for key in ("accessory", "component"):
                if isinstance(item.get(key), dict):
                    walk([item[key]])

    walk(clean)
    return clean
