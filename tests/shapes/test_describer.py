"""The shipped shapes describer (models/shapes-describer): it reads held-out world pictures, its four
prompts are distinct, and the first of them makes the `shapes` model draw the picture again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bot.shapes import describer as shapes_describer
from bot.shapes.analyser import parse_prompt
from bot.shapes.describer import (
    CONFIG_NAME,
    HELD_OUT_SEED_BASE,
    WEIGHTS_NAME,
    accuracy,
    held_out_examples,
    load,
    phrasings,
    training_seeds,
)
from bot.shapes.world import COLOUR_NAMES, POSITION_NAMES, SHAPES, make_example

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "models" / "shapes-describer"
SHAPES_MODEL = ROOT / "models" / "shapes"

pytestmark = pytest.mark.skipif(not (FOLDER / CONFIG_NAME).is_file(),
                                reason="models/shapes-describer is absent: `dreamgrid models train-describer`")


@pytest.fixture(scope="module")
def describer():
    return load(FOLDER)


def test_the_shipped_weights_are_small():
    assert (FOLDER / WEIGHTS_NAME).stat().st_size < 400_000
    assert sum(f.stat().st_size for f in FOLDER.iterdir()) < 1_000_000


def test_training_never_sees_the_held_out_pictures():
    seeds = training_seeds(12000, 0)
    assert seeds[-1] < HELD_OUT_SEED_BASE
    with pytest.raises(ValueError):
        training_seeds(10, HELD_OUT_SEED_BASE // 1_000_000)


def test_it_reads_held_out_world_pictures(describer):
    result = accuracy(describer, held_out_examples(256))
    assert result["all"] >= 0.98, result


def test_four_distinct_prompts_that_say_what_it_read(describer):
    image, scene = make_example(HELD_OUT_SEED_BASE + 5)
    prompts, read = describer.describe_with_attributes(image)
    assert len(prompts) == 4 and len(set(prompts)) == 4
    assert read.attributes() == scene.attributes()
    assert set(read.confidence) == {"shape", "shape_colour", "background_colour", "position"}
    assert all(0 <= c <= 1 for c in read.confidence.values())
    for prompt in prompts:
        asked = parse_prompt(prompt)  # the words the shapes model was trained on
        assert (asked.shape, asked.shape_colour, asked.background_colour) == (
            scene.shape, scene.shape_colour, scene.background_colour)
        assert asked.position in (None, scene.position)
    assert parse_prompt(prompts[0]).position == scene.position  # the first names the place


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("colour", ["red", "black"])
def test_every_phrasing_parses_back(shape, colour):
    for position in POSITION_NAMES:
        prompts = phrasings(shape, colour, "white", position)
        assert len(set(prompts)) == 4
        for prompt in prompts:
            asked = parse_prompt(prompt)
            assert (asked.shape, asked.shape_colour, asked.background_colour) == (shape, colour, "white")
            assert asked.position in (None, position)


def test_any_picture_works(describer):
    image, scene = make_example(HELD_OUT_SEED_BASE + 11, 128, 64)  # non-square: squashed whole, not cropped
    read = describer.read([image])[0]
    assert (read.shape_colour, read.background_colour, read.position) == (
        scene.shape_colour, scene.background_colour, scene.position)
    big, big_scene = make_example(HELD_OUT_SEED_BASE + 12, 256, 256)
    assert describer.read([big])[0].attributes() == big_scene.attributes()
    rgba = make_example(HELD_OUT_SEED_BASE + 13)[0].convert("RGBA")
    grey = make_example(HELD_OUT_SEED_BASE + 14)[0].convert("L")
    palette = make_example(HELD_OUT_SEED_BASE + 15)[0].convert("P")
    transparent = Image.new("RGBA", (40, 90), (0, 0, 0, 0))
    for picture in (rgba, grey, palette, transparent, Image.new("1", (5, 7))):
        prompts = describer.describe(picture)
        assert len(set(prompts)) == 4 and all(p.strip() == p and p for p in prompts)
    assert describer.read([rgba])[0].attributes() == make_example(HELD_OUT_SEED_BASE + 13)[1].attributes()
    read = describer.read([np.asarray(make_example(HELD_OUT_SEED_BASE + 16)[0])])[0]  # an array is fine too
    assert read.shape_colour in COLOUR_NAMES


def test_training_is_deterministic_and_learns(tmp_path):
    torch_threads = torch.get_num_threads()
    try:
        a, b = (shapes_describer.train_describer(tmp_path / name, steps=30, dataset_size=256, eval_count=16,
                                                 log=lambda m: None) for name in "ab")
    finally:
        torch.set_num_threads(torch_threads)
    assert (tmp_path / "a" / WEIGHTS_NAME).read_bytes() == (tmp_path / "b" / WEIGHTS_NAME).read_bytes()
    assert a["held_out"] == b["held_out"]
    assert load(tmp_path / "a").describe(make_example(1)[0])


@pytest.mark.skipif(not (SHAPES_MODEL / "model_index.json").is_file(), reason="models/shapes is absent")
def test_the_first_prompt_draws_the_picture_again():
    from bot.bench.describe import bench

    threads = torch.get_num_threads()
    try:
        result = bench(images=64, all_prompts=False, log=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    assert result["describer"]["all"] >= 0.95, result["describer"]
    assert result["regeneration"]["all"] >= 0.90, result["regeneration"]
    assert result["distinct_prompts"] == 1.0
