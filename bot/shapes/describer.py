"""The shapes world's describer: picture -> four prompts the `shapes` model draws it again from (/describe).

A small CNN (four stride-2 convolutions, 64x64 -> 4x4, then one hidden layer) with one classification head
per attribute: shape, shape colour, background colour and place. It is learned from the world's pictures
(bot/shapes/world.py), not read by rules like the analyser: `dreamgrid models train-describer` trains it on
the CPU (1,500 steps: about 1.5 minutes on two quiet cores) and writes `describer.json` (config, training
record, held-out accuracy) and `describer.safetensors` (fp16 weights, 230 KB) to models/shapes-describer/.

Training pictures: world pictures from seeds `TRAIN_SEED_BASE + seed * 1_000_000 + i`, a quarter of them
rendered non-square (64x96, 128x64, ...) and squashed to 64x64 the way `prepare` squashes any input. Each
is kept as the shape's coverage and painted anew every time it is drawn (`compose`): both colours shifted
a little on their own, saturation and contrast changed, an uneven fill, tints, noise, sometimes a blur, as
the `shapes` model's drawings differ from the world's (without it, 2-3% of the drawings' shape colours were
misread: a drawn orange redder than the palette's). Held-out pictures (`held_out_examples`: the bench and
the tests) come from seeds at `HELD_OUT_SEED_BASE` and above, which training never reaches.

The four prompts use the world's own caption templates and place phrases (the words the shapes model's
text encoder was trained on, "a orange" included), in four phrasings: the place named, background first
with another place phrase, no place, and a terse one. Everything is deterministic from the seed for a
given thread count (two runs write the same bytes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from bot.shapes.world import (
    COLOUR_NAMES,
    POSITION_NAMES,
    COLOURS,
    POSITION_PHRASES,
    SHAPES,
    TEMPLATES_WITH_POSITION,
    TEMPLATES_WITHOUT_POSITION,
    coverage,
    make_example,
    sample_scene,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "models" / "shapes-describer"
CONFIG_NAME = "describer.json"
WEIGHTS_NAME = "describer.safetensors"
KIND = "dreamgrid-shapes-describer"
SIZE = 64

# Training seeds: TRAIN_SEED_BASE + seed * SEED_STRIDE + i (i < SEED_STRIDE); held-out: HELD_OUT_SEED_BASE + i.
TRAIN_SEED_BASE = 0
SEED_STRIDE = 1_000_000
HELD_OUT_SEED_BASE = 900_000_000

# The heads, in order: attribute -> its classes.
HEADS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "shape_colour": COLOUR_NAMES,
    "background_colour": COLOUR_NAMES,
    "position": POSITION_NAMES,
}
# Non-square renders for training (width, height), squashed to 64x64 like any input.
NON_SQUARE_SIZES = ((96, 64), (64, 96), (128, 64), (64, 128), (80, 64), (64, 80), (128, 96), (96, 128))


# --------------------------------------------------------------------------------------------------
# The network


class DescriberNet(nn.Module):
    """64x64 RGB (0..1) -> one logit vector per head."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 48, 64), hidden: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for width in channels:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            previous = width
        self.features = nn.Sequential(*layers)
        side = SIZE // 2 ** len(channels)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(previous * side * side, hidden), nn.ReLU(inplace=True))
        # The colours are whole-picture statistics: the heads also see the mean and spread of the input.
        self.heads = nn.ModuleDict({name: nn.Linear(hidden + 6, len(classes)) for name, classes in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        h = torch.cat([self.hidden(self.features(x * 2 - 1)), stats], dim=1)
        return {name: head(h) for name, head in self.heads.items()}


# --------------------------------------------------------------------------------------------------
# Inputs


def prepare(image) -> Image.Image:
    """Any picture -> 64x64 RGB: transparency composited on white, the whole picture resized (a non-square
    one is squashed, not cropped)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.BILINEAR)
    return image


def to_tensor(images: list[Image.Image] | np.ndarray) -> torch.Tensor:
    """Prepared pictures (or uint8 (n, 64, 64, 3)) -> float (n, 3, 64, 64) in 0..1."""
    arr = images if isinstance(images, np.ndarray) else np.stack([np.asarray(prepare(im)) for im in images])
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


# --------------------------------------------------------------------------------------------------
# What the describer says


@dataclass(frozen=True)
class Description:
    """What the describer read in a picture, with its confidences (softmax probabilities, 0..1)."""

    shape: str
    shape_colour: str
    background_colour: str
    position: str
    confidence: dict[str, float]

    def attributes(self) -> dict[str, str]:
        return {"shape_colour": self.shape_colour, "shape": self.shape,
                "background_colour": self.background_colour, "position": self.position}


def phrasings(shape: str, shape_colour: str, background_colour: str, position: str) -> list[str]:
    """The four prompts for these attributes, in the world's caption templates: the place named (canonical),
    background first with another phrase for the place, no place, and a terse one without the place."""
    c, s, b = shape_colour, shape, background_colour
    phrases = POSITION_PHRASES[position]
    return [
        TEMPLATES_WITH_POSITION[0].format(c=c, s=s, b=b, p=phrases[0]),  # a red circle on the left on a blue background
        # a blue background with a red circle at the left
        TEMPLATES_WITH_POSITION[1].format(c=c, s=s, b=b, p=phrases[1]),
        TEMPLATES_WITHOUT_POSITION[0].format(c=c, s=s, b=b),  # a red circle on a blue background
        TEMPLATES_WITHOUT_POSITION[2].format(c=c, s=s, b=b),  # red circle, blue background
    ]


class ShapesDescriber:
    """The trained describer: `describe(image)` -> four prompts; `read(images)` -> Descriptions."""

    def __init__(self, net: DescriberNet, config: dict, device: str = "cpu"):
        self.net = net.to(device).eval()
        self.config = config
        self.device = device

    @torch.no_grad()
    def read(self, images) -> list[Description]:
        """Pictures (PIL images, any mode and size) -> what each shows, with confidences."""
        images = list(images) if not isinstance(images, np.ndarray) else images
        if len(images) == 0:
            return []
        logits = self.net(to_tensor(images).to(self.device))
        probs = {name: F.softmax(value.float(), dim=1).cpu() for name, value in logits.items()}
        out = []
        for i in range(probs["shape"].shape[0]):
            picked, confidence = {}, {}
            for name, classes in HEADS.items():
                p = probs[name][i].clone()
                if name == "background_colour":  # never the shape's own colour: the next best one
                    p[classes.index(picked["shape_colour"])] = -1.0
                k = int(torch.argmax(p))
                picked[name], confidence[name] = classes[k], round(float(p[k]), 4)
            out.append(Description(picked["shape"], picked["shape_colour"], picked["background_colour"],
                                   picked["position"], confidence))
        return out

    def describe_with_attributes(self, image) -> tuple[list[str], Description]:
        description = self.read([image])[0]
        return phrasings(description.shape, description.shape_colour, description.background_colour,
                         description.position), description

    def describe(self, image) -> list[str]:
        """Four distinct prompts for one picture (the first names the place)."""
        return self.describe_with_attributes(image)[0]


def load(folder: Path | str, device: str = "cpu") -> ShapesDescriber:
    """The describer in `folder` (describer.json + describer.safetensors)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config.get("kind") != KIND:
        raise ValueError(f"{CONFIG_NAME} is not a shapes describer's config (kind {config.get('kind')!r})")
    net = DescriberNet(tuple(config["channels"]), config["hidden"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(folder / WEIGHTS_NAME).items()}
    net.load_state_dict(state)
    return ShapesDescriber(net, config, device)


# --------------------------------------------------------------------------------------------------
# Data


def held_out_examples(count: int) -> list[tuple[Image.Image, object]]:
    """`count` world pictures (64x64) and their scenes from seeds training never uses."""
    return [make_example(HELD_OUT_SEED_BASE + i) for i in range(count)]


def training_seeds(count: int, seed: int) -> range:
    if count > SEED_STRIDE:
        raise ValueError(f"at most {SEED_STRIDE} training pictures")
    start = TRAIN_SEED_BASE + seed * SEED_STRIDE
    if start < 0 or start + count > HELD_OUT_SEED_BASE:
        raise ValueError("training seeds would reach the held-out ones: use a smaller --seed")
    return range(start, start + count)


def render_training_set(count: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The shape's coverage of each training picture as uint8 (count, 64, 64) (0..255), and the label
    indices per head; `compose` paints them. About a quarter are non-square renders squashed to 64x64 as
    `prepare` squashes any input (the picture is linear in the coverage, so squashing either is the same)."""
    rng = random.Random(seed * 7919 + 17)
    alphas = np.empty((count, SIZE, SIZE), dtype=np.uint8)
    labels = {name: np.empty(count, dtype=np.int64) for name in HEADS}
    for i, example_seed in enumerate(training_seeds(count, seed)):
        width, height = rng.choice(NON_SQUARE_SIZES) if rng.random() < 0.25 else (SIZE, SIZE)
        scene = sample_scene(random.Random(example_seed), width, height)  # make_example's scene
        alpha = coverage(scene)
        if alpha.shape != (SIZE, SIZE):
            alpha = np.asarray(Image.fromarray(alpha, "F").resize((SIZE, SIZE), Image.BILINEAR))
        alphas[i] = np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)
        for name, classes in HEADS.items():
            labels[name][i] = classes.index(getattr(scene, name))
    return alphas, labels


_PALETTE = torch.tensor([COLOURS[name] for name in COLOUR_NAMES], dtype=torch.float32) / 255.0


def _smooth_field(n: int, channels: int, gen: torch.Generator, cells: int = 4) -> torch.Tensor:
    """Random low-frequency fields in -1..1, (n, channels, 64, 64)."""
    coarse = torch.rand(n, channels, cells, cells, generator=gen) * 2 - 1
    return F.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(-1, 1)


def compose(alpha: torch.Tensor, shape_colour: torch.Tensor, background_colour: torch.Tensor,
            gen: torch.Generator | None = None) -> torch.Tensor:
    """Paint coverages (n, 64, 64; 0..1) in palette colours (indices) -> (n, 3, 64, 64) in 0..1. With `gen`,
    the way the `shapes` model's drawings differ from the world's pictures is imitated: each colour shifted
    a little on its own, saturation and contrast changed, an uneven fill, low-frequency tints, noise and
    sometimes a blur."""
    a = alpha[:, None]
    fg = _PALETTE[shape_colour][:, :, None, None]
    bg = _PALETTE[background_colour][:, :, None, None]
    if gen is None:
        return bg * (1 - a) + fg * a
    n = alpha.shape[0]
    fg = fg + (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * (24 / 255)
    bg = bg + (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * (24 / 255)
    # An uneven fill: the shape's inside drifts by up to 60/255 in places.
    fg = fg + _smooth_field(n, 3, gen) * torch.rand(n, 1, 1, 1, generator=gen) * (60 / 255)
    x = bg * (1 - a) + fg * a
    grey = x.mean(dim=1, keepdim=True)
    saturation = 0.75 + 0.75 * torch.rand(n, 1, 1, 1, generator=gen)
    x = grey + saturation * (x - grey)
    contrast = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    x = 0.5 + contrast * (x - 0.5)
    x = x + _smooth_field(n, 3, gen) * torch.rand(n, 1, 1, 1, generator=gen) * (20 / 255)
    blur = torch.rand(n, generator=gen) < 0.25
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = ((kernel[:, None] * kernel[None, :]) / 16).expand(3, 1, 3, 3)
        x = x.clamp(0, 1)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    x = x + torch.rand(n, 1, 1, 1, generator=gen) * (12 / 255) * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


# --------------------------------------------------------------------------------------------------
# Training


@torch.no_grad()
def accuracy(describer: ShapesDescriber, examples) -> dict[str, float]:
    """Per attribute and "all": the fraction of (image, scene) pairs read exactly."""
    reads = describer.read([image for image, _ in examples])
    rows = [{name: getattr(d, name) == getattr(scene, name) for name in HEADS}
            for d, (_, scene) in zip(reads, examples)]
    out = {name: sum(r[name] for r in rows) / len(rows) for name in HEADS}
    out["all"] = sum(all(r.values()) for r in rows) / len(rows)
    return {k: round(v, 4) for k, v in out.items()}


def train_describer(
    out_dir: Path | str = DEFAULT_OUT,
    steps: int = 1500,
    seed: int = 0,
    dataset_size: int = 12000,
    batch: int = 64,
    lr: float = 3e-3,
    threads: int = 2,
    eval_count: int = 512,
    log=lambda msg: print(msg, file=sys.stderr, flush=True),
) -> dict:
    """Train the describer and write it to `out_dir` (describer.json + describer.safetensors). Returns the
    record written in the config (timings, held-out accuracy)."""
    from safetensors.torch import save_file

    from bot.engine.folders import replaced_on_success

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.time()
    alphas, labels = render_training_set(dataset_size, seed)
    data = torch.from_numpy(alphas)  # uint8, painted per batch
    targets = {name: torch.from_numpy(value) for name, value in labels.items()}
    render_seconds = time.time() - t0
    log(f"rendered {dataset_size} training pictures in {render_seconds:.1f}s")

    channels, hidden = (16, 32, 48, 64), 64
    net = DescriberNet(channels, hidden)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * progress))

    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 1)
    net.train()
    t1 = time.time()
    for step in range(steps):
        index = torch.randint(0, dataset_size, (batch,), generator=gen)
        x = compose(data[index].float() / 255.0, targets["shape_colour"][index],
                    targets["background_colour"][index], gen)
        logits = net(x)
        loss = sum(F.cross_entropy(logits[name], targets[name][index]) for name in HEADS)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        lr_schedule.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"step {step + 1}/{steps}: loss {float(loss.detach()):.4f} ({time.time() - t1:.0f}s)")
    train_seconds = time.time() - t1

    describer = ShapesDescriber(net, {}, "cpu")
    held_out = accuracy(describer, held_out_examples(eval_count))
    log(f"held-out accuracy on {eval_count} pictures: {held_out}")
    record = {
        "kind": KIND,
        "size": SIZE,
        "channels": list(channels),
        "hidden": hidden,
        "heads": {name: list(classes) for name, classes in HEADS.items()},
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "steps": steps, "seed": seed, "dataset_size": dataset_size, "batch": batch, "lr": lr,
            "threads": threads, "train_seeds": [training_seeds(dataset_size, seed)[0],
                                                training_seeds(dataset_size, seed)[-1]],
            "render_seconds": round(render_seconds, 1), "train_seconds": round(train_seconds, 1),
        },
        "held_out": {"count": eval_count, "first_seed": HELD_OUT_SEED_BASE, **held_out},
    }
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    with replaced_on_success(Path(out_dir)) as staging:
        save_file(state, staging / WEIGHTS_NAME)
        (staging / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models train-describer [--out models/shapes-describer] [--steps N] [--seed S]`"""
    parser = argparse.ArgumentParser(prog="dreamgrid models train-describer", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-size", type=int, default=12000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        record = train_describer(args.out, steps=args.steps, seed=args.seed, dataset_size=args.dataset_size,
                                 threads=args.threads)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), **record["training"], "held_out": record["held_out"]}))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
