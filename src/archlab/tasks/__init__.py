"""Tasks, looked up by name: the built-ins, then plugins.

A plugin is an entry point in the `archlab.tasks` group whose name is the task's name and
whose value (`module:factory`) is called with the task's options (the [tasks.NAME] config
table) and returns a TokenTask. Built-ins win a name clash: a plugin cannot replace or
shadow a built-in task, so a score stored under a built-in's name always means the same
task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from archlab.errors import ArchlabError, ConfigError
from archlab.tasks.base import TokenTask
from archlab.tasks.charlm import CharLM
from archlab.tasks.digits import Digits
from archlab.tasks.mad import SUITE, Mad
from archlab.tasks.mqar import MQAR

ENTRY_POINT_GROUP = "archlab.tasks"

BUILTIN_TASKS: dict[str, Callable[..., TokenTask]] = {
    "mqar": MQAR,
    **{task.name: task for task in SUITE},
    "mad": Mad,
    "charlm": CharLM,
    "digits": Digits,
}


def _plugins() -> dict[str, list[EntryPoint]]:
    """Installed plugins by task name, built-in names left out."""
    found: dict[str, list[EntryPoint]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in BUILTIN_TASKS:
            found.setdefault(entry.name, []).append(entry)
    return found


def task_names() -> list[str]:
    """Every task `get_task` knows, built-ins and installed plugins, sorted."""
    return sorted({*BUILTIN_TASKS, *_plugins()})


def _plugin_factory(name: str) -> Callable[..., TokenTask]:
    entries = _plugins().get(name)
    if not entries:
        raise ArchlabError(f"unknown task '{name}' (known: {', '.join(task_names())})")
    if len(entries) > 1:
        values = ", ".join(entry.value for entry in entries)
        raise ArchlabError(f"several installed plugins register the task '{name}': {values}")
    try:
        factory = entries[0].load()
    except Exception as e:
        raise ArchlabError(
            f"the plugin for task '{name}' ({entries[0].value}) does not load: "
            f"{type(e).__name__}: {e}"
        ) from e
    if not callable(factory):
        raise ArchlabError(f"the plugin for task '{name}' ({entries[0].value}) is not callable")
    return factory


#: training seconds instead of steps: an option of every task, built-in or plugin
TRAIN_SECONDS = "train_seconds"


def _train_seconds(name: str, options: dict[str, Any]) -> float | None:
    seconds = options.pop(TRAIN_SECONDS, None)
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ConfigError(
            f"invalid task options: tasks.{name}.{TRAIN_SECONDS}: must be a positive number "
            f"of seconds, got {seconds!r}"
        )
    return float(seconds)


def get_task(name: str, options: Mapping[str, Any] | None = None) -> TokenTask:
    """The task called `name`, configured with `options` (the [tasks.NAME] config table).

    `train_seconds = S` trains the proxy stage for S seconds instead of its steps (and the
    scale stage, twice the proxy's training, for 2 S)."""
    factory = BUILTIN_TASKS.get(name) or _plugin_factory(name)
    options = dict(options or {})
    seconds = _train_seconds(name, options)
    try:
        task = factory(**options)
    except ValidationError as e:
        problems = "; ".join(
            ".".join(["tasks", name, *(str(p) for p in err["loc"])]) + f": {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"invalid task options: {problems}") from None
    if not isinstance(task, TokenTask) or task.name != name:
        raise ArchlabError(
            f"the factory for task '{name}' must return a TokenTask whose name is '{name}', "
            f"got {type(task).__name__} named {getattr(task, 'name', None)!r}"
        )
    if seconds is not None:
        task.budgets = {
            stage: budget.timed(seconds * (2 if stage == "scale" else 1))
            if stage in ("proxy", "scale")
            else budget
            for stage, budget in task.budgets.items()
        }
    return task
