"""`dreamgrid generate` speaks the prompt language of /imagine and labels its PNGs as /imagine does."""

from PIL import Image

from bot.service.provenance import read_parameters
from test_cli import dreamgrid


def test_generate_takes_parameters_in_the_prompt_and_labels_the_png(tmp_path, models_dir):
    out = tmp_path / "grid.png"
    result = dreamgrid("generate", "a red circle --ar 2:1 --seed 7 --no squares --repeat 2", "-o", str(out),
                       env={"MODELS_DIR": str(models_dir)})
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (176, 96)  # four 88x48 images
    assert read_parameters(out) == ("a red circle\nNegative prompt: squares\n"
                                    "Steps: 4, Sampler: Euler, CFG scale: 5.0, Seed: 7, Size: 88x48, Model: tiny")
    assert "Seed: 11," in read_parameters(tmp_path / "grid-2.png")  # --repeat 2: the next four seeds


def test_generate_refuses_a_bad_parameter_in_one_line(tmp_path, models_dir):
    result = dreamgrid("generate", "a red circle --chaos 101", "-o", str(tmp_path / "x.png"),
                       env={"MODELS_DIR": str(models_dir)})
    assert result.returncode == 2 and not (tmp_path / "x.png").exists()
    assert result.stderr.strip() == ("dreamgrid generate: `--chaos 101` is out of range: "
                                     "`--chaos` takes a whole number from 0 to 100.")


def test_generate_writes_the_same_parameters_text_as_the_bot(tmp_path, models_dir):
    out = tmp_path / "grid.png"
    result = dreamgrid("generate", "a red circle --tile --chaos 10 --seed 3", "-o", str(out),
                       env={"MODELS_DIR": str(models_dir)})
    assert result.returncode == 0, result.stderr
    assert read_parameters(out).endswith("Seed: 3, Size: 64x64, Model: tiny, Tiling: True, Chaos: 10")
