"""Shared fixtures: the tiny test model (built once), a local Discord, and the real bot logged in to it
(`dreamgrid`: its engine is the in-process pool unless a folder's `engine_settings` says otherwise, as
tests/ray does)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings as hypothesis_settings

if TYPE_CHECKING:
    from bot.app import App
    from bot.localdiscord import LocalDiscord
    from bot.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# CI runs the property tests on the same examples every time (a new failure there should come from a change,
# not from this run's luck); `make test` elsewhere draws new ones and so keeps finding new cases.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]

TEST_CATALOG = """\
default = "tiny"

[models.tiny]
source = "tiny-sd"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 4
guidance = 5.0
upscaler = "realesr-animevideov3"
description = "Random weights: its images are noise."

[models.broken]
source = "broken-sd"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 4
guidance = 5.0
description = "A copy of tiny whose UNet weights are corrupt: loading it fails."

[models.tiny-xl]
source = "tiny-sdxl"
pipeline = "stable-diffusion-xl"
width = 64
height = 64
steps = 4
guidance = 5.0
upscaler = "realesr-animevideov3"
description = "The tiny model's SDXL sibling: two text encoders, random weights."

[models.tiny-flux]
source = "tiny-flux"
pipeline = "flux"
width = 64
height = 64
steps = 4
guidance = 3.5
upscaler = "realesr-animevideov3"
description = "A tiny FLUX.1-dev: a packed-latent transformer, CLIP and T5, random weights."

[models.tiny-sd3]
source = "tiny-sd3"
pipeline = "stable-diffusion-3"
width = 64
height = 64
steps = 4
guidance = 5.0
max_prompt_tokens = 64
upscaler = "realesr-animevideov3"
description = "A tiny SD 3.5: an MMDiT, two CLIPs and T5, random weights."

[models.tiny-zimage]
source = "tiny-zimage"
pipeline = "z-image"
width = 64
height = 64
steps = 4
guidance = 0.0
max_prompt_tokens = 128
upscaler = "realesr-animevideov3"
description = "A tiny Z-Image Turbo: a single-stream transformer and a Qwen3 text encoder, no guidance."

[models.shapes]
source = "shapes"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 12
guidance = 5.0
max_prompt_tokens = 32
describer = "shapes-describer"
description = "The trained shapes model (shipped): pictures a test can judge."

[models.tiny-inpainting]
source = "tiny-sd"
inpaint_source = "tiny-sd-inpaint"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 4
guidance = 5.0
upscaler = "realesr-animevideov3"
description = "The tiny model with a dedicated inpainting model for the canvas tools."

[models.tiny-ckpt]
source = "checkpoints/tiny-sd.safetensors"
config = "tiny-sd"
width = 64
height = 64
steps = 4
guidance = 5.0
description = "The tiny model as one single-file checkpoint (its family read from the file)."

[models.tiny-xl-ckpt]
source = "checkpoints/tiny-sdxl.safetensors"
config = "tiny-sdxl"
width = 64
height = 64
steps = 4
guidance = 5.0
description = "The tiny SDXL model as one single-file checkpoint."

[models.tiny-styled]
source = "tiny-sd"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 4
guidance = 5.0
loras = { "styles/tiny-style" = 0.7 }
description = "The tiny model with a LoRA on every job, as a catalog entry may have it."

[models.tiny-ip]
source = "tiny-sd"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 4
guidance = 5.0
ip_adapter = "tiny-ip-adapter-sd/ip-adapter.safetensors"
image_encoder = "tiny-ip-adapter-sd/image_encoder"
description = "The tiny model with a tiny random IP-Adapter: --sref, --oref and /blend through it."
"""


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder with the tiny random model, a broken copy of it, and a catalog naming both."""
    from bot.engine.tiny import FAMILIES, create_tiny_model, is_current

    folder = tmp_path_factory.mktemp("models")
    for family in FAMILIES:
        shared = ROOT / "models" / f"tiny-{family}"
        if is_current(shared, family):  # `make test` built it already
            shutil.copytree(shared, folder / f"tiny-{family}")
        else:
            create_tiny_model(folder / f"tiny-{family}", family=family)
    # The tiny IP-Adapters, for the tiny sd and sdxl UNets just copied or built.
    from bot.engine.ip_adapter import ADAPTER_FAMILIES, create_tiny_ip_adapter, is_current_adapter

    for family, base in ADAPTER_FAMILIES.items():
        shared = ROOT / "models" / f"tiny-{family}"
        if is_current_adapter(shared, folder / f"tiny-{base}"):
            shutil.copytree(shared, folder / f"tiny-{family}")
        else:
            create_tiny_ip_adapter(folder / f"tiny-{family}", folder / f"tiny-{base}", family=family)
    # Single-file checkpoints (the original key layout), and LoRAs in both formats people download.
    from bot.engine.checkpoints import export_single_file
    from bot.engine.loras import create_tiny_lora

    export_single_file(folder / "tiny-sd", folder / "checkpoints" / "tiny-sd.safetensors")
    export_single_file(folder / "tiny-sdxl", folder / "checkpoints" / "tiny-sdxl.safetensors")
    create_tiny_lora(folder / "tiny-sd", folder / "loras" / "styles" / "tiny-style.safetensors", seed=1)
    create_tiny_lora(folder / "tiny-sd", folder / "loras" / "tiny-kohya.safetensors", seed=2, style="kohya")
    create_tiny_lora(folder / "tiny-sdxl", folder / "loras" / "tiny-xl-style.safetensors", seed=3)
    create_tiny_lora(folder / "tiny-flux", folder / "loras" / "tiny-flux-style.safetensors", seed=4)
    shutil.copytree(folder / "tiny-sd", folder / "broken-sd")
    for weights in (folder / "broken-sd" / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    shutil.copytree(ROOT / "models" / "upscalers", folder / "upscalers")
    (folder / "shapes").symlink_to(ROOT / "models" / "shapes")  # read only, never written
    (folder / "shapes-describer").symlink_to(ROOT / "models" / "shapes-describer")
    (folder / "catalog.toml").write_text(TEST_CATALOG)
    return folder


@pytest.fixture
async def web_bot(tmp_path, models_dir):
    """The real bot on a local Discord, with its web server on a free port: (discord, app)."""
    from bot.local import local_bot, settings_for as local_settings  # the whole app: only where it is used
    from bot.localdiscord import LocalDiscord
    from bot.playground import free_port
    from bot.settings import Settings

    async with LocalDiscord() as discord:
        settings = local_settings(discord, Settings.load(env={}, env_file=None), data_dir=tmp_path / "data",
                                  models_dir=models_dir, progress_interval=0.0, preview_interval=0.0,
                                  web_port=free_port())
        async with local_bot(discord, settings) as app:
            yield discord, app
        assert discord.spec_errors == []


def pytest_collection_modifyitems(config, items):
    """Tests marked `ray` need Ray Serve (the `ray` extra, in `.[test]`): skipped, saying so, without it."""
    if importlib.util.find_spec("ray") is not None:
        return
    if os.environ.get("DREAMGRID_REQUIRE_RAY"):  # CI (.ci/run): a missing extra is a failure, not a skip
        raise pytest.UsageError("DREAMGRID_REQUIRE_RAY is set but Ray is not installed (the `ray` extra)")
    skip = pytest.mark.skip(reason="Ray is not installed: pip install -c constraints.txt -e '.[ray]' to run it")
    for item in items:
        if "ray" in item.keywords:
            item.add_marker(skip)


@dataclass
class Dreamgrid:
    """A running bot that can be stopped and started again on the same data, like a real restart."""

    discord: LocalDiscord
    settings: Settings
    app: App | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> None:
        from bot.local import local_bot

        self._stack = contextlib.AsyncExitStack()
        self.app = await self._stack.enter_async_context(local_bot(self.discord, self.settings))

    async def stop(self) -> None:
        await self._stack.aclose()
        self.app = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def grid(self, user, prompt: str, timeout: float = 60):
        """/imagine and wait for the finished message (one with an attachment)."""
        ix = await self.discord.slash(user, "imagine", {"prompt": prompt})
        message = await ix.wait_original(lambda m: bool(m.attachments), timeout=timeout)
        return ix, message

    async def click(self, user, message, custom_id: str, timeout: float = 60):
        """Click a button and wait for the new job's finished message."""
        ix = await self.discord.click(user, message.id, custom_id)
        result = await ix.wait_original(lambda m: bool(m.attachments), timeout=timeout)
        return ix, result


def settings_for(discord: LocalDiscord, data_dir: Path, models_dir: Path, **overrides) -> Settings:
    from bot.local import settings_for as local_settings
    from bot.settings import Settings

    # No live previews unless a test asks: a preview is an attachment, and tests wait for the grid's.
    values = dict(data_dir=data_dir, models_dir=models_dir, progress_interval=0.0, daily_images=40,
                  preview_interval=0.0, position_interval=0.2)
    values.update(overrides)
    return local_settings(discord, Settings.load(env={}, env_file=None), **values)


@pytest.fixture
async def local_discord():
    from bot.localdiscord import LocalDiscord

    async with LocalDiscord() as discord:
        yield discord
        # Every request the bot sent must match Discord's OpenAPI spec.
        assert discord.spec_errors == []


@pytest.fixture
def engine_settings() -> dict:
    """Settings of the engine the `dreamgrid` bot runs on: none here (the in-process pool)."""
    return {}


@pytest.fixture
async def dreamgrid(local_discord, tmp_path, models_dir, engine_settings, request):
    overrides = {**engine_settings, **getattr(request, "param", {})}
    bot = Dreamgrid(local_discord, settings_for(local_discord, tmp_path / "data", models_dir, **overrides))
    await bot.start()
    yield bot
    if bot.app is not None:
        await bot.stop()
