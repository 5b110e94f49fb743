"""Registry of trainable tasks, imported lazily so ``lcm --help`` stays fast.

A family is named in a config's ``family:`` key by its registry name, or by the import path of
any :class:`~trainers.task.Task` object (``"my_package.my_family:TASK"``): a family outside
this package is one module plus one YAML, with no edit here.
"""

from __future__ import annotations

import importlib

from lcm.config import ConfigError
from trainers.task import Task

# name -> "module:attribute" of a Task: the families of this package.
TASKS: dict[str, str] = {
    "mlp_regression": "trainers.examples:MLP_REGRESSION",
    "codec": "encoders.train:TASK",
    "base_lcm": "lcm.models.base_lcm:TASK",
    "two_tower": "lcm.models.two_tower:TASK",
    "one_tower": "lcm.models.one_tower:TASK",
    "quant_lcm": "lcm.models.quant:TASK",
    "likelihood_lcm": "lcm.models.likelihood_lcm:TASK",
    "token_lm": "lcm.models.token_lm:TASK",
}


def get_task(name: str) -> Task:
    """The task registered under ``name``, or the Task at the import path ``"module:attr"``.

    Raises:
        ConfigError: An unknown name, a path that does not import, or no Task there.
    """
    if name not in TASKS and ":" not in name:
        raise ConfigError(
            f"unknown family {name!r}; known families: {', '.join(sorted(TASKS))} "
            "(or the import path of a Task, 'module:attribute')"
        )
    target = TASKS.get(name, name)
    module_name, _, attr = target.partition(":")
    if name in TASKS:  # ours: an import error is a bug to see in full
        task = getattr(importlib.import_module(module_name), attr)
    else:
        try:
            task = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"family {name!r}: cannot import {target}: {e}") from e
    if not isinstance(task, Task):
        raise ConfigError(f"family {name!r}: {target} is not a trainers.Task")
    return task
