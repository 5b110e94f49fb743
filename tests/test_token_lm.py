"""The token-level peer: data rows, causality, cached greedy decoding, training, eval-task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from codec_fixtures import overfitted_codec
from conftest import REPO
from flax import nnx

from lcm.data.token_tasks import TokenTaskDataConfig, TokenTaskSource, task_texts
from lcm.models.config import TransformerConfig
from lcm.models.token_lm import TokenLM, TokenLMConfig, TokenLMPipeline, load_token_lm
from trainers.config import TrainConfig, load_train_config
from trainers.loop import train
from trainers.state import load_trained_model
from trainers.tasks import get_task

PAIRS = REPO / "tests" / "fixtures" / "pairs_small.jsonl.gz"
STEPS = 30
CFG = TokenLMConfig(
    d_model=32, decoder=TransformerConfig(num_layers=2, num_heads=2, mlp_dim=64), vocab_size=512
)


def test_rows_hold_the_task_documents_with_targets_after_the_marker() -> None:
    tok = overfitted_codec().tokenizer
    cfg = TokenTaskDataConfig(pairs=str(PAIRS), max_len=128)
    source = TokenTaskSource(cfg, tokenize=tok.encode, batch_size=4, seed=0)
    texts = task_texts(str(PAIRS), "train", True)
    assert source.num_sequences == len(texts) == 3 * 200
    expected: dict[tuple[int, ...], set[int]] = {}  # ids -> where the targets may start
    for context, target in texts:
        read, wanted = (tok.encode([context])[0] if context else []), tok.encode([target])[0]
        wanted.append(3)
        if len(read) + len(wanted) > 128:  # too long: keep the context's end, at least 64
            read = read[-max(128 - len(wanted), min(64, len(read))) :] if read else []
        ids = (read + wanted)[:128]
        expected.setdefault(tuple(ids), set()).add(len(read))
    batch = source.batch(5)
    assert all(np.array_equal(v, source.batch(5)[k]) for k, v in batch.items())
    seen = 0
    for row in range(4):
        seg = batch["segment_ids"][row]
        for s in set(seg.tolist()) - {0}:
            where = seg == s
            ids = tuple(batch["tokens"][row][where].tolist())
            assert ids in expected  # a whole sequence, in order
            # Targets start right after the context (the input and its marker).
            targets = np.flatnonzero(batch["loss_mask"][row][where])
            assert len(targets) and targets[0] in expected[ids]
            assert np.array_equal(targets, np.arange(targets[0], len(ids)))
            assert np.array_equal(batch["positions"][row][where], np.arange(len(ids)))
            seen += 1
    assert seen >= 4


def test_outputs_are_causal_and_cached_greedy_matches_the_full_pass() -> None:
    model = TokenLM(CFG, nnx.Rngs(1))
    tokens = jax.random.randint(jax.random.key(0), (2, 12), 5, 512)
    batch = {
        "tokens": tokens,
        "segment_ids": jnp.ones((2, 12), jnp.int32),
        "positions": jnp.broadcast_to(jnp.arange(12), (2, 12)),
    }
    logits = model(batch)
    changed = model({**batch, "tokens": tokens.at[:, 7].set(6)})
    np.testing.assert_allclose(changed[:, :7], logits[:, :7], atol=1e-5)
    assert not np.allclose(changed[:, 7:], logits[:, 7:], atol=1e-4)
    # Greedy decoding from left-padded prompts of lengths 5 and 3 reproduces, token by token,
    # the argmax of the full pass over the prompt and what was generated so far.
    prompts = [tokens[0, :5].tolist(), tokens[1, :3].tolist()]
    rows = np.zeros((2, 5), np.int32)
    rows[0], rows[1, 2:] = prompts[0], prompts[1]
    out = np.asarray(model.greedy(jnp.asarray(rows), jnp.array([0, 2], jnp.int32), 6))
    for b, prompt in enumerate(prompts):
        seq = list(prompt)
        for _ in range(6):
            full = model(
                {
                    "tokens": jnp.asarray([seq]),
                    "segment_ids": jnp.ones((1, len(seq)), jnp.int32),
                    "positions": jnp.arange(len(seq))[None],
                }
            )
            seq.append(int(jnp.argmax(full[0, -1])))
        expect = seq[len(prompt) :]
        if 3 in expect:  # after EOS the row is padding
            cut = expect.index(3) + 1
            expect = expect[:cut] + [0] * (6 - cut)
        assert out[b].tolist() == expect


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token_lm") / "codec"
    overfitted_codec().save(path)
    return path


def tiny_config(codec_dir: Path, run_dir: Path) -> TrainConfig:
    return load_train_config(
        REPO / "configs" / "lcm" / "token_lm_tiny.yaml",
        [
            f"run_dir={run_dir}",
            f"steps={STEPS}",
            "log_every=1",
            f"model.codec={codec_dir}",
            "model.vocab_size=512",
            f"data.pairs={PAIRS}",
        ],
    )


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if line.strip()]


def test_trains_resumes_bit_identically_and_evaluates(
    codec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config(codec_dir, run_dir), progress=False)
    got = losses(run_dir)
    # Falls, and below the uniform distribution's log(512) = 6.24.
    assert len(got) == STEPS and np.mean(got[-5:]) < min(0.85 * np.mean(got[:5]), 6.0), got
    shutil.copytree(run_dir, tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(STEPS))
    resumed = train(tiny_config(codec_dir, tmp_path / "cut"), progress=False)
    assert resumed.resumed_from == STEPS - 10 and losses(tmp_path / "cut") == got
    # Export, reopen, and evaluate through lcm eval-task like an LCM.
    cfg, model, _ = load_trained_model(run_dir)
    get_task("token_lm").export(model, cfg.model, cfg.data, str(tmp_path / "model"))
    reopened, _, markers = load_token_lm(tmp_path / "model")
    assert markers == {"summarize": "[SUMMARY]:", "expand": "[EXPAND]:"}
    pipe = TokenLMPipeline(reopened, overfitted_codec(), markers, batch_size=4)
    outs = pipe.summarize_many(["A package of tools for the command line."] * 5, 1)
    assert len(outs) == 5 and len(set(outs)) == 1  # greedy: same input, same output
    assert pipe.summarize("A package of tools for the command line.", 1) == outs[0]
    assert all(isinstance(s, str) for s in pipe.generate(["The cat sat on the mat."], 2))
    with pytest.raises(ValueError, match="max_sentences must be a whole number"):
        pipe.expand("A package of tools.", 1.5)
    from lcm.cli import main

    out_json = tmp_path / "eval.json"
    argv = ["eval-task", "--task", "summarize", "--data", str(PAIRS), "--split", "test"]
    argv += ["--limit", "4", "--model", str(tmp_path / "model"), "--systems", "model,lead-1"]
    assert main([*argv, "--json", str(out_json)]) == 0
    record = json.loads(out_json.read_text())
    assert set(record["results"]) == {"model", "lead-1"}
    assert len(record["samples"]["model"]) == 4
