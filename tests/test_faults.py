"""Faults that used to lose or mix work: a changed config or seed on resume, two trainers on
one run directory, a torn metrics line, Ctrl-C. (docs/reliability.md lists them.)"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from lcm.config import ConfigError, read_yaml, to_dict
from trainers.config import load_train_config
from trainers.loop import train
from trainers.run_dir import LOCK_FILE, RunLock, RunLockedError

CONFIG = REPO / "configs/examples/mlp_regression.yaml"


def tiny(run_dir: Path, *extra: str):
    return load_train_config(
        CONFIG,
        [f"run_dir={run_dir}", "steps=20", "log_every=1", "checkpoint.every=10", *extra],
    )


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if line.strip()]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory but its lock, by path."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.mark.parametrize(
    ("override", "named"),
    [("model.hidden=32", "model.hidden"), ("seed=7", "seed"), ("optim.lr=1e-2", "optim.lr")],
)
def test_resume_with_another_config_is_refused_and_touches_nothing(
    tmp_path: Path, override: str, named: str
) -> None:
    train(tiny(tmp_path), progress=False)
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=rf"{named}: .* -> ") as info:
        train(tiny(tmp_path, "steps=30", override), progress=False)
    assert "steps" not in str(info.value).split("Nothing")[0]  # an allowed change is not named
    assert snapshot(tmp_path) == before  # checkpoints, config.yaml and metrics untouched
    # The original config still resumes from the newest checkpoint.
    result = train(tiny(tmp_path, "steps=30"), progress=False)
    assert result.resumed_from == 20 and result.step == 30


def test_resume_may_change_the_schedule_length_and_bookkeeping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny(tmp_path), progress=False)
    with caplog.at_level(logging.INFO, logger="trainers.run_dir"):
        result = train(tiny(tmp_path, "steps=40", "log_every=5", "checkpoint.every=20"))
    assert result.resumed_from == 20 and result.step == 40
    assert "resuming with a changed steps: 20 -> 40" in caplog.text
    assert read_yaml(tmp_path / "config.yaml")["steps"] == 40


def test_a_second_trainer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from trainers.run_dir import RunLock; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"in use by process {holder.pid} on "):
            train(tiny(tmp_path), progress=False)
        assert not (tmp_path / "checkpoints").exists()  # refused before anything was written
        # The lock survives a SIGKILL of its holder as a stale file, which is taken over.
        holder.kill()
        holder.wait()
    finally:
        holder.kill()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    result = train(tiny(tmp_path), progress=False)
    assert result.step == 20
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released at the end


def test_stale_lock_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        pass
    assert "taking over the lock of process 999999 on elsewhere" in caplog.text


def test_torn_last_metrics_line_is_dropped_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(tiny(tmp_path, "steps=30"), progress=False)
    straight = losses(tmp_path)
    cut = tmp_path.parent / "cut"
    train(tiny(cut, "steps=30"), progress=False, stop_at=20)
    with (cut / "metrics.jsonl").open("a") as f:
        f.write('{"step": 21, "loss": 0.12')  # a crash in the middle of a write
    with caplog.at_level(logging.WARNING):
        train(tiny(cut, "steps=30"), progress=False)
    assert "partial record" in caplog.text
    assert losses(cut) == straight  # the resumed log is the uninterrupted one


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "lcm.cli", "train", str(CONFIG), f"run_dir={tmp_path}"]
    cmd += ["steps=100000", "log_every=1", "checkpoint.every=100000", "--no-progress"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, cwd=REPO)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never logged"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("lcm train:")]
    assert len(line) == 1 and "interrupted; saved a checkpoint at step" in line[0], err
    step = int(line[0].split("at step ")[1].split()[0])
    assert (tmp_path / "checkpoints" / str(step)).is_dir()
    # Resuming continues the very same run (the data order and keys depend on the step).
    cfg = load_train_config(tmp_path / "config.yaml", [f"steps={step + 5}"])
    result = train(cfg, progress=False)
    assert result.resumed_from == step and result.step == step + 5


# ------------------------------------------------------- bad input: one clear line, never a
# silent wrong result


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``lcm ARGS`` in this process: (exit status, stderr)."""
    from lcm.cli import main

    try:
        code = main(args)
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


PAIRS = str(REPO / "tests" / "fixtures" / "pairs_small.jsonl.gz")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval-task", "--task", "summarize", "--data", PAIRS, "--limit", "0"], "--limit"),
        (["eval-task", "--task", "expand", "--data", PAIRS, "--systems", "lead-0"], "lead-0"),
        (["eval-task", "--task", "expand", "--data", PAIRS, "--systems", "lead"], "'lead'"),
        (["summarize", "-", "--max-sentences", "0"], "--max-sentences"),
        (["train", str(CONFIG), "--time-limit", "-1"], "--time-limit"),
        (["train", str(CONFIG), "--time-limit", "nan"], "--time-limit"),
        (["eval-codec", "default", "--noise", "nan"], "--noise"),
        (["eval-codec", "default", "--per-source", "0"], "--per-source"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_decode_of_no_vectors_is_an_empty_list() -> None:
    from codec_fixtures import overfitted_codec

    codec = overfitted_codec()
    empty = np.zeros((0, codec.dim), np.float32)
    assert codec.decode(empty) == [] and codec.decode(empty, beam_size=2) == []


@pytest.fixture(scope="module")
def random_pipeline(tmp_path_factory: pytest.TempPathFactory):
    """A pipeline of the tiny codec and a random Base-LCM directory in its space."""
    from codec_fixtures import overfitted_codec
    from flax import nnx

    from lcm.data.normalizer import Normalizer
    from lcm.models.base_lcm import BaseLCM, BaseLCMConfig
    from lcm.models.config import TransformerConfig
    from lcm.models.directory import LCMDirConfig, load_lcm, save_lcm
    from lcm.pipeline import Pipeline

    codec, path = overfitted_codec(), tmp_path_factory.mktemp("random_lcm")
    cfg = BaseLCMConfig(d_model=16, decoder=TransformerConfig(num_layers=1, num_heads=2))
    dim = codec.dim
    markers = {"summarize": "[SUMMARY]:", "expand": "[EXPAND]:"}
    config = LCMDirConfig("base_lcm", dim, 16, to_dict(cfg), markers)
    norm = Normalizer(np.zeros(dim, np.float32), np.ones(dim, np.float32))
    eot = np.ones(dim, np.float32)
    save_lcm(path, BaseLCM(cfg, dim, nnx.Rngs(0)), config, norm, eot, "# random\n")
    return Pipeline(codec, load_lcm(path))


@pytest.mark.parametrize("bad", [1.5, "3", 0, -2, True, None])
def test_pipeline_rejects_a_bad_max_sentences(bad: object, random_pipeline) -> None:
    text = ["A package of tools for the command line."]
    for call in (random_pipeline.summarize_many, random_pipeline.expand_many):
        with pytest.raises(ValueError, match=r"max_sentences must be a whole number >= 1"):
            call(text, bad)
    with pytest.raises(ValueError, match=r"max_sentences must be a whole number >= 1"):
        random_pipeline.generate(text, bad)
    assert len(random_pipeline.summarize_many(text, 2)) == 1  # a good value works


def prepared_copy(tmp_path: Path) -> Path:
    from codec_fixtures import prepared_data

    out = tmp_path / "data"
    shutil.copytree(prepared_data(), out)
    return out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), "not a codec data manifest"),
        (lambda d: (d / "manifest.json").write_text('{"sources": 3}'), "must be a list"),
        (
            lambda d: np.save(
                d / "test.source.npy",
                np.full(len((d / "test.txt").read_text().splitlines()), 99, np.int64),
            ),
            "out of range",
        ),  # fmt: skip
        (
            lambda d: (d / "test.txt").write_text(
                "\n" + "\n".join((d / "test.txt").read_text().splitlines()[1:]) + "\n"
            ),
            "blank line",
        ),
    ],
)
def test_eval_codec_names_a_malformed_data_dir(
    tmp_path: Path, damage, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = prepared_copy(tmp_path)
    damage(data)
    code, err = run_cli(["eval-codec", "default", "--data", str(data)], capsys)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len([x for x in err.splitlines() if x.startswith("lcm eval-codec:")]) == 1


def test_eval_codec_with_nothing_selected_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = prepared_copy(tmp_path)
    (data / "test.txt").write_text(
        "".join("word " * 40 + "\n" for _ in (data / "test.txt").read_text().splitlines())
    )
    code, err = run_cli(["eval-codec", "default", "--data", str(data), "--max-words", "5"], capsys)
    assert code == 2 and "no sentence of at most 5 words" in err, err


def test_text_readers_refuse_binary_and_undecodable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "zeros.txt").write_bytes(b"\x00" * 3000)
    code, err = run_cli(["data", "shards", str(tmp_path / "zeros.txt"), "--out",
                         str(tmp_path / "out")], capsys)  # fmt: skip
    assert code != 0 and "no documents written" in err, err
    (tmp_path / "bad.txt").write_bytes(b"Hello there. \xff\xfe more.\n")
    code, err = run_cli(["data", "segment", str(tmp_path / "bad.txt")], capsys)
    assert code == 1 and "no document read" in err and "bad_utf8=1" in err, err


def test_a_config_recorded_before_a_new_key_existed_still_resumes(tmp_path: Path) -> None:
    """Keys added to the schema since a run started compare as their defaults."""
    import yaml

    from lcm.config import save_yaml
    from trainers.run_dir import check_resume

    cfg = tiny(tmp_path)
    save_yaml(cfg, tmp_path / "config.yaml")
    raw = read_yaml(tmp_path / "config.yaml")
    del raw["grad_accum"], raw["optim"]["cooldown_steps"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert check_resume(tmp_path / "config.yaml", cfg) == []
    raw["optim"]["lr"] = 0.5
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"optim.lr: 0.5 -> 0.003"):
        check_resume(tmp_path / "config.yaml", cfg)


# ------------------------------------------------------------------ datasets in one space


@pytest.fixture(scope="module")
def text_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from codec_fixtures import MEMORIZED

    from lcm.data.shards import ShardWriter

    root = tmp_path_factory.mktemp("space") / "text"
    with ShardWriter(root, docs_per_shard=4) as writer:
        for i in range(12):
            writer.write(f"doc-{i}", [MEMORIZED[(i + j) % len(MEMORIZED)] for j in range(3)])
    return root


def other_codec():
    """The tiny codec's architecture and tokenizer with other weights: another space."""
    from codec_fixtures import overfitted_codec
    from flax import nnx

    from encoders.codec import Codec
    from encoders.model import CodecModel

    codec = overfitted_codec()
    return Codec(CodecModel(codec.config, nnx.Rngs(7)), codec.tokenizer, batch_size=8)


def test_embed_resume_in_another_space_is_refused(tmp_path: Path, text_shards: Path) -> None:
    from codec_fixtures import overfitted_codec

    from lcm.data.embed import embed_shards, read_space
    from lcm.text.readers import DataError

    codec = overfitted_codec()
    out = tmp_path / "concepts"
    embed_shards(text_shards, out, codec, docs_per_shard=4, progress=False)
    assert read_space(out) == {"codec": codec.fingerprint, "precision": "float32"}
    assert json.loads((out / "manifest.json").read_text())["space"] == read_space(out)
    (out / "manifest.json").unlink()  # as if interrupted after its shards
    before = snapshot(out)
    with pytest.raises(DataError, match=r"codec 'sha256:\w+' -> 'sha256:\w+'"):
        embed_shards(text_shards, out, other_codec(), docs_per_shard=4, resume=True)
    codec.encode_precision = "bfloat16"
    try:
        with pytest.raises(DataError, match=r"precision 'float32' -> 'bfloat16'"):
            embed_shards(text_shards, out, codec, docs_per_shard=4, resume=True)
    finally:
        codec.encode_precision = "float32"
    assert snapshot(out) == before  # nothing was touched
    result = embed_shards(text_shards, out, codec, docs_per_shard=4, resume=True)
    assert result["documents"] == 12


def test_training_refuses_a_normalizer_or_eot_of_another_space(
    tmp_path: Path, text_shards: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codec_fixtures import overfitted_codec

    from lcm.data.concepts import ConceptDataConfig, load_concepts
    from lcm.data.embed import embed_shards
    from lcm.text.readers import DataError

    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    embed_shards(text_shards, mine, overfitted_codec(), docs_per_shard=4, progress=False)
    embed_shards(text_shards, theirs, other_codec(), docs_per_shard=4, progress=False)
    for d in (mine, theirs):
        assert (
            run_cli(["data", "fit-normalizer", str(d), "--out", str(d / "norm.npz")], capsys)[0]
            == 0
        )

    def cfg(**kw: str) -> ConceptDataConfig:
        base = dict(source="shards", shards=str(mine), normalizer=str(mine / "norm.npz"))
        return ConceptDataConfig(**{**base, **kw})

    assert load_concepts(cfg()).num_docs > 0
    with pytest.raises(DataError, match="fitted on vectors of codec"):
        load_concepts(cfg(normalizer=str(theirs / "norm.npz")))
    with pytest.raises(DataError, match="is not the end-of-text concept of"):
        load_concepts(cfg(eot=str(theirs / "eot.npy")))
    assert load_concepts(cfg(eot=str(mine / "eot.npy"))).num_docs > 0


def test_a_failing_overwrite_keeps_the_old_dataset(
    tmp_path: Path, text_shards: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codec_fixtures import overfitted_codec

    from lcm.data.embed import embed_shards
    from lcm.data.shards import ShardWriter

    good = tmp_path / "good.txt"
    good.write_text("One sentence here. Another one follows.\n")
    out = tmp_path / "shards"
    assert (
        run_cli(["data", "shards", str(good), "--out", str(out), "--no-progress"], capsys)[0] == 0
    )
    before = snapshot(out)
    (tmp_path / "empty.txt").write_text("")
    args = ["data", "shards", str(tmp_path / "empty.txt"), "--out", str(out), "--overwrite"]
    code, err = run_cli([*args, "--no-progress"], capsys)
    assert code == 1 and "no documents written" in err
    assert snapshot(out) == before
    # The same for embedding: an input that breaks half-way leaves the old concepts.
    concepts = tmp_path / "concepts"
    embed_shards(text_shards, concepts, overfitted_codec(), docs_per_shard=4, progress=False)
    before = snapshot(concepts)
    broken = tmp_path / "broken"
    with ShardWriter(broken) as writer:
        writer.write("doc-0", ["Fine.", "Also fine."])
    (broken / "shard-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="shard-00000"):
        embed_shards(broken, concepts, overfitted_codec(), overwrite=True, progress=False)
    assert snapshot(concepts) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


# -------------------------------------------- tracebacks where one line is due (lcm --debug
# still shows them)


def one_error_line(err: str, command: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith(f"lcm {command}:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_directory_where_a_file_is_due(tmp_path: Path, capsys) -> None:
    code, err = run_cli(["summarize", str(tmp_path)], capsys)
    assert code == 1 and str(tmp_path) in one_error_line(err, "summarize")
    vectors = tmp_path / "v.npy"
    np.save(vectors, np.zeros((1, 8), np.float32))
    code, err = run_cli(["decode", str(vectors), "-o", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err and "Traceback" not in err


def test_bad_utf8_in_lcm_encode_names_the_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ab\xffcd.\n")
    code, err = run_cli(["encode", str(bad), "-o", str(tmp_path / "v.npy")], capsys)
    assert code == 2 and f"{bad} is not UTF-8 text (byte 2)" in one_error_line(err, "encode")


@pytest.mark.parametrize("damaged", ["eot.npy", "normalizer.npz", "tokenizer.model"])
def test_a_damaged_model_file_is_named(tmp_path: Path, damaged: str, capsys) -> None:
    model, codec = tmp_path / "lcm", tmp_path / "codec"
    shutil.copytree(REPO / "lcm" / "default", model)
    shutil.copytree(REPO / "encoders" / "default", codec)
    target = (codec if damaged == "tokenizer.model" else model) / damaged
    target.write_bytes(target.read_bytes()[:100])
    doc = tmp_path / "doc.txt"
    doc.write_text("A tool for the command line. It reads files.\n")
    args = ["summarize", str(doc), "--model", str(model), "--codec", str(codec)]
    code, err = run_cli(args, capsys)
    assert code == 1 and str(target) in one_error_line(err, "summarize")


@pytest.mark.parametrize(
    ("override", "message"),
    [("mesh.data=3", "needs 3 devices"), ("optim.frozen=[nothere]", "match no parameter")],
)
def test_training_setup_errors_are_one_line(
    tmp_path: Path, override: str, message: str, capsys
) -> None:
    code, err = run_cli(["train", str(CONFIG), f"run_dir={tmp_path}", override], capsys)
    assert code != 0 and message in one_error_line(err, "train")
    with pytest.raises(ValueError, match=message):  # --debug: the exception itself
        from lcm.cli import main

        main(["--debug", "train", str(CONFIG), f"run_dir={tmp_path / 'debug'}", override])


# ------------------------------------------------------------ preemption and a full disk


def cli_train(run_dir: Path, *extra: str, env: dict[str, str] | None = None):
    cmd = [sys.executable, "-m", "lcm.cli", "train", str(CONFIG), f"run_dir={run_dir}"]
    cmd += ["steps=60", "log_every=1", "checkpoint.every=5", "--no-progress", *extra]
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_checkpoint_writes_resumes_exactly(tmp_path: Path) -> None:
    """Ten SIGKILLs, each while an asynchronous checkpoint write of another step is under
    way (0 to 100 ms after it starts); after each, the run resumes from its newest complete
    checkpoint, and in the end the loss sequence is the uninterrupted one, bit for bit."""
    from trainers.checkpoint import KILL_DURING_SAVE_ENV

    # A long run of a fast model, so that every kill lands while it is still training.
    schedule = ("steps=400", "checkpoint.every=20")
    straight = cli_train(tmp_path / "straight", *schedule)
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "killed"
    delays = [0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.001, 0.0005, 0.0]
    for step, delay in zip(range(40, 240, 20), delays):
        killed = cli_train(run, *schedule, env={KILL_DURING_SAVE_ENV: f"{step}:{delay}"})
        assert killed.returncode == -signal.SIGKILL, (step, delay, killed.stderr)
    done = cli_train(run, *schedule)
    assert done.returncode == 0, done.stderr
    a, b = losses(tmp_path / "straight"), losses(run)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 401)) and a == b
    left = [p.name for p in (run / "checkpoints").iterdir() if not p.name.isdigit()]
    assert not [n for n in left if "corrupt" in n]  # no interrupted write read as a checkpoint


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs (needs the privilege to mount, as root in this project's CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill ``disk`` but for about ``leave_bytes``; returns the filler file."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(free - leave_bytes, 0))
    return filler


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_keeps_the_checkpoint(small_disk: Path, capsys) -> None:
    run = small_disk / "run"
    assert cli_train(run, "steps=10").returncode == 0
    before = snapshot(run / "checkpoints" / "10")
    filler = fill(small_disk, leave_bytes=16 << 10)  # room for logs, not for a checkpoint
    full = cli_train(run, "steps=20")
    assert full.returncode == 1, full.stderr
    # One line of ours names it. (tensorstore's callbacks may still print "Event loop is
    # closed" tracebacks while the interpreter exits after such a failure.)
    # (Those may also interleave with it on a line.)
    ours = [x for x in full.stderr.splitlines() if "lcm train:" in x]
    assert len(ours) == 1 and "No space left on device" in ours[0], full.stderr
    assert snapshot(run / "checkpoints" / "10") == before  # the step-10 checkpoint is intact
    assert "15" not in [p.name for p in (run / "checkpoints").iterdir()]  # nothing half-made
    filler.unlink()
    resumed = cli_train(run, "steps=20")
    assert (
        resumed.returncode == 0 and "resumed" in resumed.stderr and "from step 10" in resumed.stderr
    )
    # Shards: a full disk is one line, and no partial shard is published.
    text = small_disk / "doc.txt"
    text.write_text("A sentence. " * 2000)
    filler = fill(small_disk, leave_bytes=4 << 10)
    code, err = run_cli(["data", "shards", str(text), "--out", str(small_disk / "sh")], capsys)
    assert code == 1 and "No space left on device" in err, err
    # No temporary file is left and no manifest claims a complete dataset; a shard published
    # before the disk filled up is whole (it was renamed into place only when complete).
    from lcm.data.shards import read_shards

    assert (
        not list((small_disk / "sh").glob(".*"))
        and not (small_disk / "sh" / "manifest.json").exists()
    )
    for shard in (small_disk / "sh").glob("*.parquet"):
        assert all(row["sentences"] for row in read_shards(shard))


def test_a_checkpoint_that_does_not_fit_the_model_is_not_called_corrupt(tmp_path: Path) -> None:
    """The same config but a model whose code changed (simulated by editing the recorded
    config too): the restore fails on shapes, and the checkpoints are left where they are."""
    from trainers.checkpoint import CheckpointError

    train(tiny(tmp_path), progress=False)
    recorded = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(recorded.replace("hidden: 64", "hidden: 32"))
    before = snapshot(tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match="does not fit this model .*Nothing was moved"):
        train(tiny(tmp_path, "model.hidden=32"), progress=False)
    assert snapshot(tmp_path / "checkpoints") == before
    (tmp_path / "config.yaml").write_text(recorded)
    assert train(tiny(tmp_path, "steps=30"), progress=False).resumed_from == 20


def test_no_resume_starts_afresh_and_keeps_the_previous_run(tmp_path: Path) -> None:
    train(tiny(tmp_path), progress=False)
    first = snapshot(tmp_path)
    result = train(tiny(tmp_path, "seed=3"), resume=False, progress=False)
    assert result.resumed_from is None and result.step == 20
    (previous,) = tmp_path.glob("previous-*")
    assert snapshot(previous) == first  # every file of the previous run, unchanged
    assert read_yaml(tmp_path / "config.yaml")["seed"] == 3


def test_a_beam_too_wide_for_memory_is_refused_up_front(tmp_path: Path, capsys) -> None:
    from codec_fixtures import overfitted_codec

    codec = overfitted_codec()
    with pytest.raises(ValueError, match=r"beam_size 200000 needs [\d.]+ GiB of KV cache"):
        codec.decode(codec.encode(["The cat sat on the mat."]), beam_size=200_000)
    vectors = tmp_path / "v.npy"
    np.save(vectors, np.zeros((1, 256), np.float32))
    code, err = run_cli(["decode", str(vectors), "--beam-size", "100000"], capsys)
    assert code == 2 and "GiB of KV cache" in one_error_line(err, "decode")
