"""Single-file checkpoints (bot/engine/checkpoints.py): the tiny models exported to the original layout load
back pixel-identical, the family is read from the header alone, default config folders build offline, and
every file we cannot run is refused with a reason that names it relative to the models dir."""

from __future__ import annotations

import importlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPTokenizer

from bot.engine.checkpoints import (
    FLUX, SD, SD3, SDXL, CheckpointError, Checkpoint, default_config, detect, detect_family, export_cli,
    export_single_file, list_checkpoints, load_single_file, original_layout,
)
from bot.engine.tiny import create_tiny_model

KINDS = {  # tiny model -> (family, variant)
    "sd": (SD, "v1"),
    "sd2": (SD, "v2"),  # the sd model with an OpenCLIP-style (gelu) text encoder: exported in SD 2.x's layout
    "sdxl": (SDXL, "xl_base"),
}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """A models dir with the tiny models as diffusers folders and, in checkpoints/, as single files."""
    root = tmp_path_factory.mktemp("single-file-models")
    create_tiny_model(root / "tiny-sd", family="sd")
    create_tiny_model(root / "tiny-sdxl", family="sdxl")
    shutil.copytree(root / "tiny-sd", root / "tiny-sd2")
    config = root / "tiny-sd2" / "text_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hidden_act": "gelu"}))
    for kind in KINDS:
        export_single_file(root / f"tiny-{kind}", root / "checkpoints" / f"tiny-{kind}.safetensors")
    return root


def images(pipeline) -> np.ndarray:
    pipeline.set_progress_bar_config(disable=True)
    return pipeline(prompt="a red fox in the snow", negative_prompt="blurry", num_inference_steps=2, height=64,
                    width=64, generator=torch.Generator("cpu").manual_seed(7), output_type="np").images


@pytest.fixture(scope="session")
def reference_images(models_dir):
    """Each tiny folder's own images, as the engine loads it."""
    from diffusers import AutoPipelineForText2Image

    return {kind: images(AutoPipelineForText2Image.from_pretrained(
        models_dir / f"tiny-{kind}", local_files_only=True, **({"safety_checker": None} if kind != "sdxl" else {})))
        for kind in KINDS}


def assert_user_safe(message: str, models_dir) -> None:
    assert str(models_dir) not in message and str(models_dir.resolve()) not in message
    assert " /" not in message and "'/" not in message


@pytest.mark.parametrize("kind", KINDS)
def test_an_exported_tiny_model_loads_back_pixel_identical(kind, models_dir, reference_images):
    path = models_dir / "checkpoints" / f"tiny-{kind}.safetensors"
    family, variant = KINDS[kind]
    assert detect_family(path) == family
    assert detect(path, models_dir).variant == variant
    pipeline = load_single_file(path, family, models_dir / f"tiny-{kind}", torch.float32, models_dir)
    assert type(pipeline).__name__ == ("StableDiffusionXLPipeline" if family == SDXL else "StableDiffusionPipeline")
    np.testing.assert_array_equal(images(pipeline), reference_images[kind])


def test_a_unet_only_file_takes_the_rest_from_its_config_folder(models_dir, reference_images, tmp_path):
    with safe_open(str(models_dir / "checkpoints" / "tiny-sd.safetensors"), framework="pt") as file:
        unet = {key: file.get_tensor(key) for key in file.keys() if key.startswith("model.diffusion_model.")}
    save_file(unet, str(tmp_path / "unet-only.safetensors"))
    assert not detect(tmp_path / "unet-only.safetensors").text_encoders
    pipeline = load_single_file(tmp_path / "unet-only.safetensors", SD, models_dir / "tiny-sd", torch.float32)
    np.testing.assert_array_equal(images(pipeline), reference_images["sd"])


def test_a_file_without_a_vae_takes_its_config_folders(models_dir, reference_images, tmp_path):
    with safe_open(str(models_dir / "checkpoints" / "tiny-sd.safetensors"), framework="pt") as file:
        no_vae = {key: file.get_tensor(key) for key in file.keys() if not key.startswith("first_stage_model.")}
    save_file(no_vae, str(tmp_path / "no-vae.safetensors"))
    pipeline = load_single_file(tmp_path / "no-vae.safetensors", SD, models_dir / "tiny-sd", torch.float32)
    np.testing.assert_array_equal(images(pipeline), reference_images["sd"])
    with pytest.raises(CheckpointError, match="no-vae.safetensors holds no VAE; its config sd15 must then have "
                                              "VAE weights"):
        load_single_file(tmp_path / "no-vae.safetensors", SD, default_config(SD, "v1", tmp_path / "configs"))


def test_an_export_keeps_the_dtype_its_weights_are_stored_in(models_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    half = tmp_path / "tiny-sd-fp16"
    StableDiffusionPipeline.from_pretrained(models_dir / "tiny-sd", torch_dtype=torch.float16).save_pretrained(half)
    export_single_file(half, tmp_path / "half.safetensors")
    with safe_open(str(tmp_path / "half.safetensors"), framework="pt") as file:
        assert {file.get_slice(key).get_dtype() for key in file.keys()} == {"F16"}


# --- the layout of full-size models, on the meta device (no memory, no weights) ------------------------------

def full_size_modules(arch: str) -> dict[str, torch.nn.Module]:
    """The weight modules of the upstream `arch` (bot/bench/architectures), built on the meta device."""
    from bot.bench.architectures import _build_component, components

    with torch.device("meta"):
        return {name: _build_component(arch, name, cls) for name, cls in components(arch).items()}


def shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {key.removeprefix("text_model."): tuple(value.shape) for key, value in state.items()}


def header_file(path, keys, shapes=None) -> None:
    """A small safetensors file with the given keys (1-element tensors but for `shapes`): what detect reads."""
    shapes = shapes or {}
    save_file({key: torch.zeros(shapes.get(key, (1,)), dtype=torch.float16) for key in keys}, str(path))


@pytest.fixture(scope="session")
def full_size_headers(tmp_path_factory):
    """SD 1.5, SD 2.1 (SD-Turbo) and SDXL base keys as export writes them, in small files: arch -> (the file,
    the meta modules, their original layout)."""
    root = tmp_path_factory.mktemp("headers")
    files = {}
    for arch in ("sd15", "sd-turbo", "sdxl"):
        modules = full_size_modules(arch)
        layout = original_layout(modules["unet"], modules["vae"], modules["text_encoder"],
                                 modules.get("text_encoder_2"))
        files[arch] = (root / f"{arch}.safetensors", modules, layout)
        small = {key: tuple(value.shape) for key, value in layout.items() if value.numel() <= 65536}
        header_file(files[arch][0], layout, small)
    return files


@pytest.mark.parametrize("arch, family, variant, diffusers_type", [
    ("sd15", SD, "v1", "v1"), ("sd-turbo", SD, "v2", "v2"), ("sdxl", SDXL, "xl_base", "xl_base")])
def test_full_size_layouts_are_the_upstream_ones(arch, family, variant, diffusers_type, full_size_headers):
    """diffusers' own detection (which looks for keys only full-size models have) agrees with ours, and its
    conversion of our layout gives back every weight of the diffusers modules."""
    from diffusers.loaders import single_file_utils as diffusers_conversion

    path, modules, layout = full_size_headers[arch]
    assert diffusers_conversion.infer_diffusers_model_type(layout) == diffusers_type
    unet, vae = modules["unet"], modules["vae"]
    assert shapes(diffusers_conversion.convert_ldm_unet_checkpoint(layout, unet.config)) == shapes(unet.state_dict())
    assert shapes(diffusers_conversion.convert_ldm_vae_checkpoint(layout, vae.config)) == shapes(vae.state_dict())
    encoders = [(modules["text_encoder"], "cond_stage_model.model." if arch == "sd-turbo" else None)]
    if arch == "sdxl":
        encoders.append((modules["text_encoder_2"], "conditioner.embedders.1.model."))
    for encoder, open_clip in encoders:
        converted = (diffusers_conversion.convert_open_clip_checkpoint(encoder, layout, open_clip) if open_clip
                     else diffusers_conversion.convert_ldm_clip_checkpoint(layout))
        assert shapes(converted) == shapes(encoder.state_dict())
    assert (detect(path).family, detect(path).variant) == (family, variant)
    assert default_config(family, variant, path.parent / "configs").name == {"sd-turbo": "sd2"}.get(arch, arch)


def meta_module(folder, name: str, library: str, class_name: str):
    """The component `name` of a config folder with no weights, on the meta device."""
    cls = getattr(importlib.import_module(library), class_name)
    with torch.device("meta"):
        if library == "diffusers":
            return cls.from_config(cls.load_config(folder / name))
        return cls(cls.config_class.from_pretrained(folder / name))


@pytest.mark.parametrize("arch", ["sd15", "sd-turbo", "sdxl"])
def test_a_default_config_builds_offline_and_from_single_file_accepts_it(arch, full_size_headers, tmp_path):
    import diffusers

    path = full_size_headers[arch][0]
    detected = detect(path)
    folder = default_config(detected.family, detected.variant, tmp_path / ".single-file-configs")
    assert default_config(detected.family, detected.variant, tmp_path / ".single-file-configs") == folder  # cached
    index = json.loads((folder / "model_index.json").read_text())
    for name in (name for name, value in index.items() if isinstance(value, list) and value[0]):
        assert (folder / name).is_dir(), name
    # Every weight module built (on the meta device) from the folder's configs, passed in: from_single_file
    # then reads only the folder (tokenizers, scheduler, model_index.json) and the file's header.
    modules = {name: meta_module(folder, name, *index[name])
               for name in ("unet", "vae", "text_encoder", "text_encoder_2") if name in index}
    pipeline_class = getattr(diffusers, index["_class_name"])
    extra = {"safety_checker": None, "feature_extractor": None} if detected.family == SD else {}
    pipeline = pipeline_class.from_single_file(str(path), config=str(folder), local_files_only=True,
                                               **modules, **extra)
    assert pipeline.tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]  # CLIP's real ids
    pad = {"sd15": "<|endoftext|>", "sd-turbo": "!", "sdxl": "<|endoftext|>"}[arch]
    assert pipeline.tokenizer.pad_token == pad
    if arch == "sdxl":
        assert pipeline.tokenizer_2.pad_token == "!"
    assert pipeline.unet.config.cross_attention_dim == {"sd15": 768, "sd-turbo": 1024, "sdxl": 2048}[arch]


@pytest.mark.parametrize("keys, shapes, family, variant, encoders", [
    # a UNet alone: SDXL's has its size/crop embedding, SD 2.x's cross-attends to 1024-wide text
    (["model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.label_emb.0.0.weight"], {},
     SDXL, "xl_base", False),
    (["model.diffusion_model.input_blocks.0.0.weight",
      "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"],
     {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)},
     SD, "v2", False),
    (["model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias",
      "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight",
      "text_encoders.clip_g.transformer.text_model.final_layer_norm.weight"], {}, SD3, "sd3", True),
    (["double_blocks.0.img_attn.norm.key_norm.scale", "guidance_in.in_layer.bias", "img_in.weight"],
     {"img_in.weight": (4, 64)}, FLUX, "flux-dev", False),
    (["double_blocks.0.img_attn.norm.key_norm.scale", "img_in.weight"], {"img_in.weight": (4, 64)},
     FLUX, "flux-schnell", False),
])
def test_detect_reads_the_family_from_the_header(keys, shapes, family, variant, encoders, tmp_path):
    header_file(tmp_path / "x.safetensors", keys, {**{keys[0]: (1, 4, 1, 1)}, **shapes}
                if keys[0].endswith("input_blocks.0.0.weight") else shapes)
    assert detect(tmp_path / "x.safetensors") == type(detect(tmp_path / "x.safetensors"))(family, variant, encoders)


def test_the_768_px_sd2_default_config_predicts_v(tmp_path):
    folder = default_config(SD, "v2-v", tmp_path)
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert (scheduler["prediction_type"], unet["sample_size"], unet["cross_attention_dim"]) == ("v_prediction", 96, 1024)
    base = default_config(SD, "v2", tmp_path)
    assert json.loads((base / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "epsilon"
    assert CLIPTokenizer.from_pretrained(folder / "tokenizer").pad_token == "!"  # OpenCLIP's, as SD 2.x's


def test_flux_and_sd3_have_no_default_config(tmp_path):
    for family, variant in ((FLUX, "flux-dev"), (SD3, "sd3")):
        with pytest.raises(CheckpointError, match="must name a config folder"):
            default_config(family, variant, tmp_path)


def test_a_transformer_only_file_needs_a_config_with_the_other_weights(tmp_path):
    header_file(tmp_path / "flux.safetensors", ["double_blocks.0.img_attn.norm.key_norm.scale", "img_in.weight"],
                {"img_in.weight": (4, 64)})
    (tmp_path / "flux-config").mkdir()
    (tmp_path / "flux-config" / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(CheckpointError, match="flux.safetensors holds only the transformer; its config "
                                              "flux-config must then be a full diffusers model, but it has no "
                                              "weights for vae or text_encoder"):
        load_single_file(tmp_path / "flux.safetensors", FLUX, tmp_path / "flux-config", models_dir=tmp_path)


# --- refusals ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, full_size_headers):
    """A models dir whose checkpoints/ holds one file of each kind we refuse, and one good one."""
    root = tmp_path_factory.mktemp("bad-models")
    folder = root / "checkpoints"
    (folder / "old").mkdir(parents=True)
    (folder / "old" / "anything.ckpt").write_bytes(b"\x80\x04not really a pickle")
    torch.manual_seed(0)
    save_file({f"lora_unet_down_blocks_0_attentions_0_proj_in.lora_{side}.weight": torch.randn(4, 4)
               for side in ("up", "down")} | {"lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.ones(())},
              str(folder / "style-lora.safetensors"))
    save_file({"encoder.conv_in.weight": torch.zeros(1), "decoder.conv_out.weight": torch.zeros(1)},
              str(folder / "vae.safetensors"))
    (folder / "garbage.safetensors").write_bytes(b"\xff" * 64)
    good = full_size_headers["sd15"][0].read_bytes()
    (folder / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    header_file(folder / "inpainting.safetensors", full_size_headers["sd15"][2],
                {"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)})
    sdxl = full_size_headers["sdxl"][2]
    refiner = [key.replace("embedders.1.", "embedders.0.") for key in sdxl if not key.startswith(
        "conditioner.embedders.0.")]
    header_file(folder / "refiner.safetensors", refiner)
    shutil.copyfile(full_size_headers["sd15"][0], folder / "sd15.safetensors")
    (folder / "notes.txt").write_text("not a model")
    (folder / ".sd15.safetensors.partial-1").write_bytes(b"")
    return root


@pytest.mark.parametrize("name, expected", [
    ("old/anything.ckpt", "checkpoints/old/anything.ckpt is a pickle file: loading one runs whatever code"),
    ("style-lora.safetensors", "holds 3 tensors but none of the keys of an SD, SDXL, SD3 or FLUX checkpoint; "
                               "it looks like a LoRA (put those in models/loras/)"),
    ("vae.safetensors", "it looks like a VAE on its own"),
    ("garbage.safetensors", "checkpoints/garbage.safetensors is not a valid .safetensors file"),
    ("truncated.safetensors", "checkpoints/truncated.safetensors is not a valid .safetensors file"),
    ("inpainting.safetensors", "is an inpainting checkpoint"),
    ("refiner.safetensors", "is an SDXL refiner"),
])
def test_a_file_we_cannot_run_is_refused_with_the_reason(name, expected, bad_files):
    with pytest.raises(CheckpointError) as refused:
        detect_family(bad_files / "checkpoints" / name, bad_files)
    assert expected in str(refused.value)
    assert_user_safe(str(refused.value), bad_files)


def test_a_pickle_is_never_opened_and_the_message_says_how_to_convert_it(bad_files, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("a pickle was loaded"))
    with pytest.raises(CheckpointError, match=r"convert this file to \.safetensors"):
        detect(bad_files / "checkpoints" / "old" / "anything.ckpt")


def test_list_checkpoints_lists_every_checkpoint_with_its_family_or_problem(bad_files):
    listed = {checkpoint.path: checkpoint for checkpoint in list_checkpoints(bad_files)}
    assert list(listed) == sorted(listed)
    assert set(listed) == {f"checkpoints/{name}" for name in (
        "garbage.safetensors", "inpainting.safetensors", "old/anything.ckpt", "refiner.safetensors",
        "sd15.safetensors", "style-lora.safetensors", "truncated.safetensors", "vae.safetensors")}
    good = listed["checkpoints/sd15.safetensors"]
    assert good == Checkpoint("checkpoints/sd15.safetensors", (bad_files / good.path).stat().st_size, SD, None, "v1")
    for path, checkpoint in listed.items():
        if path != good.path:
            assert checkpoint.family is None and checkpoint.problem.startswith(path), checkpoint
            assert_user_safe(checkpoint.problem, bad_files)
    assert list_checkpoints(bad_files / "nowhere") == []


def test_load_single_file_refuses_a_wrong_family_or_config(models_dir):
    path = models_dir / "checkpoints" / "tiny-sd.safetensors"
    with pytest.raises(CheckpointError, match="is an SD 1.x/2.x checkpoint, but its catalog entry says"):
        load_single_file(path, SDXL, models_dir / "tiny-sdxl", models_dir=models_dir)
    with pytest.raises(CheckpointError, match="config tiny-sdxl is a StableDiffusionXLPipeline folder") as refused:
        load_single_file(path, SD, models_dir / "tiny-sdxl", models_dir=models_dir)
    assert_user_safe(str(refused.value), models_dir)
    with pytest.raises(CheckpointError, match="config checkpoints is not a diffusers model folder"):
        load_single_file(path, SD, models_dir / "checkpoints", models_dir=models_dir)


def test_load_single_file_says_why_a_config_does_not_fit(models_dir, tmp_path):
    """A config whose UNet is another shape: diffusers' error, with no local path in it."""
    config = tmp_path / "other"
    shutil.copytree(models_dir / "tiny-sd", config)
    unet = config / "unet" / "config.json"
    unet.write_text(json.dumps({**json.loads(unet.read_text()), "cross_attention_dim": 64}))
    with pytest.raises(CheckpointError) as refused:
        load_single_file(models_dir / "checkpoints" / "tiny-sd.safetensors", SD, config, models_dir=tmp_path)
    assert str(refused.value).startswith(
        "tiny-sd.safetensors could not be loaded as an SD 1.x/2.x checkpoint with the config other: ")
    assert "expected shape torch.Size([64, 64]), but got torch.Size([64, 32])" in str(refused.value)
    assert "If you want" not in str(refused.value)  # diffusers' advice to its API's callers is cut
    assert_user_safe(str(refused.value), tmp_path)
    assert str(models_dir) not in str(refused.value)


def test_export_cli(models_dir, tmp_path, capsys):
    out = tmp_path / "checkpoints" / "exported.safetensors"
    assert export_cli([str(models_dir / "tiny-sd"), str(out)]) == 0
    assert detect_family(out) == SD
    assert export_cli([str(models_dir / "tiny-sd"), str(out)]) == 1
    assert "exists (use --force to replace it)" in capsys.readouterr().err
    assert export_cli([str(models_dir / "tiny-sdxl"), str(out), "--force"]) == 0
    assert detect_family(out) == SDXL
    assert export_cli([str(models_dir / "checkpoints"), str(tmp_path / "x.safetensors")]) == 1
    assert "not a diffusers model folder" in capsys.readouterr().err
    assert [path.name for path in out.parent.iterdir()] == ["exported.safetensors"]  # no partial file left
