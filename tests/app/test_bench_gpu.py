"""`dreamgrid bench gpu`: it runs end to end on a CPU with the tiny SD and FLUX architectures, refuses clearly
where there is no GPU or what it cannot run, and its shipped SD-Turbo / SD 1.5 / SDXL / FLUX.1-schnell /
SD 3.5 medium configs are the real architectures (their parameter counts match the published models). No
test needs a GPU, and none builds a real-size model (parameter counts come from the meta device)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bot.bench.architectures import ARCHS, get_arch, parameter_counts
from bot.engine.families import family_of

ROOT = Path(__file__).resolve().parents[2]


def dreamgrid(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    environment.pop("DISCORD_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("arch, family", [("tiny", "stable-diffusion"), ("tiny-flux", "flux")])
def test_bench_gpu_on_a_cpu_compares_plain_diffusers_with_the_pool(tmp_path, arch, family):
    result = dreamgrid("bench", "gpu", "--device", "cpu", "--arch", arch, "--size", "64", "--steps", "2",
                       "--jobs", "2", "--users", "2", "--cache-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "gpu" and figures["arch"] == arch and figures["family"] == family
    assert {"cores", "device", "device_name", "torch", "diffusers"} <= set(figures["machine"])
    assert figures["machine"]["device"] == "cpu"
    assert (figures["size"], figures["steps"], figures["jobs"], figures["users"]) == (64, 2, 2, 2)
    assert figures["parameters"] == parameter_counts(arch)
    assert figures["baseline_images_per_s"] > 0 and figures["pool_images_per_s"] > 0
    assert figures["ratio"] == round(figures["pool_images_per_s"] / figures["baseline_images_per_s"], 3)
    assert "channels_last" in figures["pool_options"] and "1" in figures["batching"]
    assert "peak_memory_mb" not in figures  # CUDA only
    assert (tmp_path / f"{arch}-fp32" / "model_index.json").is_file()  # kept for the next run


# Published parameter counts of the upstream models (diffusers / transformers, counted the same way).
SDXL = {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840}
T5_XXL, CLIP_L, VAE_16 = 4_762_310_656, 123_060_480, 83_819_683  # FLUX's and SD3's
KNOWN = {
    "sd-turbo": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": SDXL,
    "sdxl-turbo": SDXL,  # SDXL distilled: the same layers
    # FLUX.1-dev's 11_901_408_320 less the guidance embedder schnell has not (256 -> 3072 -> 3072)
    "flux-schnell": {"transformer": 11_901_408_320 - 10_229_760, "vae": VAE_16, "text_encoder": CLIP_L,
                     "text_encoder_2": T5_XXL},
    "sd35-medium": {"transformer": 2_243_171_520, "vae": VAE_16, "text_encoder": CLIP_L + 768 * 768,  # + projection
                    "text_encoder_2": SDXL["text_encoder_2"], "text_encoder_3": T5_XXL},
}


@pytest.mark.parametrize("arch", sorted(KNOWN))
def test_the_shipped_configs_are_the_real_architectures(arch):
    counts = parameter_counts(arch)
    assert set(counts) == set(KNOWN[arch])
    for component, known in KNOWN[arch].items():
        assert counts[component] == pytest.approx(known, rel=1e-3), component


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_gpu_without_a_gpu_says_what_is_wrong_and_what_to_do():
    result = dreamgrid("bench", "gpu", "--json")
    assert result.returncode == 2
    assert "no CUDA device here" in result.stderr
    assert "--device cpu --arch tiny --size 64" in result.stderr
    assert result.stdout == ""


def test_bench_gpu_will_not_build_a_real_size_transformer_on_a_cpu(tmp_path):
    result = dreamgrid("bench", "gpu", "--device", "cpu", "--arch", "flux-schnell", "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert "flux-schnell has 16.9 B parameters" in result.stderr and "--device cuda" in result.stderr
    assert not any(tmp_path.iterdir())  # refused before building anything


def test_bench_gpu_refuses_a_size_the_family_cannot_make():
    result = dreamgrid("bench", "gpu", "--device", "cpu", "--arch", "tiny-flux", "--size", "72")
    assert result.returncode == 2
    assert "--size must be a positive multiple of 16 for tiny-flux" in result.stderr


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_assembles_into_its_family_pipeline_with_tokenizers_its_encoders_can_read(arch, tmp_path):
    """What build_random_model does on a GPU, with the weights on the meta device: the tokenizers built
    offline fit their text encoders (T5's cut to its 32128 ids; OpenCLIP's pad with "!") and the parts make
    the pipeline class the engine expects of the family."""
    from bot.bench.architectures import _build_component, _pipeline, _tokenizers, components

    with torch.device("meta"):
        parts = {name: _build_component(arch, name, cls) for name, cls in components(arch).items()}
    tokenizers = _tokenizers(arch, tmp_path)
    for name, tokenizer in tokenizers.items():
        encoder = parts[name.replace("tokenizer", "text_encoder")]
        assert len(tokenizer) <= encoder.config.vocab_size, name
        if encoder.config.model_type == "clip_text_model":
            assert tokenizer.pad_token == ("!" if encoder.config.hidden_act == "gelu" else "<|endoftext|>"), name
    pipeline = _pipeline(arch, parts, tokenizers)
    assert type(pipeline).__name__ in family_of(get_arch(arch).pipeline).pipeline_classes
