"""The playground drives the real bot as a member would, and saves what it is sent."""

from PIL import Image

from bot.playground import Playground


async def test_a_playground_session_saves_a_grid_then_an_upscale(dreamgrid, tmp_path):
    saved_dir = tmp_path / "saved"
    saved_dir.mkdir()
    playground = Playground(dreamgrid.discord, saved_dir)
    assert "U1 U2 U3 U4 reroll V1 V2 V3 V4" in await playground.handle("imagine a red circle")
    assert "subtle strong" in await playground.handle("u2")
    assert "No button 'v9'" in await playground.handle("v9")
    saved = sorted(saved_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    assert [Image.open(p).size for p in saved] == [(128, 128), (128, 128)]  # the grid, then image 2 at 2x
    assert "35 of 40 images left" in await playground.handle("info")  # 4 + 1 used
