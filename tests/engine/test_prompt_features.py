"""What the prompt language asks of the engine: --tile (circular padding) and --chaos (shared noise)."""

import numpy as np

from test_pipelines import generate, pixels


def test_tile_changes_the_picture_and_leaves_the_next_job_untouched(tiny):
    plain = pixels(generate(tiny, [5]).images[0])
    tiled = pixels(generate(tiny, [5], tile=True).images[0])
    after = pixels(generate(tiny, [5]).images[0])
    assert np.abs(plain - tiled).mean() > 1  # the convolutions wrapped around the edges
    assert np.array_equal(plain, after)  # and were put back: the next job is not tiled


def test_shared_noise_brings_the_four_images_closer_and_keeps_the_first(tiny):
    def spread(images):
        first = pixels(images[0])
        return np.mean([np.abs(first - pixels(image)).mean() for image in images[1:]]), first

    (apart, first), (together, first_shared) = (spread(generate(tiny, [1, 2, 3, 4]).images),
                                                spread(generate(tiny, [1, 2, 3, 4], shared_noise=0.75).images))
    assert together < apart * 0.7
    assert np.abs(first - first_shared).max() <= 1  # image 1 is drawn from its own noise either way


def test_the_result_names_its_sampler_as_automatic1111_does(tiny):
    assert generate(tiny, [1]).sampler == "Euler"  # the tiny model's EulerDiscreteScheduler
