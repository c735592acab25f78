"""`dreamgrid bench canvas`: how well Pan and Zoom Out do their job on the shapes model, judged by its analyser.

For each of `--prompts` held-out prompts the shapes model makes a picture (the engine's own path,
LoadedModel), then Pan ⬅️ and Zoom Out 2x paint around it exactly as the bot does (bot/service/canvas.py +
inpainting). Per tool, the fraction of results where:
- kept_pixels: every kept pixel is the source's, exactly;
- background_match: the new area's background is the source's background colour;
- shape_kept: the figure keeps its shape and colour (for Pan, the analyser reads the whole new canvas);
- no_new_figure (Pan): the new strip holds no second figure.
One JSON object is printed last."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bot.engine.catalog import load_catalog
from bot.engine.requests import GenerateRequest
from bot.service.canvas import paint_canvas
from bot.settings import Settings
from bot.shapes.analyser import analyse
from bot.shapes.bench import held_out_prompts

TOOLS = ("pan left", "zoom 2")


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench canvas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64, help="held-out prompts (default 64)")
    parser.add_argument("--model", default="shapes", help="a catalog model the analyser can read (default shapes)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = measure(Settings.load(), args.model, args.prompts)
    if not args.json:
        for tool, figures in result["tools"].items():
            print(f"{tool}: " + ", ".join(f"{key} {value:.3f}" for key, value in figures.items()))
    print(json.dumps(result))
    return 0


def measure(settings: Settings, model: str, count: int) -> dict:
    from bot.engine.pipelines import LoadedModel

    spec = load_catalog(settings.catalog_path).get(model)
    loaded = LoadedModel(spec, settings.models_dir, "cpu")
    common = dict(steps=spec.steps, guidance=spec.guidance)
    rows: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
    started = time.perf_counter()
    for prompt, seed in held_out_prompts(count):
        source = loaded.run(GenerateRequest(model, prompt, (seed,), width=spec.width, height=spec.height, **common),
                            lambda done, total: None).images[0]
        before = analyse(source)
        for tool in TOOLS:
            canvas = paint_canvas(tool, source, model_size=(spec.width, spec.height),
                                  multiple=spec.family.size_multiple)
            image = loaded.run(GenerateRequest(model, prompt, (seed + 1,), init_image=canvas.image,
                                               mask_image=canvas.mask, strength=canvas.strength, **common),
                               lambda done, total: None).images[0]
            rows[tool].append(_judge(tool, source, canvas, image, before))
    return {
        "model": model, "prompts": count, "seconds": round(time.perf_counter() - started, 1),
        "tools": {tool: {key: round(float(np.mean([row[key] for row in tool_rows])), 3) for key in tool_rows[0]}
                  for tool, tool_rows in rows.items()},
    }


def _judge(tool: str, source, canvas, image, before) -> dict:
    kept = np.asarray(canvas.mask) == 0
    after = analyse(image)
    row = {
        "kept_pixels": bool((np.asarray(image)[kept] == np.asarray(canvas.image)[kept]).all()),
        "shape_kept": after.shape == before.shape and after.shape_colour == before.shape_colour,
    }
    if tool.startswith("pan"):
        strip = analyse(image.crop((0, 0, image.width - source.width, image.height)))
        row["background_match"] = strip.background_colour == before.background_colour
        row["no_new_figure"] = strip.shape is None
    else:
        row["background_match"] = after.background_colour == before.background_colour
    return row
