"""The shipped `shapes` model (models/shapes): loads offline, is deterministic, follows prompts."""

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from bot.shapes.bench import CHANCE, evaluate, held_out_prompts

MODEL = Path(__file__).resolve().parents[2] / "models" / "shapes"

pytestmark = pytest.mark.skipif(
    not (MODEL / "model_index.json").is_file(),
    reason="models/shapes is absent: train and export it with `dreamgrid models train-shapes`",
)


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access while loading models/shapes")

    mp.setattr(socket.socket, "connect", refuse)
    try:
        p = StableDiffusionPipeline.from_pretrained(str(MODEL), torch_dtype=torch.float32, local_files_only=True)
    finally:
        mp.undo()
    p.set_progress_bar_config(disable=True)
    return p


def test_weights_are_small_fp16_safetensors():
    files = list(MODEL.rglob("*.safetensors"))
    assert files and not list(MODEL.rglob("*.bin"))
    assert sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file()) <= 30 * 1024 * 1024


def test_same_seed_same_image(pipe):
    def make(seed):
        return pipe("a red circle on a blue background", num_inference_steps=4,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images[0]

    a, b = make(11), make(11)
    assert np.array_equal(a, b)


def test_follows_prompts_well_above_chance(pipe):
    import json

    meta = json.loads((MODEL / "dreamgrid.json").read_text())
    result = evaluate(pipe, held_out_prompts(16), steps=meta["steps"], guidance=meta["guidance"],
                      width=meta["width"], height=meta["height"])
    scores = {k: result[k] for k in CHANCE}
    mean = sum(scores.values()) / len(scores)
    chance = sum(CHANCE.values()) / len(CHANCE)
    assert mean >= max(0.5, 2 * chance), scores


def test_the_readme_command_draws_what_its_prompt_asks(tmp_path):
    """`dreamgrid generate "a red circle on a blue background"` on a fresh clone: the default model's grid."""
    import os
    import subprocess
    import sys

    from PIL import Image

    from bot.shapes.analyser import analyse

    root = MODEL.parents[1]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "MODELS_DIR": str(root / "models")}
    environment.pop("DEFAULT_MODEL", None)
    for seed in ("1", "5"):
        out = tmp_path / f"grid-{seed}.png"
        result = subprocess.run([sys.executable, "-m", "bot", "generate", "a red circle on a blue background",
                                 "--seed", seed, "-o", str(out)], cwd=root, env=environment,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "model shapes" in result.stdout
        grid = Image.open(out).convert("RGB")
        assert grid.size == (128, 128)
        for x, y in ((0, 0), (64, 0), (0, 64), (64, 64)):
            drawn = analyse(grid.crop((x, y, x + 64, y + 64)))
            assert (drawn.shape_colour, drawn.shape, drawn.background_colour) == ("red", "circle", "blue"), (seed, x, y)
