"""Image references through an IP-Adapter (--sref, --oref) and /blend, on the tiny models and the shapes model.

The tiny IP-Adapter (random weights, h94 layout) is built by the session fixture for tiny-sd's and
tiny-sdxl's UNets; the catalog's `tiny-ip` is tiny-sd with it."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bot.engine.batching import batch_key
from bot.engine.catalog import CatalogError, load_catalog
from bot.engine.requests import (
    BLEND_IP_SCALE,
    BLEND_STRENGTH,
    STYLE_CODE_MAX,
    DeviceOptions,
    EngineError,
    GenerateRequest,
    image_hash,
)

TINY = {"steps": 4, "guidance": 5.0, "width": 64, "height": 64}
RED, BLUE, GREEN = (Image.new("RGB", (64, 64), colour) for colour in ((230, 20, 20), (20, 20, 230), (20, 200, 20)))
ARCHITECTURES = Path(__file__).resolve().parents[2] / "bot" / "bench" / "architectures"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def request(model="tiny-ip", seeds=(1,), prompt="a red circle", **fields) -> GenerateRequest:
    fields = {**({} if "init_image" in fields else {"width": 64, "height": 64}), **fields}
    fields.setdefault("steps", 4)
    fields.setdefault("guidance", 5.0)
    return GenerateRequest(model=model, prompt=prompt, seeds=tuple(seeds), **fields)


def picture(model, **fields) -> np.ndarray:
    return pixels(model.run(request(model.spec.name, **fields), lambda done, total: None).images[0])


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def catalog(models_dir):
    return load_catalog(models_dir / "catalog.toml")


@pytest.fixture(scope="module")
def ip_model(catalog, models_dir):
    """tiny-sd with the tiny IP-Adapter; the tests below load the adapter on it."""
    from bot.engine.pipelines import LoadedModel

    return LoadedModel(catalog.get("tiny-ip"), models_dir, "cpu")


# -- the required property: a reference at scale 0 is no reference, before and after loading ----------------

def test_scale_zero_is_exactly_no_reference_before_and_after_the_adapter_loads(catalog, models_dir):
    from bot.engine.pipelines import LoadedModel

    model = LoadedModel(catalog.get("tiny-ip"), models_dir, "cpu")
    plain = picture(model)
    assert np.array_equal(picture(model, style_images=(RED,), style_scale=0.0), plain)
    assert np.array_equal(picture(model, object_images=(RED,), object_scale=0.0), plain)
    assert model.references is None  # nothing asked for it yet

    styled = picture(model, style_images=(RED,), style_scale=1.0)
    assert model.references is not None
    assert differ(styled, plain) > 5  # the reference shows

    # The adapter stays loaded: calls without references pass zero embeddings at scale 0, pixel for pixel.
    assert np.array_equal(picture(model), plain)
    assert np.array_equal(picture(model, style_images=(RED,), style_scale=0.0), plain)
    assert np.array_equal(picture(model, style_code=7, style_scale=0.0), plain)
    assert np.array_equal(picture(model, object_images=(BLUE,), object_scale=0.0), plain)
    # ... in txt2img without guidance too (no negative half), and in img2img
    assert np.array_equal(picture(model, guidance=0.0), picture(model, guidance=0.0, style_images=(RED,)))


def test_a_reference_picture_changes_the_output_and_another_picture_changes_it_otherwise(ip_model):
    plain = picture(ip_model)
    red, blue = (picture(ip_model, style_images=(image,), style_scale=1.0) for image in (RED, BLUE))
    assert differ(red, plain) > 5 and differ(red, blue) > 5
    assert np.array_equal(red, picture(ip_model, style_images=(RED,), style_scale=1.0))  # deterministic
    carried = picture(ip_model, object_images=(RED,), object_scale=1.0)
    assert differ(carried, plain) > 5 and differ(carried, red) > 5  # the object slot is another adapter
    # several --sref pictures: their embeddings averaged (the same in any order)
    assert np.array_equal(picture(ip_model, style_images=(RED, BLUE), style_scale=1.0),
                          picture(ip_model, style_images=(BLUE, RED), style_scale=1.0))


def test_style_codes_are_deterministic_and_distinct(ip_model):
    one = picture(ip_model, style_code=1, style_scale=1.0)
    assert np.array_equal(one, picture(ip_model, style_code=1, style_scale=1.0))
    assert differ(one, picture(ip_model, style_code=2, style_scale=1.0)) > 5
    assert differ(one, picture(ip_model)) > 5
    # The embedding: a CPU generator's normal vector at the grey picture's norm (3 significant digits).
    references = ip_model.references
    vector = references.code_embedding(STYLE_CODE_MAX)
    expected = torch.randn(references.embedding_size, generator=torch.Generator("cpu").manual_seed(STYLE_CODE_MAX))
    assert torch.allclose(vector, expected / expected.norm() * references.style_norm())
    assert references.style_norm() == float(f"{references.style_norm():.3g}") > 0


def test_sref_and_oref_together_each_at_its_own_scale_and_batched_like_alone(ip_model):
    style = picture(ip_model, style_images=(RED,), style_scale=1.0)
    carried = picture(ip_model, object_images=(BLUE,), object_scale=0.8)
    both = request(seeds=(3, 1), style_images=(RED,), style_scale=1.0, object_images=(BLUE,), object_scale=0.8)
    images = ip_model.run(both, lambda done, total: None).images
    assert differ(pixels(images[1]), style) > 5 and differ(pixels(images[1]), carried) > 5
    alone = picture(ip_model, seeds=(1,), style_images=(RED,), style_scale=1.0, object_images=(BLUE,),
                    object_scale=0.8)
    assert np.abs(pixels(images[1]) - alone).mean() < 0.5  # the same alone or in a batch
    # Two requests with the same references in one call, as the pool batches them.
    other = request(seeds=(1,), prompt="a blue square", style_images=(RED,), style_scale=1.0,
                    object_images=(BLUE,), object_scale=0.8)
    assert batch_key(both) == batch_key(other)
    first, second = ip_model.run_batch([both, other], lambda done, total: None)
    assert np.abs(pixels(first.images[1]) - alone).mean() < 0.5
    assert np.abs(pixels(second.images[0]) - picture(ip_model, prompt="a blue square", style_images=(RED,),
                                                     style_scale=1.0, object_images=(BLUE,),
                                                     object_scale=0.8)).mean() < 0.5


def test_the_style_scale_reaches_only_the_style_layer_and_the_object_scale_every_layer(ip_model):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    ip_model.run(request(style_images=(RED,), style_scale=0.9, object_images=(BLUE,), object_scale=0.4),
                 lambda done, total: None)
    scales = {name: list(processor.scale) for name, processor in ip_model.txt2img.unet.attn_processors.items()
              if isinstance(processor, IPAdapterAttnProcessor2_0)}
    assert len(scales) == 4  # the tiny UNet's cross-attention layers
    for name, (style, carried) in scales.items():
        assert style == (0.9 if name.startswith("up_blocks.0.attentions.1.") else 0.0), name
        assert carried == 0.4, name


@pytest.mark.parametrize("architecture, layer", [("sd15", (1, 1, 3)), ("sdxl", (0, 1, 3)), ("tiny", (0, 1, 2))])
def test_the_style_layer_comes_from_the_unets_config(architecture, layer):
    """InstantStyle's layer (SDXL: up_blocks.0.attentions.1) found generically: the middle attention of the
    first up block with cross-attention (SD 1.5's first up block has none)."""
    from diffusers import UNet2DConditionModel

    from bot.engine.ip_adapter import adapter_shapes, style_layer

    config = json.loads((ARCHITECTURES / architecture / "unet" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    assert style_layer(unet) == layer
    # h94's files: SD 1.5 has ip_adapter.1 ... .31 (16 layers), SDXL .1 ... .139 (70 layers)
    layers = {"sd15": 16, "sdxl": 70}.get(architecture)
    if layers:
        keys = adapter_shapes(config, 1024)
        assert sorted(int(key.split(".")[1]) for key in keys if key.endswith("to_k_ip.weight")) == list(
            range(1, 2 * layers, 2))


def test_references_work_in_img2img_and_inpainting_that_share_the_unet(ip_model):
    init = Image.fromarray(picture(ip_model, seeds=(4,)).astype(np.uint8))
    plain = picture(ip_model, init_image=init, strength=0.75)
    styled = picture(ip_model, init_image=init, strength=0.75, style_images=(GREEN,), style_scale=1.0)
    assert differ(styled, plain) > 2
    assert np.array_equal(picture(ip_model, init_image=init, strength=0.75), plain)

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # repaint the left half
    painted = picture(ip_model, init_image=init, mask_image=mask, strength=1.0, object_images=(RED,),
                      object_scale=1.0)
    unstyled = picture(ip_model, init_image=init, mask_image=mask, strength=1.0)
    assert differ(painted[:, :32], unstyled[:, :32]) > 2
    assert np.array_equal(painted[:, 32:], pixels(init)[:, 32:])  # the kept half is the source's pixels


def test_a_dedicated_inpainting_model_gets_the_adapter_too(catalog, models_dir):
    from bot.engine.pipelines import LoadedModel

    spec = replace(catalog.get("tiny-ip"), name="tiny-ip-inpainting", inpaint_source="tiny-sd-inpaint")
    model = LoadedModel(spec, models_dir, "cpu")
    init, mask = Image.new("RGB", (64, 64), (90, 90, 90)), Image.new("L", (64, 64), 255)
    plain = picture(model, init_image=init, mask_image=mask, strength=1.0)
    carried = picture(model, init_image=init, mask_image=mask, strength=1.0, object_images=(RED,),
                      object_scale=1.0)
    assert model.inpaint.unet is not model.txt2img.unet
    assert model.inpaint.unet.encoder_hid_proj is not None  # loaded on the inpainting UNet as well
    assert differ(carried, plain) > 2
    assert np.array_equal(picture(model, init_image=init, mask_image=mask, strength=1.0), plain)


def test_sdxl_and_the_classic_attention_take_the_adapter_too(catalog, models_dir):
    from bot.engine.pipelines import LoadedModel

    xl = replace(catalog.get("tiny-xl"), name="tiny-xl-ip", ip_adapter="tiny-ip-adapter-sdxl/ip-adapter.safetensors",
                 image_encoder="tiny-ip-adapter-sdxl/image_encoder")
    classic = LoadedModel(catalog.get("tiny-ip"), models_dir, "cpu", DeviceOptions(attention="classic"))
    for model in (LoadedModel(xl, models_dir, "cpu"), classic):
        plain = picture(model)
        assert differ(picture(model, style_code=3, style_scale=1.0), plain) > 2, model.spec.name
        assert np.array_equal(picture(model), plain), model.spec.name


def test_a_model_without_an_ip_adapter_refuses_references_by_name(tiny):
    for fields in ({"style_images": (RED,), "style_scale": 0.5}, {"style_code": 5}, {"object_images": (RED,)}):
        with pytest.raises(EngineError, match=r"model tiny has no IP-Adapter \(its catalog entry names none\), so "
                                              r"--sref/--oref cannot be used; pick a model that has one with /model"):
            tiny.check(request("tiny", **fields))
    assert not tiny.spec.takes_references
    tiny.check(request("tiny", blend_images=(RED, BLUE), strength=BLEND_STRENGTH))  # a blend needs none


def test_an_adapter_for_another_unet_is_refused_clearly(catalog, models_dir):
    from bot.engine.pipelines import LoadedModel

    wrong = replace(catalog.get("tiny-ip"), name="wrong-ip", ip_adapter="tiny-ip-adapter-sdxl/ip-adapter.safetensors",
                    image_encoder="tiny-ip-adapter-sdxl/image_encoder")
    model = LoadedModel(wrong, models_dir, "cpu")
    plain = picture(model)
    with pytest.raises(EngineError, match="model wrong-ip: its IP-Adapter .* does not fit its UNet"):
        model.run(request("wrong-ip", style_code=1, style_scale=1.0), lambda done, total: None)
    # Nothing of the failed load stays behind: the model still runs as before.
    assert model.references is None and model.txt2img.unet.encoder_hid_proj is None
    assert np.array_equal(picture(model), plain)


# -- /blend --------------------------------------------------------------------------------------------------

def test_blend_without_an_ip_adapter_averages_latents(tiny):
    blend = request("tiny", seeds=(1, 2), blend_images=(RED, BLUE), strength=BLEND_STRENGTH)
    result = tiny.run(blend, lambda done, total: None)
    assert result.blend_method == "latent interpolation" and [image.size for image in result.images] == [(64, 64)] * 2
    assert tiny.run(request("tiny"), lambda done, total: None).blend_method == ""
    # The averaged picture: deterministic, equal weights (any order), other pictures another one.
    mixed = pixels(tiny.blend_picture((RED, BLUE), 64, 64))
    assert np.abs(pixels(tiny.blend_picture((BLUE, RED), 64, 64)) - mixed).max() <= 1
    assert differ(pixels(tiny.blend_picture((RED, GREEN), 64, 64)), mixed) > 2
    assert tiny.blend_picture((RED, BLUE), 48, 32).size == (48, 32)
    with pytest.raises(EngineError, match="no denoising step for the blend"):
        tiny.check(request("tiny", blend_images=(RED, BLUE), strength=0.1))


def test_blend_with_an_ip_adapter_prompts_with_the_averaged_embedding(ip_model):
    result = ip_model.run(request(prompt="", blend_images=(RED, BLUE)), lambda done, total: None)
    assert result.blend_method == "ip-adapter"
    plain = picture(ip_model, prompt="")
    blended = pixels(result.images[0])
    assert differ(blended, plain) > 5
    assert differ(blended, picture(ip_model, prompt="", blend_images=(RED, GREEN))) > 2
    # the object slot at BLEND_IP_SCALE with the pictures' average is exactly what a blend is
    assert np.array_equal(blended, picture(ip_model, prompt="", object_images=(RED, BLUE),
                                           object_scale=BLEND_IP_SCALE))


@pytest.mark.parametrize("name", ["tiny-xl", "tiny-flux", "tiny-sd3", "tiny-zimage"])
def test_blend_works_on_every_family(catalog, models_dir, name):
    from bot.engine.pipelines import LoadedModel

    model = LoadedModel(catalog.get(name), models_dir, "cpu")
    result = model.run(request(name, guidance=model.spec.guidance, blend_images=(RED, BLUE, GREEN),
                               strength=BLEND_STRENGTH, steps=2), lambda done, total: None)
    assert result.blend_method == "latent interpolation" and result.images[0].size == (64, 64)


def test_a_blend_on_the_shapes_model_keeps_the_background_both_pictures_have(catalog, models_dir):
    """The latents of two pictures with one background colour averaged, then denoised at BLEND_STRENGTH:
    the background survives (it fails at strength 1, where the picture is forgotten)."""
    from bot.engine.pipelines import LoadedModel
    from bot.shapes.analyser import analyse
    from bot.shapes.world import make_example

    model = LoadedModel(catalog.get("shapes"), models_dir, "cpu")
    for background, colours in (("blue", ("red", "yellow")), ("green", ("white", "purple"))):
        left, _ = make_example(1, background_colour=background, shape_colour=colours[0], shape="circle",
                               position="left")
        right, _ = make_example(2, background_colour=background, shape_colour=colours[1], shape="triangle",
                                position="right")
        blend = request("shapes", seeds=(1, 2), prompt="", steps=12, guidance=5.0, blend_images=(left, right),
                        strength=BLEND_STRENGTH)
        for image in model.run(blend, lambda done, total: None).images:
            assert analyse(image).background_colour == background


# -- requests and batch keys ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, message", [
    ({"style_images": (RED,), "style_code": 1}, "not both"),
    ({"style_code": -1}, "style_code"),
    ({"style_code": STYLE_CODE_MAX + 1}, "style_code"),
    ({"style_code": True}, "style_code"),
    ({"style_images": [RED]}, "tuple of PIL images"),
    ({"style_images": (RED,), "style_scale": -0.5}, "style_scale"),
    ({"style_images": (RED,), "style_scale": float("nan")}, "style_scale"),
    ({"style_images": (RED,), "style_scale": 2.5}, "style_scale"),
    ({"style_scale": 0.5}, "no reference"),
    ({"object_scale": 0.5}, "no reference"),
    ({"blend_images": (RED,)}, "2 to 5"),
    ({"blend_images": (RED,) * 6}, "2 to 5"),
    ({"blend_images": (RED, BLUE), "object_images": (GREEN,)}, "object slot"),
])
def test_requests_reject_reference_mistakes(fields, message):
    with pytest.raises(ValueError, match=message):
        request(**fields)
    with pytest.raises(ValueError, match="txt2img-sized"):
        request(init_image=RED, blend_images=(RED, BLUE))


def test_batch_keys_hold_references_by_content_and_scale():
    same_red = Image.new("RGB", (64, 64), (230, 20, 20))
    key = batch_key(request(style_images=(RED,), style_scale=0.5))
    assert image_hash(same_red) == image_hash(RED) != image_hash(BLUE)
    assert batch_key(request(prompt="other", seeds=(5,), style_images=(same_red,), style_scale=0.5)) == key
    for other in ({"style_images": (BLUE,), "style_scale": 0.5}, {"style_images": (RED,), "style_scale": 0.6},
                  {"style_code": 1, "style_scale": 0.5}, {"object_images": (RED,), "object_scale": 0.5},
                  {"style_images": (RED, RED), "style_scale": 0.5}, {}):
        assert batch_key(request(**other)) != key, other
    assert batch_key(request(style_code=1, style_scale=0.5)) != batch_key(request(style_code=2, style_scale=0.5))
    # A reference at scale 0 changes nothing: it batches with plain requests.
    assert batch_key(request(style_images=(RED,))) == batch_key(request()) == batch_key(request(object_images=(RED,)))
    assert batch_key(request()).references == ()
    blend = batch_key(request(blend_images=(RED, BLUE), strength=BLEND_STRENGTH))
    assert (blend.kind, blend.strength) == ("blend", BLEND_STRENGTH)
    assert blend != batch_key(request(blend_images=(BLUE, RED), strength=BLEND_STRENGTH))  # order is the call's
    assert blend == batch_key(request(prompt="x", blend_images=(RED, BLUE), strength=BLEND_STRENGTH))


async def test_the_pool_batches_references_only_with_identical_ones(catalog, models_dir):
    import asyncio

    from bot.engine import Started, WorkerPool

    async def within(awaitable):
        return await asyncio.wait_for(awaitable, 120)

    pool = WorkerPool(catalog, models_dir, torch_threads=1, max_batch_jobs=4, adaptive_batching=False,
                      max_running_per_owner=3)
    await within(pool.start(preload=["tiny-ip"]))
    try:
        holder = pool.submit(request(steps=200), owner="holder")  # keeps the worker busy while the line forms
        async for event in holder.events():
            if isinstance(event, Started):
                break
        styled = {"style_images": (RED,), "style_scale": 0.7}
        alice = pool.submit(request(seeds=(1,), **styled), owner="alice")
        bob = pool.submit(request(seeds=(2,), prompt="a blue square", style_images=(RED.copy(),), style_scale=0.7),
                          owner="bob")  # the same picture in another object: same content, same call
        carol = pool.submit(request(seeds=(3,), style_images=(BLUE,), style_scale=0.7), owner="carol")
        dave = pool.submit(request(seeds=(4,)), owner="dave")
        erin = pool.submit(request(seeds=(5,), style_images=(BLUE,)), owner="erin")  # scale 0: no reference
        holder.cancel()
        results = [await within(ticket.result()) for ticket in (alice, bob, carol, dave, erin)]
    finally:
        await within(pool.close())
    assert [result.batched for result in results] == [2, 2, 1, 2, 2]


# -- the catalog ----------------------------------------------------------------------------------------------

ENTRY = """default = "m"
[models.m]
source = "tiny-sd"
pipeline = "{pipeline}"
width = 64
height = 64
steps = 4
guidance = 5.0
"""


def catalog_with(tmp_path, fields: str, pipeline: str = "stable-diffusion"):
    path = tmp_path / "catalog.toml"
    path.write_text(ENTRY.format(pipeline=pipeline) + fields)
    return load_catalog(path)


def test_the_catalog_takes_an_ip_adapter_and_a_describer(tmp_path):
    spec = catalog_with(tmp_path, 'ip_adapter = "h94/IP-Adapter/models/ip-adapter_sd15.safetensors"\n'
                                  'image_encoder = "h94/IP-Adapter/models/image_encoder"\n'
                                  'describer = "describers/tiny-captioner"\n').get("m")
    assert spec.takes_references and spec.describer == "describers/tiny-captioner"
    assert spec.resolve_ip_adapter(tmp_path) == ("h94/IP-Adapter", "models", "ip-adapter_sd15.safetensors", False)
    assert spec.resolve_image_encoder(tmp_path) == ("h94/IP-Adapter", "models/image_encoder", False)
    local = tmp_path / "h94" / "IP-Adapter" / "models"  # a copy under the models dir wins over the hub
    (local / "image_encoder").mkdir(parents=True)
    (local / "ip-adapter_sd15.safetensors").write_bytes(b"")
    assert spec.resolve_ip_adapter(tmp_path) == (str(local.resolve()), "", "ip-adapter_sd15.safetensors", True)
    assert spec.resolve_image_encoder(tmp_path) == (str((local / "image_encoder").resolve()), "", True)
    plain = catalog_with(tmp_path, "").get("m")
    assert not plain.takes_references and plain.describer == ""
    missing = catalog_with(tmp_path, 'ip_adapter = "nowhere.safetensors"\nimage_encoder = "enc"\n').get("m")
    with pytest.raises(CatalogError, match="there is no file nowhere.safetensors in the models folder"):
        missing.resolve_ip_adapter(tmp_path)


@pytest.mark.parametrize("fields, pipeline, message", [
    ('ip_adapter = "a/b/c.safetensors"\nimage_encoder = "a/b/enc"\n', "flux",
     r"\[models.m\]: field `ip_adapter`: pipeline \"flux\" \(FLUX\) takes no IP-Adapter; only stable-diffusion, "
     r"stable-diffusion-xl do"),
    ('ip_adapter = "a/b/c.safetensors"\n', "stable-diffusion", r"field `ip_adapter` needs `image_encoder` too"),
    ('image_encoder = "a/b/enc"\n', "stable-diffusion", r"field `image_encoder` needs `ip_adapter` too"),
    ('ip_adapter = "a/b/c.bin"\nimage_encoder = "a/b/enc"\n', "stable-diffusion", r"must name a .safetensors file"),
    ('ip_adapter = "../c.safetensors"\nimage_encoder = "enc"\n', "stable-diffusion", r"field `ip_adapter` .* escapes"),
    ('ip_adapter = "c.safetensors"\nimage_encoder = "/abs/enc"\n', "stable-diffusion",
     r"field `image_encoder` .* not an absolute path"),
    ('describer = "../../etc"\n', "stable-diffusion", r"field `describer` .* escapes the models dir"),
    ('describer = 3\n', "stable-diffusion", r"field `describer` must be str"),
])
def test_the_catalog_refuses_ip_adapter_mistakes_naming_file_entry_and_field(tmp_path, fields, pipeline, message):
    with pytest.raises(CatalogError, match=message) as caught:
        catalog_with(tmp_path, fields, pipeline)
    assert str(tmp_path / "catalog.toml") in str(caught.value)


# -- the tiny IP-Adapter -------------------------------------------------------------------------------------

def test_the_tiny_adapter_is_deterministic_and_matched_to_its_unet(models_dir, tmp_path):
    from safetensors import safe_open

    from bot.engine.ip_adapter import ADAPTER_FILE, create_tiny_ip_adapter, is_current_adapter
    from bot.engine.tiny import cli

    shared = models_dir / "tiny-ip-adapter-sd"
    assert is_current_adapter(shared, models_dir / "tiny-sd")
    assert not is_current_adapter(shared, models_dir / "tiny-sdxl")  # made for the other UNet
    again = create_tiny_ip_adapter(tmp_path / "again", models_dir / "tiny-sd")
    for name in (ADAPTER_FILE, "image_encoder/model.safetensors"):
        assert (again / name).read_bytes() == (shared / name).read_bytes(), name
    with safe_open(again / ADAPTER_FILE, framework="pt") as weights:
        keys = set(weights.keys())
    assert {"image_proj.proj.weight", "image_proj.proj.bias", "image_proj.norm.weight", "image_proj.norm.bias",
            "ip_adapter.1.to_k_ip.weight", "ip_adapter.7.to_v_ip.weight"} <= keys
    target = tmp_path / "cli"
    assert cli(["--family", "ip-adapter-sd", "--path", str(target), "--base", str(models_dir / "tiny-sd")]) == 0
    assert is_current_adapter(target, models_dir / "tiny-sd")
    assert cli(["--family", "ip-adapter-sd", str(target), "--base", str(tmp_path / "no-model")]) == 1
