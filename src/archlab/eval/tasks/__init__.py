"""The task registry's former path, kept for plugins written against it: use `archlab`
(`archlab.Task`, ...) or `archlab.tasks`."""

from archlab.tasks import BUILTIN_TASKS, ENTRY_POINT_GROUP, get_task, task_names

__all__ = ["BUILTIN_TASKS", "ENTRY_POINT_GROUP", "get_task", "task_names"]
