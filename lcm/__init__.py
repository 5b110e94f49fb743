"""lcm-jax: Large Concept Models in JAX.

Language modeling over sentence embeddings ("concepts") instead of tokens, after
"Large Concept Models" (arXiv 2412.08821). Importing this package is cheap: submodules are
imported where they are used.
"""

__version__ = "0.1.0"

__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str) -> object:
    # In-function on purpose: ``import lcm`` (the CLI's entry point, ``lcm --help``) stays
    # free of JAX, and ``lcm`` sits below the layers that Pipeline builds on.
    if name == "Pipeline":
        from lcm.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'lcm' has no attribute {name!r}")
