"""The rooms' import boundaries (pyproject.toml [tool.importlinter]) hold."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_the_engine_loads_without_discord():
    code = "import sys, bot.engine; assert 'discord' not in sys.modules, 'engine pulled in discord'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
