"""`dreamgrid bench memory`: what a model costs in memory, and what img2img and inpaint add to it.

txt2img, img2img and inpaint share one set of weights (`from_pipe`), so adding the other two pipelines
should cost next to nothing. Runs in this process on the CPU: RSS is read from /proc."""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path

from bot.engine import load_catalog
from bot.settings import Settings


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(settings: Settings, model: str | None) -> dict:
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    catalog = load_catalog(settings.catalog_path)
    spec = catalog.get(model or settings.default_model or catalog.default)
    source = spec.resolve(settings.models_dir)
    gc.collect()
    before = rss_mb()
    txt2img = StableDiffusionPipeline.from_pretrained(source, local_files_only=Path(source).is_dir(),
                                                      torch_dtype=torch.float32, safety_checker=None)
    gc.collect()
    base = rss_mb()
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(txt2img, torch_dtype=torch.float32)
    inpaint = StableDiffusionInpaintPipeline.from_pipe(txt2img, torch_dtype=torch.float32)
    gc.collect()
    with_pipes = rss_mb()
    shared = all(getattr(pipe, name) is getattr(txt2img, name)
                 for pipe in (img2img, inpaint) for name in ("unet", "vae", "text_encoder"))
    weights_mb = sum(p.numel() * p.element_size() for m in (txt2img.unet, txt2img.vae, txt2img.text_encoder)
                     for p in m.parameters()) / 2**20
    return {"bench": "memory", "model": spec.name, "source": source, "machine": {"cores": os.cpu_count()},
            "rss_before_mb": round(before, 1), "rss_base_mb": round(base, 1),
            "rss_with_pipes_mb": round(with_pipes, 1), "weights_mb": round(weights_mb, 1),
            "ratio": round(with_pipes / base, 4), "weights_shared": shared}


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a catalog model (default: the default model)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = measure(Settings.load(), args.model)
    if not args.json:
        print(f"{result['model']}: {result['rss_base_mb']} MB with txt2img, "
              f"{result['rss_with_pipes_mb']} MB with img2img and inpaint too ({result['ratio']}x)")
    print(json.dumps(result))
    return 0
