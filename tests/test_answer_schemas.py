"""The JSON schemas sent as response_format hold the validator's rules, so that a server
decoding under the schema (llama.cpp, vLLM, OpenAI's strict mode) cannot produce an answer
the validator refuses: for each role's schema, an answer valid against it validates, and
answers the validator refuses for a rule JSON Schema can express are refused by it too."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from archlab.config.settings import ROLE_OUTPUT_TOKENS
from archlab.llm.answers import Unusable, example_answer, read_json, strict_schema
from archlab.llm.check import Ping
from archlab.roles.critic import Critique
from archlab.roles.planner import ComposePlan, DesignPlan, plan_schema

IDS = ["0123456789ab", "ba9876543210"]
GENOME = {
    "d_model": 64,
    "n_heads": 2,
    "blocks": [{"mixer": "softmax_attention", "channel": "mlp"}],
    "norm": "layernorm",
    "residual": "pre_norm",
    "mlp_ratio": 4,
    "conv_kernel": 4,
}
PLAN = {
    "motivation": "the best candidate has one head",
    "hypothesis": "two heads separate keys from values",
    "expected_effect": "higher accuracy, same parameters",
}
COMPOSE = {**PLAN, "genome": GENOME}
DESIGN = {**PLAN, "summary": "two-head transformer"}


def validates(model: type[BaseModel], answer: dict[str, Any]) -> bool:
    try:
        model.model_validate(answer)
    except ValidationError:
        return False
    return True


def plans(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operator with every parent count, parents known and unknown."""
    choices = [[], IDS[:1], IDS, [*IDS, IDS[0]], ["not-an-id"]]
    return [
        {**base, "operator": op, "parents": parents}
        for op, parents in itertools.product(["mutate", "crossover", "new", "merge"], choices)
    ]


def broken(base: dict[str, Any]) -> list[dict[str, Any]]:
    """A valid answer with one rule broken that JSON Schema can express."""
    valid = {**base, "operator": "mutate", "parents": IDS[:1]}
    cases = [{k: v for k, v in valid.items() if k != key} for key in valid]  # a field missing
    cases += [{**valid, "motivation": ""}, {**valid, "parents": "0123456789ab"}]
    if "genome" in base:
        genome = valid["genome"]
        cases += [
            {**valid, "genome": {**genome, "d_model": 72}},  # not a multiple of 16
            {**valid, "genome": {**genome, "n_heads": 9}},
            {**valid, "genome": {**genome, "n_heads": 6, "d_model": 160}},  # 6 does not divide
            {**valid, "genome": {**genome, "blocks": []}},
            {**valid, "genome": {**genome, "blocks": [{"mixer": "lstm", "channel": "mlp"}]}},
            {**valid, "genome": {**genome, "colour": "blue"}},  # a field the genome has not
        ]
    else:
        cases.append({**valid, "summary": "x" * 121})
    return cases


@pytest.mark.parametrize(
    ("model", "schema", "answers"),
    [
        (ComposePlan, plan_schema(ComposePlan, IDS), plans(COMPOSE) + broken(COMPOSE)),
        (DesignPlan, plan_schema(DesignPlan, IDS), plans(DESIGN) + broken(DESIGN)),
        (DesignPlan, plan_schema(DesignPlan, []), plans(DESIGN)),
        (
            Critique,
            strict_schema(Critique),
            [
                {
                    "analysis": "within noise",
                    "implements_plan": True,
                    "verdict": verdict,
                    "reason": "no gain",
                    "insight": "heads did not help",
                }
                for verdict in ("accept", "reject", "repair", "promote")
            ]
            + [{"analysis": "within noise", "verdict": "reject"}],
        ),
        (
            Ping,
            strict_schema(Ping),
            [{"word": "archlab", "number": 42}, {"word": "archlab"}, {"word": 1, "number": 2}],
        ),
    ],
    ids=["compose plan", "design plan", "design plan, empty memory", "critique", "check"],
)
def test_an_answer_valid_against_the_sent_schema_passes_validation(
    model: type[BaseModel], schema: dict[str, Any], answers: list[dict[str, Any]]
) -> None:
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    accepted = [a for a in answers if validator.is_valid(a)]
    assert accepted, "the schema accepts no answer at all"
    for answer in accepted:
        assert validates(model, answer), answer
    # and the converse, for these rules: what the validator refuses, the schema refuses
    for answer in answers:
        if not validates(model, answer):
            assert not validator.is_valid(answer), answer


def test_the_plan_schema_takes_parents_only_from_the_ids_shown() -> None:
    validator = Draft202012Validator(plan_schema(DesignPlan, IDS))
    crossover = {**DESIGN, "operator": "crossover", "parents": IDS}
    assert validator.is_valid(crossover)
    assert not validator.is_valid({**crossover, "parents": [IDS[0], "ffffffffffff"]})
    # with nothing in memory to build on, only a new architecture can be proposed
    empty = Draft202012Validator(plan_schema(DesignPlan, []))
    assert empty.is_valid({**DESIGN, "operator": "new", "parents": []})
    assert not empty.is_valid({**DESIGN, "operator": "mutate", "parents": IDS[:1]})


def test_every_field_is_required_as_in_openais_strict_mode() -> None:
    schema = strict_schema(ComposePlan)
    assert set(schema["required"]) == set(schema["properties"])
    for genome in schema["$defs"]["Genome"]["anyOf"]:
        assert set(genome["required"]) == set(genome["properties"])
        assert genome["additionalProperties"] is False


def test_widths_go_as_lists_of_values_that_the_head_count_divides() -> None:
    """llama.cpp's grammars ignore multipleOf and cannot see a rule across fields: a real
    llama-server broke each in three answers in a row. An enum per head count they honour."""
    variants = strict_schema(ComposePlan)["$defs"]["Genome"]["anyOf"]
    widths = {v["properties"]["n_heads"]["enum"][0]: v["properties"]["d_model"]["enum"]
              for v in variants}  # fmt: skip
    assert widths[1] == list(range(32, 257, 16))
    assert widths[6] == [48, 96, 144, 192, 240]
    assert all(w % heads == 0 for heads, ws in widths.items() for w in ws)
    validator = Draft202012Validator(strict_schema(ComposePlan))
    assert not validator.is_valid({**COMPOSE, "operator": "new", "parents": [],
                                   "genome": {**GENOME, "n_heads": 6, "d_model": 160}})  # fmt: skip


def _free_text(node: Any) -> list[dict[str, Any]]:
    """The schema's string fields whose values it does not list."""
    if isinstance(node, list):
        return [f for item in node for f in _free_text(item)]
    if not isinstance(node, dict):
        return []
    here = [node] if node.get("type") == "string" and not {"enum", "const"} & set(node) else []
    return here + [f for value in node.values() for f in _free_text(value)]


@pytest.mark.parametrize(
    "schema",
    [plan_schema(ComposePlan, IDS), plan_schema(DesignPlan, IDS), strict_schema(Critique),
     strict_schema(Ping)],
    ids=["compose plan", "design plan", "critique", "check"],
)  # fmt: skip
def test_free_text_is_bounded_in_the_schema_sent(schema: dict[str, Any]) -> None:
    """A real 270M model under llama-server's grammar wrote one word over and over into a
    plan's motivation, to the 2,048-token limit: 80 s an attempt, three attempts, the step
    lost. Under a bound the grammar closes the field and the answer goes on."""
    fields = _free_text(schema)
    assert fields
    assert all(isinstance(f.get("maxLength"), int) for f in fields), fields


def _longest(node: dict[str, Any], defs: dict[str, Any]) -> Any:
    """The longest value `node` allows, as JSON text goes."""
    if "$ref" in node:
        return _longest(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("oneOf", "anyOf"):
        if key in node:
            values = [_longest(variant, defs) for variant in node[key]]
            return max(values, key=lambda v: len(json.dumps(v)))
    if "enum" in node or "const" in node:
        return max(node.get("enum", [node.get("const")]), key=lambda v: len(json.dumps(v)))
    kind = node.get("type")
    if kind == "object":
        return {name: _longest(value, defs) for name, value in node["properties"].items()}
    if kind == "array":
        return [_longest(node["items"], defs)] * node["maxItems"]
    if kind == "string":
        return "x" * node["maxLength"]
    return {"boolean": False, "integer": 10**6}[kind]


@pytest.mark.parametrize(
    ("role", "schema"),
    [("planner", plan_schema(ComposePlan, IDS)), ("planner", plan_schema(DesignPlan, IDS)),
     ("critic", strict_schema(Critique)), ("check", strict_schema(Ping))],
    ids=["compose plan", "design plan", "critique", "check"],
)  # fmt: skip
def test_the_longest_answer_the_schema_allows_fits_the_roles_output_limit(
    role: str, schema: dict[str, Any]
) -> None:
    """Written one character a token (a base model wrote '0' a thousand times into a
    critique's analysis), the longest answer still ends within the role's default output
    limit, so a looping model under the grammar is never cut off."""
    longest = json.dumps(_longest(schema, schema.get("$defs", {})))
    assert len(longest) <= ROLE_OUTPUT_TOKENS[role], longest


def test_a_longer_text_than_the_bound_is_still_read() -> None:
    """The bound is the decoder's, not a rule: an unconstrained model's longer motivation,
    or one in a run replayed from before the bound, is read as it is."""
    answer = {**COMPOSE, "operator": "new", "parents": [], "motivation": "config_model_" * 100}
    assert not Draft202012Validator(plan_schema(ComposePlan, IDS)).is_valid(answer)
    assert validates(ComposePlan, answer)


@pytest.mark.parametrize("model", [ComposePlan, DesignPlan, Critique, Ping])
def test_the_example_a_prompt_shows_has_an_answers_shape(model: type[BaseModel]) -> None:
    """Where the schema travels in the prompt, an example answer goes with it (a 0.5B model
    shown only the schema wrote the schema back): its shape is an answer's."""
    example = example_answer(strict_schema(model))
    assert validates(model, example), example


def test_the_schema_written_back_is_told_apart_from_a_wrong_answer() -> None:
    with pytest.raises(Unusable, match="the JSON schema itself, not an answer"):
        read_json(json.dumps(strict_schema(Critique)), Critique)
