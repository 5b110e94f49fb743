"""Position-wise feed-forward layers: a GELU MLP and SwiGLU."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn import matmul
from lcm.nn.params import kernel_init, partitioned

FfnKind = Literal["gelu", "swiglu"]


class GeluMlp(nnx.Module):
    """``down(gelu(up(x)))`` with no biases.

    Args:
        d_model: Input and output width.
        hidden: Hidden width.
        out_scale: Initializer variance scale of ``down`` (smaller for deep residual stacks).
        dtype: Compute dtype.
        param_dtype: Parameter dtype.
        rngs: Initialization RNGs.
    """

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        out_scale: float = 1.0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        dense_kw = {"use_bias": False, "dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.up = matmul.dense(d_model, hidden, ("embed", "mlp"), **dense_kw)
        self.down = matmul.dense(hidden, d_model, ("mlp", "embed"), scale=out_scale, **dense_kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., d_model] -> [..., d_model]."""
        # On 2-d operands XLA:CPU keeps both dots as fast GEMMs around the fused GELU; with
        # [batch, seq, d] operands this layer runs about 1.6x slower.
        y = self.down(jax.nn.gelu(self.up(x.reshape(-1, x.shape[-1]))))
        return y.reshape(x.shape)


class SwiGlu(nnx.Module):
    """``down(silu(gate(x)) * up(x))`` with the gate and up projections fused in one kernel.

    Arguments as for :class:`GeluMlp`.
    """

    def __init__(
        self,
        d_model: int,
        hidden: int,
        *,
        out_scale: float = 1.0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        dense_kw = {"use_bias": False, "dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
        self.gate_up = nnx.Einsum(
            "...d,dkf->...kf",
            (d_model, 2, hidden),
            einsum_op=matmul.einsum,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=partitioned(kernel_init(batch_axis=(1,)), ("embed", None, "mlp")),
            rngs=rngs,
        )
        self.down = matmul.dense(hidden, d_model, ("mlp", "embed"), scale=out_scale, **dense_kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[..., d_model] -> [..., d_model]."""
        x2 = x.reshape(-1, x.shape[-1])  # 2-d operands: see GeluMlp
        if x2.shape[0] <= x2.shape[1]:
            # Few rows (decoding a step): one dot with the fused kernel, sliced afterwards.
            h = self.gate_up(x2)
            gate, up = h[:, 0], h[:, 1]
        else:
            # Many rows (training, teacher forcing): one dot per half of the kernel. Slicing
            # the kernel copies two parameter-sized halves per call, but the gradient of
            # slicing the fused [rows, 2, hidden] output would pad and add activation-sized
            # arrays, and XLA:CPU would transpose the whole fused kernel for its dots: a
            # Base-LCM training step (d_model 512, 2048 rows) runs 13% faster this way.
            # Decoding does the opposite trade (copying the halves there made a step 3x
            # slower). The result is the same either way.
            x2, kernel = self.gate_up.promote_dtype(
                (x2, self.gate_up.kernel[...]), dtype=self.gate_up.dtype
            )
            gate, up = matmul.matmul(x2, kernel[:, 0]), matmul.matmul(x2, kernel[:, 1])
        return self.down(jax.nn.silu(gate) * up).reshape(x.shape)


def make_ffn(
    kind: FfnKind,
    d_model: int,
    hidden: int,
    *,
    out_scale: float = 1.0,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> GeluMlp | SwiGlu:
    """Build the feed-forward layer named by ``kind`` (arguments as for :class:`GeluMlp`)."""
    kw = {"out_scale": out_scale, "dtype": dtype, "param_dtype": param_dtype, "rngs": rngs}
    if kind == "gelu":
        return GeluMlp(d_model, hidden, **kw)
    if kind == "swiglu":
        return SwiGlu(d_model, hidden, **kw)
    raise ValueError(f"unknown feed-forward kind {kind!r}; expected 'gelu' or 'swiglu'")
