"""benchmarks/llm_answers.py, which measures how usable a model's answers are per
`structured_output` mode, against the fake server: what it counts comes from the run's
log of calls and its candidates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_llm import FakeLLM, Reply, fenced

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "llm_answers.py"


def _plan(d_model: int) -> Reply:
    return Reply(
        fenced(
            {
                "motivation": "nothing tried yet but the baseline",
                "hypothesis": f"a gated recurrence at width {d_model} recalls as well, cheaper",
                "operator": "new",
                "parents": [],
                "expected_effect": "a similar score at a lower cost",
                "genome": {
                    "d_model": d_model,
                    "blocks": [{"mixer": "gated_recurrence", "channel": "mlp"}],
                },
            }
        )
    )


def test_answers_are_counted_by_how_they_came(fake: FakeLLM, tmp_path: Path) -> None:
    # the second plan repeats the first and is sent back: usable after repair
    fake.queue("planner", _plan(32), _plan(32), _plan(48))
    fake.defaults["critic"] = Reply("I cannot judge this.")  # never usable
    out = tmp_path / "answers.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--base-url", fake.base_url, "--model", "fake",
         "--modes", "json_object", "--trials", "3", "--home", str(tmp_path / "homes"),
         "--json", str(out)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads(out.read_text())["results"]
    assert result["mode"] == "json_object" and result["exit_code"] == 0, result
    planner, critic = result["roles"]["planner"], result["roles"]["critic"]
    counts = [planner[key] for key in ("first", "repaired", "kept", "never")]
    assert counts == [1, 1, 0, 0]
    assert planner["answers"] == 3 and planner["s_per_answer"] is not None
    assert "already has this genome" in planner["problems"][0]
    assert critic["questions"] >= 1 and critic["never"] == critic["questions"]
    assert (result["proposed_by_model"], result["trained"], result["fallback"]) == (2, 2, 0)
    assert "| fake | json_object | planner | 1 | 1 | 0 | 0 |" in proc.stdout
