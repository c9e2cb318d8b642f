"""Loading settings: defaults < archlab.toml < ARCHLAB_* environment < command-line flags.

Every layer is validated against the same pydantic models, so an unknown key or a
wrong type is reported with the dotted key and the place it came from.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from archlab.config.settings import CONFIG_FILE_NAME, ENV_PREFIX, Settings
from archlab.errors import ConfigError


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


def _leaves(layer: Mapping[str, Any], at: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in layer.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, (*at, key))
        else:
            yield (*at, key)


def _validate(layers: list[tuple[str, dict[str, Any]]]) -> Settings:
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged = _merge(merged, layer)
    problems = []
    # a value that a later layer overrides must still be valid: checked in its own place
    for n, (source, layer) in enumerate(layers):
        overridden = {
            loc for loc in _leaves(layer) if any(_has_key(top, loc) for _, top in layers[n + 1 :])
        }
        if not overridden:
            continue
        try:
            Settings.model_validate(_merge(merged, layer))
        except ValidationError as e:
            problems += [_problem(source, err) for err in e.errors() if err["loc"] in overridden]
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            source = next(
                (src for src, layer in reversed(layers) if _has_key(layer, loc)), "config"
            )
            problems.append(_problem(source, err))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
    return settings


def _problem(source: str, err: ErrorDetails) -> str:
    """One validation error in words, named after the layer (`source`) that gave the value."""
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if source == "environment":
        source = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    return f"{source}: {key}: {err['msg']} (got {err.get('input')!r})"


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


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flags by dotted key (`run.trials`) as the nested dict settings take; None: not given."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return tree


def stored_settings(config: Mapping[str, Any], flags: Mapping[str, Any]) -> Settings:
    """A run's stored settings (its `config`) with `flags`, a nested dict of the values
    given on resuming it, on top."""
    return _validate([("the run's settings", dict(config)), ("command line", dict(flags))])
