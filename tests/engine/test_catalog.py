import json
import shutil
from pathlib import Path

import pytest

from bot.engine.catalog import CatalogError, ModelSpec, load_catalog

SHIPPED_CATALOG = Path(__file__).resolve().parents[2] / "models" / "catalog.toml"

TINY = """\
default = "tiny"

[models.tiny]
source = "tiny-sd"
width = 64
height = 64
steps = 4
guidance = 5.0
"""


def write(tmp_path: Path, text: str) -> Path:
    """A catalog in a models dir of its own, with the shipped upscalers its entries may name."""
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    if not (tmp_path / "upscalers").exists():
        shutil.copytree(SHIPPED_CATALOG.parent / "upscalers", tmp_path / "upscalers")
    return path


def spec(source: str) -> ModelSpec:
    return ModelSpec(name="m", source=source, pipeline="stable-diffusion", width=64, height=64, steps=1, guidance=0)


def test_shipped_catalog_offers_the_shapes_model_by_default_and_the_tiny_test_model():
    catalog = load_catalog(SHIPPED_CATALOG)
    assert catalog.default == "shapes"
    shapes = catalog.get("shapes")
    # The shipped weights are in the repository, and the entry draws them as they were trained to be drawn.
    trained = json.loads((SHIPPED_CATALOG.parent / shapes.source / "dreamgrid.json").read_text())
    assert (shapes.width, shapes.height, shapes.steps, shapes.guidance) == (
        trained["width"], trained["height"], trained["steps"], trained["guidance"])
    assert (shapes.max_prompt_tokens, shapes.upscaler) == (32, "realesr-animevideov3")
    tiny = catalog.get("tiny")
    assert (tiny.source, tiny.width, tiny.height, tiny.steps, tiny.guidance) == ("tiny-sd", 64, 64, 4, 5.0)
    assert (tiny.pipeline, tiny.max_prompt_tokens, tiny.upscaler) == ("stable-diffusion", 77, "realesr-animevideov3")
    assert "noise" in tiny.description
    assert {"sd-turbo", "sdxl-turbo", "sd15"} <= catalog.disabled
    assert list(catalog.models) == ["shapes", "tiny"]


def test_unknown_and_disabled_names_list_the_available_models():
    catalog = load_catalog(SHIPPED_CATALOG)
    with pytest.raises(CatalogError, match=r"unknown model 'nope'; available: shapes, tiny"):
        catalog.get("nope")
    with pytest.raises(CatalogError, match=r"'sd-turbo' is disabled.*available: shapes, tiny"):
        catalog.get("sd-turbo")


def test_defaults_for_optional_fields(tmp_path):
    tiny = load_catalog(write(tmp_path, TINY)).get("tiny")
    assert (tiny.pipeline, tiny.max_prompt_tokens, tiny.upscaler, tiny.description) == (
        "stable-diffusion", 77, "lanczos", ""
    )


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CatalogError, match=r"nothere\.toml: file not found"):
        load_catalog(tmp_path / "nothere.toml")


def test_invalid_toml_is_named(tmp_path):
    with pytest.raises(CatalogError, match=r"catalog\.toml: not valid TOML"):
        load_catalog(write(tmp_path, "default = \n"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('width = 64\n', ''), r"\[models\.tiny\]: missing field `width`"),
        (lambda t: t.replace('width = 64', 'width = "64"'), r"\[models\.tiny\]: field `width` must be int"),
        (lambda t: t.replace('width = 64', 'width = true'), r"field `width` must be int, got True"),
        (lambda t: t.replace('width = 64', 'width = 60'), r"field `width` must be a positive multiple of 8"),
        (lambda t: t.replace('steps = 4', 'steps = 0'), r"field `steps` must be at least 1"),
        (lambda t: t.replace('guidance = 5.0', 'guidence = 5.0'), r"unknown field `guidence`"),
        (lambda t: t + 'pipeline = "flux2"\n', r"field `pipeline` must be one of stable-diffusion"),
        (lambda t: t + 'max_prompt_tokens = 78\n', r"`max_prompt_tokens` must be 1 to 77 for pipeline"),
        (lambda t: t.replace("width = 64", "width = 72") + 'pipeline = "flux"\n', r"multiple of 16, got 72"),
        (lambda t: t + 'upscaler = "magic"\n', r"field `upscaler` must be one of lanczos"),
        (lambda t: t.replace('"tiny-sd"', '"../../etc"'), r"field `source` '../../etc' escapes the models dir"),
        (lambda t: t.replace('"tiny-sd"', '"/etc"'), r"field `source` '/etc' must be a relative folder"),
        (lambda t: t.replace('default = "tiny"', 'default = "big"'), r"default model 'big' is not defined"),
        (lambda t: t + "enabled = false\n", r"default model 'tiny' is disabled"),
        (lambda t: t.replace("[models.tiny]", "[models.Tiny]").replace('"tiny"', '"Tiny"'), r"the name must be"),
    ],
)
def test_bad_fields_name_the_file_entry_and_field(tmp_path, edit, message):
    path = write(tmp_path, edit(TINY))
    with pytest.raises(CatalogError, match=message) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)


def test_an_unknown_pipeline_is_an_error(tmp_path):
    text = SHIPPED_CATALOG.read_text()
    start = text.index("[models.sdxl-turbo]")
    text = text[:start] + text[start:].replace('pipeline = "stable-diffusion-xl"', 'pipeline = "no-such-family"', 1)
    text = text[:start] + text[start:].replace("enabled = false", "enabled = true", 1)
    with pytest.raises(CatalogError, match=r"\[models\.sdxl-turbo\]: field `pipeline`"):
        load_catalog(write(tmp_path, text))


def test_resolve_prefers_a_local_folder(tmp_path):
    (tmp_path / "tiny-sd").mkdir()
    assert spec("tiny-sd").resolve(tmp_path) == str((tmp_path / "tiny-sd").resolve())
    (tmp_path / "stabilityai" / "sd-turbo").mkdir(parents=True)
    assert spec("stabilityai/sd-turbo").resolve(tmp_path) == str(tmp_path / "stabilityai" / "sd-turbo")


def test_resolve_falls_back_to_the_hub_id(tmp_path):
    assert spec("stabilityai/sd-turbo").resolve(tmp_path) == "stabilityai/sd-turbo"


def test_resolve_explains_a_missing_local_folder(tmp_path):
    with pytest.raises(CatalogError, match=r"no folder .*tiny-sd.*create-tiny"):
        spec("tiny-sd").resolve(tmp_path)


@pytest.mark.parametrize("source", ["../../etc/passwd", "../x", "tiny/../../x", "/etc", "C:\\models"])
def test_resolve_refuses_paths_that_escape_the_models_dir(tmp_path, source):
    (tmp_path / "models").mkdir()
    with pytest.raises(CatalogError, match=r"escapes|relative"):
        spec(source).resolve(tmp_path / "models")
