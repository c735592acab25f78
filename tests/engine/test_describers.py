"""/describe's engine: `load_describer` on the shipped shapes describer, on a tiny random BLIP built here,
and on folders that hold neither."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bot.engine.describers import (
    MAX_PROMPT_CHARS,
    BlipDescriber,
    DescriberError,
    clean_prompts,
    create_tiny_blip,
    load_describer,
)
from bot.engine.requests import EngineError
from bot.shapes.world import make_example

SHAPES_DESCRIBER = Path(__file__).resolve().parents[2] / "models" / "shapes-describer"


def _check(prompts):
    assert isinstance(prompts, list) and len(prompts) == 4
    assert len({p.casefold() for p in prompts}) == 4
    for prompt in prompts:
        assert isinstance(prompt, str) and prompt and prompt == prompt.strip() and len(prompt) <= MAX_PROMPT_CHARS


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory):
    return create_tiny_blip(tmp_path_factory.mktemp("describers") / "tiny-blip")


@pytest.mark.skipif(not (SHAPES_DESCRIBER / "describer.json").is_file(), reason="models/shapes-describer is absent")
def test_the_shapes_describer():
    describer = load_describer(SHAPES_DESCRIBER, "cpu")
    image, scene = make_example(900_000_001)
    prompts = describer.describe(image)
    _check(prompts)
    assert prompts[0].startswith(f"a {scene.shape_colour} {scene.shape} ")
    _check(describer.describe(image.convert("RGBA").resize((30, 70))))


def test_a_blip_captioner(tiny_blip):
    assert sum(f.stat().st_size for f in tiny_blip.iterdir()) < 2_000_000
    config = json.loads((tiny_blip / "config.json").read_text())
    assert config["model_type"] == "blip"
    describer = load_describer(tiny_blip, "cpu")
    assert isinstance(describer, BlipDescriber)
    for image in (make_example(3)[0], Image.new("RGBA", (90, 30)), Image.new("L", (16, 16), 200)):
        _check(describer.describe(image))


def test_a_blip_folder_laid_out_like_a_downloaded_one(tiny_blip, tmp_path):
    """Salesforce's BLIP folders keep the image processor in preprocessor_config.json (BlipImageProcessor,
    whose default backend needs torchvision; transformers falls back to Pillow)."""
    folder = tmp_path / "blip"
    folder.mkdir()
    for file in tiny_blip.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    processor = json.loads((folder / "processor_config.json").read_text())
    image_processor = processor.pop("image_processor")
    (folder / "preprocessor_config.json").write_text(json.dumps(image_processor))
    (folder / "processor_config.json").write_text(json.dumps(processor))
    _check(load_describer(folder, "cpu").describe(make_example(4)[0]))


def test_clean_prompts_deduplicates_strips_cuts_and_fills():
    long = "word " * 100
    prompts = clean_prompts(["  a cat  ", "A cat", "", "a\n dog", long])
    _check(prompts)
    assert prompts[:2] == ["a cat", "a dog"] and prompts[2].startswith("word word")
    _check(clean_prompts([]))
    _check(clean_prompts(["x"] * 9, fillers=()))


@pytest.mark.parametrize("contents, says", [
    ({}, "no describer"),
    ({"config.json": {"model_type": "clip"}}, 'a model of type "clip"'),
    ({"config.json": {"model_type": "florence2"}}, "trust_remote_code"),
    ({"describer.json": {"kind": "something else"}}, "does not describe a shapes describer"),
    ({"config.json": "not json {"}, "cannot be read"),
    ({"config.json": [1, 2]}, "not a JSON object"),
])
def test_anything_else_is_a_clear_error(tmp_path, contents, says):
    folder = tmp_path / "secret-place" / "models" / "mystery"
    folder.mkdir(parents=True)
    for name, value in contents.items():
        (folder / name).write_text(value if isinstance(value, str) else json.dumps(value))
    with pytest.raises(DescriberError) as caught:
        load_describer(folder, "cpu")
    message = str(caught.value)
    assert isinstance(caught.value, EngineError)
    assert says in message and "BLIP" in message
    assert str(tmp_path) not in message and "secret-place" not in message


def test_a_missing_folder_or_broken_weights_are_clear_errors(tmp_path):
    with pytest.raises(DescriberError, match="nothing there"):
        load_describer(tmp_path / "absent", "cpu")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "describer.json").write_text(json.dumps({"kind": "dreamgrid-shapes-describer"}))
    with pytest.raises(DescriberError, match="cannot be loaded") as caught:
        load_describer(folder, "cpu")
    assert str(tmp_path) not in str(caught.value)
