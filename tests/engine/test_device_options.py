"""Device options (TORCH_DTYPE ... CPU_OFFLOAD) load and run; the ones that only change speed or memory
leave the pictures as they were. Their speed-ups need a GPU and are not measured here."""

import numpy as np
import pytest

from bot.engine.requests import DeviceOptions, GenerateRequest


def picture(model, seed=3):
    request = GenerateRequest(model="tiny", prompt="a red circle", seeds=(seed,), width=64, height=64, steps=4,
                              guidance=5.0)  # the tiny model's catalog values
    return np.asarray(model.run(request, lambda done, total: None).images[0], dtype=np.float64)


def test_speed_options_keep_the_picture(tiny, engine_catalog, engine_models_dir):
    from bot.engine.pipelines import LoadedModel

    options = DeviceOptions(dtype="fp32", attention="classic", channels_last=True, vae_tiling=True)
    tuned = LoadedModel(engine_catalog.get("tiny"), engine_models_dir, "cpu", options)
    assert np.abs(picture(tuned) - picture(tiny)).mean() < 0.5  # < 0.5/255


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="dtype"):
        DeviceOptions(dtype="fp8")
    with pytest.raises(ValueError, match="attention"):
        DeviceOptions(attention="flash")
