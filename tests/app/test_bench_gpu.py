"""`dreamgrid bench gpu`: it runs end to end on a CPU with the tiny architecture, refuses clearly where there
is no GPU, and its shipped SD-Turbo / SD 1.5 / SDXL configs are the real architectures (their parameter
counts match the published models). No test needs a GPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bot.bench.architectures import parameter_counts

ROOT = Path(__file__).resolve().parents[2]


def dreamgrid(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    environment.pop("DISCORD_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_bench_gpu_on_a_cpu_compares_plain_diffusers_with_the_pool(tmp_path):
    result = dreamgrid("bench", "gpu", "--device", "cpu", "--arch", "tiny", "--size", "64", "--steps", "2",
                       "--jobs", "2", "--users", "2", "--cache-dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "gpu" and figures["arch"] == "tiny"
    assert {"cores", "device", "device_name", "torch", "diffusers"} <= set(figures["machine"])
    assert figures["machine"]["device"] == "cpu"
    assert (figures["size"], figures["steps"], figures["jobs"], figures["users"]) == (64, 2, 2, 2)
    assert figures["parameters"] == parameter_counts("tiny")
    assert figures["baseline_images_per_s"] > 0 and figures["pool_images_per_s"] > 0
    assert figures["ratio"] == round(figures["pool_images_per_s"] / figures["baseline_images_per_s"], 3)
    assert "channels_last" in figures["pool_options"] and "1" in figures["batching"]
    assert "peak_memory_mb" not in figures  # CUDA only
    assert (tmp_path / "tiny-fp32" / "model_index.json").is_file()  # kept for the next run


# Published parameter counts of the upstream models (diffusers / transformers, counted the same way).
KNOWN = {
    "sd-turbo": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
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


def test_bench_gpu_refuses_an_architecture_the_engine_cannot_serve():
    result = dreamgrid("bench", "gpu", "--device", "cpu", "--arch", "sdxl")
    assert result.returncode == 2
    assert "--arch sd-turbo or sd15" in result.stderr
