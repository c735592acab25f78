"""The white-background LoRA: the shipped file changes what the `shapes` model draws, through the engine, and
training it is deterministic."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bot.bench.lora import MODEL, generate, judge  # noqa: E402
from bot.engine import load_catalog  # noqa: E402
from bot.shapes.lora import DEFAULT_OUT, train_white_background_lora  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models"

# Backgrounds of every colour but white, shapes of every colour but white (on white it would vanish).
PROMPTS = (
    "a red circle on the left on a blue background",
    "a yellow square on a black background",
    "a green triangle at the top on a purple background",
    "a blue circle in the center on a orange background",
    "a black square on the right on a yellow background",
    "a purple triangle at the bottom on a green background",
    "a orange circle on a red background",
    "a red square at the top on a green background",
)
PAIRS = [(prompt, 500 + i) for i, prompt in enumerate(PROMPTS)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as tests/engine/conftest.py has it: on a small shared machine more make torch's
    OpenMP workers spin against each other and run many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes():
    from bot.engine.pipelines import LoadedModel

    return LoadedModel(load_catalog(MODELS / "catalog.toml").get(MODEL), MODELS, "cpu")


def test_the_shipped_lora_is_a_small_diffusers_unet_lora():
    from safetensors import safe_open

    with safe_open(str(DEFAULT_OUT), framework="pt") as file:
        keys = list(file.keys())
    assert DEFAULT_OUT.stat().st_size < 2_000_000
    assert keys and all(key.startswith("unet.") and key.endswith((".lora_A.weight", ".lora_B.weight")) for key in keys)


def test_weight_1_paints_backgrounds_white_and_keeps_the_shape(shapes):
    without = judge(PAIRS, generate(shapes, PAIRS, 0.0))
    with_lora = judge(PAIRS, generate(shapes, PAIRS, 1.0))
    assert without["white_background"] <= 2 / 8 and without["asked_background"] >= 6 / 8, without
    assert with_lora["white_background"] >= 6 / 8, with_lora
    assert with_lora["shape"] >= 6 / 8 and with_lora["shape_colour"] >= 6 / 8, with_lora


def test_training_is_deterministic_and_writes_what_load_lora_weights_reads(tmp_path):
    from diffusers import StableDiffusionPipeline

    first, second = (train_white_background_lora(MODELS / "shapes", tmp_path / f"{name}.safetensors", steps=2,
                                                 batch=2, threads=1, log=lambda message: None) for name in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()
    pipe = StableDiffusionPipeline.from_pretrained(str(MODELS / "shapes"), local_files_only=True)
    pipe.load_lora_weights(str(first), adapter_name="white")
    assert pipe.get_list_adapters() == {"unet": ["white"]}
