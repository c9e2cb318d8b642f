"""The pieces around the LLM client: role dispatch and config, the coder's edits, the
replay brain, prompt templates and the bounded prompt context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from archlab.cli import app
from archlab.config import load_settings
from archlab.errors import ConfigError
from archlab.llm.answers import Unusable
from archlab.llm.brains import ReplayBrain, ReplayExhausted, parse_brain
from archlab.llm.client import Question
from archlab.memory import queries
from archlab.memory.store import Memory
from archlab.prompts import Prompts, task_brief
from archlab.roles import briefing
from archlab.roles.brains import build_brains
from archlab.roles.coder import read_code
from archlab.roles.critic import Critique, HeuristicCritic
from archlab.search.genome import baseline_genome, render
from archlab.tasks.mqar import MQAR
from fake_llm import FakeLLM, Reply, as_json, code_block, edit, fenced

PARENT = """import torch

WIDTH = 4


def build_model(spec):
    n = 4
    return torch.nn.Linear(n, 4)
"""


def settings_with(**flags: Any) -> Any:
    return load_settings(flags=flags, environ={})


# --- config and role dispatch -----------------------------------------------------------------


def test_presets_fill_a_profile_and_the_user_wins() -> None:
    s = settings_with(
        llm={"ollama": {"model": "qwen3:8b"}, "hosted": {"preset": "openai", "model": "x"}}
    )
    assert s.llm["ollama"].base_url == "http://localhost:11434/v1"
    assert s.llm["ollama"].api_key_env is None
    assert s.llm["hosted"].token_limit_field == "max_completion_tokens"
    s = settings_with(llm={"anthropic": {"model": "claude", "structured_output": "json_object"}})
    assert s.llm["anthropic"].structured_output == "json_object"
    assert s.llm["anthropic"].api_key_env == "ANTHROPIC_API_KEY"


def test_a_profile_needs_a_model_and_a_known_preset() -> None:
    with pytest.raises(ConfigError, match=r"llm\.ollama\.model: Field required"):
        settings_with(llm={"ollama": {}})
    with pytest.raises(ConfigError, match=r"llm\.x\.preset"):
        settings_with(llm={"x": {"preset": "skynet", "model": "m"}})


def test_profiles_come_from_the_environment_too() -> None:
    s = load_settings(
        environ={
            "ARCHLAB_LLM__DEFAULT__BASE_URL": "http://127.0.0.1:1/v1",
            "ARCHLAB_LLM__DEFAULT__MODEL": "m",
        }
    )
    assert s.llm["default"].model == "m"


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("heuristic", ("heuristic", "")),
        ("llm", ("llm", "default")),
        ("llm:openai", ("llm", "openai")),
        ("openai", ("llm", "openai")),
        ("replay:2026", ("replay", "2026")),
    ],
)
def test_parse_brain(spec: str, parsed: tuple[str, str]) -> None:
    assert parse_brain(spec) == parsed


def test_each_role_gets_its_own_brain(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    s = settings_with(
        run={"brain": "llm:big"},
        roles={"coder": "small", "critic": "heuristic"},
        llm={
            "big": {"base_url": "http://127.0.0.1:1/v1", "model": "b"},
            "small": {"preset": "ollama", "model": "s"},
        },
    )
    brains = build_brains(s, memory, "r1")
    assert brains.names == {"planner": "llm:big", "coder": "llm:small", "critic": "heuristic"}
    assert isinstance(brains.critic, HeuristicCritic)  # no model behind it
    assert brains.describe() == "planner=llm:big coder=llm:small critic=heuristic"
    assert build_brains(settings_with(), memory, "r2").describe() == "heuristic"


def test_brain_errors_name_the_key(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    with pytest.raises(ConfigError, match=r"roles\.critic: no \[llm\.nope\] profile"):
        build_brains(settings_with(roles={"critic": "llm:nope"}), memory, "r")
    with pytest.raises(ConfigError, match="--llm-base-url"):
        build_brains(settings_with(run={"brain": "llm"}), memory, "r")
    with pytest.raises(ConfigError, match="design mode needs a model"):
        build_brains(settings_with(run={"mode": "design"}), memory, "r")


# --- the coder's answers ----------------------------------------------------------------------


def test_edits_apply_to_the_parent() -> None:
    answer = "Change the width:\n" + edit(
        "    return torch.nn.Linear(n, 4)\n", "    return torch.nn.Linear(n, 8)\n"
    )
    code = read_code(answer, PARENT)
    assert "Linear(n, 8)" in code.source and code.edits == 1


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (edit("    return torch.nn.Conv1d(4, 4)\n", "x\n"), "not in the code"),
        (edit(" = 4", " = 8"), "occur 2 times"),
        (edit("\n", "x"), "empty SEARCH"),
        ("I changed it as asked.", "neither SEARCH/REPLACE edits nor a ```python block"),
        (code_block(PARENT), "unchanged"),
    ],
)
def test_unusable_code_answers_say_why(answer: str, problem: str) -> None:
    with pytest.raises(Unusable, match=problem):
        read_code(answer, PARENT)


def test_a_whole_module_comes_out_of_its_fence() -> None:
    new = PARENT.replace("n, 4", "n, 2")
    assert read_code("Here:\n" + code_block(new) + "\nDone.", PARENT).source == new
    assert read_code(code_block(new), None).source == new
    with pytest.raises(Unusable, match="no code to edit"):
        read_code(edit("a\n", "b\n"), None)


# --- the replay brain -------------------------------------------------------------------------


def test_replay_answers_by_role_step_and_repair_without_a_model() -> None:
    answer = {
        "analysis": "a",
        "implements_plan": True,
        "verdict": "accept",
        "reason": "r",
        "insight": "i",
    }
    rows: list[dict[str, Any]] = []
    brain = ReplayBrain("r1", {("critic", 2, 1): answer}, rows.append)
    question = Question(
        role="critic", purpose="critique", messages=[], answer=Critique, step=2, repair=1
    )
    assert brain.ask(question) == Critique.model_validate(answer)
    assert (
        rows[0]["brain"] == "replay:r1" and rows[0]["status"] == "ok" and rows[0]["cost_usd"] == 0
    )
    with pytest.raises(ReplayExhausted, match="no critic answer for step 3"):
        brain.ask(Question(role="critic", purpose="critique", messages=[], answer=Critique, step=3))


# --- prompts ----------------------------------------------------------------------------------


def test_user_templates_override_the_built_in_ones(tmp_path: Path) -> None:
    (tmp_path / "reask.j2").write_text("Nope: {{ problem }}")
    assert Prompts(tmp_path).render("reask.j2", problem="p") == "Nope: p\n"
    assert "cannot be used" in Prompts().render("reask.j2", problem="p")


def test_a_missing_template_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"reask.j2.*'problem' is undefined"):
        Prompts().render("reask.j2")


def test_a_prompts_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        Prompts(tmp_path / "missing")


def _fill(memory: Memory, n: int) -> None:
    """n candidates of one task in one statement: 80% trained, the rest failed, each with
    a realistic plan, genome, code and insight."""
    genome = baseline_genome().model_dump(mode="json")
    source = render(baseline_genome())
    with memory.connect() as con:
        con.execute(
            "INSERT INTO candidates (candidate_id, run_id, task, task_fingerprint, source, "
            "source_hash, ast_hash, parents, plan, genome, genome_key, brain, origin, status, "
            "error_class, message, score, metrics, n_params, duplicate_of, created_at, "
            "updated_at) SELECT 'c' || i, 'r', 'mqar', 'fp', ? || i, 'h' || i, NULL, "
            "CASE WHEN i > 0 THEN json_array('c' || (i - 1)) ELSE json_array() END, "
            "json_object('operator', 'mutate', 'summary', 'idea number ' || i, 'hypothesis', "
            "repeat('a change that should help because of reasons ', 8) || i, 'motivation', 'm', "
            "'expected_effect', 'e'), ?::JSON, 'k' || i, 'llm:x', 'proposed', "
            "CASE WHEN i % 5 = 4 THEN 'failed' ELSE 'ok' END, "
            "CASE WHEN i % 5 = 4 THEN 'shape' END, "
            "CASE WHEN i % 5 = 4 THEN repeat('expected (16, 32, 64), got (16, 64) ', 20) END, "
            "CASE WHEN i % 5 = 4 THEN NULL ELSE (i % 997) / 1000.0 END, "
            "json_object('accuracy', 0.5, 'accuracy_auc', 0.4), 100000 + i, NULL, "
            "now()::TIMESTAMP + to_microseconds(i), now()::TIMESTAMP + to_microseconds(i) "
            "FROM range(?) t(i)",
            [source, json.dumps(genome), n],
        )
        con.execute(
            "INSERT INTO verdicts (candidate_id, run_id, verdict, reason, insight, created_at) "
            "SELECT candidate_id, 'r', 'accept', 'r', repeat('deeper helps ', 10), created_at "
            "FROM candidates"
        )


def planner_prompt(memory: Memory, with_code: bool) -> str:
    task = MQAR()
    context = briefing.planner_context(memory, "fp", with_code)
    return Prompts().render(
        "planner.j2",
        task=task_brief(task),
        mode="design" if with_code else "compose",
        mixers=["softmax_attention"],
        channels=["mlp"],
        notes=["prefer gated recurrence"],
        **context,
    )


@pytest.mark.parametrize("with_code", [False, True])
def test_the_planner_prompt_stays_bounded_as_the_memory_grows(
    tmp_path: Path, with_code: bool
) -> None:
    sizes = {}
    for n in (10, 10_000):
        memory = Memory(tmp_path / f"m{n}.duckdb")
        _fill(memory, n)
        sizes[n] = len(planner_prompt(memory, with_code))
    assert sizes[10_000] <= 1.3 * sizes[10]
    assert sizes[10_000] < (40_000 if with_code else 12_000)


def test_novelty_and_parent_lookups(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    _fill(memory, 20)
    assert queries.same_summary(memory, "fp", "Idea  number-7!") == "c7"
    assert queries.same_summary(memory, "fp", "idea number 77") is None
    assert queries.known_ids(memory, "fp", ["c1", "zz", "c19"]) == {"c1", "c19"}
    assert [e["id"] for e in briefing.lineage(memory, "c19")] == [
        f"c{i}" for i in range(19, 13, -1)
    ]


def test_the_best_with_code_and_a_spread_below_them_in_one_query(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "m.duckdb")
    _fill(memory, 20)  # scores rise with the number; every fifth one failed
    best, diverse = briefing.ranked(memory, "fp", with_code=True)
    assert [e["id"] for e in best] == ["c18", "c17", "c16"]
    assert all(e["code"] for e in best)
    # the 13 scored below them, at ranks 0, 4 and 8 of those, without code
    assert [e["id"] for e in diverse] == ["c15", "c10", "c5"]
    assert not any(e["code"] for e in diverse)
    best, diverse = briefing.ranked(memory, "fp", with_code=False)
    assert not any(e["code"] for e in best) and len(diverse) == 3


# --- archlab llm check ------------------------------------------------------------------------


def check(fake: FakeLLM, *extra: str) -> Any:
    args = ["llm", "check", "--llm-base-url", fake.base_url, "--llm-model", "m", *extra]
    return CliRunner().invoke(app, args)


def test_llm_check_reports_an_honoured_schema() -> None:
    with FakeLLM() as fake:
        fake.queue("check", Reply(as_json({"word": "archlab", "number": 42})))
        result = check(fake, "--json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert report["ok"] and report["structured"] == "honoured" and report["latency_s"] > 0


def test_llm_check_reports_repaired_and_wrong_answers() -> None:
    with FakeLLM() as fake:
        fake.queue("check", Reply(fenced({"word": "archlab", "number": 42})))
        repaired = check(fake)
        fake.queue("check", Reply("I cannot do JSON."))
        broken = check(fake, "--llm-structured-output", "prompt")
        (body,) = fake.bodies("check")[1:]
    assert repaired.exit_code == 0 and "repaired" in repaired.stdout
    assert broken.exit_code == 1 and "not honoured" in broken.stdout
    assert "response_format" not in body and '"number"' in body["messages"][-1]["content"]


def test_llm_check_names_an_unreachable_endpoint(tmp_path: Path) -> None:
    with FakeLLM() as fake:
        url = fake.base_url
    (tmp_path / "archlab.toml").write_text(
        f'[llm.local]\nbase_url = "{url}"\nmodel = "m"\nmax_retries = 0\n'
    )
    result = CliRunner().invoke(
        app, ["--config", str(tmp_path / "archlab.toml"), "llm", "check", "local"]
    )
    assert result.exit_code == 1 and "cannot reach" in result.stdout
