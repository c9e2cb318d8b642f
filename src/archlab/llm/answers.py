"""Reading a model's answers: inline reasoning taken out, fenced blocks, and the JSON in an
answer (fenced, wrapped in prose or slightly broken) validated into a pydantic model.
What cannot be used raises :class:`Unusable`, whose message tells the model what to fix.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import json_repair
from pydantic import BaseModel, Field, ValidationError

T = TypeVar("T", bound=BaseModel)


class Unusable(Exception):
    """An answer that cannot be used; the message tells the model what to fix."""


_THINK = re.compile(r"<(think|thinking)>(.*?)(?:</\1>|\Z)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def split_think(content: str) -> tuple[str, list[str]]:
    """Remove inline reasoning: `<think>` blocks (an unclosed one runs to the end), and a
    leading block whose opening tag the chat template swallowed (`...</think>answer`)."""
    thoughts = [m.group(2).strip() for m in _THINK.finditer(content)]
    content = _THINK.sub("", content)
    if "</think>" in content:
        head, _, content = content.rpartition("</think>")
        thoughts.insert(0, head.strip())
    return content.strip(), [t for t in thoughts if t]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block; an unclosed last fence runs to the end."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def extract_json(text: str) -> Any:
    """The JSON value in an answer: fenced, wrapped in prose, or slightly broken."""
    blocks = [body for _, body in fenced_blocks(text) if body.lstrip()[:1] in ("{", "[")]
    candidate = blocks[0] if blocks else text
    start = candidate.find("{")
    if start < 0:
        raise Unusable("the answer holds no JSON object")
    end = candidate.rfind("}")
    candidate = candidate[start : end + 1] if end > start else candidate[start:]
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        return json_repair.loads(candidate)


def prose(description: str, max_chars: int, min_chars: int | None = None) -> Any:
    """A free-text field of an answer, bounded in the schema sent and not by the validator:
    a grammar-constrained decoder closes a small model's looping text at the bound (a base
    model wrote one word over and over to the output limit, 80 s an attempt), while a
    longer text from an unconstrained answer or a replayed run is still read."""
    return Field(
        description=description, min_length=min_chars, json_schema_extra={"maxLength": max_chars}
    )


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema as constrained decoding honours it (OpenAI's strict mode): every
    property required, no other allowed, so that a grammar cannot leave out what the
    validator wants."""
    schema = model.model_json_schema()
    _tighten(schema)
    return schema


#: an integer with a step (multipleOf) and bounds becomes the list of its values up to this
#: many: grammar-constrained decoders (llama.cpp's) ignore multipleOf but honour an enum
_MAX_ENUM = 64


def _tighten(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node:
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False
        step, low, high = (node.get(k) for k in ("multipleOf", "minimum", "maximum"))
        if node.get("type") == "integer" and isinstance(step, int) and low is not None:
            values = list(range(-(-low // step) * step, high + 1, step)) if high else []
            if 0 < len(values) <= _MAX_ENUM:
                for key in ("multipleOf", "minimum", "maximum"):
                    del node[key]
                node["enum"] = values
        for value in node.values():
            _tighten(value)
    elif isinstance(node, list):
        for value in node:
            _tighten(value)


def example_answer(schema: dict[str, Any]) -> Any:
    """An answer of the schema's shape, a placeholder in each free-text field (its
    description), for prompts that carry the schema: a 0.5B model shown only the schema
    wrote the schema back, three attempts in a row."""

    def value(node: dict[str, Any]) -> Any:
        if "$ref" in node:
            return value(schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
        for key in ("anyOf", "oneOf"):
            if key in node:
                return value(node[key][0])
        if "default" in node:
            return node["default"]
        if "enum" in node or "const" in node:
            return node["enum"][0] if "enum" in node else node["const"]
        kind = node.get("type")
        if kind == "object":
            return {name: value(field) for name, field in node["properties"].items()}
        if kind == "array":  # the items told of by the array's description if not their own
            item = {"description": node.get("description", "text"), **node["items"]}
            return [value(item)] * max(node.get("minItems", 1), 1)
        if kind == "string":
            return f"<{node.get('description', 'text')}>"
        if kind in ("integer", "number"):
            return node.get("minimum", 0)
        return True if kind == "boolean" else None

    return value(schema)


def read_json(text: str, model: type[T]) -> T:
    value = extract_json(text)
    if not isinstance(value, dict):
        raise Unusable("the answer holds no JSON object")
    if {"$defs", "properties"} & set(value) and not set(value) & set(model.model_fields):
        raise Unusable(
            "that is the JSON schema itself, not an answer: answer with one object of the "
            "shape shown, your own values in it"
        )
    try:
        return model.model_validate(value)
    except ValidationError as e:
        problems = [
            f"- {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors()[:12]
        ]
        raise Unusable("the JSON does not match the schema:\n" + "\n".join(problems)) from None
