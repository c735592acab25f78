"""The real diffusers pipelines on the tiny random model, called directly on this thread."""

import numpy as np
import pytest
from PIL import Image

from bot.engine.requests import EngineError, GenerateRequest

# The tiny model's catalog values: the engine takes requests fully resolved.
TINY = {"steps": 4, "guidance": 5.0}
TINY_SIZE = {"width": 64, "height": 64}  # txt2img only: img2img takes the init image's size


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def generate(model, seeds, steps_seen=None, **fields):
    def on_step(done, total):
        if steps_seen is not None:
            steps_seen.append((done, total))

    return model.run(tiny_request(seeds, **fields), on_step)


def tiny_request(seeds, prompt="a red circle", **fields) -> GenerateRequest:
    fields = {**TINY, **({} if "init_image" in fields else TINY_SIZE), **fields}
    return GenerateRequest(model="tiny", prompt=prompt, seeds=tuple(seeds), **fields)


def test_txt2img_runs_the_request_as_given(tiny):
    seen = []
    result = generate(tiny, [1], seen)
    assert [image.size for image in result.images] == [(64, 64)]
    assert (result.width, result.height, result.steps, result.guidance) == (64, 64, 4, 5.0)
    assert (result.model, result.device, result.seeds) == ("tiny", "cpu", (1,))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.seconds > 0


def test_same_seed_same_pixels_and_different_seeds_differ(tiny):
    first, again = generate(tiny, [7]).images[0], generate(tiny, [7]).images[0]
    assert np.array_equal(pixels(first), pixels(again))
    other = generate(tiny, [8]).images[0]
    assert np.abs(pixels(first) - pixels(other)).mean() > 5


def test_an_image_is_the_same_alone_or_in_a_batch(tiny):
    batch = generate(tiny, [11, 12, 13, 14]).images
    alone = generate(tiny, [13]).images[0]
    assert len(batch) == 4
    assert np.abs(pixels(batch[2]) - pixels(alone)).mean() < 0.5  # i.e. < 0.5/255 in [0, 1]
    assert np.abs(pixels(batch[0]) - pixels(batch[1])).mean() > 5


def test_request_overrides_size_steps_and_guidance(tiny):
    seen = []
    result = generate(tiny, [1], seen, width=48, height=32, steps=2, guidance=0.0)
    assert result.images[0].size == (48, 32)
    assert (result.steps, result.guidance) == (2, 0.0)
    assert seen == [(1, 2), (2, 2)]


def test_img2img_keeps_the_init_size_and_follows_strength(tiny):
    init = generate(tiny, [3], width=48, height=64).images[0]
    seen = []
    light = generate(tiny, [5, 6], seen, init_image=init, strength=0.5)
    assert [image.size for image in light.images] == [(48, 64), (48, 64)]
    assert seen == [(1, 2), (2, 2)]  # int(4 steps * 0.5)
    strong = generate(tiny, [5], init_image=init, strength=1.0)
    assert np.abs(pixels(light.images[0]) - pixels(strong.images[0])).mean() > 1
    # Same seed and strength: the same variation, alone or in a batch.
    alone = generate(tiny, [6], init_image=init, strength=0.5).images[0]
    assert np.abs(pixels(light.images[1]) - pixels(alone)).mean() < 0.5


def test_img2img_refuses_steps_that_leave_no_denoising_step(tiny):
    with pytest.raises(EngineError, match="no denoising step"):
        generate(tiny, [1], init_image=Image.new("RGB", (64, 64)), strength=0.1, steps=4)


def test_img2img_refuses_sizes_it_would_crop(tiny):
    with pytest.raises(EngineError, match="multiples of 8"):
        generate(tiny, [1], init_image=Image.new("RGB", (60, 64)))


def test_txt2img_and_img2img_share_one_set_of_weights(tiny):
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert getattr(tiny.img2img, name) is getattr(tiny.txt2img, name), name
    first = next(tiny.txt2img.unet.parameters())
    assert next(tiny.img2img.unet.parameters()).data_ptr() == first.data_ptr()


def test_too_long_prompts_are_refused_not_cut(tiny):
    assert tiny.prompt_tokens("a red circle") == 5
    request = tiny_request([1], prompt="word " * 80)
    with pytest.raises(EngineError, match=r"the prompt is 82 tokens long; model tiny takes at most 77"):
        tiny.run(request, lambda done, total: None)


def test_run_checks_a_request_once_and_run_batch_leaves_checking_to_its_caller(tiny, monkeypatch):
    tokenised = []
    count = tiny.prompt_tokens
    monkeypatch.setattr(tiny, "prompt_tokens", lambda text: tokenised.append(text) or count(text))
    request = tiny_request([1], negative_prompt="blue", steps=1)
    tiny.run(request, lambda done, total: None)
    assert tokenised == ["a red circle", "blue"]
    tiny.run_batch([request], lambda done, total: None)
    assert tokenised == ["a red circle", "blue"]


def test_diffusers_rejects_sizes_that_are_not_multiples_of_8(tiny):
    with pytest.raises(ValueError, match="divisible by 8"):
        generate(tiny, [1], width=60)
