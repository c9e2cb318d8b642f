"""benchmarks/device_check.py, the GPU check: on a machine without a GPU each part says
why it did not run; `--smoke` runs every part on the CPU at toy sizes, so the script is
known to work before a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archlab.benchmarks.device import NO_GPU, PARTS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"


def _check(tmp_path: Path, *flags: str) -> dict:
    out = tmp_path / "device.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", str(out), *flags],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    return result


def test_without_a_gpu_every_part_says_why_it_did_not_run(tmp_path: Path) -> None:
    result = _check(tmp_path)
    assert result["gpu"] is None
    assert all(result[name] == {"skipped": NO_GPU} for name in PARTS)


@pytest.mark.slow
def test_every_part_runs_at_toy_sizes_on_the_cpu(tmp_path: Path) -> None:
    result = _check(tmp_path, "--smoke")
    assert result["sandbox"]["sandbox_overhead_ratio"] > 1  # a harness start costs something
    assert result["precision"]["step_s_bf16"] > 0 and result["precision"]["step_s_fp32"] > 0
    assert set(result["compile"]["step_s"]) == {"gpu bf16 off", "gpu bf16 default"}
    assert result["compile"]["compile_s"]["gpu bf16 default"] > 0
    assert set(result["packing"]["trials_per_hour"]) == {"1", "2"}
    assert result["containment"]["redteam_passed"], result["containment"]
    assert "1 passed" in result["containment"]["redteam_summary"]
