"""The one training loop of lcm-jax: mesh-aware, checkpointed, used by every model."""

from trainers.config import CheckpointConfig, MeshConfig, OptimConfig, TrainConfig
from trainers.task import BatchSource, DataContext, Task

__all__ = [
    "BatchSource",
    "CheckpointConfig",
    "DataContext",
    "MeshConfig",
    "OptimConfig",
    "Task",
    "TrainConfig",
]
