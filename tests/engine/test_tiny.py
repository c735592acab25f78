import json

import pytest

from bot.engine.tiny import (
    REQUIRED,
    VAE_BLOCKS,
    cli,
    create_tiny_model,
    family_of,
    is_complete,
    is_current,
)


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    """The tiny SDXL folder, built once (about a second)."""
    return create_tiny_model(tmp_path_factory.mktemp("tiny-sdxl") / "tiny-sdxl", seed=0, family="sdxl")


def test_tiny_model_folder_is_complete(engine_models_dir):
    folder = engine_models_dir / "tiny-sd"
    assert is_complete(folder)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]


def test_creation_is_idempotent_and_deterministic(engine_models_dir, tmp_path):
    original = engine_models_dir / "tiny-sd"
    weights = "unet/diffusion_pytorch_model.safetensors"
    before = (original / weights).stat().st_mtime_ns
    create_tiny_model(original, seed=0)  # complete: nothing is rewritten
    assert (original / weights).stat().st_mtime_ns == before

    copy = create_tiny_model(tmp_path / "again", seed=0)
    for name in REQUIRED["sd"]:
        if name.endswith(".safetensors"):
            assert (copy / name).read_bytes() == (original / name).read_bytes(), name


def test_cli_creates_then_skips(tmp_path, capsys):
    target = tmp_path / "tiny"
    assert cli(["--path", str(target), "--seed", "1"]) == 0
    assert is_complete(target)
    assert cli(["--path", str(target)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial*"))


def test_an_outdated_tiny_model_is_rebuilt_with_the_8x_vae(tmp_path):
    """A checkout that built the old 2x-VAE tiny model gets the current one from `make models`, not the stale one."""
    target = create_tiny_model(tmp_path / "tiny", seed=0)
    config_path = target / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["block_out_channels"] = [32, 64]
    config_path.write_text(json.dumps(config))
    assert is_complete(target) and not is_current(target)

    create_tiny_model(target, seed=0)

    assert is_current(target)
    assert tuple(json.loads(config_path.read_text())["block_out_channels"]) == VAE_BLOCKS


def test_tiny_sdxl_folder_is_complete_and_current(tiny_sdxl, engine_models_dir):
    assert is_complete(tiny_sdxl) and is_current(tiny_sdxl) and is_current(tiny_sdxl, "sdxl")
    assert family_of(tiny_sdxl) == "sdxl"
    assert all((tiny_sdxl / name).is_file() for name in REQUIRED["sdxl"])
    index = json.loads((tiny_sdxl / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["force_zeros_for_empty_prompt"] is True
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert index["tokenizer_2"] == ["transformers", "CLIPTokenizer"]
    assert json.loads((tiny_sdxl / "vae" / "config.json").read_text())["scaling_factor"] == 0.13025
    # one family is not the other: asking for sdxl where an sd model is (or the reverse) is not "current"
    sd = engine_models_dir / "tiny-sd"
    assert is_current(sd) and is_current(sd, "sd") and not is_current(sd, "sdxl")
    assert not is_current(tiny_sdxl, "sd")
    with pytest.raises(ValueError, match="family"):
        create_tiny_model(tiny_sdxl, family="sd4")


def test_sdxl_is_incomplete_without_its_second_encoder(tmp_path):
    target = create_tiny_model(tmp_path / "xl", seed=0, family="sdxl")
    (target / "text_encoder_2" / "model.safetensors").unlink()
    assert not is_complete(target) and not is_current(target, "sdxl")
    with pytest.raises(FileExistsError):
        create_tiny_model(target, family="sdxl")
    create_tiny_model(target, family="sdxl", force=True)
    assert is_current(target, "sdxl")


def test_sdxl_creation_is_deterministic(tiny_sdxl, tmp_path):
    weights = "unet/diffusion_pytorch_model.safetensors"
    before = (tiny_sdxl / weights).stat().st_mtime_ns
    create_tiny_model(tiny_sdxl, seed=0, family="sdxl")  # current: nothing is rewritten
    assert (tiny_sdxl / weights).stat().st_mtime_ns == before
    copy = create_tiny_model(tmp_path / "again", seed=0, family="sdxl")
    for name in REQUIRED["sdxl"]:
        assert (copy / name).read_bytes() == (tiny_sdxl / name).read_bytes(), name


def test_cli_family_sdxl_with_a_positional_path(tmp_path, capsys):
    target = tmp_path / "xl"
    assert cli(["--family", "sdxl", str(target), "--seed", "1"]) == 0
    assert is_current(target, "sdxl")
    assert cli(["--family", "sdxl", "--path", str(target)]) == 0
    assert "already complete" in capsys.readouterr().out
    # the same folder asked for as an sd model is replaced by one
    assert cli([str(target)]) == 0
    assert family_of(target) == "sd" and is_current(target, "sd")


def test_tiny_sdxl_generates_through_auto_pipelines(tiny_sdxl):
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, StableDiffusionXLPipeline

    txt2img = AutoPipelineForText2Image.from_pretrained(tiny_sdxl, local_files_only=True)
    assert type(txt2img) is StableDiffusionXLPipeline
    txt2img.set_progress_bar_config(disable=True)

    def generate(seed):
        return txt2img(
            "a red circle",
            negative_prompt="blurry",
            num_images_per_prompt=2,
            width=64,
            height=64,
            num_inference_steps=2,
            guidance_scale=5.0,
            generator=[torch.Generator("cpu").manual_seed(seed + i) for i in range(2)],
            output_type="pil",
        ).images

    images = generate(7)
    assert len(images) == 2 and all(image.size == (64, 64) for image in images)
    again = generate(7)
    assert [image.tobytes() for image in images] == [image.tobytes() for image in again]
    assert images[0].tobytes() != images[1].tobytes()  # different seeds, different noise

    img2img = AutoPipelineForImage2Image.from_pipe(txt2img)
    img2img.set_progress_bar_config(disable=True)
    out = img2img(
        "a blue square",
        image=images[0],
        strength=0.5,
        num_inference_steps=2,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(1),
        output_type="pil",
    ).images
    assert len(out) == 1 and out[0].size == (64, 64)


@pytest.mark.parametrize("family, pipeline", [("flux", "FluxPipeline"), ("sd3", "StableDiffusion3Pipeline"),
                                              ("zimage", "ZImagePipeline")])
def test_the_transformer_families_build_complete_and_deterministic(family, pipeline, tmp_path):
    first = create_tiny_model(tmp_path / "one", seed=0, family=family)
    assert is_current(first, family) and family_of(first) == family
    assert json.loads((first / "model_index.json").read_text())["_class_name"] == pipeline
    assert json.loads((first / "vae" / "config.json").read_text())["latent_channels"] == 16
    again = create_tiny_model(tmp_path / "two", seed=0, family=family)
    for name in REQUIRED[family]:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
