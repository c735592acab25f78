"""A few steps of the tiny configuration: checkpoint, resume, export, load offline, img2img and inpaint."""

import json
import socket
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from bot.shapes import model as shapes_model
from bot.shapes.train import TrainOptions, export, preview, train


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def tiny_options() -> TrainOptions:
    return TrainOptions(
        steps=6, vae_steps=4, batch=4, vae_batch=2, dataset_size=16, eval_every=3, eval_prompts=2, eval_steps=2,
        warmup=2, threads=2, progress_seconds=0.0, config=shapes_model.TINY_CONFIG, grow_from=None,
    )


def test_train_resume_export_and_load(tmp_path, no_network):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline

    work, out = tmp_path / "work", tmp_path / "shapes"
    lines = []
    # A first chunk stops at step 3 without exporting; the second resumes and exports.
    train(out, resume=True, work_dir=work, options=tiny_options(), log=lines.append, stop_at=3)
    assert (work / "checkpoint.pt").is_file() and not out.exists()
    assert any(line.startswith("[unet]") for line in lines)  # the progress line
    assert any(line.startswith("[eval]") for line in lines)  # the periodic adherence evaluation
    lines.clear()
    train(out, resume=True, work_dir=work, options=tiny_options(), log=lines.append)
    assert any("[resume]" in line and "unet step 3/6" in line for line in lines)
    assert (out / "model_index.json").is_file()
    meta = json.loads((out / "dreamgrid.json").read_text())
    assert meta["trained_unet_steps"] == 6

    # Weights are fp16 safetensors.
    from safetensors import safe_open

    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}

    pipe = StableDiffusionPipeline.from_pretrained(str(out), torch_dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    size = shapes_model.TINY_CONFIG.resolution

    def make(seed):
        return pipe("a red circle on a blue background", num_inference_steps=2, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images[0]

    a, b, c = make(1), make(1), make(2)
    assert a.shape == (size, size, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)

    source = Image.fromarray((a * 255).astype(np.uint8))
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    var = img2img("a red circle", image=source, strength=0.5, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(3)).images[0]
    assert var.size == (size, size)

    inpaint = StableDiffusionInpaintPipeline.from_pipe(pipe)
    inpaint.set_progress_bar_config(disable=True)
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))
    filled = inpaint("a red circle", image=source, mask_image=mask, num_inference_steps=2, height=size, width=size,
                     generator=torch.Generator().manual_seed(4)).images[0]
    assert filled.size == (size, size)

    # An export straight from the checkpoint gives the same weights.
    again = tmp_path / "again"
    export(again, work_dir=work, log=lines.append)
    with safe_open(str(out / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f1, safe_open(
        str(again / "unet" / "diffusion_pytorch_model.safetensors"), "pt"
    ) as f2:
        assert all(torch.equal(f1.get_tensor(k), f2.get_tensor(k)) for k in f1.keys())

    # `--preview`: one row per prompt, one column per seed, drawn from the checkpoint.
    sheet = preview(tmp_path / "preview.png", work_dir=work, prompts=("a red circle", "a blue square"), seeds=(1, 2, 3),
                    steps=2)
    assert Image.open(sheet).size == (3 * size, 2 * size)


def test_cli_refuses_to_overwrite_a_checkpoint_silently(tmp_path, capsys):
    from bot.shapes.train import cli

    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    assert cli(["--work-dir", str(tmp_path), "--tiny"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_export_without_checkpoint_is_an_error(tmp_path, capsys):
    from bot.shapes.train import cli

    assert cli(["--export-only", "--work-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_a_stop_signal_saves_the_steps_done_and_resume_goes_on_from_them(tmp_path):
    import os
    import signal

    work, out = tmp_path / "work", tmp_path / "shapes"
    lines = []

    def log(line):
        lines.append(line)
        if line.startswith("[unet]") and " 2/6 " in line:  # as `kill` (or Ctrl-C) would, mid-run
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    options = tiny_options()
    options.eval_every = 0
    train(out, resume=True, work_dir=work, options=options, log=log)

    assert any(line.startswith("[stop]") for line in lines)
    assert torch.load(work / "checkpoint.pt", weights_only=False)["step"] == 2
    assert not out.exists()  # stopped early: nothing exported
    assert signal.getsignal(signal.SIGTERM) is before
    lines.clear()
    train(out, resume=True, work_dir=work, options=options, log=lines.append)
    assert any("[resume]" in line and "unet step 2/6" in line for line in lines)
    assert (out / "model_index.json").is_file()


def test_a_checkpoint_of_an_older_trainer_is_refused_with_what_to_do(tmp_path, capsys):
    from bot.shapes.train import cli

    torch.save({"format": 1, "options": {}}, tmp_path / "checkpoint.pt")
    assert cli(["--resume", "--work-dir", str(tmp_path), "--tiny"]) == 1
    assert "--fresh" in capsys.readouterr().err


def test_caption_labels_say_what_each_caption_names():
    """The text encoder's attribute loss learns from these labels: a wrong one teaches it a wrong word."""
    import random

    from bot.shapes.analyser import parse_prompt
    from bot.shapes.train import IGNORE, NOT_NAMED, caption_batch
    from bot.shapes.world import COLOUR_NAMES, POSITION_NAMES, SHAPES

    rng = np.random.default_rng(0)
    colour = rng.integers(0, 8, 400)
    background = (colour + rng.integers(1, 8, 400)) % 8  # never the shape's colour, as in the world
    attrs = np.stack([colour, rng.integers(0, 3, 400), background, rng.integers(0, 5, 400)], axis=1)
    captions, labels = caption_batch(attrs, random.Random(0), dropout=0.1)
    kinds = {"empty": 0, "placed": 0, "unplaced": 0}
    for caption, (c, s, b, p) in zip(captions, labels.tolist()):
        if not caption:
            assert (c, s, b, p) == (IGNORE,) * 4
            kinds["empty"] += 1
            continue
        said = parse_prompt(caption).attributes()
        assert (said["shape_colour"], said["shape"], said["background_colour"]) == (
            COLOUR_NAMES[c], SHAPES[s], COLOUR_NAMES[b])
        if p == NOT_NAMED:
            assert said["position"] is None
            kinds["unplaced"] += 1
        else:
            assert said["position"] == POSITION_NAMES[p]
            kinds["placed"] += 1
    assert min(kinds.values()) > 20, kinds


# A UNet that gains a ResNet and cross-attention at its top level mid-training.
SEED_CONFIG = replace(shapes_model.TINY_CONFIG, unet_attention=(False, True), unet_only_cross_attention=(False, False))
GROWN_CONFIG = replace(shapes_model.TINY_CONFIG, unet_layers_per_block=(2, 1))


def test_a_grown_unet_draws_exactly_what_it_drew_before_growing():
    """Growing mid-training must not throw away what the UNet has learned: same input, same output."""
    torch.manual_seed(0)
    seed = shapes_model.build_unet(SEED_CONFIG).eval()
    with torch.no_grad():  # no weight left at a value that would hide a wrong copy
        for p in seed.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    grown = shapes_model.grow_unet(seed, GROWN_CONFIG).eval()
    assert [len(b.resnets) for b in grown.down_blocks] == [2, 1]
    assert len(grown.down_blocks[0].attentions) == 2
    size = GROWN_CONFIG.latent_size
    x, t = torch.randn(2, 4, size, size), torch.tensor([900, 30])
    text = torch.randn(2, 8, GROWN_CONFIG.text_width)
    with torch.no_grad():
        assert torch.allclose(seed(x, t, text).sample, grown(x, t, text).sample, atol=1e-5)

    with pytest.raises(ValueError, match="only levels of plain ResNets"):
        shapes_model.grow_unet(seed, replace(GROWN_CONFIG, unet_layers_per_block=(1, 2)))
    with pytest.raises(ValueError, match="lose its attention"):
        shapes_model.grow_unet(seed, replace(SEED_CONFIG, unet_attention=(False, False)))


def test_training_grows_the_unet_at_its_step_and_resumes_it_grown(tmp_path):
    work, out = tmp_path / "work", tmp_path / "shapes"
    options = tiny_options()
    options.config, options.grow_from, options.grow_at, options.eval_every = GROWN_CONFIG, SEED_CONFIG, 3, 0
    lines = []
    train(out, resume=True, work_dir=work, options=options, log=lines.append, stop_at=4)
    assert any(line.startswith("[grow] step 3") for line in lines)
    lines.clear()
    train(out, resume=True, work_dir=work, options=options, log=lines.append)  # a grown checkpoint loads
    assert any("[resume]" in line and "unet step 4/6" in line for line in lines)
    assert not any(line.startswith("[grow]") for line in lines)
    unet_config = json.loads((out / "unet" / "config.json").read_text())
    assert unet_config["layers_per_block"] == [2, 1]
    assert unet_config["down_block_types"][0] == "CrossAttnDownBlock2D"
