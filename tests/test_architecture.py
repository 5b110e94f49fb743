"""The layer rule of docs/architecture.md holds: import-linter's contract in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_imports_follow_the_layers() -> None:
    lint = Path(sys.executable).parent / "lint-imports"  # installed by the test extra
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout
