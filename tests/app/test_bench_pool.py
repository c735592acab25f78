"""`dreamgrid bench pool` and `dreamgrid bench previews` run once at tiny size: they work and print the
figures the team reads. Their speed targets are for the full runs (docs/performance.md), not for tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dreamgrid(*args: str, env: dict) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    environment.pop("DISCORD_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


def last_json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("which, model, family", [
    (("--model", "tiny"), "tiny", "stable-diffusion"),  # catalog entries, a UNet family each
    (("--model", "tiny-xl"), "tiny-xl", "stable-diffusion-xl"),
    (("--family", "flux"), "tiny-flux", "flux"),  # a transformer family, its tiny model built where missing
])
def test_bench_pool_compares_the_pool_with_a_naive_bot(models_dir, tmp_path, which, model, family):
    folder = models_dir if which[0] == "--model" else tmp_path
    figures = last_json(dreamgrid("bench", "pool", "--configs", "64/2", "--jobs", "4", "--rounds", "2", *which,
                                  "--json", env={"MODELS_DIR": str(folder)}))
    assert figures["bench"] == "pool" and figures["model"] == model and figures["family"] == family
    (row,) = figures["results"]
    assert (row["size"], row["steps"], row["jobs"], row["rounds"]) == (64, 2, 4, 2)
    assert row["naive_images_per_s"] > 0 and row["pool_images_per_s"] > 0
    assert 0 < row["ratio_min"] <= row["ratio"] <= row["ratio_max"]  # the median of interleaved rounds
    assert "1" in row["measured_images_per_s"]  # the tuner measured one job at a time at least


def test_bench_previews_times_jobs_with_previews_on_and_off(models_dir):
    figures = last_json(dreamgrid("bench", "previews", "--runs", "1", "--steps", "6", "--interval", "0.000001",
                                  "--json", env={"MODELS_DIR": str(models_dir)}))
    assert figures["bench"] == "previews" and figures["previews_per_job"] >= 1
    assert figures["off_median_ms"] > 0 and figures["ratio"] > 0


def test_bench_overhead_subtracts_the_pipeline_from_the_time_to_the_grid(models_dir):
    figures = last_json(dreamgrid("bench", "overhead", "--runs", "2", "--json", env={"MODELS_DIR": str(models_dir)}))
    assert figures["bench"] == "overhead" and figures["runs"] == 2
    assert 0 < figures["median_ms"] and 0 < figures["pipeline_median_ms"]
