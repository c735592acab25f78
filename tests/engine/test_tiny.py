import json

from bot.engine.tiny import REQUIRED_FILES, VAE_BLOCKS, cli, create_tiny_model, is_complete, is_current


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
    for name in REQUIRED_FILES:
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
