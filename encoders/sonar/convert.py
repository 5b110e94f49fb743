"""``lcm convert-sonar``: SONAR text checkpoints (fairseq2 or fairseq) -> a model directory.

The directory is what ``encoders.load`` opens (a :class:`~encoders.sonar.SonarCodec`):
``config.yaml`` (:class:`~encoders.sonar.SonarCodecConfig`), ``weights.npz`` (flat float32
arrays named after the Flax modules), ``tokenizer.model`` (the NLLB SentencePiece model with
fairseq2's language tags and PAD, see :class:`~encoders.sonar.SonarTokenizer`) and
``card.md`` (sources and their SHA-256).

Checkpoints are read the way SONAR's own state-dict converters read them
(``sonar/models/sonar_text/checkpoint.py``):

* The state dict may be wrapped as ``{"model": ...}`` (fairseq2's checkpoints, such as
  ``sonar_text_encoder.pt``) or ``{"model": {"state_dict": ...}}`` / ``{"state_dict": ...}``
  (older fairseq ones).
* fairseq2 names (``encoder_frontend.embed.weight``, ``encoder.layers.0.self_attn.q_proj``,
  ``decoder_frontend.embed.weight``, ``final_proj.weight``, ...) are used as they are.
* Legacy fairseq names (``embed_tokens``, ``layers.N.self_attn.out_proj``, ``fc1``/``fc2``,
  ``final_layer_norm``, ``encoder_attn``, ``output_projection``, optionally under an
  ``encoder.``/``decoder.`` prefix) are mapped to those, ``version`` and
  ``embed_positions._float_tensor`` entries dropped, and the first four embedding rows
  reordered from fairseq's dictionary (``<s> <pad> </s> <unk>``) to fairseq2's NLLB tokenizer
  (``<pad> <unk> <s> </s>``): new rows ``[0, 1, 2, 3]`` are old rows ``[1, 3, 0, 2]``.

Every expected tensor is checked (missing keys and wrong shapes are named); the decoder's
output projection must equal its embedding (SONAR ties them). torch is needed here only, to
read ``.pt`` files (``pip install 'lcm-jax[sonar]'``); it is loaded with
``weights_only=True`` unless ``--trust-checkpoint`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from flax import nnx

from encoders.codec import CARD_FILE, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from encoders.sonar.codec import SonarTokenizer
from encoders.sonar.model import (
    DECODER_ARCHS,
    DEFAULT_LANG,
    ENCODER_ARCHS,
    SONAR_LANGS,
    SonarCodecConfig,
    SonarModel,
    SonarTransformerConfig,
)
from lcm.config import save_yaml
from lcm.io import atomic_write, write_bytes_atomic
from lcm.nn.weights import variable_name

Kind = Literal["encoder", "decoder"]

# New embedding rows 0..3 (fairseq2 NLLB: <pad> <unk> <s> </s>) from fairseq's dictionary rows
# (<s>=0 <pad>=1 </s>=2 <unk>=3): SONAR's converters do embeds[[0, 1, 2, 3]] = embeds[[1, 3, 0, 2]].
LEGACY_ROW_ORDER = (1, 3, 0, 2)

# Legacy fairseq -> fairseq2 names (sonar/models/sonar_text/checkpoint.py), for keys without
# an "encoder."/"decoder." prefix. Within "layers.N.": the first matching prefix is renamed;
# names fairseq2 shares with fairseq (self_attn.q_proj, self_attn_layer_norm, ...) stay.
_LAYER_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "encoder": (
        ("self_attn.out_proj.", "self_attn.output_proj."),
        ("fc1.", "ffn.inner_proj."),
        ("fc2.", "ffn.output_proj."),
        ("final_layer_norm.", "ffn_layer_norm."),
    ),
    "decoder": (
        ("self_attn.out_proj.", "self_attn.output_proj."),
        ("encoder_attn.out_proj.", "encoder_decoder_attn.output_proj."),
        ("encoder_attn.", "encoder_decoder_attn."),
        ("encoder_attn_layer_norm.", "encoder_decoder_attn_layer_norm."),
        ("fc1.", "ffn.inner_proj."),
        ("fc2.", "ffn.output_proj."),
        ("final_layer_norm.", "ffn_layer_norm."),
    ),
}
_TOP_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "encoder": (("embed_tokens.", "encoder_frontend.embed."), ("layer_norm.", "layer_norm.")),
    "decoder": (
        ("embed_tokens.", "decoder_frontend.embed."),
        ("output_projection.", "final_proj."),
        ("layer_norm.", "decoder.layer_norm."),
    ),
}
# Entries that hold no weights: fairseq's bookkeeping and fairseq2's sinusoid table.
_IGNORED = re.compile(r"(^|\.)(version|embed_positions\._float_tensor|pos_encoder\.freqs)$")


class ConversionError(ValueError):
    """A checkpoint or tokenizer that cannot be converted (the message says why)."""


def unwrap_state_dict(obj: Any, *, source: str = "checkpoint") -> dict[str, Any]:
    """The flat ``{name: tensor}`` state dict inside a loaded checkpoint.

    Accepts a bare state dict, ``{"model": sd}``, ``{"model": {"state_dict": sd}}`` and
    ``{"state_dict": sd}``.

    Raises:
        ConversionError: If no such mapping of names to arrays is found.
    """
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{source}: holds a {type(obj).__name__}, not a state dict")
    if "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    arrays = {k: v for k, v in obj.items() if hasattr(v, "shape")}
    if not arrays:
        keys = ", ".join(map(repr, list(obj)[:8]))
        raise ConversionError(f"{source}: no tensors found (top-level keys: {keys})")
    return arrays


def detect_kind(state_dict: Mapping[str, Any], *, source: str = "checkpoint") -> Kind:
    """Whether a state dict is a SONAR text encoder or decoder (fairseq2 or fairseq names).

    Raises:
        ConversionError: If it looks like neither.
    """
    keys = set(state_dict)
    if "encoder_frontend.embed.weight" in keys:
        return "encoder"
    if "decoder_frontend.embed.weight" in keys:
        return "decoder"
    stripped = {re.sub(r"^(encoder|decoder)\.", "", k) for k in keys}
    if "embed_tokens.weight" in stripped:
        cross = any(".encoder_attn." in k for k in stripped)
        return "decoder" if cross or "output_projection.weight" in stripped else "encoder"
    shown = ", ".join(sorted(keys)[:6])
    raise ConversionError(
        f"{source}: not a SONAR text encoder or decoder state dict (no "
        f"encoder_frontend.embed.weight, decoder_frontend.embed.weight or embed_tokens.weight; "
        f"keys start: {shown})"
    )


def to_fairseq2_names(state_dict: Mapping[str, Any], kind: Kind) -> dict[str, np.ndarray]:
    """float32 numpy arrays under fairseq2's names; non-weight entries dropped.

    A legacy fairseq state dict (no ``{kind}_frontend.embed.weight``) is renamed and its
    embedding rows (and the tied output projection's) reordered to the NLLB tokenizer's ids.
    """
    embed_key = f"{kind}_frontend.embed.weight"
    legacy = embed_key not in state_dict
    out: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        name = re.sub(r"^(encoder|decoder)\.", "", key) if legacy else key
        if _IGNORED.search(name):
            continue
        if legacy:
            name = _legacy_name(name, kind)
        out[name] = _to_numpy(value)
    if legacy:
        rows = list(LEGACY_ROW_ORDER)
        for name in (embed_key, "final_proj.weight"):
            if name in out and out[name].shape[0] >= len(rows):
                table = out[name].copy()
                table[: len(rows)] = out[name][rows]
                out[name] = table
    return out


def _legacy_name(name: str, kind: Kind) -> str:
    """fairseq2's name of a legacy fairseq key (unknown keys come back unchanged, and the
    state-dict check reports them)."""
    if m := re.match(r"layers\.(\d+)\.(.*)$", name):
        index, rest = m.groups()
        for old, new in _LAYER_RENAMES[kind]:
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
        return f"{kind}.layers.{index}.{rest}"
    for old, new in _TOP_RENAMES[kind]:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (bfloat16 has no numpy dtype)
        import torch

        value = value.detach().to(device="cpu", dtype=torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)


def expected_shapes(kind: Kind, cfg: SonarTransformerConfig) -> dict[str, tuple[int, ...]]:
    """Every fairseq2 state-dict entry of a SONAR text encoder/decoder and its shape."""
    d, f = cfg.model_dim, cfg.ffn_inner_dim
    shapes: dict[str, tuple[int, ...]] = {f"{kind}_frontend.embed.weight": (cfg.vocab_size, d)}

    def norm(name: str) -> None:
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (d,)

    def attention(name: str) -> None:
        for proj in ("q_proj", "k_proj", "v_proj", "output_proj"):
            shapes[f"{name}.{proj}.weight"] = (d, d)
            shapes[f"{name}.{proj}.bias"] = (d,)

    for i in range(cfg.num_layers):
        p = f"{kind}.layers.{i}"
        norm(f"{p}.self_attn_layer_norm")
        attention(f"{p}.self_attn")
        if kind == "decoder":
            norm(f"{p}.encoder_decoder_attn_layer_norm")
            attention(f"{p}.encoder_decoder_attn")
        norm(f"{p}.ffn_layer_norm")
        shapes[f"{p}.ffn.inner_proj.weight"] = (f, d)
        shapes[f"{p}.ffn.inner_proj.bias"] = (f,)
        shapes[f"{p}.ffn.output_proj.weight"] = (d, f)
        shapes[f"{p}.ffn.output_proj.bias"] = (d,)
    norm("layer_norm" if kind == "encoder" else "decoder.layer_norm")
    return shapes


def observed_shape(sd: Mapping[str, np.ndarray], kind: Kind) -> tuple[int, int, int, int]:
    """(model_dim, vocab_size, num_layers, ffn_inner_dim) of a fairseq2-named state dict."""
    vocab, d = sd[f"{kind}_frontend.embed.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := re.match(rf"{kind}\.layers\.(\d+)\.", k))}
    ffn = sd.get(f"{kind}.layers.0.ffn.inner_proj.weight")
    return d, vocab, len(layers), -1 if ffn is None else ffn.shape[0]


def choose_arch(
    sd: Mapping[str, np.ndarray], kind: Kind, arch: str = "auto", *, source: str = "checkpoint"
) -> SonarTransformerConfig:
    """The SONAR arch of a state dict: ``arch`` by name, or the one its shapes match.

    Raises:
        ConversionError: For an unknown arch name, or no arch matching the shapes.
    """
    archs = ENCODER_ARCHS if kind == "encoder" else DECODER_ARCHS
    if arch != "auto":
        if arch not in archs:
            raise ConversionError(
                f"unknown {kind} arch {arch!r}; known: {', '.join(archs)} (or 'auto')"
            )
        return archs[arch]
    d, vocab, layers, ffn = observed_shape(sd, kind)
    for cfg in archs.values():
        if (cfg.model_dim, cfg.vocab_size, cfg.num_layers, cfg.ffn_inner_dim) == (
            d,
            vocab,
            layers,
            ffn,
        ):
            return cfg
    known = "; ".join(
        f"{n}: d {c.model_dim}, vocab {c.vocab_size}, {c.num_layers} layers, FFN {c.ffn_inner_dim}"
        for n, c in archs.items()
    )
    raise ConversionError(
        f"{source}: a {kind} with d {d}, vocab {vocab}, {layers} layers, FFN {ffn} matches no "
        f"SONAR {kind} arch ({known})"
    )


def check_state_dict(
    sd: Mapping[str, np.ndarray],
    kind: Kind,
    cfg: SonarTransformerConfig,
    *,
    source: str = "checkpoint",
) -> None:
    """Check a fairseq2-named state dict against the arch, naming what is wrong.

    Raises:
        ConversionError: For missing or unexpected entries, wrong shapes, non-finite values,
            or an output projection that is not the embedding.
    """
    shapes = expected_shapes(kind, cfg)
    missing = [k for k in shapes if k not in sd]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ConversionError(
            f"{source}: {len(missing)} {kind} tensor(s) missing for arch {cfg.arch!r}: {shown}"
        )
    allowed = set(shapes) | ({"final_proj.weight"} if kind == "decoder" else set())
    unexpected = sorted(set(sd) - allowed)
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (", ..." if len(unexpected) > 5 else "")
        raise ConversionError(
            f"{source}: {len(unexpected)} unexpected tensor(s) for a SONAR {kind} of arch "
            f"{cfg.arch!r}: {shown}"
        )
    for key, shape in shapes.items():
        if tuple(sd[key].shape) != shape:
            raise ConversionError(
                f"{source}: {key} has shape {tuple(sd[key].shape)}, arch {cfg.arch!r} needs {shape}"
            )
        if not np.all(np.isfinite(sd[key])):
            raise ConversionError(f"{source}: {key} holds NaN or infinite values")
    if "final_proj.weight" in sd:
        embed = sd["decoder_frontend.embed.weight"]
        if sd["final_proj.weight"].shape != embed.shape or not np.array_equal(
            sd["final_proj.weight"], embed
        ):
            raise ConversionError(
                f"{source}: final_proj.weight differs from decoder_frontend.embed.weight; "
                "SONAR's decoder ties its output projection to the embedding"
            )


def to_flax_weights(
    sd: Mapping[str, np.ndarray], kind: Kind, cfg: SonarTransformerConfig
) -> dict[str, np.ndarray]:
    """Our flat weights (``"encoder/layers/0/self_attn/q_proj/kernel"`` -> array) of a checked
    fairseq2-named state dict: linear weights transposed to ``[in, out]`` kernels, layer
    norm weights as ``scale``; the unused parts of the memory attention left out."""
    out: dict[str, np.ndarray] = {f"{kind}/embed/embedding": sd[f"{kind}_frontend.embed.weight"]}

    def linear(src: str, dst: str) -> None:
        out[f"{dst}/kernel"] = np.ascontiguousarray(sd[f"{src}.weight"].T)
        out[f"{dst}/bias"] = sd[f"{src}.bias"]

    def norm(src: str, dst: str) -> None:
        out[f"{dst}/scale"] = sd[f"{src}.weight"]
        out[f"{dst}/bias"] = sd[f"{src}.bias"]

    for i in range(cfg.num_layers):
        src, dst = f"{kind}.layers.{i}", f"{kind}/layers/{i}"
        norm(f"{src}.self_attn_layer_norm", f"{dst}/self_attn_layer_norm")
        for proj in ("q_proj", "k_proj", "v_proj", "output_proj"):
            linear(f"{src}.self_attn.{proj}", f"{dst}/self_attn/{proj}")
        if kind == "decoder":
            for proj in ("v_proj", "output_proj"):
                linear(f"{src}.encoder_decoder_attn.{proj}", f"{dst}/encoder_decoder_attn/{proj}")
        norm(f"{src}.ffn_layer_norm", f"{dst}/ffn_layer_norm")
        linear(f"{src}.ffn.inner_proj", f"{dst}/ffn/inner_proj")
        linear(f"{src}.ffn.output_proj", f"{dst}/ffn/output_proj")
    final = "layer_norm" if kind == "encoder" else "decoder.layer_norm"
    norm(final, f"{kind}/layer_norm")
    return out


def convert_state_dict(
    obj: Any, *, arch: str = "auto", kind: Kind | None = None, source: str = "checkpoint"
) -> tuple[Kind, SonarTransformerConfig, dict[str, np.ndarray]]:
    """A loaded SONAR checkpoint -> (kind, arch config, our flat weights).

    Args:
        obj: What ``torch.load`` returned (or any mapping of names to arrays).
        arch: Arch name, or "auto" to pick it from the shapes.
        kind: "encoder" or "decoder", or None to detect it.
        source: Name for error messages.

    Raises:
        ConversionError: Naming what does not fit.
    """
    raw = unwrap_state_dict(obj, source=source)
    found = detect_kind(raw, source=source)
    if kind is not None and kind != found:
        raise ConversionError(f"{source}: expected a SONAR {kind}, found a {found}")
    sd = to_fairseq2_names(raw, found)
    cfg = choose_arch(sd, found, arch, source=source)
    check_state_dict(sd, found, cfg, source=source)
    return found, cfg, to_flax_weights(sd, found, cfg)


def load_checkpoint(path: str | Path, *, trust: bool = False) -> Any:
    """``torch.load`` a ``.pt`` file on the CPU (memory-mapped when the format allows).

    Args:
        path: The checkpoint.
        trust: Allow arbitrary pickled objects (``weights_only=False``): only for files you
            trust.

    Raises:
        FileNotFoundError: No such file.
        ConversionError: torch is missing, or the file is not a loadable checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        import torch
    except ImportError as e:
        raise ConversionError(
            "reading .pt checkpoints needs torch: pip install 'lcm-jax[sonar]' (CPU torch is "
            "enough: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from e
    import pickle

    kwargs = {"map_location": "cpu", "weights_only": not trust}
    try:
        try:
            return torch.load(path, mmap=True, **kwargs)
        except RuntimeError as e:  # legacy (non-zip) format: no memory mapping
            if "mmap" not in str(e):
                raise
            return torch.load(path, **kwargs)
    except pickle.UnpicklingError as e:
        raise ConversionError(
            f"{path}: holds Python objects beyond tensors, which torch.load(weights_only=True) "
            f"refuses ({str(e).splitlines()[0]}); if you trust the file, rerun with "
            "--trust-checkpoint"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ConversionError(f"{path}: not a readable torch checkpoint ({e})") from e


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_against_model(cfg: SonarCodecConfig, weights: Mapping[str, np.ndarray]) -> None:
    """The weights fill exactly the variables of ``SonarModel(cfg)`` (shapes checked
    abstractly: nothing is allocated)."""
    abstract = nnx.eval_shape(lambda: SonarModel(cfg, nnx.Rngs(0)))
    wanted = {
        variable_name(p): v.get_value().shape for p, v in nnx.to_flat_state(nnx.state(abstract))
    }
    if set(wanted) != set(weights) or any(weights[k].shape != s for k, s in wanted.items()):
        bad = sorted(set(wanted) ^ set(weights)) or [
            k for k, s in wanted.items() if weights[k].shape != s
        ]
        raise ConversionError(f"internal: converted weights do not fit the model ({bad[:3]})")


def convert(
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    *,
    tokenizer: str | Path,
    encoder_arch: str = "auto",
    decoder_arch: str = "auto",
    langs: Sequence[str] = SONAR_LANGS,
    default_lang: str = DEFAULT_LANG,
    dtype: Literal["float32", "float16"] = "float32",
    trust: bool = False,
) -> SonarCodecConfig:
    """Convert one encoder and/or one decoder checkpoint into a model directory.

    Args:
        checkpoints: One or two ``.pt`` files (an encoder, a decoder, or one of each).
        out_dir: The directory to write (created; existing files are replaced).
        tokenizer: The NLLB SentencePiece model (``sentencepiece.source.256000.model``).
        encoder_arch: Encoder arch name or "auto".
        decoder_arch: Decoder arch name or "auto".
        langs: The tokenizer's languages, in token order (SONAR's 202 by default).
        default_lang: Default source and target language.
        dtype: Storage dtype of the weights (float16 halves the size; loaded as float32).
        trust: Let ``torch.load`` unpickle arbitrary objects.

    Returns:
        The config written.

    Raises:
        FileNotFoundError: For a missing input file.
        ConversionError: For anything that does not fit (named in the message).
    """
    if not 1 <= len(checkpoints) <= 2:
        raise ConversionError(f"give one or two checkpoints, got {len(checkpoints)}")
    parts: dict[str, tuple[SonarTransformerConfig, dict[str, np.ndarray], Path]] = {}
    for ckpt in checkpoints:
        path = Path(ckpt).expanduser()
        obj = load_checkpoint(path, trust=trust)
        found = detect_kind(unwrap_state_dict(obj, source=str(path)), source=str(path))
        if found in parts:
            raise ConversionError(f"two {found} checkpoints: {parts[found][2]} and {path}")
        arch = encoder_arch if found == "encoder" else decoder_arch
        kind, cfg, weights = convert_state_dict(obj, arch=arch, source=str(path))
        del obj
        parts[kind] = (cfg, weights, path)
    enc, dec = parts.get("encoder"), parts.get("decoder")
    try:
        config = SonarCodecConfig(
            encoder=enc[0] if enc else None,
            decoder=dec[0] if dec else None,
            langs=tuple(langs),
            default_lang=default_lang,
        )
    except ValueError as e:
        raise ConversionError(str(e)) from e
    try:
        tok = SonarTokenizer.from_nllb(tokenizer, config.langs)
    except ValueError as e:
        raise ConversionError(f"{tokenizer}: {e}") from e
    if tok.vocab_size != config.vocab_size:
        raise ConversionError(
            f"{tokenizer}: the tokenizer has {tok.vocab_size} ids with {len(config.langs)} "
            f"languages, the checkpoint's embedding {config.vocab_size} rows (the NLLB model "
            "with SONAR's 202 languages gives 256206)"
        )
    weights = {k: v for _, w, _ in parts.values() for k, v in w.items()}
    _check_against_model(config, weights)

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / CONFIG_FILE)
    with atomic_write(out / WEIGHTS_FILE, "wb") as f:
        np.savez(f, **{k: v.astype(dtype) for k, v in weights.items()})
    tok.save(out / TOKENIZER_FILE)
    n_params = sum(v.size for v in weights.values())
    write_bytes_atomic(out / CARD_FILE, _card(config, parts, Path(tokenizer), n_params, dtype))
    return config


def _card(
    cfg: SonarCodecConfig,
    parts: Mapping[str, tuple[SonarTransformerConfig, dict, Path]],
    tokenizer: Path,
    n_params: int,
    dtype: str,
) -> bytes:
    lines = [
        "# SONAR text model (converted with `lcm convert-sonar`)",
        "",
        "SONAR (Duquenne et al., 2023, https://github.com/facebookresearch/SONAR): sentences of "
        f"{len(cfg.langs)} languages <-> {cfg.concept_dim}-dim vectors. Open with "
        "`encoders.load(path)`; default language "
        f"{cfg.default_lang}.",
        "",
        "## Sources",
    ]
    for kind, (c, _, path) in parts.items():
        lines.append(
            f"- {kind}: `{path}` (sha256 {_sha256(path)}), arch {c.arch}: {c.num_layers} "
            f"layers, d {c.model_dim}, {c.num_heads} heads, FFN {c.ffn_inner_dim}, vocabulary "
            f"{c.vocab_size}, {c.max_seq_len} positions"
        )
    lines += [
        f"- tokenizer: `{tokenizer}` (sha256 {_sha256(tokenizer)}), plus fairseq2's language "
        "tags and PAD",
        "",
        f"{n_params:,} parameters, stored as {dtype}. License: SONAR's (see its repository).",
        "",
    ]
    return "\n".join(lines).encode()


def main(argv: Sequence[str]) -> int:
    """``lcm convert-sonar CHECKPOINT [CHECKPOINT] OUT_DIR --tokenizer SPM``."""
    parser = argparse.ArgumentParser(
        prog="lcm convert-sonar",
        description="Convert SONAR text encoder/decoder checkpoints (fairseq2 or fairseq .pt) "
        "into a model directory that encoders.load() opens. Needs torch (extra 'sonar').",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="one or two checkpoints (encoder and/or decoder, detected), then OUT_DIR",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="the NLLB SentencePiece model (sentencepiece.source.256000.model)",
    )
    parser.add_argument("--encoder-arch", default="auto", help="basic, small, toy or auto")
    parser.add_argument("--decoder-arch", default="auto", help="basic, small, toy or auto")
    parser.add_argument("--default-lang", default=DEFAULT_LANG, help="default language")
    parser.add_argument(
        "--dtype", choices=("float32", "float16"), default="float32", help="weights storage"
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="let torch.load unpickle arbitrary objects (only for files you trust)",
    )
    args = parser.parse_args(argv)
    if len(args.paths) < 2:
        parser.error("give at least one checkpoint and OUT_DIR")
    *checkpoints, out_dir = args.paths
    try:
        cfg = convert(
            checkpoints,
            out_dir,
            tokenizer=args.tokenizer,
            encoder_arch=args.encoder_arch,
            decoder_arch=args.decoder_arch,
            default_lang=args.default_lang,
            dtype=args.dtype,
            trust=args.trust_checkpoint,
        )
    except (FileNotFoundError, ConversionError) as e:
        print(f"lcm convert-sonar: {e}", file=sys.stderr)
        return 2
    kinds = " + ".join(
        f"{k} {c.arch}" for k, c in (("encoder", cfg.encoder), ("decoder", cfg.decoder)) if c
    )
    print(f"converted SONAR {kinds} (D={cfg.concept_dim}) -> {out_dir}")
    return 0
