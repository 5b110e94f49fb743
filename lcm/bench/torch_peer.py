"""PyTorch peer of the JAX Base-LCM and Two-Tower training step (a benchmark reference only).

``lcm bench train`` times this side by side with the trainer's own jitted step: it is what a
user would otherwise run (the official LCM code is PyTorch), written the way a PyTorch user
would write it (``nn.Linear``, ``F.scaled_dot_product_attention``, ``torch.optim.AdamW``,
eager mode). It needs the ``bench`` extra (``torch``): only :mod:`lcm.bench.run` imports it,
and only when PyTorch is installed; the rest of the library never does.

The architecture mirrors :mod:`lcm.models.base_lcm` and :mod:`lcm.models.two_tower` exactly:
the same layers, widths, pre-norm RMSNorm blocks with RoPE self-attention and SwiGLU, the same
AdaLN-modulated denoiser, the same parameter count (module and parameter names are the JAX
ones, so :func:`load_jax_params` copies a JAX model's weights across), the same loss and the
same optimizer step (global-norm clipping, then AdamW with decay on matrices only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lcm.models.diffusion.schedules import discretize

Batch = dict[str, torch.Tensor]


class RMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps) * scale`` over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` [..., dim]."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


def rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding (rotate-half form) of ``x`` [B, T, N, H] at ``positions`` [B, T]."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = positions[..., None].float() * inv_freq  # [B, T, half]
    cos, sin = angles.cos()[:, :, None], angles.sin()[:, :, None]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def linear(d_in: int, d_out: int, bias: bool = False) -> nn.Linear:
    """An ``nn.Linear`` (biases only where the JAX layer has them)."""
    return nn.Linear(d_in, d_out, bias=bias)


class SelfAttention(nn.Module):
    """Fused-QKV self-attention with RoPE under a ``[B, T, T]`` boolean mask."""

    def __init__(self, d_model: int, num_heads: int, rope_base: float):
        super().__init__()
        self.num_heads, self.head_dim, self.rope_base = num_heads, d_model // num_heads, rope_base
        self.qkv = linear(d_model, 3 * d_model)
        self.out = linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, T, d] -> [B, T, d]."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).unbind(2)
        q, k = rope(q, positions, self.rope_base), rope(k, positions, self.rope_base)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask[:, None]
        )
        return self.out(out.transpose(1, 2).reshape(b, t, -1))


class SwiGlu(nn.Module):
    """``down(silu(gate(x)) * up(x))`` with gate and up fused in one matrix."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gate_up = linear(d_model, 2 * hidden)
        self.down = linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., d]."""
        gate, up = self.gate_up(x).unflatten(-1, (2, self.hidden)).unbind(-2)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + swiglu(norm(x))``."""

    def __init__(self, d_model: int, num_heads: int, mlp_dim: int, rope_base: float, p: float):
        super().__init__()
        self.p = p
        self.attn_norm = RMSNorm(d_model)
        self.attention = SelfAttention(d_model, num_heads, rope_base)
        self.ffn_norm = RMSNorm(d_model)
        self.ffn = SwiGlu(d_model, mlp_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, T, d] -> [B, T, d]."""
        h = self.attention(self.attn_norm(x), mask, positions)
        x = x + F.dropout(h, self.p, self.training)
        return x + F.dropout(self.ffn(self.ffn_norm(x)), self.p, self.training)


class Transformer(nn.Module):
    """A stack of :class:`Block` and a final RMSNorm (``lcm.nn.MaskedTransformer``)."""

    def __init__(self, d_model: int, cfg: Any, rope_base: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(d_model, cfg.num_heads, cfg.mlp_dim, rope_base, cfg.dropout)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = RMSNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[B, T, d] -> [B, T, d] under ``mask`` [B, T, T]."""
        for block in self.blocks:
            x = block(x, mask, positions)
        return self.final_norm(x)


def causal_segment_mask(seg: torch.Tensor) -> torch.Tensor:
    """Causal attention within each document piece: [B, T] -> [B, T, T] bool."""
    t = seg.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=seg.device).tril()
    return (seg[:, :, None] == seg[:, None, :]) & causal


def target_mask(batch: Batch) -> torch.Tensor:
    """[B, T] bool: the concepts a loss predicts (``mask``, and ``loss_mask`` if present)."""
    if "loss_mask" in batch:
        return batch["mask"] & batch["loss_mask"]
    return batch["mask"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is True (0 if none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class BaseLCM(nn.Module):
    """PreNet -> causal Transformer -> PostNet, MSE to the next concept."""

    def __init__(self, cfg: Any, concept_dim: int):
        super().__init__()
        self.prenet = linear(concept_dim, cfg.d_model, bias=True)
        self.decoder = Transformer(cfg.d_model, cfg.decoder, cfg.rope_base)
        self.postnet = linear(cfg.d_model, concept_dim, bias=True)

    def loss(self, batch: Batch, noise: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """MSE (mean over D) to the next concept over positions whose next concept is a target
        in the same piece (``noise`` is unused: the model has no noise)."""
        del noise
        seg, x = batch["segment_ids"], batch["concepts"]
        mask = causal_segment_mask(seg)
        pred = self.postnet(self.decoder(self.prenet(x), mask, batch["positions"]))
        nxt = torch.cat([seg[:, 1:], torch.zeros_like(seg[:, :1])], dim=1)
        wanted = target_mask(batch)
        wanted_next = torch.cat([wanted[:, 1:], torch.zeros_like(wanted[:, :1])], dim=1)
        valid = (seg > 0) & (nxt == seg) & wanted_next
        targets = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)
        return masked_mean((pred - targets).pow(2).mean(-1), valid)


def sinusoidal(t: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Sine/cosine features of ``t`` [...] -> [..., dim] (``lcm.nn.sinusoidal_positions``)."""
    half = dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[..., None].float() * inv_freq
    return F.pad(torch.cat([angles.sin(), angles.cos()], dim=-1), (0, dim - 2 * half))


class TimestepEmbedding(nn.Module):
    """``t -> out(silu(hidden(sinusoidal(t))))``."""

    def __init__(self, dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.hidden = linear(frequency_dim, dim, bias=True)
        self.out = linear(dim, dim, bias=True)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """[...] -> [..., dim]."""
        return self.out(F.silu(self.hidden(sinusoidal(t, self.frequency_dim))))


class SingleKeyAttention(nn.Module):
    """Attention of each position to itself only: exactly ``out(value(x))``."""

    def __init__(self, d_model: int):
        super().__init__()
        self.value = linear(d_model, d_model)
        self.out = linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d] -> [..., d]."""
        return self.out(self.value(x))


class CrossAttention(nn.Module):
    """Queries from ``x``, keys and values from a memory, under a ``[B, T, S]`` mask."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.query = linear(d_model, d_model)
        self.key_value = linear(d_model, 2 * d_model)
        self.out = linear(d_model, d_model)

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S, d] -> keys and values, each [B, N, S, H]."""
        b, s, _ = memory.shape
        k, v = self.key_value(memory).view(b, s, 2, self.num_heads, self.head_dim).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(
        self, x: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        """[B, T, d] -> [B, T, d]."""
        b, t, _ = x.shape
        q = self.query(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, *memory, attn_mask=mask[:, None])
        return self.out(out.transpose(1, 2).reshape(b, t, -1))


class Modulator(nn.Module):
    """AdaLN: ``proj(silu(cond))`` split into (shift, scale, gate) for each of 3 sublayers."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = linear(dim, 9 * dim, bias=True)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """[..., d] -> three (shift, scale, gate) triples, each [..., d]."""
        parts = self.proj(F.silu(cond)).chunk(9, dim=-1)
        return [parts[3 * i : 3 * i + 3] for i in range(3)]


def modulate(x: torch.Tensor, mod: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``x * (1 + scale) + shift``."""
    shift, scale, _ = mod
    return x * (1 + scale) + shift


class DenoiserBlock(nn.Module):
    """Self (single key), cross and feed-forward sublayers, each gated by AdaLN."""

    def __init__(self, d_model: int, num_heads: int, mlp_dim: int, p: float):
        super().__init__()
        self.p = p
        self.self_norm = RMSNorm(d_model)
        self.self_attention = SingleKeyAttention(d_model)
        self.cross_norm = RMSNorm(d_model)
        self.cross_attention = CrossAttention(d_model, num_heads)
        self.ffn_norm = RMSNorm(d_model)
        self.ffn = SwiGlu(d_model, mlp_dim)
        self.modulator = Modulator(d_model)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        memory: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """[B, T, d] -> [B, T, d]."""
        m_self, m_cross, m_ffn = self.modulator(cond)
        h = self.self_attention(modulate(self.self_norm(x), m_self))
        x = x + m_self[2] * F.dropout(h, self.p, self.training)
        h = self.cross_attention(modulate(self.cross_norm(x), m_cross), memory, mask)
        x = x + m_cross[2] * F.dropout(h, self.p, self.training)
        h = self.ffn(modulate(self.ffn_norm(x), m_ffn))
        return x + m_ffn[2] * F.dropout(h, self.p, self.training)


class Denoiser(nn.Module):
    """in_proj, timestep embedding, :class:`DenoiserBlock` stack, final norm, out_proj."""

    def __init__(self, concept_dim: int, d_model: int, cfg: Any):
        super().__init__()
        self.in_proj = linear(concept_dim, d_model, bias=True)
        self.time = TimestepEmbedding(d_model)
        self.blocks = nn.ModuleList(
            DenoiserBlock(d_model, cfg.num_heads, cfg.mlp_dim, cfg.dropout)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = RMSNorm(d_model)
        self.out_proj = linear(d_model, concept_dim, bias=True)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """x0-estimates [B, T, D] of ``x_t`` at steps ``t`` given ``context`` [B, S, d], of
        which each position sees ``visible`` [B, T, S] (plus a zero vector, always)."""
        b, n = x_t.shape[:2]
        full = torch.cat([torch.zeros_like(context[:, :1]), context], dim=1)
        mask = torch.cat([visible.new_ones(b, n, 1), visible], dim=2)
        cond = self.time(t)
        x = self.in_proj(x_t)
        for block in self.blocks:
            x = block(x, cond, block.cross_attention.project_memory(full), mask)
        return self.out_proj(self.final_norm(x))


class TwoTowerLCM(nn.Module):
    """Causal contextualizer + AdaLN denoiser, x0-prediction MSE."""

    def __init__(self, cfg: Any, concept_dim: int, alphas_cumprod: np.ndarray):
        super().__init__()
        self.cfg_drop_prob = cfg.cfg_drop_prob
        self.num_steps = len(alphas_cumprod)
        self.register_buffer(
            "alphas_cumprod", torch.tensor(alphas_cumprod, dtype=torch.float32), persistent=False
        )
        self.prenet = linear(concept_dim, cfg.d_model, bias=True)
        self.contextualizer = Transformer(cfg.d_model, cfg.context, cfg.rope_base)
        self.denoiser = Denoiser(concept_dim, cfg.d_model, cfg.denoiser)

    def draw_noise(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The randomness of one loss: timesteps, Gaussian noise and the CFG drop mask."""
        x0, seg = batch["concepts"], batch["segment_ids"]
        return {
            "t": torch.randint(0, self.num_steps, seg.shape, device=seg.device),
            "noise": torch.randn_like(x0),
            "dropped": torch.rand(seg.shape, device=seg.device) < self.cfg_drop_prob,
        }

    def loss(self, batch: Batch, noise: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """MSE of the x0-estimate of each concept given the earlier ones of its piece.

        Args:
            batch: The training batch.
            noise: ``t``, ``noise`` and ``dropped`` (:meth:`draw_noise`; drawn if None).
        """
        noise = noise or self.draw_noise(batch)
        x0, seg, pos = batch["concepts"], batch["segment_ids"], batch["positions"]
        ab = self.alphas_cumprod[noise["t"]][..., None]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise["noise"]
        same = seg[:, :, None] == seg[:, None, :]
        earlier = (pos[:, None, :] < pos[:, :, None]) & (seg[:, None, :] > 0)
        visible = same & earlier & ~noise["dropped"][:, :, None]
        context = self.contextualizer(self.prenet(x0), causal_segment_mask(seg), batch["positions"])
        err = self.denoiser(x_t, noise["t"], context, visible) - x0
        return masked_mean(err.pow(2).mean(-1), target_mask(batch))


def build_model(train_cfg: Any, concept_dim: int) -> nn.Module:
    """The peer of the model of a JAX training config (``trainers.config.TrainConfig``)."""
    if train_cfg.family == "base_lcm":
        return BaseLCM(train_cfg.model, concept_dim)
    if train_cfg.family == "two_tower":
        schedule = discretize(train_cfg.model.schedule)
        return TwoTowerLCM(train_cfg.model, concept_dim, schedule.alphas_cumprod)
    raise ValueError(f"no PyTorch peer for task {train_cfg.family!r} (base_lcm, two_tower)")


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def flatten_params(tree: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """A nested parameter dict as ``{"a.b.0.kernel": leaf}`` (the peer's naming)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, name + "."))
        else:
            out[name] = value
    return out


def load_jax_params(model: nn.Module, params: Mapping[Any, Any]) -> None:
    """Copy a JAX model's parameters (``nnx.to_pure_dict`` of its ``nnx.Param`` state) into
    its peer: a ``kernel [in, (k,) out]`` becomes ``weight [k * out, in]``.

    Raises:
        ValueError: If the names or shapes do not match one to one.
    """
    flat = flatten_params(params)
    mine = dict(model.named_parameters())
    expected = {n[: -len("kernel")] + "weight" if n.endswith("kernel") else n for n in flat}
    if expected != set(mine):
        missing, extra = sorted(expected - set(mine)), sorted(set(mine) - expected)
        raise ValueError(f"parameter names differ: JAX only {missing[:5]}, torch only {extra[:5]}")
    with torch.no_grad():
        for name, value in flat.items():
            arr = np.array(value, np.float32)  # a writable copy
            if name.endswith("kernel"):
                arr = arr.reshape(arr.shape[0], -1).T
                name = name[: -len("kernel")] + "weight"
            target = mine[name]
            if tuple(target.shape) != arr.shape:
                raise ValueError(f"{name}: torch {tuple(target.shape)} vs JAX {arr.shape}")
            target.copy_(torch.from_numpy(np.ascontiguousarray(arr)))


def learning_rate(optim: Any, total_steps: int) -> Callable[[int], float]:
    """The learning rate of ``trainers.optim.learning_rate_schedule`` (warmup, then cosine,
    linear or constant decay) as a plain function of the step."""
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)

    def lr(step: int) -> float:
        if step < warmup:
            return optim.lr * step / warmup
        s = min(step - warmup, decay_steps) / decay_steps
        if optim.decay == "cosine":
            cos = 0.5 * (1 + math.cos(math.pi * s))
            return optim.lr * ((1 - optim.end_lr_ratio) * cos + optim.end_lr_ratio)
        if optim.decay == "linear":
            return optim.lr * (1 - s * (1 - optim.end_lr_ratio))
        if optim.decay == "constant":
            return optim.lr
        raise ValueError(f"no PyTorch peer of decay {optim.decay!r}")

    return lr


class TrainStep:
    """Loss, backward, global-norm clipping and AdamW (decay on matrices only), as in
    ``trainers.loop.make_train_step`` with ``trainers.optim.make_optimizer``.

    Args:
        model: A peer model (in training mode: dropout on).
        optim: The ``optim`` section of the training config.
        total_steps: Steps of the run (the learning-rate schedule spans them).
        fused: Use the fused AdamW kernel instead of PyTorch's default implementation.
        autocast: Run the loss (forward and backward) under bfloat16 autocast.
        compile: Run the loss under ``torch.compile`` (the optimizer stays eager).
    """

    def __init__(
        self,
        model: nn.Module,
        optim: Any,
        total_steps: int,
        *,
        fused: bool = False,
        autocast: bool = False,
        compile: bool = False,
    ):
        self.model = model
        self.loss_fn = torch.compile(model.loss) if compile else model.loss
        self.device_type = next(model.parameters()).device.type
        self.autocast = autocast
        self.clip_norm = optim.clip_norm
        self.lr = learning_rate(optim, total_steps)
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": optim.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.lr(0),
            betas=(optim.b1, optim.b2),
            eps=optim.eps,
            fused=fused or None,
        )
        self.step = 0

    def __call__(
        self, batch: Batch, noise: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One training step; returns the loss (a tensor: reading it is a host sync)."""
        for group in self.opt.param_groups:
            group["lr"] = self.lr(self.step)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device_type, torch.bfloat16, enabled=self.autocast):
            loss = self.loss_fn(batch, noise)
        loss.backward()
        if self.clip_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.opt.step()
        self.step += 1
        return loss.detach()


def to_torch(batch: Mapping[str, np.ndarray], device: str = "cpu") -> Batch:
    """A NumPy (or JAX) batch as tensors on ``device``."""
    return {k: torch.from_numpy(np.array(v)).to(device) for k, v in batch.items()}
