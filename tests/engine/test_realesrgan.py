"""The shipped Real-ESRGAN upscaler: real weights, real pictures, judged by the shapes analyser."""

from pathlib import Path

import pytest
import torch

from bot.engine import UpscaleRequest, WorkerPool, load_catalog
from bot.engine.catalog import CatalogError
from bot.engine.realesrgan import SRVGGNetCompact, SuperResolution, load_upscaler
from bot.shapes.analyser import analyse
from bot.shapes.world import make_example

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "upscalers" / "realesr-animevideov3.safetensors"


@pytest.fixture(scope="module")
def upscaler() -> SuperResolution:
    return SuperResolution(SHIPPED, "cpu")


def test_the_shipped_weights_are_the_compact_x4_network():
    network = load_upscaler(SHIPPED)
    assert network.upscale == 4 and len(network.body) == 2 + 2 * 16 + 1
    assert sum(p.numel() for p in network.parameters()) < 700_000


def test_upscaling_keeps_what_the_picture_shows(upscaler):
    for seed in range(12):
        picture, scene = make_example(seed, 64, 64)
        enlarged = upscaler.upscale(picture, 4)
        assert enlarged.size == (256, 256)
        assert analyse(enlarged).attributes() == scene.attributes()


def test_a_real_esrgan_pth_of_the_same_architecture_loads_the_same(tmp_path, upscaler):
    state = {k: v.float() for k, v in load_upscaler(SHIPPED).state_dict().items()}
    torch.save({"params": state}, tmp_path / "mine.pth")  # how Real-ESRGAN ships its checkpoints
    picture, _ = make_example(5, 32, 32)
    assert SuperResolution(tmp_path / "mine.pth", "cpu").upscale(picture, 2).tobytes() == \
        upscaler.upscale(picture, 2).tobytes()


def test_a_file_of_another_network_is_refused_clearly(tmp_path):
    torch.save({"conv_first.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "rrdb.pth")
    with pytest.raises(ValueError, match="not a Real-ESRGAN compact"):
        load_upscaler(tmp_path / "rrdb.pth")


def test_the_catalog_names_only_upscalers_that_exist(tmp_path):
    (tmp_path / "catalog.toml").write_text(
        'default = "m"\n[models.m]\nsource = "m"\nwidth = 64\nheight = 64\nsteps = 1\nguidance = 0\n'
        'upscaler = "realesr-animevideov3"\n')
    with pytest.raises(CatalogError, match="upscaler.*lanczos"):
        load_catalog(tmp_path / "catalog.toml")
    (tmp_path / "upscalers").mkdir()
    (tmp_path / "upscalers" / SHIPPED.name).write_bytes(SHIPPED.read_bytes())
    assert load_catalog(tmp_path / "catalog.toml").get("m").upscaler == "realesr-animevideov3"


async def test_the_pool_upscales_with_the_models_network(models_dir):
    pool = WorkerPool(load_catalog(models_dir / "catalog.toml"), models_dir, torch_threads=1)
    await pool.start()
    try:
        picture, scene = make_example(7, 64, 64)
        result = await pool.submit(UpscaleRequest(model="tiny", image=picture, scale=2)).result()
    finally:
        await pool.close()
    (enlarged,) = result.images
    assert enlarged.size == (128, 128) and analyse(enlarged).attributes() == scene.attributes()
