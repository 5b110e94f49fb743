"""Reference outputs of the real SONAR (sonar-space + fairseq2) for the parity tests.

Run with the Python of a venv that has ``sonar-space`` and ``fairseq2`` (see docs/sonar.md,
"Parity tests"; ``tools/setup_sonar_venv.sh`` builds one). fairseq2's native library
``fairseq2n`` is not needed: a stand-in package that only says ``DOC_MODE = True`` is put
first on ``sys.path``, which lets ``import fairseq2, sonar`` work in pure Python (models and
generation are plain torch; only the data pipeline and the SentencePiece bindings are
native, and neither is used here).

It builds SONAR text models with random weights exactly as SONAR's model hubs do
(``get_sonar_text_encoder_hub().create_new_model``), saves their state dicts as checkpoints
(fairseq2 format, and the legacy fairseq format SONAR's converters accept), and records
what the models compute on the given inputs::

    python tools/sonar_reference.py OUT_DIR --encoder-arch small --decoder-arch toy \\
        --inputs inputs.npz

``inputs.npz`` holds ``enc_tokens`` [N, L] int (rows ``__lang__ ... </s>``, right-padded
with 0), ``enc_lens`` [N], ``dec_vectors`` [M, d] float32, ``lang`` and ``max_len``
(scalars). OUT_DIR gets ``encoder.pt``, ``encoder_legacy.pt``, ``decoder.pt``,
``decoder_legacy.pt`` (no legacy files with ``--no-legacy``; arch ``none`` skips a model),
``reference.npz`` (``embeddings`` [N, D]; ``positions``, the encoder's sinusoid table;
``beam1``, ``beam2``, ... [M, max_len] generated ids, EOS then 0) and ``info.json``.
``--check`` only tests that the imports work.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

STANDIN = '''"""Stand-in for fairseq2n (fairseq2's native library): documentation mode only."""
DOC_MODE = True
__version__ = "0.0.0+standin"
'''

# (model_dim, layers, heads, ffn, vocab) of the "toy" encoder, which SONAR does not register
# (the decoder toy's sizes); lcm-jax's ENCODER_ARCHS["toy"] has the same.
TOY_ENCODER = (32, 2, 4, 128, 1024)
# fairseq's dictionary rows of fairseq2's ids 0..3 (inverse of SONAR's [1, 3, 0, 2] reorder).
LEGACY_ROWS = (2, 0, 3, 1)


def import_sonar():
    """Import fairseq2 and sonar with the fairseq2n stand-in; returns the modules used."""
    try:
        import fairseq2n  # noqa: F401
    except (ImportError, OSError):
        root = Path(tempfile.mkdtemp(prefix="fairseq2n_standin_"))
        (root / "fairseq2n").mkdir()
        (root / "fairseq2n" / "__init__.py").write_text(STANDIN)
        sys.path.insert(0, str(root))
        for name in [m for m in sys.modules if m.startswith("fairseq2n")]:
            del sys.modules[name]
    import fairseq2
    import sonar
    import torch
    from fairseq2 import init_fairseq2

    init_fairseq2()
    return fairseq2, sonar, torch


def build_encoder(arch: str, torch):
    from fairseq2.data.tokenizers import VocabularyInfo
    from sonar.models.sonar_text import get_sonar_text_encoder_hub

    hub = get_sonar_text_encoder_hub()
    if arch == "toy":
        cfg = hub.get_arch_config("basic")
        d, layers, heads, ffn, vocab = TOY_ENCODER
        cfg.model_dim, cfg.num_encoder_layers, cfg.num_encoder_attn_heads = d, layers, heads
        cfg.ffn_inner_dim = ffn
        cfg.vocab_info = VocabularyInfo(size=vocab, unk_idx=1, bos_idx=2, eos_idx=3, pad_idx=1)
    else:
        cfg = hub.get_arch_config(arch)
    model = hub.create_new_model(cfg, device=torch.device("cpu"), dtype=torch.float32)
    return model.eval()


def build_decoder(arch: str, torch):
    from sonar.models.sonar_text import get_sonar_text_decoder_hub

    hub = get_sonar_text_decoder_hub()
    model = hub.create_new_model(
        hub.get_arch_config(arch), device=torch.device("cpu"), dtype=torch.float32
    )
    return model.eval()


def legacy_encoder(sd: dict, torch) -> dict:
    """A fairseq (v1) style encoder state dict, under the full model's "encoder." prefix."""
    out = {"encoder.version": torch.tensor([3.0])}
    for key, value in sd.items():
        name = key.replace("encoder_frontend.embed.", "embed_tokens.")
        name = name.replace("encoder.layers.", "layers.")
        for new, old in (
            ("self_attn.output_proj.", "self_attn.out_proj."),
            ("ffn.inner_proj.", "fc1."),
            ("ffn.output_proj.", "fc2."),
            ("ffn_layer_norm.", "final_layer_norm."),
        ):
            name = name.replace(new, old)
        if name == "embed_tokens.weight":
            value = value.clone()
            value[:4] = sd[key][list(LEGACY_ROWS)]
        out[f"encoder.{name}"] = value
    out["encoder.embed_positions._float_tensor"] = torch.zeros(1)
    return out


def legacy_decoder(sd: dict, torch) -> dict:
    """A fairseq (v1) style decoder state dict (no prefix, as SONAR's converter reads it);
    the output projection shares the embedding's storage, as a tied fairseq model saves it."""
    out = {"version": torch.tensor([3.0])}
    embed = sd["decoder_frontend.embed.weight"].clone()
    embed[:4] = sd["decoder_frontend.embed.weight"][list(LEGACY_ROWS)]
    for key, value in sd.items():
        if key in ("decoder_frontend.embed.weight", "final_proj.weight"):
            continue
        name = key.replace("decoder.layers.", "layers.").replace(
            "decoder.layer_norm.", "layer_norm."
        )
        for new, old in (
            ("self_attn.output_proj.", "self_attn.out_proj."),
            ("encoder_decoder_attn.output_proj.", "encoder_attn.out_proj."),
            ("encoder_decoder_attn_layer_norm.", "encoder_attn_layer_norm."),
            ("encoder_decoder_attn.", "encoder_attn."),
            ("ffn.inner_proj.", "fc1."),
            ("ffn.output_proj.", "fc2."),
            ("ffn_layer_norm.", "final_layer_norm."),
        ):
            name = name.replace(new, old)
        out[name] = value
    out["embed_tokens.weight"] = embed
    out["output_projection.weight"] = embed
    out["embed_positions._float_tensor"] = torch.zeros(1)
    return out


def check_sonar_decoder_converter(legacy: dict, reference: dict, cfg) -> bool:
    """SONAR's own legacy converter maps ``legacy`` back to ``reference`` exactly."""
    from sonar.models.sonar_text import _convert_sonar_text_decoder_checkpoint

    converted = _convert_sonar_text_decoder_checkpoint(
        {"model": {"state_dict": copy.deepcopy(legacy)}}, cfg
    )
    return all(k in converted and bool((converted[k] == v).all()) for k, v in reference.items())


def generate(decoder, vectors, lang: int, max_len: int, beam_size: int, torch):
    """fairseq2's beam search as SONAR's EmbeddingToTextModelPipeline runs it, with the
    vocabulary info of the NLLB tokenizer; returns [M, max_len] ids (EOS, then 0)."""
    from fairseq2.data.tokenizers import VocabularyInfo
    from fairseq2.generation.beam_search.generator import BeamSearchSeq2SeqGenerator
    from fairseq2.nn import BatchLayout
    from sonar.models.sonar_translation import SonarEncoderDecoderModel
    from sonar.models.sonar_translation.model import DummyEncoderModel

    vocab = decoder.decoder_frontend.embed.weight.shape[0]
    info = VocabularyInfo(size=vocab, unk_idx=1, bos_idx=2, eos_idx=3, pad_idx=0)
    model = SonarEncoderDecoderModel(DummyEncoderModel(), decoder).eval()
    generator = BeamSearchSeq2SeqGenerator(
        model, info, beam_size=beam_size, max_seq_len=2 + max_len, max_gen_len=(0.0, max_len)
    )
    seqs = torch.from_numpy(vectors)
    prompt = torch.tensor([[3, lang]] * len(vectors), dtype=torch.int64)
    out = generator(seqs, BatchLayout.of(seqs), prompt, BatchLayout.of(prompt))
    rows = []
    for hypotheses in out.hypotheses:
        ids = hypotheses[0].seq.tolist()
        rows.append(ids + [0] * (max_len - len(ids)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", help="where to write checkpoints and outputs")
    parser.add_argument("--inputs", help="inputs.npz (see the module docstring)")
    parser.add_argument("--encoder-arch", default="small", help="basic, small or toy")
    parser.add_argument("--decoder-arch", default="toy", help="basic, small or toy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eos-boost",
        type=float,
        default=1.0,
        help="scale the decoder's EOS embedding row, so random decoders end sentences",
    )
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 3])
    parser.add_argument(
        "--no-legacy", action="store_true", help="do not write the legacy-format checkpoints"
    )
    parser.add_argument("--check", action="store_true", help="only check the imports")
    args = parser.parse_args(argv)

    fairseq2, sonar, torch = import_sonar()
    if args.check:
        print(
            f"fairseq2 {fairseq2.__version__}, sonar {sonar.__version__}, torch {torch.__version__}"
        )
        return 0
    if not args.out_dir or not args.inputs:
        parser.error("OUT_DIR and --inputs are required")
    import numpy as np

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = np.load(args.inputs)
    torch.manual_seed(args.seed)
    results: dict[str, np.ndarray] = {}
    info: dict[str, object] = {
        "fairseq2": fairseq2.__version__,
        "sonar": sonar.__version__,
        "torch": torch.__version__,
        "seed": args.seed,
    }

    from fairseq2.nn import BatchLayout

    with torch.inference_mode():
        if args.encoder_arch != "none":
            encoder = build_encoder(args.encoder_arch, torch)
            sd = dict(encoder.state_dict())
            torch.save({"model": sd}, out / "encoder.pt")
            if not args.no_legacy:
                torch.save({"state_dict": legacy_encoder(sd, torch)}, out / "encoder_legacy.pt")
            tokens = torch.from_numpy(inputs["enc_tokens"].astype(np.int64))
            lens = [int(n) for n in inputs["enc_lens"]]
            output = encoder(tokens, BatchLayout.of(tokens, lens))
            results["embeddings"] = output.sentence_embeddings.numpy()
            pos_encoder = encoder.encoder_frontend.pos_encoder
            results["positions"] = pos_encoder.freqs[1:].numpy()  # row 0 is the padding's
            info["encoder_max_seq_len"] = pos_encoder.max_seq_len
            info["encoder_sin_offset"] = pos_encoder.sin_offset
        if args.decoder_arch != "none":
            decoder = build_decoder(args.decoder_arch, torch)
            if args.eos_boost != 1.0:
                decoder.decoder_frontend.embed.weight[3] *= args.eos_boost
            sd = dict(decoder.state_dict())
            torch.save({"model": sd}, out / "decoder.pt")
            legacy = legacy_decoder(sd, torch)
            if not args.no_legacy:
                torch.save({"model": {"state_dict": legacy}}, out / "decoder_legacy.pt")
            from sonar.models.sonar_text import get_sonar_text_decoder_hub

            cfg = get_sonar_text_decoder_hub().get_arch_config(args.decoder_arch)
            info["sonar_legacy_decoder_converter_agrees"] = check_sonar_decoder_converter(
                legacy, sd, cfg
            )
            vectors = inputs["dec_vectors"].astype(np.float32)
            lang, max_len = int(inputs["lang"]), int(inputs["max_len"])
            for k in args.beam_sizes:
                rows = generate(decoder, vectors, lang, max_len, k, torch)
                results[f"beam{k}"] = np.asarray(rows, np.int64)
    np.savez(out / "reference.npz", **results)
    (out / "info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
