"""One local Ray cluster for the whole session (2 CPUs, no dashboard) with the Serve application on it,
serving the test catalog (the `shapes` model) on the CPU, one replica; and the real bot on the local Discord
with ENGINE=ray pointed at it (the shared `dreamgrid` fixture, tests/conftest.py). Ray is imported inside the
fixtures only: without it the tests, all marked `ray`, are skipped with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


RAY_CATALOG = """\
default = "shapes"

[models.shapes]
source = "shapes"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 4
guidance = 5.0
max_prompt_tokens = 32
describer = "shapes-describer"
description = "The trained shapes model, in 4 steps."

[models.other]
source = "shapes"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 3
guidance = 5.0
max_prompt_tokens = 32
description = "The shapes model under another name: a second model to switch to."

[models.long]
source = "shapes"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 60
guidance = 5.0
max_prompt_tokens = 32
description = "The shapes model, in enough steps to do something while a job runs."

[models.slow]
source = "shapes"
pipeline = "stable-diffusion"
width = 64
height = 64
steps = 999
guidance = 5.0
max_prompt_tokens = 32
description = "The shapes model with a step count nobody waits for: holds the replica until cancelled."
"""


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The shipped shapes model under four catalog names (and its describer), for the bot and the Serve
    application alike."""
    folder = tmp_path_factory.mktemp("ray-models")
    for name in ("shapes", "shapes-describer"):  # read only, never written
        (folder / name).symlink_to(ROOT / "models" / name)
    (folder / "catalog.toml").write_text(RAY_CATALOG)
    return folder


@pytest.fixture(scope="session")
def ray_serve(models_dir) -> str:
    """The Serve application's URL (RAY_SERVE_URL)."""
    import ray
    from ray import serve

    from bot.playground import free_port
    from bot.serve.app import deploy

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield deploy(models_dir, port=free_port(), replicas=1, num_cpus=1, torch_threads=1,
                     max_models=4)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def engine_settings(ray_serve) -> dict:
    """The bot's engine: the Serve application; its default model the trained shapes one."""
    return {"engine": "ray", "ray_serve_url": ray_serve, "default_model": "shapes"}
