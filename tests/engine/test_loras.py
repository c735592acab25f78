"""LoRAs: prompt tags, files, family detection, and adapters on the tiny SD, SDXL and FLUX models."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
from PIL import Image
from safetensors.torch import save_file

from bot.engine.loras import (
    LoraError,
    LoraSlots,
    LoraUse,
    a1111_lora_hashes,
    check_compatible,
    cli,
    create_tiny_lora,
    find_lora,
    list_loras,
    lora_family,
    lora_hash,
    parse_loras,
)
from bot.engine.tiny import create_tiny_model, is_current

REPO_ROOT = Path(__file__).resolve().parents[2]

# loras.py silences these at import; pytest puts its own warning filters back for every test
pytestmark = [
    pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute"),
    pytest.mark.filterwarnings("ignore:Adapter .* was active which is now deleted"),
]


@pytest.fixture(scope="session")
def sd_folder(engine_models_dir):
    return engine_models_dir / "tiny-sd"


def _tiny_model(tmp_path_factory, family):
    """The tiny model `make models` built (only read here), else a fresh one."""
    built = REPO_ROOT / "models" / f"tiny-{family}"
    if is_current(built, family):
        return built
    return create_tiny_model(tmp_path_factory.mktemp(f"lora-{family}") / f"tiny-{family}", seed=0, family=family)


@pytest.fixture(scope="session")
def sdxl_folder(tmp_path_factory):
    return _tiny_model(tmp_path_factory, "sdxl")


@pytest.fixture(scope="session")
def loras_dir(tmp_path_factory, sd_folder, sdxl_folder):
    """models/loras with tiny LoRAs of both families and styles, plus files that must be refused."""
    root = tmp_path_factory.mktemp("loras")
    for folder, family in ((sd_folder, "sd"), (sdxl_folder, "sdxl")):
        create_tiny_lora(folder, root / f"{family}.safetensors", seed=0)
        create_tiny_lora(folder, root / f"{family}-kohya.safetensors", seed=0, style="kohya")
        create_tiny_lora(folder, root / f"{family}-b.safetensors", seed=1)
        create_tiny_lora(folder, root / f"{family}-unet.safetensors", seed=2, text_encoder=False)
    create_tiny_lora(sd_folder, root / "styles" / "ink.safetensors", seed=3)
    create_tiny_lora(sd_folder, root / "img2img-first.safetensors", seed=4)
    # keys of a model neither tiny family has: loads into nothing
    save_file({"transformer.foo.lora_A.weight": torch.ones(4, 8), "transformer.foo.lora_B.weight": torch.ones(8, 4)},
              str(root / "unknown.safetensors"))
    (root / "old.ckpt").write_bytes(b"a pickle")
    (root / ".hidden").mkdir()
    create_tiny_lora(sd_folder, root / ".hidden" / "secret.safetensors")
    return root


def _pipes(folder, **extra):
    txt2img = AutoPipelineForText2Image.from_pretrained(folder, local_files_only=True, **extra)
    img2img = AutoPipelineForImage2Image.from_pipe(txt2img)
    for pipe in (txt2img, img2img):
        pipe.set_progress_bar_config(disable=True)
    return txt2img, img2img


def _txt2img(pipe, seed=0):
    return pipe("a fox in the snow", num_inference_steps=2, width=64, height=64, guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images[0]


SOURCE = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def _img2img(pipe, seed=0):
    return pipe("a fox in the snow", image=SOURCE, strength=0.5, num_inference_steps=4, guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images[0]


class Model:
    """A tiny model's two pipelines, one LoraSlots, and the images it made before any LoRA was loaded."""

    def __init__(self, folder, loras_dir, **extra):
        self.txt2img, self.img2img = _pipes(folder, **extra)
        self.plain_txt2img = _txt2img(self.txt2img)
        self.plain_img2img = _img2img(self.img2img)
        self.slots = LoraSlots(loras_dir)

    def txt2img_with(self, *uses):
        self.slots.apply(self.txt2img, uses)
        return _txt2img(self.txt2img)


@pytest.fixture(scope="session")
def sd(sd_folder, loras_dir):
    return Model(sd_folder, loras_dir, safety_checker=None)


@pytest.fixture(scope="session")
def sdxl(sdxl_folder, loras_dir):
    return Model(sdxl_folder, loras_dir)


# --- prompts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, cleaned, uses", [
    ("a fox <lora:ghibli:0.8>", "a fox", (LoraUse("ghibli", 0.8),)),
    ("<lora:ghibli> a fox", "a fox", (LoraUse("ghibli", 1.0),)),
    ("a fox, <lora:ghibli:0.5>, in snow <LORA:styles/ink:-1>", "a fox, in snow",
     (LoraUse("ghibli", 0.5), LoraUse("styles/ink", -1.0))),
    ("a fox <lora:a:.5> <lora:b:+2> , snow,", "a fox, snow", (LoraUse("a", 0.5), LoraUse("b", 2.0))),
    ("a fox <lora: Detail Tweaker v2 : 0 >", "a fox", (LoraUse("Detail Tweaker v2", 0.0),)),
    ("a fox,  no tags ,here", "a fox,  no tags ,here", ()),
])
def test_parse_loras_strips_the_tags(prompt, cleaned, uses):
    assert parse_loras(prompt) == (cleaned, uses)


@pytest.mark.parametrize("prompt, message", [
    ("<lora:x:abc>", "'abc' is not a number"),
    ("<lora:x:nan>", "not a number"),
    ("<lora:x:inf>", "not a number"),
    ("<lora:x:1e400>", "not a number"),
    ("<lora:x:4.5>", "between -4 and 4"),
    ("<lora:x:-5>", "between -4 and 4"),
    ("<lora::1>", "needs a LoRA name"),
    ("<lora:>", "needs a LoRA name"),
    ("<lora:../x>", "not a LoRA name"),
    ("<lora:styles/../../x>", "not a LoRA name"),
    ("<lora:/etc/x>", "not a LoRA name"),
    ("<lora:a\\b>", "not a LoRA name"),
    ("<lora:styles//x>", "not a LoRA name"),
    ("<lora:C:/x:1>", "one weight per LoRA"),
    ("<lora:x:0.5:0.5>", "one weight per LoRA"),
    ("<lora:x> and <lora:X.safetensors:0.5>", "in the prompt twice"),
    ("a fox <lora:x:0.5", "not closed"),
    (" ".join(f"<lora:l{i}>" for i in range(9)), "at most 8"),
])
def test_parse_loras_refuses_malformed_tags(prompt, message):
    with pytest.raises(LoraError, match=message) as error:
        parse_loras(prompt)
    assert "Traceback" not in str(error.value) and "\n" not in str(error.value)


# --- files -----------------------------------------------------------------------------------------------


def test_find_lora(loras_dir):
    assert find_lora(loras_dir, "sd") == loras_dir / "sd.safetensors"
    assert find_lora(loras_dir, "styles/ink") == loras_dir / "styles" / "ink.safetensors"
    assert find_lora(loras_dir, "Styles/INK") == loras_dir / "styles" / "ink.safetensors"
    assert find_lora(loras_dir, "sd.safetensors") == loras_dir / "sd.safetensors"


@pytest.mark.parametrize("name, message", [
    ("sd-c", "no LoRA named sd-c; did you mean sd-b"),
    ("old", "pickle"),
    ("old.ckpt", "pickle"),
    ("../loras/sd", "not a LoRA name"),
    (".hidden/secret", "not a LoRA name"),
])
def test_find_lora_refuses(loras_dir, name, message):
    with pytest.raises(LoraError, match=message) as error:
        find_lora(loras_dir, name)
    assert str(loras_dir) not in str(error.value)


def test_find_lora_absolute_path_refused(loras_dir):
    with pytest.raises(LoraError, match="not a LoRA name"):
        find_lora(loras_dir, str(loras_dir / "sd"))


def test_find_lora_in_an_empty_folder(tmp_path):
    with pytest.raises(LoraError, match="no LoRAs are installed"):
        find_lora(tmp_path / "loras", "x")


def test_list_loras(loras_dir):
    loras = {lora.name: lora for lora in list_loras(loras_dir)}
    assert set(loras) == {"sd", "sd-kohya", "sd-b", "sd-unet", "sdxl", "sdxl-kohya", "sdxl-b", "sdxl-unet",
                          "styles/ink", "img2img-first", "unknown"}
    assert loras["styles/ink"].path.as_posix() == "styles/ink.safetensors"
    assert loras["sd"].size == (loras_dir / "sd.safetensors").stat().st_size
    assert loras["sd"].family == loras["sd-kohya"].family == "stable-diffusion"
    assert loras["sdxl"].family == loras["sdxl-kohya"].family == "stable-diffusion-xl"
    # tiny cross-attention widths (32, 64) and no text encoder say nothing
    assert loras["sd-unet"].family is loras["sdxl-unet"].family is loras["unknown"].family is None


def test_lora_hash_is_a1111s_addnet_hash(tmp_path):
    path = tmp_path / "x.safetensors"
    tensors = {"unet.a.lora_A.weight": torch.arange(8.0).reshape(2, 4)}
    save_file(tensors, str(path), metadata={"ss_output_name": "x"})
    data = path.read_bytes()
    expected = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
    assert lora_hash(path) == expected
    save_file(tensors, str(path), metadata={"ss_output_name": "renamed", "more": "metadata"})
    assert lora_hash(path) == expected  # the header is not hashed
    save_file({"unet.a.lora_A.weight": torch.ones(2, 4)}, str(path))
    assert lora_hash(path) != expected  # new content, new (mtime, size) cache key
    assert a1111_lora_hashes([("x", path), ("y", path)]) == f"x: {lora_hash(path)}, y: {lora_hash(path)}"


# --- families --------------------------------------------------------------------------------------------

SD, XL, SD3, FLUX = "stable-diffusion", "stable-diffusion-xl", "stable-diffusion-3", "flux"
KOHYA_TO_K = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
DIFFUSERS_TO_K = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"


@pytest.mark.parametrize("keys, metadata, family", [
    ({KOHYA_TO_K: (4, 768)}, {}, SD),
    ({KOHYA_TO_K: (4, 1024)}, {}, SD),
    ({KOHYA_TO_K: (4, 2048)}, {}, XL),
    ({"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (8, 2048)}, {}, XL),
    ({DIFFUSERS_TO_K: (4, 768), "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": (4, 768)},
     {}, SD),
    ({DIFFUSERS_TO_K: (4, 2048)}, {}, XL),
    ({"unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_k_lora.down.weight": (4, 768)}, {}, SD),
    ({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768)}, {}, SD),
    ({"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768),
      "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 1280)}, {}, XL),
    ({"lora_unet_output_blocks_0_1_proj_in.lora_down.weight": (4, 1280)}, {}, XL),
    ({"transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": (16, 3072)}, {}, FLUX),
    ({"transformer.transformer_blocks.0.attn.to_k.lora_A.weight": (16, 3072)}, {}, FLUX),
    ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (16, 3072)}, {}, FLUX),
    ({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": (16, 3072)}, {}, FLUX),
    ({"transformer.transformer_blocks.0.attn.to_k.lora_A.weight": (16, 1536)}, {}, SD3),
    ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": (16, 1536)}, {}, SD3),
    ({DIFFUSERS_TO_K: (4, 32)}, {}, None),
    ({"unet.foo.lora_A.weight": (4, 8)}, {"ss_base_model_version": "sdxl_base_v1-0"}, XL),
    ({"unet.foo.lora_A.weight": (4, 8)}, {"modelspec.architecture": "stable-diffusion-v1/lora"}, SD),
    ({"unet.foo.lora_A.weight": (4, 8)}, {}, None),
])
def test_lora_family_from_the_header(tmp_path, keys, metadata, family):
    path = tmp_path / "lora.safetensors"
    save_file({key: torch.zeros(shape) for key, shape in keys.items()}, str(path), metadata=metadata)
    assert lora_family(path) == family


def test_a_damaged_file_is_refused(tmp_path, sd):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(LoraError, match="broken is not a readable .safetensors file"):
        lora_family(path)
    full = tmp_path / "checkpoint.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4)}, str(full))
    with pytest.raises(LoraError, match="checkpoint is not a LoRA file"):
        check_compatible(sd.txt2img, full)


# --- adapters --------------------------------------------------------------------------------------------


def test_weight_zero_is_no_lora_and_weight_one_changes_the_image(sd):
    assert np.array_equal(sd.txt2img_with(LoraUse("sd", 0.0)), sd.plain_txt2img)
    with_lora = sd.txt2img_with(LoraUse("sd", 1.0))
    assert np.abs(with_lora - sd.plain_txt2img).mean() > 0.02
    half = sd.txt2img_with(LoraUse("sd", 0.5))
    assert not np.array_equal(half, with_lora) and not np.array_equal(half, sd.plain_txt2img)


def test_two_loras_differ_from_each_alone(sd):
    first, second = sd.txt2img_with(LoraUse("sd")), sd.txt2img_with(LoraUse("sd-b"))
    both = sd.txt2img_with(LoraUse("sd"), LoraUse("sd-b"))
    assert not np.array_equal(both, first) and not np.array_equal(both, second)
    assert np.array_equal(sd.txt2img_with(LoraUse("sd"), LoraUse("sd-b", 0.0)), first)


def test_a_plain_job_after_lora_jobs_is_as_if_none_was_loaded(sd):
    sd.txt2img_with(LoraUse("sd"), LoraUse("styles/ink", -0.7))
    assert np.array_equal(sd.txt2img_with(), sd.plain_txt2img)
    sd.slots.apply(sd.img2img, ())
    assert np.array_equal(_img2img(sd.img2img), sd.plain_img2img)


def test_img2img_and_txt2img_share_the_adapters(sd, loras_dir):
    """from_pipe shares the modules: a LoRA loaded through img2img is there, once, for txt2img."""
    sd.slots.apply(sd.img2img, (LoraUse("img2img-first"),))
    assert not np.array_equal(_img2img(sd.img2img), sd.plain_img2img)
    loaded = sd.slots.loaded
    assert loras_dir / "img2img-first.safetensors" in loaded
    assert not np.array_equal(sd.txt2img_with(LoraUse("img2img-first")), sd.plain_txt2img)
    assert sd.slots.loaded == loaded  # nothing loaded again
    sd.slots.apply(sd.img2img, ())
    assert np.array_equal(_img2img(sd.img2img), sd.plain_img2img)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_kohya_and_diffusers_styles_make_the_same_change(request, family):
    model = request.getfixturevalue(family)
    diffusers_style = model.txt2img_with(LoraUse(family))
    kohya_style = model.txt2img_with(LoraUse(f"{family}-kohya"))
    assert not np.array_equal(diffusers_style, model.plain_txt2img)
    np.testing.assert_allclose(kohya_style, diffusers_style, atol=1e-5)
    assert np.array_equal(model.txt2img_with(), model.plain_txt2img)


@pytest.mark.parametrize("family, lora, message", [
    ("sd", "sdxl", "LoRA sdxl is for SDXL models; this model is Stable Diffusion 1.x/2.x"),
    ("sd", "sdxl-kohya", "LoRA sdxl-kohya is for SDXL models"),
    ("sdxl", "sd", "LoRA sd is for Stable Diffusion 1.x/2.x models; this model is SDXL"),
    # no family in the header: the layers' shapes decide
    ("sd", "sdxl-unet", r"LoRA sdxl-unet does not fit this model \(Stable Diffusion 1.x/2.x\)"),
    ("sdxl", "sd-unet", r"LoRA sd-unet does not fit this model \(SDXL\)"),
    ("sd", "unknown", "LoRA unknown matched none of this model's layers"),
    ("sd", "missing", "no LoRA named missing"),
    ("sd", "old", "pickle"),
])
def test_a_lora_that_does_not_fit_is_refused(request, loras_dir, family, lora, message):
    model = request.getfixturevalue(family)
    model.txt2img_with(LoraUse(family))  # a LoRA active before: the refusal must not leave it on
    adapters = model.txt2img.get_list_adapters()
    with pytest.raises(LoraError, match=message) as error:
        model.slots.apply(model.txt2img, (LoraUse(lora),))
    assert str(loras_dir) not in str(error.value)
    assert model.txt2img.get_list_adapters() == adapters  # nothing half-loaded left behind
    assert np.array_equal(_txt2img(model.txt2img), model.plain_txt2img)


def test_a_replaced_file_is_loaded_again(sd_folder, tmp_path, sd):
    folder = tmp_path / "loras"
    slots = LoraSlots(folder)
    path = create_tiny_lora(sd_folder, folder / "replaced.safetensors", seed=10)
    slots.apply(sd.txt2img, (LoraUse("replaced"),))
    before = _txt2img(sd.txt2img)
    create_tiny_lora(sd_folder, path, seed=11, rank=2)  # another size: a new (mtime, size) stamp
    slots.apply(sd.txt2img, (LoraUse("replaced"),))
    after = _txt2img(sd.txt2img)
    # what a never-loaded copy of the new file gives
    create_tiny_lora(sd_folder, folder / "copy.safetensors", seed=11, rank=2)
    slots.apply(sd.txt2img, (LoraUse("copy"),))
    assert not np.array_equal(after, before) and np.array_equal(_txt2img(sd.txt2img), after)
    _unload_all(slots, sd.txt2img)


def test_past_max_loaded_the_least_recently_used_is_unloaded(sd_folder, tmp_path, sd):
    many = tmp_path / "many"
    for index in range(9):
        create_tiny_lora(sd_folder, many / f"l{index}.safetensors", seed=index, rank=1, text_encoder=False)
    slots = LoraSlots(many)
    for index in range(9):
        slots.apply(sd.txt2img, (LoraUse(f"l{index}"),))
    assert many / "l0.safetensors" not in slots.loaded and len(slots.loaded) == 8
    _unload_all(slots, sd.txt2img)
    assert np.array_equal(sd.txt2img_with(), sd.plain_txt2img)


def _unload_all(slots, pipe):
    """Take a test's own LoraSlots' adapters out of the shared model again."""
    pipe.delete_adapters([adapter.name for adapter in slots._adapters.values()])
    slots._adapters.clear()


def test_a_flux_lora_on_the_tiny_flux_model(tmp_path_factory, loras_dir):
    """Transformer models take diffusers-style LoRAs the same way; an SD one is refused by its header."""
    folder = _tiny_model(tmp_path_factory, "flux")
    assert lora_family(create_tiny_lora(folder, loras_dir / "flux.safetensors")) == "flux"
    flux = Model(folder, loras_dir)
    assert not np.array_equal(flux.txt2img_with(LoraUse("flux")), flux.plain_txt2img)
    assert np.array_equal(flux.txt2img_with(), flux.plain_txt2img)
    with pytest.raises(LoraError, match="LoRA sd is for Stable Diffusion 1.x/2.x models; this model is FLUX"):
        flux.slots.apply(flux.txt2img, (LoraUse("sd"),))
    with pytest.raises(ValueError, match="kohya-style tiny LoRAs are for UNet models"):
        create_tiny_lora(folder, loras_dir / "flux-kohya.safetensors", style="kohya")


def test_cli_writes_a_kohya_lora(sd_folder, tmp_path, capsys):
    out = tmp_path / "loras" / "cli.safetensors"
    assert cli(["--model", str(sd_folder), "--out", str(out), "--style", "kohya"]) == 0
    assert lora_family(out) == "stable-diffusion"
    assert "written" in capsys.readouterr().out
    assert cli(["--model", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    with pytest.raises(SystemExit):
        cli(["--model", str(sd_folder), "--out", str(tmp_path / "x.pt")])


def test_weights_are_finite_and_sized(sd_folder, tmp_path):
    from safetensors.torch import load_file

    tensors = load_file(str(create_tiny_lora(sd_folder, tmp_path / "x.safetensors", rank=3)))
    assert all(math.isfinite(value.abs().max().item()) for value in tensors.values())
    assert tensors[DIFFUSERS_TO_K].shape == (3, 32)
