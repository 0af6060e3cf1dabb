"""ruff with the project's rules (pyflakes, pycodestyle, isort, complexity C901) passes on all code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ruff_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "adapters_kit", "tests",
                        "scripts", "benchmarks", "docs"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
