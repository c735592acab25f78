"""/describe: a picture in, four prompts out, written by the describer the model's catalog entry names (the
shapes model's own small trained one, or a captioner such as BLIP). The answer is stored, so the buttons that
run each prompt name only its id and work after a restart. Not charged: it makes no images."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from bot.engine import Catalog, ModelSpec
from bot.engine.describers import load_describer
from bot.service.fetch import ImageFetcher, Upload
from bot.service.policy import Policy
from bot.service.sources import SourceImages
from bot.service.users import Requester, UserError
from bot.store.pictures import Description, Pictures
from bot.store.preferences import Preferences


class Describing:
    def __init__(self, catalog: Catalog, models_dir: Path, fetcher: ImageFetcher, sources: SourceImages,
                 pictures: Pictures, policy: Policy, preferences: Preferences, device: str) -> None:
        self.catalog = catalog
        self.models_dir = Path(models_dir)
        self.fetcher = fetcher
        self.sources = sources
        self.pictures = pictures
        self.policy = policy
        self.preferences = preferences
        self.device = device
        self._describers: dict[str, object] = {}
        self._lock = threading.Lock()  # one description at a time: a captioner is not thread-safe

    async def describe(self, who: Requester, image: Upload | None = None, link: str | None = None) -> Description:
        await self.policy.admit(who, "")  # banned members get nothing
        if (image is None) == (link is None):
            raise UserError("Give /describe one picture: upload it (`image`) or paste a Discord image link (`link`).")
        spec = await self._describing_model(who)
        if image is not None:
            picture = await self.fetcher.fetch(image.url, size=image.size, name=f"The image `{image.filename}`")
        else:
            picture = await self.fetcher.fetch(link.strip(), name="The linked image")
        digest = await asyncio.to_thread(self.sources.put, picture)
        prompts = await asyncio.to_thread(self._describe, spec, picture)
        return await self.pictures.add_description(who.user_id, digest, spec.name, prompts)

    async def description(self, description_id: int) -> Description | None:
        return await self.pictures.description(description_id)

    async def _describing_model(self, who: Requester) -> ModelSpec:
        """The member's model (/settings), else the server's, else any model with a describer."""
        chosen = [(await self.preferences.get(who.user_id)).model, await self.policy.model_for(who.guild_id)]
        for name in (*chosen, *self.catalog.names):
            spec = self.catalog.models.get(name or "")
            if spec is not None and spec.describer:
                return spec
        raise UserError("No model on this server can describe pictures: an admin can name a describer (a "
                        "captioning model) in a model's catalog entry.")

    def _describe(self, spec: ModelSpec, picture) -> list[str]:
        with self._lock:
            describer = self._describers.get(spec.describer)
            if describer is None:
                describer = load_describer(self.models_dir / spec.describer, self.device)
                self._describers[spec.describer] = describer
            return list(describer.describe(picture))
