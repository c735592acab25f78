"""Inference: the model catalog, diffusers pipelines, the worker pool and image grids.

Importing bot.engine is cheap: torch, diffusers and transformers load only when a worker first loads a
model, or when one of the names in _LAZY (below) is first used.
"""

from bot.engine.catalog import Catalog, CatalogError, ModelSpec, load_catalog
from bot.engine.grid import make_grid, png_bytes
from bot.engine.pool import LoadedState, Ticket, WorkerPool
from bot.engine.tickets import EnginePool
from bot.engine.requests import (
    Cancelled,
    DeviceOptions,
    EngineError,
    Event,
    GenerateRequest,
    GenerationResult,
    Preview,
    Progress,
    Started,
    UpscaleRequest,
)
from bot.engine.upscale import upscale

# name -> module; these pull in torch/diffusers/transformers, so they are imported on first use.
_LAZY = {
    "LoadedModel": "bot.engine.pipelines",
    "create_tiny_model": "bot.engine.tiny",
    "build_clip_tokenizer": "bot.engine.tokenizer",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bot.engine' has no attribute {name!r}")


__all__ = [
    "Cancelled",
    "Catalog",
    "CatalogError",
    "DeviceOptions",
    "EngineError",
    "EnginePool",
    "Event",
    "GenerateRequest",
    "GenerationResult",
    "LoadedModel",
    "LoadedState",
    "ModelSpec",
    "Preview",
    "Progress",
    "Started",
    "Ticket",
    "UpscaleRequest",
    "WorkerPool",
    "build_clip_tokenizer",
    "create_tiny_model",
    "load_catalog",
    "make_grid",
    "png_bytes",
    "upscale",
]
