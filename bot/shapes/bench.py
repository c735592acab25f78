"""Prompt adherence of the `shapes` model, judged by the analyser: `dreamgrid bench shapes [--json]`.

Held-out prompts come from the world's caption generator with seeds the training set never uses. Each
prompt gets its own image seed; the analyser reads every image back and each attribute the prompt asks
for is scored. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bot.shapes.analyser import ATTRIBUTES, analyse, parse_prompt, score
from bot.shapes.world import COLOUR_NAMES, POSITION_NAMES, SHAPES, sample_scene

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "shapes"
BENCH_SEED = 7_777_777  # prompts; training data use seeds 0.. with their own generator
IMAGE_SEED_BASE = 1_000_000

CHANCE = {
    "shape_colour": 1 / len(COLOUR_NAMES),
    "shape": 1 / len(SHAPES),
    "background_colour": 1 / len(COLOUR_NAMES),
    "position": 1 / len(POSITION_NAMES),
}


def held_out_prompts(count: int, seed: int = BENCH_SEED) -> list[tuple[str, int]]:
    """`count` (prompt, image seed) pairs drawn like training captions, from a held-out seed."""
    rng = random.Random(seed)
    return [(sample_scene(rng).caption, IMAGE_SEED_BASE + i) for i in range(count)]


def chance_levels(prompts: list[tuple[str, int]]) -> dict[str, float]:
    """What guessing uniformly would score on these prompts (position only where a prompt names one)."""
    out = dict(CHANCE)
    alls = []
    for prompt, _ in prompts:
        want = parse_prompt(prompt).attributes()
        alls.append(float(np.prod([CHANCE[k] for k in ATTRIBUTES if want[k] is not None])))
    out["all"] = float(np.mean(alls)) if alls else 0.0
    return {k: round(v, 4) for k, v in out.items()}


def _tally(rows: list[dict]) -> dict[str, float]:
    out = {}
    for key in (*ATTRIBUTES, "all"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = sum(vals) / len(vals) if vals else 0.0
    return out


@torch.no_grad()
def evaluate(
    pipe,
    prompts: list[tuple[str, int]],
    steps: int,
    guidance: float,
    width: int = 64,
    height: int = 64,
    batch: int = 16,
) -> dict:
    """Generate one image per (prompt, seed) and score it. Returns the fractions and the per-prompt rows."""
    rows = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        generators = [torch.Generator().manual_seed(seed) for _, seed in chunk]
        images = pipe(
            [p for p, _ in chunk],
            num_inference_steps=steps,
            guidance_scale=guidance,
            width=width,
            height=height,
            generator=generators,
            output_type="pil",
        ).images
        for (prompt, seed), image in zip(chunk, images):
            analysis = analyse(image)
            row = score(analysis, parse_prompt(prompt))
            row.update(prompt=prompt, seed=seed, got=analysis.attributes())
            rows.append(row)
    result = _tally(rows)
    result["rows"] = rows
    return result


def _kept_fraction(before, after) -> float:
    a, b = before.attributes(), after.attributes()
    names = [n for n in ATTRIBUTES if a[n] is not None]
    return sum(a[n] == b[n] for n in names) / len(names) if names else 0.0


def bench(
    model_dir: Path = DEFAULT_MODEL,
    prompts: int = 256,
    steps: int | None = None,
    guidance: float | None = None,
    size: int | None = None,
    threads: int = 2,
    variations: int = 32,
    upscaler_name: str | None = None,
    log=lambda msg: print(msg, file=sys.stderr, flush=True),
) -> dict:
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    torch.set_num_threads(threads)
    meta_path = Path(model_dir) / "dreamgrid.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    steps = steps or meta.get("steps", 12)
    guidance = guidance if guidance is not None else meta.get("guidance", 5.0)
    size = size or meta.get("width", 64)
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pairs = held_out_prompts(prompts)
    t0 = time.time()
    result = evaluate(pipe, pairs, steps=steps, guidance=guidance, width=size, height=size)
    log(f"adherence on {prompts} prompts in {time.time() - t0:.1f}s")

    # A 4-image grid at 64x64: one call with four seeds, as the bot makes it (best of 3 after a warm-up).
    grid_prompt = "a red circle on a blue background"
    times = []
    for _ in range(4):
        t1 = time.perf_counter()
        pipe([grid_prompt] * 4, num_inference_steps=steps, guidance_scale=guidance, width=64, height=64,
             generator=[torch.Generator().manual_seed(s) for s in (1, 2, 3, 4)], output_type="pil")
        times.append(time.perf_counter() - t1)
    grid_seconds = min(times[1:])

    # Variations: img2img at strength 0.5 from a generated source; what of the source survives.
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    kept = []
    for prompt, seed in pairs[:variations]:
        source = result_image = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, width=size,
                                     height=size, generator=torch.Generator().manual_seed(seed)).images[0]
        variation = img2img(prompt, image=source, strength=0.5, num_inference_steps=steps, guidance_scale=guidance,
                            generator=torch.Generator().manual_seed(seed + 1)).images[0]
        kept.append(_kept_fraction(analyse(result_image), analyse(variation)))
    variation_kept = float(np.mean(kept)) if kept else None

    upscale_kept = upscale_seconds = None
    upscaler = None
    try:
        from bot.engine.upscale import Upscalers, available_upscalers

        models_root = Path(model_dir).resolve().parent
        names = available_upscalers(models_root)
        if upscaler_name is None:  # the learned one where there is one
            upscaler_name = next((n for n in names if n != "lanczos"), "lanczos")
        if upscaler_name in names:
            upscalers = Upscalers(models_root)

            def upscaler(image, scale):
                return upscalers.upscale(image, scale, upscaler_name, "cpu")
    except ImportError:  # pragma: no cover - the engine is part of the project
        pass
    if upscaler is not None:
        upscaler(pipe("warm-up", num_inference_steps=1, width=64, height=64).images[0], 4)
        kept_up, secs = [], []
        for prompt, seed in pairs[:16]:
            img = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, width=64, height=64,
                       generator=torch.Generator().manual_seed(seed)).images[0]
            t2 = time.perf_counter()
            big = upscaler(img, 4)
            secs.append(time.perf_counter() - t2)
            kept_up.append(_kept_fraction(analyse(img), analyse(big)) == 1.0)
        upscale_kept = float(np.mean(kept_up))
        upscale_seconds = float(np.median(secs))

    out = {k: round(result[k], 4) for k in (*ATTRIBUTES, "all")}
    out.update(
        chance=chance_levels(pairs),
        grid_seconds=round(grid_seconds, 3),
        variation_kept=None if variation_kept is None else round(variation_kept, 4),
        upscale_kept=upscale_kept,
        upscale_seconds=None if upscale_seconds is None else round(upscale_seconds, 3),
        upscaler=upscaler_name if upscaler is not None else None,
        model=str(model_dir),
        steps=steps,
        guidance=guidance,
        size=size,
        threads=threads,
        prompt_count=len(pairs),
        prompt_seed=BENCH_SEED,
        image_seeds=[pairs[0][1], pairs[-1][1]] if pairs else [],
        prompts=[p for p, _ in pairs],
    )
    return out


def bench_cli(argv: list[str] | None = None) -> int:
    """`dreamgrid bench shapes [--json] [--prompts N] [--model DIR]`"""
    parser = argparse.ArgumentParser(prog="dreamgrid bench shapes", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--upscaler", default=None, help="upscaler to check (default: a learned one if any)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object (on one line)")
    args = parser.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        print(f"error: no model at {args.model}; train it with `dreamgrid models train-shapes`", file=sys.stderr)
        return 1
    result = bench(args.model, prompts=args.prompts, steps=args.steps, guidance=args.guidance, threads=args.threads,
                   upscaler_name=args.upscaler)
    if not args.json:
        for key in (*ATTRIBUTES, "all"):
            print(f"{key:>18}: {result[key]:.1%}  (chance {result['chance'][key]:.1%})")
        print(f"{'grid_seconds':>18}: {result['grid_seconds']}")
        print(f"{'variation_kept':>18}: {result['variation_kept']}")
        print(f"{'upscale_kept':>18}: {result['upscale_kept']}  ({result['upscale_seconds']} s)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(bench_cli(sys.argv[1:]))
