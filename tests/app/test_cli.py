"""The `dreamgrid` command line, run as a person runs it: a real process, real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def dreamgrid(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    environment.pop("DISCORD_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300)


def test_run_without_a_token_says_in_one_line_how_to_set_it(tmp_path):
    result = dreamgrid("run", cwd=tmp_path)  # no .env there either
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "DISCORD_TOKEN" in line and ".env" in line


def test_a_malformed_setting_stops_start_up_naming_the_variable(tmp_path):
    result = dreamgrid("run", env={"DAILY_IMAGES": "many"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dreamgrid: DAILY_IMAGES='many' is not valid: must be a whole number. "
        "Fast images each user may make per quota period (a grid costs 4, an upscale 1; relax jobs are free)."]


def test_generate_writes_one_grid_and_the_same_seed_gives_the_same_grid(tmp_path, models_dir):
    env = {"MODELS_DIR": str(models_dir)}
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    for out in (first, second):
        result = dreamgrid("generate", "a red circle", "-o", str(out), "--seed", "7", env=env)
        assert result.returncode == 0, result.stderr
    assert "seed 7" in result.stdout
    assert Image.open(first).size == (128, 128)
    assert first.read_bytes() == second.read_bytes()


def test_bench_imagine_prints_one_json_object_last(models_dir):
    result = dreamgrid("bench", "imagine", "--runs", "1", "--json", env={"MODELS_DIR": str(models_dir)})
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "imagine" and figures["runs"] == 1
    assert 0 < figures["defer"]["p50_ms"] < figures["grid"]["p50_ms"]


def test_bench_ack_and_memory_run_at_tiny_size(models_dir):
    env = {"MODELS_DIR": str(models_dir)}
    ack = dreamgrid("bench", "ack", "--queued", "4", "--probes", "2", "--json", env=env)
    assert ack.returncode == 0, ack.stderr
    assert json.loads(ack.stdout.strip().splitlines()[-1])["p99_ms"] < 3000  # Discord's limit
    memory = dreamgrid("bench", "memory", "--json", env=env)
    assert memory.returncode == 0, memory.stderr
    figures = json.loads(memory.stdout.strip().splitlines()[-1])
    assert figures["weights_shared"] and figures["rss_with_pipes_mb"] >= figures["rss_base_mb"] > 0


def test_bench_soak_accounts_for_every_job_through_random_faults(models_dir):
    result = dreamgrid("bench", "soak", "--minutes", "0.4", "--users", "5", "--seed", "3", "--json",
                       env={"MODELS_DIR": str(models_dir)})
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (figures, result.stderr[-2000:])
    assert figures["jobs"] > 0 and figures["faults"]
    assert (figures["lost"], figures["duplicated"], figures["refund_missing"]) == (0, 0, 0)
    assert figures["delivered"] + figures["refunded"] == figures["jobs"]
