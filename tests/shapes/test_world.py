import random

import numpy as np
import pytest

from bot.shapes.world import (
    COLOUR_NAMES,
    POSITION_NAMES,
    SHAPES,
    coverage,
    make_caption,
    make_example,
    render_dataset,
    sample_scene,
)


def test_same_seed_same_picture_and_caption():
    a, sa = make_example(123)
    b, sb = make_example(123)
    assert sa == sb
    assert np.array_equal(np.asarray(a), np.asarray(b))
    c, sc = make_example(124)
    assert sc != sa


def test_render_dataset_is_deterministic():
    x1, s1 = render_dataset(20, seed=5)
    x2, s2 = render_dataset(20, seed=5)
    assert np.array_equal(x1, x2) and s1 == s2
    x3, _ = render_dataset(20, seed=6)
    assert not np.array_equal(x1, x3)


def test_world_covers_all_attributes_and_names_position_about_60_percent():
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(2000)]
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.shape_colour for s in scenes} == set(COLOUR_NAMES)
    assert {s.background_colour for s in scenes} == set(COLOUR_NAMES)
    assert {s.position for s in scenes} == set(POSITION_NAMES)
    assert len(COLOUR_NAMES) >= 8 and len(POSITION_NAMES) == 5
    assert all(s.shape_colour != s.background_colour for s in scenes)
    named = sum(s.position_named for s in scenes) / len(scenes)
    assert 0.55 < named < 0.65
    assert len({s.caption for s in scenes}) > 500  # several phrasings


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (64, 96), (48, 80)])
def test_non_square_sizes_keep_the_shape_inside(size):
    w, h = size
    for seed in range(30):
        image, scene = make_example(seed, w, h)
        assert image.size == (w, h)
        cov = coverage(scene)
        assert cov[0].max() == 0 and cov[-1].max() == 0 and cov[:, 0].max() == 0 and cov[:, -1].max() == 0


def test_anti_aliased_edges():
    _, scene = make_example(3, shape="circle")
    cov = coverage(scene)
    partial = ((cov > 0) & (cov < 1)).sum()
    assert partial > 10  # edge pixels are blended, not hard


def test_fixed_attributes_and_caption():
    image, scene = make_example(1, shape="triangle", shape_colour="red", background_colour="blue",
                                position="left", position_named=True)
    assert (scene.shape, scene.shape_colour, scene.background_colour, scene.position) == (
        "triangle", "red", "blue", "left")
    assert "red triangle" in scene.caption and "blue" in scene.caption and "left" in scene.caption
    assert make_caption("red", "circle", "blue", None) == "a red circle on a blue background"
    with pytest.raises(ValueError):
        make_example(1, shape_colour="red", background_colour="red")
