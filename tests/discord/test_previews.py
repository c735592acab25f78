"""Live previews as a user sees them: the job's message shows a rough picture of the grid while it is
generated, then the real grid replaces it."""

from __future__ import annotations

import pytest

PREVIEW = "preview.png"


@pytest.mark.parametrize("model", ["tiny", "tiny-xl", "tiny-sd3", "tiny-flux", "tiny-zimage"])  # every latent space (FLUX packed)
@pytest.mark.parametrize("dreamgrid", [{"preview_interval": 1e-9}], indirect=True)  # a preview every step
async def test_the_message_shows_previews_while_generating_then_the_grid(dreamgrid, model):
    user = dreamgrid.discord.add_user("alice")
    ix = await dreamgrid.discord.slash(user, "imagine", {"prompt": f"a lighthouse at dusk --steps 8 --model {model}"})
    message = await ix.wait_original(
        lambda m: any(attachment.filename != PREVIEW for attachment in m.attachments), timeout=60)

    previews = [version for version in message.history
                if any(attachment.filename == PREVIEW for attachment in version.attachments)]
    assert previews, "no preview was shown"
    assert all("Generating…" in version.content for version in previews)
    assert all(version.components for version in previews)  # the ❌ stays while it runs
    # The finished message carries the grid alone, at twice the preview's size.
    assert [attachment.filename for attachment in message.attachments] != [PREVIEW]
    assert len(message.attachments) == 1
    grid, preview = message.attachments[0], previews[-1].attachments[0]
    assert grid.to_json()["width"] == 2 * preview.to_json()["width"]


async def test_no_previews_when_off(dreamgrid):
    user = dreamgrid.discord.add_user("bob")
    _, message = await dreamgrid.grid(user, "a quick one")
    assert not any(attachment.filename == PREVIEW for version in message.history
                   for attachment in version.attachments)
