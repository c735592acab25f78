"""The safety checker flags images without touching them; tiny checkers built from config answer for sure."""

import torch
from PIL import Image

from bot.engine.safety import create_tiny_safety_checker, load_safety_checker


def test_a_checker_flags_everything_or_nothing_and_leaves_the_images_alone(tmp_path):
    images = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue", "white")]
    for flag_everything in (True, False):
        folder = tmp_path / str(flag_everything)
        create_tiny_safety_checker(folder, flag_everything=flag_everything)
        checker = load_safety_checker(str(folder), "cpu", torch.float32)
        assert checker.flags(images) == (flag_everything,) * 3
    assert [image.getpixel((0, 0)) for image in images] == [(255, 0, 0), (0, 0, 255), (255, 255, 255)]


def test_a_model_without_a_checker_has_none(tmp_path):
    assert load_safety_checker(str(tmp_path), "cpu", torch.float32) is None
    assert load_safety_checker("stabilityai/sd-turbo", "cpu", torch.float32) is None  # hub ids: not checked
