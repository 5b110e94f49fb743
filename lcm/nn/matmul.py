"""Matrix products that take XLA:CPU's fast bfloat16 kernel.

Two cases use it:

* low-precision operands (a model whose compute dtype is bfloat16);
* float32 operands under ``jax.default_matmul_precision("bfloat16")``: JAX's own switch for
  single-pass bfloat16 products with float32 accumulation, which XLA:CPU otherwise ignores.
  On CPU the operands are then rounded to bfloat16 and the product stays float32, as does
  everything around it (``Codec.encode`` offers this as ``encode_precision``). Meant for
  inference: the gradients of such a product come back rounded to bfloat16.

XLA:CPU runs a ``bfloat16 x bfloat16 -> bfloat16`` dot on a slow path: on this project's CPU
(AMD EPYC with avx512_bf16) a [2048, 256] x [256, 1024] product runs at 168 GFLOP/s, no faster
than float32, while the same product asked for a float32 result takes the avx512_bf16 kernel
and runs at 292 GFLOP/s (303 with the conversion back to bfloat16). On CPU these functions
therefore accumulate low-precision products in float32 and convert the result back to the
inputs' dtype: the caller sees the usual dtype, and the only numerical difference is a more
precise accumulation. On other platforms (GPU, TPU) the plain product is emitted, unchanged:
their compilers already accumulate in float32 inside the kernel and give the matmul
precision setting their own meaning.

``dot_general`` plugs into ``nnx.Linear(dot_general=...)`` (:func:`dense` builds such a layer)
and ``einsum`` into ``nnx.Einsum(einsum_op=...)``; float32 operands go straight to
``jax.lax``/``jnp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lcm.nn.params import kernel_init, partitioned

_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _bf16_requested(kwargs: dict[str, Any]) -> bool:
    """No explicit precision, and ``jax.default_matmul_precision`` says "bfloat16"."""
    return kwargs.get("precision") is None and jax.config.jax_default_matmul_precision == "bfloat16"


def _on_cpu_accumulate_f32(
    product: Callable[..., jax.Array], operands: tuple[jax.Array, ...], **kwargs: Any
) -> jax.Array:
    """``product(*operands, **kwargs)``, accumulated in float32 on CPU when it is low precision."""
    preferred = kwargs.pop("preferred_element_type", None)
    dtypes = {jnp.dtype(x.dtype) for x in operands}
    if dtypes <= set(_LOW_PRECISION) and preferred is None:
        out_dtype, cast = jnp.result_type(*operands), None
    elif dtypes == {jnp.dtype(jnp.float32)} and preferred is None and _bf16_requested(kwargs):
        out_dtype, cast = jnp.dtype(jnp.float32), jnp.bfloat16
    else:
        return product(*operands, **kwargs, preferred_element_type=preferred)

    def accumulate_f32(*xs: jax.Array) -> jax.Array:
        if cast is not None:
            xs = tuple(x.astype(cast) for x in xs)
        return product(*xs, **kwargs, preferred_element_type=jnp.float32).astype(out_dtype)

    def plain(*xs: jax.Array) -> jax.Array:
        return product(*xs, **kwargs)

    # Chosen when lowering for a platform: no runtime branch.
    return jax.lax.platform_dependent(*operands, cpu=accumulate_f32, default=plain)


def dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, **kwargs: Any) -> jax.Array:
    """``jax.lax.dot_general`` (same arguments), with the CPU bfloat16 fast path."""

    def product(a: jax.Array, b: jax.Array, **kw: Any) -> jax.Array:
        return jax.lax.dot_general(a, b, dimension_numbers, **kw)

    return _on_cpu_accumulate_f32(product, (lhs, rhs), **kwargs)


def einsum(subscripts: str, *operands: jax.Array, **kwargs: Any) -> jax.Array:
    """``jnp.einsum`` (same arguments), with the CPU bfloat16 fast path."""

    def product(*xs: jax.Array, **kw: Any) -> jax.Array:
        return jnp.einsum(subscripts, *xs, **kw)

    return _on_cpu_accumulate_f32(product, operands, **kwargs)


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` with the CPU bfloat16 fast path."""
    return _on_cpu_accumulate_f32(jnp.matmul, (a, b))


def dense(
    d_in: int,
    d_out: int,
    names: tuple[str | None, str | None],
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    scale: float = 1.0,
    partition_bias: bool = False,
    dtype: jnp.dtype | None = None,
    param_dtype: jnp.dtype = jnp.float32,
) -> nnx.Linear:
    """The project's dense layer: ``nnx.Linear`` on :func:`dot_general`.

    Args:
        d_in: Input width.
        d_out: Output width.
        names: Logical axis names of the ``[d_in, d_out]`` kernel.
        rngs: Initialization RNGs.
        use_bias: Add a bias (initialized to zeros).
        scale: Variance scale of the fan-in truncated-normal kernel initializer.
        partition_bias: Name the bias axis ``names[1]`` (else it carries no name).
        dtype: Compute dtype (None: the inputs').
        param_dtype: Parameter dtype.
    """
    bias_init = nnx.initializers.zeros_init()
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        dot_general=dot_general,
        kernel_init=partitioned(kernel_init(scale=scale), names),
        bias_init=partitioned(bias_init, names[1:]) if partition_bias else bias_init,
        rngs=rngs,
    )
