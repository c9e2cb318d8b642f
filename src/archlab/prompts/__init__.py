"""Prompt templates: one Jinja2 template per role and purpose, with StrictUndefined so a
missing value is an error, never a silently empty prompt. A user directory
(`prompts_dir` in the config) overrides any built-in template of the same name."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2

from archlab.errors import ConfigError
from archlab.tasks.base import TokenTask


class Prompts:
    def __init__(self, user_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if user_dir is not None:
            if not user_dir.is_dir():
                raise ConfigError(f"prompts_dir {user_dir} is not a directory")
            loaders.append(jinja2.FileSystemLoader(user_dir))
        loaders.append(jinja2.PackageLoader("archlab", "prompts"))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )

    def render(self, name: str, **context: Any) -> str:
        try:
            return self._env.get_template(name).render(**context).strip() + "\n"
        except jinja2.TemplateError as e:
            where = f":{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else ""
            raise ConfigError(f"prompt template {name}{where}: {e}") from e


def task_brief(task: TokenTask) -> dict[str, Any]:
    """What every prompt says about the task (see _task.j2)."""
    return {
        "name": task.name,
        "description": task.description,
        "kind": task.kind,
        "causal": task.causal,
        "spec": task.spec,
        "max_params": task.max_params,
        "recipe": asdict(task.recipe),
        "proxy": asdict(task.budgets["proxy"]),
        "metric": task.metric,
        "higher_is_better": task.higher_is_better,
    }
