"""lcm.nn.matmul: bfloat16 products accumulated in float32 on CPU, and JAX's matmul-precision
switch honoured there."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lcm.nn import matmul

DIMS = (((1,), (0,)), ((), ()))


def _operands(dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    a = jax.random.normal(jax.random.key(0), (48, 256), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (256, 40), jnp.float32).astype(dtype)
    return a, b


def _f32_product(a: jax.Array, b: jax.Array) -> np.ndarray:
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32)


@pytest.mark.parametrize(
    "product",
    [
        lambda a, b: matmul.dot_general(a, b, DIMS),
        lambda a, b: matmul.einsum("mk,kn->mn", a, b),
        matmul.matmul,
    ],
    ids=["dot_general", "einsum", "matmul"],
)
def test_bfloat16_products_keep_their_dtype_and_accumulate_in_float32(product) -> None:
    a, b = _operands(jnp.bfloat16)
    fn = jax.jit(product)
    out = fn(a, b)
    assert out.dtype == jnp.bfloat16
    # The float32 product of the same bfloat16 inputs, rounded once to bfloat16.
    expected = _f32_product(a, b).astype(jnp.bfloat16).astype(np.float32)
    np.testing.assert_allclose(np.asarray(out, np.float32), expected, rtol=1e-2, atol=1e-2)
    # On CPU the product runs as a float32-result dot (the fast kernel), then converts.
    hlo = fn.lower(a, b).as_text()
    assert "bf16>) -> tensor<48x40xf32>" in hlo


def test_float32_products_follow_the_matmul_precision_switch() -> None:
    a, b = _operands(jnp.float32)
    fn = jax.jit(lambda x, y: matmul.dot_general(x, y, DIMS))
    exact = np.asarray(fn(a, b))
    np.testing.assert_allclose(exact, _f32_product(a, b), rtol=1e-5, atol=1e-4)
    with jax.default_matmul_precision("bfloat16"):
        rounded = np.asarray(fn(a, b))
    assert rounded.dtype == np.float32
    a16, b16 = (x.astype(jnp.bfloat16) for x in (a, b))
    np.testing.assert_allclose(rounded, _f32_product(a16, b16), rtol=1e-5, atol=1e-4)
    assert np.abs(rounded - exact).max() > 1e-3  # really rounded, not the float32 product
    # An explicit precision on the call wins over the switch.
    with jax.default_matmul_precision("bfloat16"):
        highest = jax.jit(
            lambda x, y: matmul.dot_general(x, y, DIMS, precision=jax.lax.Precision.HIGHEST)
        )(a, b)
    np.testing.assert_array_equal(np.asarray(highest), exact)


def test_gradients_of_a_bfloat16_linear_match_float32() -> None:
    def loss(layer: nnx.Linear, x: jax.Array) -> jax.Array:
        return jnp.sum(layer(x).astype(jnp.float32) ** 2)

    grads = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        layer = nnx.Linear(256, 40, dtype=dtype, dot_general=matmul.dot_general, rngs=nnx.Rngs(0))
        x, _ = _operands(jnp.float32)
        grads[dtype] = nnx.grad(loss)(layer, x)
    g32, g16 = (np.asarray(grads[d]["kernel"][...], np.float32) for d in grads)
    assert g16.dtype == np.float32 and np.isfinite(g16).all()
    rel = np.linalg.norm(g16 - g32) / np.linalg.norm(g32)
    assert rel < 2e-2, rel
