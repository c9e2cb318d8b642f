"""The verification ladder end to end, through the real CLI: a lucky seed does not make a
discovery, and a result too good to be true is audited (tests/test_audit.py has more)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import archlab, as_json

pytestmark = pytest.mark.slow

# An exact associative-recall model: each position answers with the token that followed the
# first earlier occurrence of its own token. Causal, and right from the first step: the answer
# is written into the code, not learned from the targets.
RECALL = """
import torch
from torch import nn

class Recall(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.vocab_size = spec.vocab_size
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        length = x.shape[1]
        earlier = torch.ones(length, length, dtype=torch.bool).tril(-1)
        same = (x[:, :, None] == x[:, None, :]) & earlier
        first = same.float().argmax(dim=-1)
        answer = x.gather(1, (first + 1).clamp(max=length - 1))
        logits = nn.functional.one_hot(answer, self.vocab_size).float() * self.scale
        return logits * same.any(dim=-1, keepdim=True)

class Constant(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(spec.vocab_size))

    def forward(self, x):
        return self.bias.expand(*x.shape, -1)

def build_model(spec):
    lucky = LUCKY_SEEDS is None or torch.initial_seed() in LUCKY_SEEDS
    return Recall(spec) if lucky else Constant(spec)
"""


def _candidate(lab_dir: Path, name: str, lucky_seeds: str) -> Path:
    path = lab_dir / f"{name}.py"
    path.write_text(f"LUCKY_SEEDS = {lucky_seeds}\n" + RECALL)
    return path


def test_one_lucky_seed_is_not_a_discovery_and_an_answer_written_into_the_code_fails_the_audit(
    lab_dir: Path,
) -> None:
    archlab(lab_dir, "run", "--trials", "1")  # the baseline, confirmed on 3 seeds

    proc = archlab(lab_dir, "eval", str(_candidate(lab_dir, "lucky", "{0}")), "--json", check=False)
    assert proc.returncode == 1  # trained, and rejected
    lucky = as_json(proc)
    stages = {s["stage"]: s for s in lucky["stages"]}
    assert stages["causality"]["status"] == "passed"
    assert stages["proxy"]["details"]["score"] > 0.9  # the proxy seed looks like a discovery
    assert stages["confirm"]["details"]["n"] == 3  # so it earned more seeds
    assert lucky["verdict"]["verdict"] == "reject"
    assert "not shown better" in lucky["verdict"]["reason"]

    # right on every seed: confirmed, far beyond the baseline, so audited; trained on shuffled
    # targets it is still right, so its score does not come from learning
    solid_path = _candidate(lab_dir, "solid", "None")
    proc = archlab(lab_dir, "eval", str(solid_path), "--json", check=False)
    assert proc.returncode == 1
    solid = as_json(proc)
    assert solid["seeds"]["n"] == 3 and solid["seeds"]["mean"] > 0.9
    assert solid["verdict"]["verdict"] == "reject"
    assert "failed the audit" in solid["verdict"]["reason"]
    audit = {s["name"]: s for s in solid["stages"] if s["stage"] == "audit"}
    assert audit["shuffled_control"]["status"] == "failed"
    assert audit["shuffled_control"]["details"]["score"] > 0.9
    assert audit["fresh_data"]["status"] == audit["causality"]["status"] == "passed"


def test_the_complexity_stage_measures_a_claim_of_cheap_attention(lab_dir: Path) -> None:
    """With a limit on time growth, softmax attention's cost is measured, not believed."""
    config = lab_dir / "archlab.toml"
    config.write_text(config.read_text() + "max_time_exponent = 0.5\n")
    from archlab.tasks.mqar import MQAR

    path = lab_dir / "attention.py"
    path.write_text(MQAR().baseline_source())
    report = as_json(archlab(lab_dir, "eval", str(path), "--json", check=False))
    assert (report["status"], report["error_class"]) == ("rejected", "complexity")
    complexity = report["stages"][-1]
    assert complexity["stage"] == "complexity" and complexity["status"] == "failed"
    assert [p["length"] for p in complexity["details"]["points"]] == [256, 1024, 4096]
    assert "grows like length^" in complexity["message"]
