"""`dreamgrid bench lora`: what the shipped white-background LoRA does to the `shapes` model's pictures.

Held-out prompts (bot/shapes/bench.py) that ask for a background other than white, and a shape that is not
white (on white it could not be seen), are drawn through the engine (LoadedModel, the catalog's `shapes`
entry, the LoRA as a job's `<lora:...>` tag would give it) at each LoRA weight, with the same image seed per
prompt at every weight. The analyser reads every picture back: the share with a white background says what
the LoRA does, the share whose background is the one asked for what it undoes, and the shape, its colour
and its place (where the prompt names one) that it leaves the rest alone. The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# As in bot/shapes/train.py: on a busy machine spinning OpenMP threads burn the CPU they wait for (the
# bench ran ten times slower); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bot.engine import GenerateRequest, load_catalog  # noqa: E402
from bot.shapes.analyser import analyse, parse_prompt, score  # noqa: E402
from bot.shapes.bench import held_out_prompts  # noqa: E402
from bot.shapes.lora import BACKGROUND, LORA_NAME  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "shapes"
# What the object is: the attributes of a prompt besides its background.
OBJECT = ("shape_colour", "shape", "position")


def prompts_off_white(count: int) -> list[tuple[str, int]]:
    """The first `count` held-out (prompt, image seed) pairs whose background and shape are not white."""
    pairs = [(prompt, seed) for prompt, seed in held_out_prompts(4 * count) if _off_white(prompt)]
    if len(pairs) < count:
        raise ValueError(f"only {len(pairs)} held-out prompts off white; ask for fewer")
    return pairs[:count]


def _off_white(prompt: str) -> bool:
    asked = parse_prompt(prompt)
    return BACKGROUND not in (asked.background_colour, asked.shape_colour)


def generate(model, pairs: list[tuple[str, int]], weight: float, batch: int = 16) -> list:
    """One picture per (prompt, seed) with the LoRA at `weight`, `batch` requests per pipeline call."""
    spec = model.spec
    requests = [GenerateRequest(model=spec.name, prompt=prompt, seeds=(seed,), steps=spec.steps,
                                guidance=spec.guidance, width=spec.width, height=spec.height,
                                loras=((LORA_NAME, weight),)) for prompt, seed in pairs]
    images = []
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        for request in chunk:
            model.check(request)
        images += [result.images[0] for result in model.run_batch(chunk, lambda done, total: None)]
    return images


def judge(pairs: list[tuple[str, int]], images: list) -> dict[str, float]:
    """The fractions of pictures with a white background, the asked background, and each object attribute
    the prompt asks for; "object": all of those at once."""
    rows = []
    for (prompt, _), image in zip(pairs, images):
        analysis = analyse(image)
        row = score(analysis, parse_prompt(prompt))
        asked = [row[name] for name in OBJECT if row[name] is not None]
        rows.append({"white_background": analysis.background_colour == BACKGROUND,
                     "asked_background": row["background_colour"],
                     **{name: row[name] for name in OBJECT}, "object": all(asked)})
    out = {}
    for key in rows[0]:
        values = [row[key] for row in rows if row[key] is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return out


def bench(models_dir: Path, count: int, weights: list[float], threads: int) -> dict:
    import torch

    from bot.engine.loras import find_lora, lora_hash
    from bot.engine.pipelines import LoadedModel

    torch.set_num_threads(threads)
    models_dir = Path(models_dir)
    spec = load_catalog(models_dir / "catalog.toml").get(MODEL)
    model = LoadedModel(spec, models_dir, "cpu")
    pairs = prompts_off_white(count)
    results = {}
    for weight in weights:
        started = time.perf_counter()
        images = generate(model, pairs, weight)
        results[f"{weight:g}"] = {**judge(pairs, images), "seconds": round(time.perf_counter() - started, 1)}
    return {"bench": "lora", "lora": LORA_NAME, "lora_hash": lora_hash(find_lora(model.loras.loras_dir, LORA_NAME)),
            "model": MODEL, "steps": spec.steps, "guidance": spec.guidance, "size": spec.width, "prompts": len(pairs),
            "image_seeds": [pairs[0][1], pairs[-1][1]], "threads": threads, "weights": results}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid bench lora", description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--weights", default="0,0.5,0.8,1", help="LoRA weights, comma-separated (default: %(default)s)")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models",
                        help="holds catalog.toml, the shapes model and loras/ (default: the repo's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",")]
    except ValueError:
        parser.error(f"--weights: {args.weights!r} is not a comma-separated list of numbers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = bench(args.models_dir, args.prompts, weights, args.threads)
    if not args.json:
        for weight, row in result["weights"].items():
            print(f"weight {weight:>4}: white background {row['white_background']:.1%}, asked background "
                  f"{row['asked_background']:.1%}, shape {row['shape']:.1%}, shape colour {row['shape_colour']:.1%}, "
                  f"object {row['object']:.1%} ({row['seconds']} s)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
