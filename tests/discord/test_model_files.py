"""Models as people download them, over the local Discord: single-file checkpoints under
models/checkpoints/ and LoRAs under models/loras/ named in prompts with AUTOMATIC1111's <lora:name:weight>.
All offline: the checkpoints are the tiny folders exported to the original key layout, the LoRAs random."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from bot.service.provenance import read_parameters


def png(message) -> Image.Image:
    (attachment,) = message.attachments
    return Image.open(io.BytesIO(attachment.data))


def job_id_of(message) -> int:
    return int(re.findall(r"job #(\d+)", message.content)[-1])


async def reply(dreamgrid, user, command, options=None):
    ix = await dreamgrid.discord.slash(user, command, options or {})
    return await ix.wait_original(lambda m: not m.loading, timeout=30)


async def refusal(dreamgrid, user, prompt) -> str:
    said = await reply(dreamgrid, user, "imagine", {"prompt": prompt})
    assert said.flags & 64, "a refusal is private"
    return said.content


@pytest.mark.parametrize("checkpoint, folder", [("tiny-ckpt", "tiny"), ("tiny-xl-ckpt", "tiny-xl")])
async def test_a_single_file_checkpoint_draws_what_its_folder_draws(dreamgrid, checkpoint, folder):
    spec = dreamgrid.app.catalog.get(checkpoint)
    assert spec.pipeline == dreamgrid.app.catalog.get(folder).pipeline  # read from the file's keys
    alice = dreamgrid.discord.add_user("alice")
    _, from_file = await dreamgrid.grid(alice, f"a lighthouse --seed 7 --model {checkpoint}")
    _, from_folder = await dreamgrid.grid(alice, f"a lighthouse --seed 7 --model {folder}")
    assert png(from_file).tobytes() == png(from_folder).tobytes()
    _, varied = await dreamgrid.click(alice, from_file, f"dg:vary:{job_id_of(from_file)}:1")
    assert f"`{checkpoint}`" in varied.content


async def test_model_list_shows_dropped_checkpoints_and_refuses_pickles(dreamgrid, models_dir, tmp_path):
    extra = models_dir / "checkpoints"
    (extra / "dropped.safetensors").write_bytes((extra / "tiny-sd.safetensors").read_bytes())
    (extra / "old.ckpt").write_bytes(b"\x80\x04 not opened")
    try:
        admin = dreamgrid.discord.add_user("admin", manage_guild=True)
        said = await reply(dreamgrid, admin, "model list")
        assert "`checkpoints/dropped.safetensors` (checkpoint: Stable Diffusion)" in said.content
        assert "`checkpoints/old.ckpt` (checkpoint: cannot be used: checkpoints/old.ckpt is a pickle" in said.content
        assert "tiny-sd.safetensors" not in said.content  # in the catalog already
        assert str(models_dir) not in said.content
        info = await reply(dreamgrid, admin, "model info", {"name": "tiny-ckpt"})
        assert "a checkpoint under models/, configs from `tiny-sd`" in info.content
    finally:
        (extra / "dropped.safetensors").unlink()
        (extra / "old.ckpt").unlink()


async def test_a_lora_at_weight_zero_changes_nothing_and_at_one_changes_the_picture(dreamgrid):
    bob = dreamgrid.discord.add_user("bob")
    _, plain = await dreamgrid.grid(bob, "a red fox --seed 3")
    _, zero = await dreamgrid.grid(bob, "a red fox <lora:styles/tiny-style:0> --seed 3")
    _, one = await dreamgrid.grid(bob, "a red fox, <lora:styles/tiny-style:1> --seed 3")
    _, two = await dreamgrid.grid(bob, "a red fox <lora:styles/tiny-style:1> <lora:tiny-kohya:0.8> --seed 3")
    assert png(zero).tobytes() == png(plain).tobytes()
    assert len({png(m).tobytes() for m in (plain, one, two)}) == 3
    assert "<lora:styles/tiny-style:1> <lora:tiny-kohya:0.8>" in two.content  # the message shows them

    job = await dreamgrid.app.store.get_job(job_id_of(two))
    assert job.prompt == "a red fox" and job.recipe.loras == (("styles/tiny-style", 1.0), ("tiny-kohya", 0.8))
    text = read_parameters(two.attachments[0].data)
    assert text.startswith("a red fox <lora:styles/tiny-style:1> <lora:tiny-kohya:0.8>\n")
    assert re.search(r'Lora hashes: "styles/tiny-style: [0-9a-f]{12}, tiny-kohya: [0-9a-f]{12}"', text)

    # 🔄 keeps them (the recipe carries them); the reroll is not the plain model
    _, rerolled = await dreamgrid.click(bob, two, f"dg:reroll:{job.id}:0")
    assert (await dreamgrid.app.store.get_job(job_id_of(rerolled))).recipe.loras == job.recipe.loras


async def test_a_catalog_entry_can_bring_its_own_lora(dreamgrid):
    carol = dreamgrid.discord.add_user("carol")
    _, plain = await dreamgrid.grid(carol, "a blue boat --seed 5")
    _, styled = await dreamgrid.grid(carol, "a blue boat --seed 5 --model tiny-styled")
    _, same = await dreamgrid.grid(carol, "a blue boat <lora:styles/tiny-style:0.7> --seed 5")
    assert png(styled).tobytes() != png(plain).tobytes()
    assert png(styled).tobytes() == png(same).tobytes()
    text = read_parameters(styled.attachments[0].data)
    assert "<lora:styles/tiny-style:0.7>" in text and "Lora hashes" in text


@pytest.mark.parametrize("prompt, complaint", [
    ("a fox <lora:ghibly:1>", "No LoRA named ghibly"),
    ("a fox <lora:tiny-xl-style:1>", "LoRA tiny-xl-style is for SDXL models; model `tiny` is Stable Diffusion"),
    ("a fox <lora:tiny-kohya:abc>", "the weight 'abc' is not a number"),
    ("a fox <lora:tiny-kohya:9>", "the weight must be between -4 and 4"),
    ("a fox <lora:../../etc/passwd:1>", "is not a LoRA name"),
    ("a fox <lora:tiny-kohya:1> <lora:tiny-kohya:0.5>", "is in the prompt twice"),
])
async def test_a_bad_lora_is_refused_before_any_charge(dreamgrid, prompt, complaint):
    dave = dreamgrid.discord.add_user("dave")
    said = await refusal(dreamgrid, dave, prompt)
    assert complaint in said
    assert "/" + "work" not in said and "Traceback" not in said
    assert await dreamgrid.app.store.used(dave.id) == 0


async def test_model_info_lists_the_loras_a_model_can_use(dreamgrid):
    admin = dreamgrid.discord.add_user("admin", manage_guild=True)
    said = (await reply(dreamgrid, admin, "model info", {"name": "tiny"})).content
    assert "`styles/tiny-style`" in said and "`tiny-kohya`" in said
    assert "tiny-xl-style" not in said and "tiny-flux-style" not in said
    styled = (await reply(dreamgrid, admin, "model info", {"name": "tiny-styled"})).content
    assert "LoRAs it always uses: `styles/tiny-style` (0.7)" in styled
