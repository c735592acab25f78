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
        "Images each user may make per UTC day (a grid costs 4, an upscale 1)."]


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
