"""The `lcm` console script."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from lcm.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lcm.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("data", "train", "eval", "encode", "decode", "summarize", "expand"):
        assert name in SUBCOMMANDS
        assert f"    {name}" in out


def test_missing_subcommand_says_so(capsys) -> None:
    pending = [name for name, (_, target, _) in SUBCOMMANDS.items() if target is None]
    if not pending:
        pytest.skip("every subcommand is implemented")
    assert main([pending[0], "x.pt"]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_train_rejects_unknown_key(capsys) -> None:
    code = main(
        ["train", str(REPO / "configs/examples/mlp_regression.yaml"), "optim.learning_rate=1"]
    )
    assert code == 2
    assert "unknown config key 'optim.learning_rate'" in capsys.readouterr().err
