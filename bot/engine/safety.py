"""The model's NSFW safety checker, where its folder has one (`safety_checker/` + `feature_extractor/`,
as Stable Diffusion 1.x ships). It only flags images; it never blacks them out (what diffusers does when
the checker sits inside the pipeline), so the bot can post a flagged grid as a spoiler or refuse it, as
the server's admins chose.

Only ever used from the worker thread that owns the device (see pool.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

try:  # without torchvision, transformers' CLIPImageProcessor is this Pillow one anyway; say it outright
    from transformers import CLIPImageProcessorPil as ImageProcessor
except ImportError:  # older transformers
    from transformers import CLIPImageProcessor as ImageProcessor

log = logging.getLogger(__name__)
# The checker logs "a black image will be returned instead" for every flag; here nothing is blacked out.
logging.getLogger("diffusers.pipelines.stable_diffusion.safety_checker").setLevel(logging.ERROR)

CHECKER, PROCESSOR = "safety_checker", "feature_extractor"


class SafetyChecker:
    def __init__(self, folder: Path, device: str, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self.processor = ImageProcessor.from_pretrained(folder / PROCESSOR)
        self.model = StableDiffusionSafetyChecker.from_pretrained(folder / CHECKER, torch_dtype=dtype).to(device)
        self.model.eval()

    def flags(self, images: list[Image.Image]) -> tuple[bool, ...]:
        """One flag per image: True where the checker sees NSFW content."""
        clip_input = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        placeholders = [np.zeros((1, 1, 3)) for _ in images]  # the checker blacks out its input: not ours
        _, flagged = self.model(clip_input=clip_input, images=placeholders)
        if any(flagged):
            log.info("the safety checker flagged %d of %d images", sum(map(bool, flagged)), len(images))
        return tuple(bool(f) for f in flagged)


def load_safety_checker(source: str, device: str, dtype: torch.dtype) -> SafetyChecker | None:
    """The checker of a model folder, or None where the model has none (or is a hub id)."""
    folder = Path(source)
    if not ((folder / CHECKER).is_dir() and (folder / PROCESSOR).is_dir()):
        return None
    checker = SafetyChecker(folder, device, dtype)
    log.info("model at %s has a safety checker: its images are checked for NSFW content", folder)
    return checker


def create_tiny_safety_checker(model_folder: Path, *, flag_everything: bool, size: int = 32) -> None:
    """A tiny random safety checker in a model folder, for tests. Its thresholds make the answer certain:
    cosine similarities lie in [-1, 1], so a threshold of -2 flags every image and 2 flags none."""
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=CLIPTextConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                   num_hidden_layers=1).to_dict(),
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                       num_hidden_layers=1, image_size=size, patch_size=8).to_dict(),
        projection_dim=8,
    )
    checker = StableDiffusionSafetyChecker(config)
    threshold = -2.0 if flag_everything else 2.0
    checker.concept_embeds_weights.data.fill_(threshold)
    checker.special_care_embeds_weights.data.fill_(threshold)
    checker.save_pretrained(model_folder / CHECKER, safe_serialization=True)
    ImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(
        model_folder / PROCESSOR)
