import pytest
from PIL import Image

from bot.engine.requests import GenerateRequest, UpscaleRequest


def test_generate_request_defaults_to_txt2img():
    request = GenerateRequest(model="tiny", prompt="a cat", seeds=(1, 2, 3, 4))
    assert not request.is_img2img
    assert (request.width, request.height, request.steps, request.guidance, request.strength) == (
        None, None, None, None, 0.6
    )
    assert GenerateRequest(model="tiny", prompt="a cat", seeds=(1,), init_image=Image.new("RGB", (8, 8))).is_img2img


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
        ({"init_image": Image.new("RGB", (8, 8)), "width": 64}, "img2img takes its size"),
    ],
)
def test_generate_request_rejects_caller_mistakes(fields, message):
    with pytest.raises(ValueError, match=message):
        GenerateRequest(**{"model": "tiny", "prompt": "a cat", "seeds": (1,), **fields})


def test_upscale_request_scale_must_be_a_positive_int():
    with pytest.raises(ValueError, match="scale"):
        UpscaleRequest(model="tiny", image=Image.new("RGB", (8, 8)), scale=0)
