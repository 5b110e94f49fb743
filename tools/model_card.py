"""Write the model card (``card.md``) of a model directory from its training run and evals.

    python tools/model_card.py RUN_DIR MODEL_DIR --title "Default sentence codec" \\
        --command "lcm train configs/encoders/codec_small.yaml ..." \\
        --eval codec_eval.json [--eval more.json] [--note "..."] [--base-card OLD/card.md]

The card states what a user needs to trust (or distrust) the weights: the command that
trained them, the data, steps, tokens seen, compute used (wall time of the logged steps on
the training machine), and the measured metrics, copied from the JSON reports of
``lcm eval-codec --json`` and ``lcm eval-task --json``. A run started from another model's
weights (``init_from``) passes that model's card as ``--base-card``: its training record comes
first, so the card covers every stage the weights went through.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from lcm.config import read_yaml
from lcm.io import write_text_atomic
from lcm.plot import read_jsonl


def run_summary(run_dir: Path, until: int | None = None) -> dict[str, float]:
    """Steps, tokens seen and seconds of compute of a run, from its ``metrics.jsonl``.

    Each record covers the steps since the previous one: its ``tokens`` and, from
    ``steps_per_s``, its duration. ``until``: count only up to this step (the checkpoint
    the model directory was exported from, when the run went on).
    """
    records = [
        r
        for r in read_jsonl(run_dir / "metrics.jsonl")
        if "step" in r and (until is None or r["step"] <= until)
    ]
    tokens = seconds = 0.0
    previous = 0
    for r in records:
        window = r["step"] - previous
        tokens += r.get("tokens", 0.0)
        if r.get("steps_per_s"):
            seconds += window / r["steps_per_s"]
        previous = r["step"]
    last = records[-1] if records else {}
    return {"steps": previous, "tokens": tokens, "hours": seconds / 3600, "loss": last.get("loss")}


def _codec_section(report: dict) -> list[str]:
    lines = [f"round trip, decoding: {report.get('decoding', 'greedy')}", ""]
    lines += ["| condition | sentences | BLEU | exact match |", "|---|---|---|---|"]
    for cond, s in report["overall"].items():
        lines.append(f"| {cond} | {s['n']} | {s['bleu']:.1f} | {s['exact_match']:.3f} |")
    lines += ["", "| source | " + " | ".join(f"BLEU {c}" for c in report["overall"]) + " |"]
    lines.append("|---|" + "---|" * len(report["overall"]))
    for src, conds in report["per_source"].items():
        lines.append(f"| {src} | " + " | ".join(f"{s['bleu']:.1f}" for s in conds.values()) + " |")
    lines.append(
        f"\nencode {report['encode_per_s']:.0f} sentences/s, decode "
        f"{report['decode_per_s']:.1f} sentences/s (2 shared CPU cores)"
    )
    return lines


def _task_section(report: dict) -> list[str]:
    from lcm.eval.tasks import format_table

    head = f"{report['task']} on `{report['data']}` ({report['split']}, {report['items']} items)"
    how = [f"decoding {report['decoding']}"] if report.get("decoding") else []
    if report.get("reencode") is not None:
        how.append("sentences re-encoded" if report["reencode"] else "predictions fed back")
    if how:
        head += f"; {', '.join(how)}"
    return [head, "", format_table(report["results"])]


def training_record(card: str) -> list[str]:
    """The lines of a card's "## Training" section (without the heading), its own stage
    headings one level down, so a card of several fine-tunes nests them under its stage 1.

    Raises:
        ValueError: If the card has no such section.
    """
    lines = card.splitlines()
    if "## Training" not in lines:
        raise ValueError('the base card has no "## Training" section')
    start = lines.index("## Training") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [
        "#" + line if line.startswith("### ") else line for line in lines[start:end] if line.strip()
    ]


def write_card(
    run_dir: Path,
    model_dir: Path,
    title: str,
    command: str,
    evals: Sequence[Path],
    notes: Sequence[str] = (),
    until: int | None = None,
    hardware: str = "2 shared CPU cores",
    base_card: str | None = None,
) -> Path:
    """Render and write ``model_dir/card.md``; returns its path.

    ``base_card``: the card text of the model the run started from (``init_from``); its
    training record is listed as the first stage.
    """
    cfg = read_yaml(run_dir / "config.yaml")
    summary = run_summary(run_dir, until)
    hours = summary["hours"]
    duration = f"{hours * 60:.1f} minutes" if hours < 1 else f"{hours:.1f} hours"
    lines = [f"# {title}", ""]
    lines += [f"> {note}" for note in notes] + ([""] if notes else [])
    lines += ["## Training"]
    if base_card is not None:
        lines += ["", "### Stage 1: the starting weights (`init_from`)", ""]
        lines += training_record(base_card)
        lines += ["", "### Stage 2: this run, from those weights", ""]
    lines += [
        f"- command: `{command}`",
        f"- family `{cfg.get('family', cfg.get('task'))}`, config saved in the run as "
        "`config.yaml` (model section below)",
        f"- data: `{json.dumps(cfg.get('data', {}))}`",
        f"- {summary['steps']:,} steps, batch {cfg.get('batch_size')}, "
        f"{summary['tokens']:,.0f} tokens (or concepts) seen, final training loss "
        f"{summary['loss']:.4g}",
        f"- compute: {duration} on {hardware} (logged step times)",
        "",
        "## Model",
        "```yaml",
        json.dumps(cfg.get("model", {}), indent=1),
        "```",
        "",
        "## Measured",
    ]
    for path in evals:
        report = json.loads(path.read_text(encoding="utf-8"))
        lines += [""] + (_codec_section(report) if "overall" in report else _task_section(report))
    target = model_dir / "card.md"
    write_text_atomic(target, "\n".join(lines) + "\n")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="model_card", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--title", required=True)
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--eval", type=Path, action="append", default=[], help="JSON report")
    parser.add_argument("--note", action="append", default=[], help="a line shown on top")
    parser.add_argument("--step", type=int, help="the exported checkpoint's step (default: last)")
    parser.add_argument("--hardware", default="2 shared CPU cores", help="what it trained on")
    parser.add_argument(
        "--base-card", type=Path, help="card of the model the run started from (init_from)"
    )
    args = parser.parse_args(argv)
    base_card = args.base_card.read_text(encoding="utf-8") if args.base_card else None
    target = write_card(
        args.run_dir,
        args.model_dir,
        args.title,
        args.command,
        args.eval,
        args.note,
        args.step,
        args.hardware,
        base_card,
    )
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
