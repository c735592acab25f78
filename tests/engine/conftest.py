"""Engine fixtures: the tiny random model, built once per session with create_tiny_model, and the
shipped catalog plus a model that cannot load."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from bot.engine.catalog import Catalog, load_catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CATALOG = REPO_ROOT / "models" / "catalog.toml"

# One intra-op thread: on a small shared machine more threads make torch's OpenMP workers spin against
# each other and run many times slower.
TORCH_THREADS = 1
torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(scope="session")
def engine_models_dir(tmp_path_factory) -> Path:
    """A models dir with the tiny model at tiny-sd/ and the upscalers, where the shipped catalog expects them."""
    from bot.engine.tiny import create_tiny_model

    root = tmp_path_factory.mktemp("engine-models")
    create_tiny_model(root / "tiny-sd", seed=0)
    (root / "upscalers").symlink_to(REPO_ROOT / "models" / "upscalers")  # the shipped catalog's upscaler
    return root


@pytest.fixture(scope="session")
def engine_catalog() -> Catalog:
    """The shipped catalog, plus `missing`: a hub model that is not in the (offline) cache."""
    shipped = load_catalog(SHIPPED_CATALOG)
    missing = replace(shipped.get("tiny"), name="missing", source="dreamgrid-tests/not-downloaded")
    return Catalog(default=shipped.default, models={**shipped.models, "missing": missing})


@pytest.fixture(scope="session")
def tiny(engine_catalog, engine_models_dir):
    """The tiny model loaded once on the CPU, for tests that call the pipelines directly."""
    from bot.engine.pipelines import LoadedModel

    return LoadedModel(engine_catalog.get("tiny"), engine_models_dir, "cpu")
