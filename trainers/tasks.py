"""Registry of trainable tasks, imported lazily so ``lcm --help`` stays fast."""

from __future__ import annotations

import importlib

from lcm.config import ConfigError
from trainers.task import Task

# name -> "module:attribute" of a Task; a new model family adds one line here.
TASKS: dict[str, str] = {
    "mlp_regression": "trainers.examples:MLP_REGRESSION",
    "codec": "encoders.train:TASK",
    "base_lcm": "trainers.lcm_tasks:BASE_LCM",
    "two_tower": "trainers.lcm_tasks:TWO_TOWER",
    "one_tower": "trainers.lcm_tasks:ONE_TOWER",
    "quant_lcm": "trainers.lcm_tasks:QUANT_LCM",
    "likelihood_lcm": "trainers.lcm_tasks:LIKELIHOOD_LCM",
    "token_lm": "trainers.lcm_tasks:TOKEN_LM",
}


def get_task(name: str) -> Task:
    """Import and return the task registered under ``name``."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    module_name, attr = TASKS[name].split(":")
    task = getattr(importlib.import_module(module_name), attr)
    if not isinstance(task, Task):
        raise TypeError(f"{TASKS[name]} is not a trainers.Task")
    return task
