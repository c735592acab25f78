import pytest
from PIL import Image

from bot.engine.requests import GenerateRequest, UpscaleRequest


RESOLVED = {"model": "tiny", "prompt": "a cat", "seeds": (1,), "steps": 4, "guidance": 5.0}


def test_generate_request_is_txt2img_unless_it_has_an_init_image():
    request = GenerateRequest(**{**RESOLVED, "seeds": (1, 2, 3, 4)}, width=64, height=64)
    assert not request.is_img2img and request.strength == 0.6
    img2img = GenerateRequest(**RESOLVED, init_image=Image.new("RGB", (8, 8)))
    assert img2img.is_img2img and (img2img.width, img2img.height) == (None, None)


def test_generate_request_needs_steps_and_guidance_and_keeps_guidance_a_float():
    with pytest.raises(TypeError, match="steps"):
        GenerateRequest(model="tiny", prompt="a cat", seeds=(1,), width=64, height=64, guidance=5.0)
    with pytest.raises(TypeError, match="guidance"):
        GenerateRequest(model="tiny", prompt="a cat", seeds=(1,), width=64, height=64, steps=4)
    assert GenerateRequest(**{**RESOLVED, "guidance": 7}, width=64, height=64).guidance == 7.0


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"seeds": ()}, "non-empty tuple"),
        ({"seeds": [1, 2]}, "non-empty tuple"),
        ({"seeds": (-1,)}, "each seed"),
        ({"seeds": (True,)}, "each seed"),
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"guidance": -1.0}, "guidance"),
        ({"guidance": float("nan")}, "guidance"),
        ({"width": None}, "txt2img needs width and height"),
        ({"height": None}, "txt2img needs width and height"),
        ({"init_image": Image.new("RGB", (8, 8)), "width": 64}, "img2img takes its size"),
    ],
)
def test_generate_request_rejects_caller_mistakes(fields, message):
    with pytest.raises(ValueError, match=message):
        GenerateRequest(**{**RESOLVED, "width": 64, "height": 64, **fields})


def test_upscale_request_scale_must_be_a_positive_int():
    with pytest.raises(ValueError, match="scale"):
        UpscaleRequest(model="tiny", image=Image.new("RGB", (8, 8)), scale=0)
