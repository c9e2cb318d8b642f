"""Built-in tasks, looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from archlab.errors import ArchlabError, ConfigError
from archlab.eval.tasks.base import TokenTask
from archlab.eval.tasks.mqar import MQAR

BUILTIN_TASKS: dict[str, Callable[..., TokenTask]] = {"mqar": MQAR}


def get_task(name: str, options: Mapping[str, Any] | None = None) -> TokenTask:
    """The task called `name`, configured with `options` (the [tasks.NAME] config table)."""
    try:
        factory = BUILTIN_TASKS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_TASKS))
        raise ArchlabError(f"unknown task '{name}' (known: {known})") from None
    try:
        return factory(**(options or {}))
    except ValidationError as e:
        problems = "; ".join(
            f"tasks.{name}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"invalid task options: {problems}") from None
