"""Print the family comparison tables (docs/results.md) from evaluation and training records.

For each family NAME it reads, when they exist:
- ``EVAL_DIR/NAME.summarize.test.json`` and ``EVAL_DIR/NAME.expand.test.json``
  (``lcm eval-task --json``);
- ``EVAL_DIR/NAME.lcm_eval.json`` (``lcm eval --json``: l2, l2-r, CA);
- ``RUNS_DIR/tasks_NAME/metrics.jsonl`` (steps, concepts or tokens seen, logged step time);
- ``MODELS_DIR/NAME/weights.npz`` (parameter count).

Usage::

    python tools/family_table.py --eval-dir ~/lcm_ll/eval --runs-dir ~/runs \\
        --models-dir ~/lcm_ll one_tower quant_lcm two_tower token_lm
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLUMNS = ("rouge1", "rouge2", "rougeL", "ovl3", "rep4", "words", "sentences")


def _read_json(path: Path) -> object | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def task_rows(eval_dir: Path, names: list[str], task: str) -> list[str]:
    """Markdown rows of one task: each family, then the baselines of the first report."""
    rows, baselines = [], None
    for name in names:
        report = _read_json(eval_dir / f"{name}.{task}.test.json")
        if report is None:
            rows.append(f"| {name} | (not run) |" + " |" * (len(COLUMNS) - 1))
            continue
        m = report["results"]["model"]
        rows.append(_row(name, m, report["items"]))
        baselines = baselines or report["results"]
    for base in ("lead-1", "roundtrip"):
        if baselines and base in baselines:
            label = "copy the summary (lead-1)" if task == "expand" and base == "lead-1" else base
            rows.append(_row(label, baselines[base], None))
    return rows


def _row(label: str, m: dict, items: int | None) -> str:
    cells = [_pct(m[c]) for c in COLUMNS[:5]] + [f"{m['words']:.1f}", f"{m['sentences']:.2f}"]
    suffix = f" ({items} items)" if items is not None and items != 913 else ""
    return f"| {label}{suffix} | " + " | ".join(cells) + " |"


def run_facts(runs_dir: Path, models_dir: Path, name: str) -> dict[str, str]:
    """Steps, items seen, logged minutes and parameters of one family's run."""
    facts = {"steps": "?", "seen": "?", "minutes": "?", "params": "?"}
    metrics = runs_dir / f"tasks_{name}" / "metrics.jsonl"
    if metrics.is_file():
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        lines = [x for x in lines if "steps_per_s" in x]
        # Log intervals are of log_every steps; a resumed run repeats some: keep the last of each.
        by_step = {x["step"]: x for x in lines}
        steps = sorted(by_step)
        prev, seconds, seen = 0, 0.0, 0.0
        for s in steps:
            seconds += (s - prev) / by_step[s]["steps_per_s"]
            seen += by_step[s].get("tokens", 0.0)
            prev = s
        facts.update(steps=f"{prev:,}", seen=f"{seen / 1e6:.2f}M", minutes=f"{seconds / 60:.0f}")
    weights = models_dir / name / "weights.npz"
    if weights.is_file():
        with np.load(weights) as w:
            facts["params"] = f"{sum(w[k].size for k in w.files) / 1e6:.2f}M"
    return facts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", help="family names (file stems)")
    p.add_argument("--eval-dir", type=Path, required=True)
    p.add_argument("--runs-dir", type=Path, required=True)
    p.add_argument("--models-dir", type=Path, required=True)
    args = p.parse_args()
    head = "| system | ROUGE-1 | ROUGE-2 | ROUGE-L | OVL-3 | REP-4 | words | sentences |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    for task in ("summarize", "expand"):
        print(f"\n{task}\n\n{head}\n{rule}")
        print("\n".join(task_rows(args.eval_dir, args.names, task)))
    print(
        "\n| family | l2 | l2-r | CA | parameters | steps | concepts (tokens) seen | minutes |"
        "\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name in args.names:
        ev = _read_json(args.eval_dir / f"{name}.lcm_eval.json")
        s = ev[0] if ev else {}
        f = run_facts(args.runs_dir, args.models_dir, name)

        def num(key: str, s: dict = s) -> str:
            return "-" if s.get(key) is None else f"{s[key]:.3f}"

        print(
            f"| {name} | {num('l2')} | {num('l2_round_trip')} | {num('contrastive_accuracy')} | "
            f"{f['params']} | {f['steps']} | {f['seen']} | {f['minutes']} |"
        )


if __name__ == "__main__":
    main()
