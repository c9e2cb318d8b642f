"""The candidate contract as a hand-written candidate meets it: the spec read either way,
and the shipped example evaluated as it is."""

from pathlib import Path

import pytest

from archlab.sandbox.harness import Spec
from support import archlab, as_json

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "candidate.py"


def test_the_spec_reads_as_attributes_and_as_a_dict() -> None:
    spec = Spec(vocab_size=64, seq_len=32)
    assert spec.vocab_size == spec["vocab_size"] == spec.get("vocab_size") == 64
    assert "seq_len" in spec and "num_classes" not in spec and spec.get("num_classes") is None
    assert dict(**spec) == {"vocab_size": 64, "seq_len": 32}
    with pytest.raises(KeyError):
        spec["num_classes"]


@pytest.mark.slow
def test_the_example_candidate_is_evaluated_as_it_is(lab_dir: Path) -> None:
    report = as_json(archlab(lab_dir, "eval", str(EXAMPLE), "--task", "mqar", "--json"))
    assert report["status"] == "ok"  # it reads spec["seq_len"] as well as spec.vocab_size
    assert {s["status"] for s in report["stages"]} <= {"passed", "skipped"}
