"""`dreamgrid bench describe`: does the shapes describer's /describe give prompts that draw the picture again?

Held-out world pictures (bot/shapes/describer.py `held_out_examples`: seeds training never uses, the same
every run) are described through the engine (`load_describer` on models/shapes-describer). Every one of the
four prompts is drawn by the `shapes` model (diffusers, the model's own steps and guidance: 12 and 5), one
fixed image seed per picture, and the analyser reads each drawing back. A drawing is compared with the
*source picture's* ground truth (so a describer's mistake counts as a miss): shape, shape colour and
background colour always, the place only where the prompt names it; "all" is all of those. Also the
describer's own accuracy (what it read vs the ground truth, all four attributes), and how often it agrees
with the analyser on the drawings (pictures the model made rather than the world). The last line printed
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# As in bot/shapes/train.py: on a busy machine spinning OpenMP threads burn the CPU they wait for.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from bot.engine.describers import load_describer  # noqa: E402
from bot.engine.requests import EngineError  # noqa: E402
from bot.shapes.analyser import ATTRIBUTES, analyse, parse_prompt  # noqa: E402
from bot.shapes.describer import HELD_OUT_SEED_BASE, held_out_examples  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DESCRIBER = REPO_ROOT / "models" / "shapes-describer"
DEFAULT_MODEL = REPO_ROOT / "models" / "shapes"
IMAGE_SEED_BASE = 3_000_000  # the regenerations' seeds: IMAGE_SEED_BASE + picture index


def _fractions(rows: list[dict], keys) -> dict[str, float]:
    out = {}
    for key in keys:
        values = [row[key] for row in rows if row.get(key) is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return out


def _regeneration_row(truth: dict, prompt: str, drawn: dict) -> dict:
    """Per attribute: the drawing matches the source's ground truth (position: only if the prompt names one)."""
    row = {name: drawn[name] == truth[name] for name in ("shape", "shape_colour", "background_colour")}
    row["position"] = drawn["position"] == truth["position"] if parse_prompt(prompt).position is not None else None
    row["all"] = all(v for v in row.values() if v is not None)
    return row


@torch.no_grad()
def _draw(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float, size: int, batch: int) -> list:
    images = []
    for start in range(0, len(prompts), batch):
        images += pipe(prompts[start:start + batch], num_inference_steps=steps, guidance_scale=guidance,
                       width=size, height=size, output_type="pil",
                       generator=[torch.Generator().manual_seed(s) for s in seeds[start:start + batch]]).images
    return images


def bench(
    images: int = 64,
    describer_dir: Path = DEFAULT_DESCRIBER,
    model_dir: Path = DEFAULT_MODEL,
    all_prompts: bool = True,
    threads: int = 2,
    batch: int = 16,
    log=lambda msg: print(msg, file=sys.stderr, flush=True),
) -> dict:
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(threads)
    describer = load_describer(Path(describer_dir), "cpu")
    if not hasattr(describer, "read"):
        raise ValueError("bench describe measures the shapes describer: its folder holds another describer")
    examples = held_out_examples(images)
    t0 = time.perf_counter()
    described = [describer.describe(image) for image, _ in examples]
    describe_seconds = time.perf_counter() - t0
    reads = [describer.read(image) for image, _ in examples]  # the shapes describer's attributes
    truths = [scene.attributes() for _, scene in examples]
    direct_rows = []
    for read, truth in zip(reads, truths):
        row = {name: getattr(read, name) == truth[name] for name in ATTRIBUTES}
        row["all"] = all(row.values())
        direct_rows.append(row)

    meta_path = Path(model_dir) / "dreamgrid.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    steps, guidance, size = meta.get("steps", 12), meta.get("guidance", 5.0), meta.get("width", 64)
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    which = range(4) if all_prompts else range(1)
    seeds = [IMAGE_SEED_BASE + i for i in range(images)]
    per_prompt, agreement_rows, draw_seconds = [], [], 0.0
    for k in which:
        prompts = [prompts4[k] for prompts4 in described]
        t1 = time.perf_counter()
        drawings = _draw(pipe, prompts, seeds, steps, guidance, size, batch)
        draw_seconds += time.perf_counter() - t1
        rows = []
        for truth, prompt, drawing in zip(truths, prompts, drawings):
            drawn = analyse(drawing).attributes()
            rows.append(_regeneration_row(truth, prompt, drawn))
            if k == 0:  # the describer on the model's own pictures, judged by the analyser
                again = describer.read(drawing)
                agreement_rows.append({name: getattr(again, name) == drawn[name] for name in ATTRIBUTES})
        per_prompt.append(_fractions(rows, (*ATTRIBUTES, "all")))
        log(f"prompt {k + 1}: regenerated {images} pictures, all attributes {per_prompt[-1]['all']:.1%}")
    for row in agreement_rows:
        row["all"] = all(row.values())

    return {
        "bench": "describe",
        "images": images,
        "held_out_seeds": [HELD_OUT_SEED_BASE, HELD_OUT_SEED_BASE + images - 1],
        "image_seeds": [seeds[0], seeds[-1]],
        "regeneration": per_prompt[0],  # the first prompt (it names the place)
        "regeneration_per_prompt": per_prompt,
        "regeneration_mean": _fractions([{"all": p["all"]} for p in per_prompt], ("all",))["all"],
        "describer": _fractions(direct_rows, (*ATTRIBUTES, "all")),
        "describer_on_drawings": _fractions(agreement_rows, (*ATTRIBUTES, "all")),
        "distinct_prompts": round(sum(len(set(p)) == 4 for p in described) / images, 4),
        "examples": [{"truth": examples[i][1].caption, "prompts": described[i]} for i in range(min(3, images))],
        "describe_ms_per_image": round(1000 * describe_seconds / images, 2),
        "draw_seconds": round(draw_seconds, 2),
        "steps": steps,
        "guidance": guidance,
        "size": size,
        "threads": threads,
        "describer_dir": Path(describer_dir).name,
        "model_dir": Path(model_dir).name,
    }


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid bench describe [--json] [--images 64] [--first-only]`"""
    parser = argparse.ArgumentParser(prog="dreamgrid bench describe", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--describer", type=Path, default=DEFAULT_DESCRIBER)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--first-only", action="store_true", help="draw only the first of the four prompts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    if not (args.model / "model_index.json").is_file():
        print("error: no shapes model; train it with `dreamgrid models train-shapes`", file=sys.stderr)
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        result = bench(args.images, args.describer, args.model, all_prompts=not args.first_only, threads=args.threads)
    except (EngineError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"describer (read vs truth): {result['describer']}")
        for k, row in enumerate(result["regeneration_per_prompt"]):
            print(f"prompt {k + 1} regenerated: {row}")
        print(f"describer on the drawings vs the analyser: {result['describer_on_drawings']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
