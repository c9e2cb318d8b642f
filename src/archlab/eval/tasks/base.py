"""The task API's former path, kept for plugins written against it: use `archlab`
(`archlab.Task`, `archlab.Budget`, ...)."""

from archlab.tasks.base import *  # noqa: F403
from archlab.tasks.base import __all__ as __all__
