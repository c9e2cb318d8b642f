"""How usable a model's answers are in each `structured_output` mode, against a running
OpenAI-compatible server (llama.cpp's llama-server, llama-cpp-python's, vLLM, ...).

One short compose-mode run per mode, each in a fresh home, on a tiny MQAR, with the
planner and the critic on the model. From each run's log of calls it counts, per role, the
questions whose answer was usable at the first attempt, after repair (a later attempt,
told what was wrong), kept (valid, but a repeat or over the parameter limit after the last
attempt: the ladder then rejects it without training), or never (the offline brain
proposed that step; the critique fell back); the seconds and tokens per second of an
answer; and the model's candidates that trained. It prints a markdown table and writes
the JSON.

    bash .ci/local_llm.sh --qwen
    ~/.cache/archlab-ci/llama.cpp-0.3.36-avx2/llama-server -c 16384 --port 8080 \\
        -m ~/.cache/archlab-ci/qwen2.5-coder-0.5b-instruct-q4-0.9.0.gguf &
    .venv/bin/python benchmarks/llm_answers.py --model qwen2.5-coder-0.5b --json qwen.json

The figures in docs/llm-brains.md ("What small local models can do") come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from archlab.benchmarks.common import TINY_MQAR
from archlab.memory.store import MEMORY_FILE, Memory

MODES = ("json_schema", "json_object", "prompt")

#: a tiny MQAR: a trial trains in seconds, so the model's time is the run's
CONFIG = (
    "[tasks.mqar]\n"
    + "".join(f"{key} = {value}\n" for key, value in TINY_MQAR.items())
    + """
[run]
lanes = 1

[search]
random_samples = 0

[llm.default]
preset = "llamacpp"
base_url = "{base_url}"
model = "{model}"
structured_output = "{mode}"
"""
)


def run_mode(args: argparse.Namespace, mode: str, lab: Path) -> dict[str, Any]:
    lab.mkdir(parents=True)
    config = CONFIG.format(base_url=args.base_url, model=args.model, mode=mode)
    (lab / "archlab.toml").write_text(config + f"temperature = {args.temperature}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    started = time.monotonic()
    command = ["run", "--task", "mqar", "--brain", "llm", "--mode", "compose"]
    command += ["--trials", str(args.trials), "--seed", str(args.seed)]
    proc = subprocess.run(
        [sys.executable, "-m", "archlab", *command],
        cwd=lab,
        env={**env, "ARCHLAB_HOME": str(lab / "home")},
        capture_output=True,
        text=True,
    )
    return {
        "mode": mode,
        "exit_code": proc.returncode,
        "stderr_tail": proc.stderr[-600:] if proc.returncode else "",
        "wall_s": round(time.monotonic() - started, 1),
        **summarize(lab / "home"),
    }


def summarize(home: Path) -> dict[str, Any]:
    """A run's answers per role, and what became of the model's candidates."""
    memory = Memory(home / MEMORY_FILE)
    calls = _rows(memory, "SELECT * FROM llm_calls ORDER BY created_at")
    candidates = _rows(memory, "SELECT * FROM candidates WHERE origin IN ('proposed', 'fallback')")
    model_made = [
        c for c in candidates if c["origin"] == "proposed" and c["brain"] == "llm:default"
    ]
    roles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        roles[call["role"]].append(call)
    return {
        "roles": {role: _answers(role_calls) for role, role_calls in roles.items()},
        "proposed_by_model": len(model_made),
        # a repeat reuses its twin's result: it is not trained
        "trained": sum(c["status"] != "duplicate" and c["score"] is not None for c in model_made),
        "duplicates": sum(c["status"] == "duplicate" for c in model_made),
        "fallback": sum(c["origin"] == "fallback" for c in candidates),
        "home": str(home),
    }


def _rows(memory: Memory, sql: str) -> list[dict[str, Any]]:
    columns, rows = memory.read_only_sql(sql)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _answers(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Per question (role, step, purpose, candidate, repair): how its answer came; per
    answer (an attempt the server answered): seconds and tokens per second."""
    questions: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        key = ("role", "step", "purpose", "candidate_id", "repair")
        questions[tuple(call[k] for k in key)].append(call)
    counts = {"first": 0, "repaired": 0, "kept": 0, "never": 0}
    for attempts in questions.values():
        ok = [a for a in attempts if a["status"] == "ok"]
        if not ok:
            counts["never"] += 1
        elif ok[0]["error"]:  # "kept: no later answer passed the check (...)"
            counts["kept"] += 1
        else:
            counts["first" if ok[0]["attempt"] == 1 else "repaired"] += 1
    answered = [c for c in calls if c["status"] in ("ok", "invalid") and c["latency_s"]]
    seconds = sum(c["latency_s"] for c in answered)
    tokens = sum(c["completion_tokens"] or 0 for c in answered)
    return {
        **counts,
        "questions": len(questions),
        "answers": len(answered),
        "s_per_answer": round(seconds / len(answered), 1) if answered else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "problems": [c["error"] for c in calls if c["status"] == "invalid"][:6],
    }


def _row(model: str, result: dict[str, Any], role: str) -> str:
    a = result["roles"].get(role)
    if a is None:
        return f"| {model} | {result['mode']} | {role} | - | - | - | - | - | - |"
    trained = f"{result['trained']} of {result['proposed_by_model']}" if role == "planner" else ""
    return (
        f"| {model} | {result['mode']} | {role} | {a['first']} | {a['repaired']} | {a['kept']} "
        f"| {a['never']} | {a['s_per_answer']} ({a['tokens_per_s']} tok/s) | {trained} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--model", required=True, help="the name the table gives the model")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--trials", type=int, default=6, help="per run, the baseline included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (greedy) by default")
    parser.add_argument("--home", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    root = args.home or Path(tempfile.mkdtemp(prefix="archlab-llm-answers-"))
    results = []
    for mode in args.modes.split(","):
        result = run_mode(args, mode, root / mode)
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    print(
        "| model | structured_output | role | first attempt | after repair | kept | never "
        "| s per answer | model's candidates trained |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results:
        for role in ("planner", "critic"):
            print(_row(args.model, result, role))
    if args.json:
        report = {
            "model": args.model,
            "base_url": args.base_url,
            "temperature": args.temperature,
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
