"""lcm-jax: Large Concept Models in JAX.

Language modeling over sentence embeddings ("concepts") instead of tokens, after
"Large Concept Models" (arXiv 2412.08821). Importing this package is cheap: submodules are
imported where they are used.
"""

__version__ = "0.1.0"
