import io

import pytest
from PIL import Image

from bot.engine.grid import make_grid, png_bytes
from bot.engine.requests import EngineError
from bot.engine.upscale import upscale

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def test_grid_is_two_by_two_in_reading_order():
    grid = make_grid([Image.new("RGB", (64, 48), colour) for colour in COLOURS])
    assert grid.size == (128, 96)
    corners = [grid.getpixel((10, 10)), grid.getpixel((100, 10)), grid.getpixel((10, 80)), grid.getpixel((100, 80))]
    assert corners == COLOURS


def test_grid_needs_four_equal_images():
    with pytest.raises(ValueError, match="exactly 4"):
        make_grid([Image.new("RGB", (8, 8))] * 3)
    with pytest.raises(ValueError, match="same size"):
        make_grid([Image.new("RGB", (8, 8))] * 3 + [Image.new("RGB", (16, 8))])


def test_png_bytes_carries_metadata():
    data = png_bytes(Image.new("RGB", (8, 8)), {"prompt": "a red circle", "seed": "42"})
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.text == {"prompt": "a red circle", "seed": "42"}
    assert Image.open(io.BytesIO(png_bytes(Image.new("RGB", (8, 8))))).text == {}


def test_lanczos_upscale():
    assert upscale(Image.new("RGB", (64, 48)), 2).size == (128, 96)
    with pytest.raises(EngineError, match="unknown upscaler 'magic'"):
        upscale(Image.new("RGB", (8, 8)), 2, method="magic")
    with pytest.raises(EngineError, match="exceed"):
        upscale(Image.new("RGB", (4096, 8)), 4)
