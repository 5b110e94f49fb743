"""lcm-jax: Large Concept Models in JAX.

Language modeling over sentence embeddings ("concepts") instead of tokens, after
"Large Concept Models" (arXiv 2412.08821). Importing this package is cheap: submodules are
imported where they are used.
"""

__version__ = "0.1.0"

__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str) -> object:
    # ``from lcm import Pipeline`` imports JAX and the models only when asked for.
    if name == "Pipeline":
        from lcm.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'lcm' has no attribute {name!r}")
