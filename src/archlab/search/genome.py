"""A typed genome of architecture primitives and its rendering into a standalone torch module.

A :class:`Genome` is a small, validated description of a causal language model: a stack of
layers, each a sequence *mixer* (how positions exchange information) followed by an optional
*channel* block (a per-position MLP), plus a few global hyperparameters. Genomes are frozen
pydantic models, so they serialize to JSON (``model_dump(mode="json")``) and come back with
``Genome.model_validate(data)``.

:func:`render` turns a genome into the source of one self-contained Python module (it imports
only ``torch``) that defines ``build_model(spec)``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal, get_args

import jinja2
from pydantic import BaseModel, ConfigDict, Field, model_validator

Mixer = Literal["softmax_attention", "linear_attention", "causal_conv", "gated_recurrence"]
Channel = Literal["gated_mlp", "mlp", "none"]
Norm = Literal["layernorm", "rmsnorm"]
Residual = Literal["pre_norm", "post_norm"]

MIXERS: tuple[Mixer, ...] = get_args(Mixer)
CHANNELS: tuple[Channel, ...] = get_args(Channel)
NORMS: tuple[Norm, ...] = get_args(Norm)
RESIDUALS: tuple[Residual, ...] = get_args(Residual)

#: Mixers whose rendered module uses ``n_heads``.
HEADED_MIXERS: frozenset[str] = frozenset({"softmax_attention", "linear_attention"})

#: Defaults; :meth:`Genome.canonical` also resets hyperparameters no block uses to these.
DEFAULT_N_HEADS = 1
DEFAULT_MLP_RATIO = 4
DEFAULT_CONV_KERNEL = 4

#: Chunk length of the chunk-wise linear attention in rendered modules.
LINEAR_ATTENTION_CHUNK = 64

_NORM_ABBREV = {"layernorm": "ln", "rmsnorm": "rms"}
_RESIDUAL_ABBREV = {"pre_norm": "pre", "post_norm": "post"}

_Int = Annotated[int, Field(strict=True)]


class Block(BaseModel):
    """One layer: a sequence mixer followed by an optional channel (MLP) block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mixer: Mixer
    channel: Channel

    def describe(self) -> str:
        return f"{self.mixer}+{self.channel}"


WIDTHS = range(32, 257, 16)
HEADS = range(1, 9)


def _widths_by_heads(schema: dict[str, Any]) -> None:
    """The JSON schema as one variant per head count, each with the widths it divides:
    "n_heads divides d_model" then holds for a decoder constrained by the schema (a
    grammar-constrained model answered n_heads 6 with d_model 160 three times in a row)."""
    variants = []
    for heads in HEADS:
        properties = dict(schema["properties"])
        properties["n_heads"] = {**properties["n_heads"], "enum": [heads]}
        properties["d_model"] = {
            "type": "integer",
            "enum": [width for width in WIDTHS if width % heads == 0],
        }
        for bound in ("minimum", "maximum", "default"):
            properties["n_heads"].pop(bound, None)
        variants.append({**schema, "properties": properties})
    schema.clear()
    schema["anyOf"] = variants


class Genome(BaseModel):
    """A complete architecture: global hyperparameters plus a stack of 1..6 blocks."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_widths_by_heads)

    d_model: Annotated[_Int, Field(ge=WIDTHS.start, le=WIDTHS[-1], multiple_of=WIDTHS.step)]
    n_heads: Annotated[_Int, Field(ge=HEADS.start, le=HEADS[-1])] = DEFAULT_N_HEADS
    blocks: Annotated[tuple[Block, ...], Field(min_length=1, max_length=6)]
    norm: Norm = "layernorm"
    residual: Residual = "pre_norm"
    mlp_ratio: Annotated[_Int, Field(ge=1, le=4)] = DEFAULT_MLP_RATIO
    conv_kernel: Annotated[_Int, Field(ge=2, le=8)] = DEFAULT_CONV_KERNEL

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Genome:
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"n_heads={self.n_heads} does not divide d_model={self.d_model}")
        return self

    # -- which hyperparameters matter -------------------------------------------------------

    @property
    def uses_heads(self) -> bool:
        return any(b.mixer in HEADED_MIXERS for b in self.blocks)

    @property
    def uses_mlp_ratio(self) -> bool:
        return any(b.channel != "none" for b in self.blocks)

    @property
    def uses_conv_kernel(self) -> bool:
        return any(b.mixer == "causal_conv" for b in self.blocks)

    def canonical(self) -> Genome:
        """The same architecture with hyperparameters that no block uses reset to defaults.

        Two genomes with equal ``canonical()`` build identical models (and render to
        byte-identical source).
        """
        updates: dict[str, Any] = {}
        if not self.uses_heads and self.n_heads != DEFAULT_N_HEADS:
            updates["n_heads"] = DEFAULT_N_HEADS
        if not self.uses_mlp_ratio and self.mlp_ratio != DEFAULT_MLP_RATIO:
            updates["mlp_ratio"] = DEFAULT_MLP_RATIO
        if not self.uses_conv_kernel and self.conv_kernel != DEFAULT_CONV_KERNEL:
            updates["conv_kernel"] = DEFAULT_CONV_KERNEL
        return self.model_copy(update=updates) if updates else self

    def key(self) -> str:
        """Canonical JSON (sorted keys, no spaces) of :meth:`canonical`, for novelty checks."""
        data = self.canonical().model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """Short one-line summary, e.g. ``d64 h1 ln pre mlp4 [softmax_attention+mlp, ...]``.

        ``mlpN`` (mlp_ratio) and ``kN`` (conv_kernel) appear only when some block uses them.
        """
        g = self.canonical()
        parts = [f"d{g.d_model}", f"h{g.n_heads}", _NORM_ABBREV[g.norm]]
        parts.append(_RESIDUAL_ABBREV[g.residual])
        if g.uses_mlp_ratio:
            parts.append(f"mlp{g.mlp_ratio}")
        if g.uses_conv_kernel:
            parts.append(f"k{g.conv_kernel}")
        layers = ", ".join(b.describe() for b in g.blocks)
        return f"{' '.join(parts)} [{layers}]"


def baseline_genome() -> Genome:
    """The "small transformer": 2 x (softmax attention + MLP), d_model 64, 1 head, pre-LN."""
    block = Block(mixer="softmax_attention", channel="mlp")
    return Genome(
        d_model=64,
        n_heads=1,
        blocks=(block, block),
        norm="layernorm",
        residual="pre_norm",
        mlp_ratio=4,
    )


# -- sizes shared by render() and count_params() ----------------------------------------------


def _round_up(value: float, multiple: int) -> int:
    return int(-(-value // multiple) * multiple)


def mlp_hidden(genome: Genome) -> int:
    """Hidden width of the plain MLP: ``mlp_ratio * d_model``."""
    return genome.mlp_ratio * genome.d_model


def gated_mlp_hidden(genome: Genome) -> int:
    """Hidden width of the SwiGLU MLP: 2/3 of the plain one (same parameters), rounded to 16."""
    return _round_up(2 * genome.mlp_ratio * genome.d_model / 3, 16)


def count_params(genome: Genome, vocab_size: int, seq_len: int) -> int:
    """Exact number of parameters of ``build_model`` of the rendered genome (no rendering)."""
    d = genome.d_model
    norm = 2 * d if genome.norm == "layernorm" else d
    mixer_params = {
        "softmax_attention": 4 * d * d,
        "linear_attention": 4 * d * d,
        "causal_conv": 3 * d * d + d * genome.conv_kernel + d,
        "gated_recurrence": 4 * d * d,
    }
    channel_params = {
        "mlp": 2 * d * mlp_hidden(genome),
        "gated_mlp": 3 * d * gated_mlp_hidden(genome),
        "none": 0,
    }
    total = vocab_size * d + seq_len * d + norm + d * vocab_size  # embeddings, final norm, head
    for block in genome.blocks:
        total += norm + mixer_params[block.mixer]
        if block.channel != "none":
            total += norm + channel_params[block.channel]
    return total


# -- rendering -------------------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("archlab.search", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(genome: Genome) -> str:
    """Source of a standalone module (imports only torch) defining ``build_model(spec)``.

    Deterministic: the same genome (up to :meth:`Genome.canonical`) gives byte-identical
    source. Only the primitive classes the genome uses are emitted.
    """
    g = genome.canonical()
    mixers = {b.mixer for b in g.blocks}
    channels = {b.channel for b in g.blocks}
    context = {
        "summary": g.describe().split(" [", 1)[0],
        "blocks": g.blocks,
        "d_model": g.d_model,
        "n_heads": g.n_heads,
        "uses_heads": g.uses_heads,
        "mlp_hidden": mlp_hidden(g) if "mlp" in channels else None,
        "gated_mlp_hidden": gated_mlp_hidden(g) if "gated_mlp" in channels else None,
        "conv_kernel": g.conv_kernel if g.uses_conv_kernel else None,
        "chunk_size": LINEAR_ATTENTION_CHUNK,
        "norm": g.norm,
        "residual": g.residual,
        "mixers": [m for m in MIXERS if m in mixers],
        # Primitive classes to emit, in a fixed order (not set order) for deterministic output.
        "partials": [f"_{m}.py.j2" for m in MIXERS if m in mixers]
        + [f"_{c}.py.j2" for c in CHANNELS if c in channels and c != "none"]
        + (["_rmsnorm.py.j2"] if g.norm == "rmsnorm" else []),
    }
    return _environment().get_template("model.py.j2").render(**context)


def genome_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """What changed from genome `old` to `new` (stored JSON), one `path: old -> new` per
    value, e.g. `blocks[1].mixer: gru -> softmax_attention`; a block added or removed is
    one change. Empty where either is not a genome (a hand-written candidate)."""
    if not old or not new:
        return []
    changes: list[str] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(a.keys() | b.keys()):
                walk(f"{path}.{key}" if path else key, a.get(key), b.get(key))
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                here = f"{path}[{i}]"
                if i >= len(a):
                    changes.append(f"{here} added: {_brief(b[i])}")
                elif i >= len(b):
                    changes.append(f"{here} removed: {_brief(a[i])}")
                else:
                    walk(here, a[i], b[i])
        elif a != b:
            changes.append(f"{path}: {a} -> {b}")

    walk("", old, new)
    return changes


def _brief(value: Any) -> str:
    """A block as `mixer+channel`, anything else as it is."""
    if isinstance(value, dict) and {"mixer", "channel"} <= value.keys():
        return f"{value['mixer']}+{value['channel']}"
    return str(value)


@cache
def transformer_source() -> str:
    """The packaged small-transformer baseline (hand-written): `baseline_genome()`."""
    return resources.files("archlab.tasks.baselines").joinpath("transformer.py").read_text()


def genome_of(candidate: dict[str, Any]) -> dict[str, Any] | None:
    """The genome a stored candidate is: its own, or, for the packaged transformer baseline
    (hand-written code), the genome the planner mutates it as; None for other hand-written
    code."""
    if candidate.get("genome"):
        return dict(candidate["genome"])
    if candidate.get("source") == transformer_source():
        return baseline_genome().model_dump(mode="json")
    return None
