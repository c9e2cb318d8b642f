"""Settings: defaults < archlab.toml < ARCHLAB_* environment < command-line flags.

Every layer is validated against the same pydantic models, so an unknown key or a
wrong type is reported with the dotted key and the place it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from archlab.errors import ConfigError

CONFIG_FILE_NAME = "archlab.toml"
ENV_PREFIX = "ARCHLAB_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSettings(_Section):
    task: str = "mqar"
    trials: int = Field(default=12, ge=1, description="candidates to evaluate, baseline included")
    minutes: float = Field(default=0.0, ge=0, description="wall-clock budget; 0 means none")
    seed: int = 0
    brain: Literal["heuristic"] = "heuristic"


class SandboxSettings(_Section):
    level: Literal["basic"] = Field(default="basic", description="minimum isolation level")
    threads: int = Field(default=1, ge=1, le=64, description="CPU threads per trial")
    memory_gb: float = Field(default=8.0, gt=0, description="address-space limit per trial")
    log_tail_bytes: int = Field(default=4000, ge=0)


class SearchSettings(_Section):
    tournament_size: int = Field(default=3, ge=1)
    crossover_rate: float = Field(default=0.25, ge=0, le=1)
    random_rate: float = Field(default=0.1, ge=0, le=1)


class Settings(_Section):
    home: Path | None = None
    run: RunSettings = RunSettings()
    sandbox: SandboxSettings = SandboxSettings()
    search: SearchSettings = SearchSettings()
    #: per-task options, e.g. [tasks.mqar] num_kv_pairs = 16; each task validates its own
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def home_dir(self) -> Path:
        return resolve_home(self.home)


def default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "archlab"


def resolve_home(home: Path | str | None) -> Path:
    """The data directory, created on first use."""
    path = Path(home).expanduser() if home else default_home()
    path = path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create archlab home {path}: {e.strerror}") from e
    return path


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """ARCHLAB_HOME -> home, ARCHLAB_RUN__TRIALS -> run.trials (strings; pydantic coerces)."""
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "ARCHLAB_CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = layer
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return layer


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _has_key(layer: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    node: Any = layer
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _validate(layers: list[tuple[str, dict[str, Any]]]) -> Settings:
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged = _merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc)
            source = next(
                (src for src, layer in reversed(layers) if _has_key(layer, loc)), "config"
            )
            if source == "environment":
                source = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
            if err["type"] == "extra_forbidden":
                problems.append(f"{source}: unknown key '{key}'")
            else:
                problems.append(f"{source}: {key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def load_settings(
    config_path: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings; `flags` is a nested dict of the command-line values that were given."""
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, dict[str, Any]]] = []
    explicit = config_path or (
        Path(environ["ARCHLAB_CONFIG"]) if "ARCHLAB_CONFIG" in environ else None
    )
    path = explicit or Path.cwd() / CONFIG_FILE_NAME
    if explicit or path.is_file():
        layers.append((str(path), read_config_file(path)))
    layers.append(("environment", _env_layer(environ)))
    layers.append(("command line", dict(flags or {})))
    return _validate(layers)
