"""Frozen weights: variables that a model reads but never trains.

A module that uses another trained network as a fixed function (the likelihood LCM scores its
predictions through a codec's decoder) holds that network's variables as :class:`Frozen`
instead of ``nnx.Param``. The trainer differentiates and updates ``nnx.Param`` only, so frozen
variables get no gradient, no optimizer state and no weight decay: they stay bit-identical by
construction, and checkpoints carry them with the other non-parameter variables.
"""

from __future__ import annotations

from flax import nnx


class Frozen(nnx.Variable):
    """A weight that is read, never trained."""


def freeze(module: nnx.Module) -> nnx.Module:
    """Turn every ``nnx.Param`` of ``module`` into :class:`Frozen`, in place.

    Values and metadata (logical axis names) are kept. Returns ``module``.
    """
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Module):
            for name, value in list(vars(node).items()):
                if isinstance(value, nnx.Param):
                    setattr(node, name, Frozen(value.get_value(), **value.get_metadata()))
    return module
