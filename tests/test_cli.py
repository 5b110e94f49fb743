"""The `lcm` console script."""

from __future__ import annotations

import inspect
import subprocess
import sys

from conftest import REPO

from lcm.cli import SUBCOMMANDS, main
from lcm.cli.eval import build_parser as eval_parser
from lcm.cli.infer import (
    SAMPLING_FIELDS,
    eval_task_parser,
    expand_parser,
    generate_parser,
    summarize_parser,
)
from lcm.generate import GenerationConfig
from lcm.models.diffusion.ddim import DDIMConfig
from lcm.pipeline import Pipeline

sys.path.insert(0, str(REPO / "tools"))
import expand_summary  # noqa: E402


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lcm.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("data", "train", "eval", "encode", "decode", "summarize", "expand"):
        assert name in SUBCOMMANDS
        assert f"    {name}" in out


def test_train_rejects_unknown_key(capsys) -> None:
    code = main(
        ["train", str(REPO / "configs/examples/mlp_regression.yaml"), "optim.learning_rate=1"]
    )
    assert code == 2
    assert "unknown config key 'optim.learning_rate'" in capsys.readouterr().err


def test_every_generating_command_has_the_library_defaults() -> None:
    """One default per knob: `lcm eval` once sampled with guidance 1.0, `lcm summarize` with 3.0."""
    library = GenerationConfig()
    ddim = DDIMConfig()
    for field in SAMPLING_FIELDS[1:-1]:  # the DDIMConfig fields (not seed, temperature)
        assert getattr(library, field) == getattr(ddim, field), field
    parsers = {
        "summarize": (summarize_parser(), ["x.txt"], Pipeline.summarize),
        "expand": (expand_parser(), ["x"], Pipeline.expand),
        "generate": (generate_parser(), ["x.txt"], Pipeline.generate),
        "eval-task": (eval_task_parser(), ["--task", "expand", "--data", "x"], None),
        "eval": (eval_parser(), ["run"], None),
        "demo": (expand_summary.build_parser(), [], Pipeline.expand),
    }
    for name, (parser, argv, method) in parsers.items():
        args = parser.parse_args(argv)
        for field in SAMPLING_FIELDS:
            assert getattr(args, field) == getattr(library, field), (name, field)
        if method is not None:  # the command writes as many sentences as the library call
            default = inspect.signature(method).parameters["max_sentences"].default
            assert args.max_sentences == default, name
        if hasattr(args, "stop_threshold"):
            assert args.stop_threshold == library.stop_threshold, name
            assert args.repetition_threshold == library.repetition_threshold, name
    # The old spellings still parse, into the same fields.
    args = summarize_parser().parse_args(["x", "--ddim-steps", "7", "--guidance", "2"])
    assert (args.steps, args.guidance_scale) == (7, 2.0)
