"""archlab: automated neural-architecture discovery.

The public API is what a task plugin needs: subclass `Task`, give it a `Budget` per stage
and a `Recipe`, return its data as `TokenData` and its scores as `Metrics`, and register a
factory under the `archlab.tasks` entry point (see docs/tasks.md). Everything else is
internal and may move.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archlab.tasks import get_task, task_names
    from archlab.tasks.base import (
        IGNORE_INDEX,
        SMOKE_BUDGET,
        Budget,
        Metrics,
        OutputKind,
        Recipe,
        TaskKind,
        TokenData,
        accuracy_curve_metrics,
    )
    from archlab.tasks.base import TokenTask as Task

__version__ = "0.1.0"

__all__ = [
    "IGNORE_INDEX",
    "SMOKE_BUDGET",
    "Budget",
    "Metrics",
    "OutputKind",
    "Recipe",
    "Task",
    "TaskKind",
    "TokenData",
    "__version__",
    "accuracy_curve_metrics",
    "get_task",
    "task_names",
]


#: where a public name lives when it is not the task API's own name (archlab.tasks.base)
_ELSEWHERE = {
    "Task": ("archlab.tasks.base", "TokenTask"),
    "get_task": ("archlab.tasks", "get_task"),
    "task_names": ("archlab.tasks", "task_names"),
}


def __getattr__(name: str) -> Any:
    """The public names load on first use, so that `import archlab` (every CLI command)
    does not pay for numpy."""
    if name not in __all__:
        raise AttributeError(f"module 'archlab' has no attribute {name!r}")
    module, attribute = _ELSEWHERE.get(name, ("archlab.tasks.base", name))
    return getattr(import_module(module), attribute)
