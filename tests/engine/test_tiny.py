import json

from bot.engine.tiny import REQUIRED_FILES, cli, create_tiny_model, is_complete


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
