"""What every next-concept family shares as a trainer task: its data, its export, its codec.

A family module (``lcm/models/<family>.py``) holds its model, its config and its ``TASK``,
usually ``concept_task(name, Config, Model)``; ``trainers.tasks.TASKS`` names the families of
this package, and a config's ``family:`` may name any other by its import path
(``"my_package.my_family:TASK"``). The concept size D always comes from the data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

import encoders
from lcm.config import to_dict
from lcm.data.concepts import (
    ConceptDataConfig,
    ConceptSource,
    concept_normalizer,
    eot_vector,
    load_concepts,
)
from lcm.data.tasks import TASK_MARKERS
from lcm.models.directory import LCMDirConfig, save_lcm
from trainers.task import DataContext, Task

# (model_cfg, D, rngs) -> the network
NetworkBuilder = Callable[[Any, int, nnx.Rngs], nnx.Module]


def concept_source(data: ConceptDataConfig, model: object, ctx: DataContext) -> ConceptSource:
    """The batch source of every concept task (``model`` is unused: D comes from the data)."""
    del model
    return ConceptSource(
        data,
        batch_size=ctx.batch_size,
        seed=ctx.seed,
        process_index=ctx.process_index,
        process_count=ctx.process_count,
    )


def concept_dim(data: ConceptDataConfig) -> int:
    """D of the concepts the model will see."""
    return load_concepts(data).dim


def parameter_count(model: nnx.Module) -> int:
    """Number of trainable values of ``model``."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def concept_export(family: str) -> Callable[[nnx.Module, Any, ConceptDataConfig, str], None]:
    """The ``export`` of a family: a model directory (:mod:`lcm.models.directory`).

    A model with a ``for_inference()`` method is exported as what that returns (the
    likelihood LCM drops the frozen codec decoder it trains through).
    """

    def export(model: nnx.Module, model_cfg: Any, data: ConceptDataConfig, out_dir: str) -> None:
        eot = eot_vector(data)
        if eot is None:
            raise ValueError("a model directory needs an end-of-text concept (data.eot is none)")
        normalizer = concept_normalizer(data)
        if hasattr(model, "for_inference"):
            model = model.for_inference()
        config = LCMDirConfig(
            family=family,
            concept_dim=normalizer.dim,
            max_seq_len=data.max_seq_len,
            model=to_dict(model_cfg),
            markers=dict(TASK_MARKERS),
            codec=data.shards or "synthetic",
        )
        card = (
            f"# {family} (lcm-jax)\n\n- {parameter_count(model):,} parameters, D = "
            f"{normalizer.dim}, context {data.max_seq_len} concepts\n- data: "
            f"`{data.shards or 'synthetic'}` (split {data.split})\n"
        )
        save_lcm(out_dir, model, config, normalizer, eot, card)

    return export


def concept_task(
    name: str,
    model_config: type,
    build_network: NetworkBuilder,
    build_model: Callable[[Any, ConceptDataConfig, nnx.Rngs], nnx.Module] | None = None,
) -> Task:
    """The trainer task of a family that reads concept shards (:class:`ConceptDataConfig`).

    Args:
        name: What configs and model directories call the family: its registry name, or the
            import path of this task (``"module:attribute"``) for a family outside this package.
        model_config: Frozen dataclass type of the ``model:`` section.
        build_network: ``(model_cfg, D, rngs) -> module``.
        build_model: ``(model_cfg, data_cfg, rngs) -> module`` when training needs more than
            D from the data (default: ``build_network`` with the data's D).
    """

    def from_data(model: Any, data: ConceptDataConfig, rngs: nnx.Rngs) -> nnx.Module:
        return build_network(model, concept_dim(data), rngs)

    return Task(
        name=name,
        model_config=model_config,
        data_config=ConceptDataConfig,
        build_model=build_model or from_data,
        build_data=concept_source,
        export=concept_export(name),
        build_network=build_network,
    )


@functools.lru_cache(maxsize=2)
def scoring_codec(name: str) -> encoders.Codec:
    """A codec by name, loaded once per process (a family's model and data both use it)."""
    return encoders.load(name)
