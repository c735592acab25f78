"""/describe: a picture in, four prompts out, written by the describer the model's catalog entry names (the
shapes model's own small trained one, or a captioner such as BLIP). The answer is stored, so the buttons that
run each prompt name only its id and work after a restart. Not charged: it makes no images. The engine
describes (`EnginePool.describe`): in this process on its first device, or on a Ray Serve replica."""

from __future__ import annotations

import asyncio
import logging

from bot.engine import Catalog, EngineError, EnginePool, ModelSpec
from bot.service.fetch import ImageFetcher, Upload
from bot.service.policy import Policy
from bot.service.sources import SourceImages
from bot.service.users import Requester, UserError
from bot.store.pictures import Description, Pictures
from bot.store.preferences import Preferences

log = logging.getLogger(__name__)


class Describing:
    def __init__(self, catalog: Catalog, pool: EnginePool, fetcher: ImageFetcher, sources: SourceImages,
                 pictures: Pictures, policy: Policy, preferences: Preferences) -> None:
        self.catalog = catalog
        self.pool = pool  # describes where the pictures are made: in this process, or on a Ray replica
        self.fetcher = fetcher
        self.sources = sources
        self.pictures = pictures
        self.policy = policy
        self.preferences = preferences

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
        try:
            prompts = await self.pool.describe(spec.describer, picture)
        except EngineError as error:  # its text is safe to show: no paths
            log.warning("/describe with %s failed: %s", spec.describer, error)
            raise UserError(f"The picture could not be described: {error}. Try again in a minute; if it keeps "
                            "happening, tell an admin (the model's describer).") from None
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
