"""What every command shares: the app they register on, the consoles, the global options,
settings and memory as the flags give them, and the `--llm-*` options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from archlab.config import Settings, load_settings, nested
from archlab.memory.store import MEMORY_FILE, Memory

app = typer.Typer(
    help="Automated neural-architecture discovery: planner, coder, trainer and critic agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
progress = Console(stderr=True)


def whole_lines() -> bool:
    """Whether to print a message as one line (a path or a command in it stays whole for a
    log or a script) rather than wrapped at words, as a terminal shows it best."""
    return not progress.is_terminal


class _Global:
    home: Path | None = None
    config: Path | None = None


@app.callback()
def _global(
    home: Annotated[Path | None, typer.Option(help="data directory [env: ARCHLAB_HOME]")] = None,
    config: Annotated[
        Path | None, typer.Option(help="config file [env: ARCHLAB_CONFIG; default ./archlab.toml]")
    ] = None,
) -> None:
    _Global.home, _Global.config = home, config


def cli_settings(**flags: Any) -> Settings:
    """Settings with the flags that were actually given on top."""
    given = nested(flags)
    if _Global.home is not None:
        given["home"] = _Global.home
    return load_settings(_Global.config, given)


def existing_memory(settings: Settings) -> Memory:
    """The home's memory; a clear error where there is none (only a run creates one)."""
    return Memory.open_existing(settings.home_dir / MEMORY_FILE)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fmt_score(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"


# `--brain llm` uses the [llm.default] profile; these flags fill it in.
LLM_BASE_URL = typer.Option(help="OpenAI-compatible base URL of the llm.default profile")
LLM_MODEL = typer.Option(help="model of the llm.default profile")
LLM_STRUCTURED = typer.Option(help="json_schema, json_object or prompt")
LLM_TIMEOUT = typer.Option(
    help="seconds without a token (or an answer) before an LLM request is retried"
)
LLM_MAX_OUTPUT_TOKENS = typer.Option(help="the cap on every answer's length, in tokens")


def llm_flags(
    base_url: str | None,
    model: str | None,
    structured: str | None,
    timeout: float | None = None,
    max_output_tokens: int | None = None,
) -> dict[str, Any]:
    return {
        "llm.default.base_url": base_url,
        "llm.default.model": model,
        "llm.default.structured_output": structured,
        "llm.default.timeout_s": timeout,
        "llm.default.max_output_tokens": max_output_tokens,
    }
