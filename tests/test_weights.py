"""Trained weights: back from the sandbox as checked safetensors (never a pickle), kept
beside the memory for the candidates that reach the confirm stage, shown by `show`, the
HTML report and `archlab export`, whose loading example works."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from safetensors.torch import load, load_file, save

from archlab.config import Settings, load_settings
from archlab.errors import ArchlabError
from archlab.memory.store import Memory
from archlab.memory.weights import run_weights, weights_of
from archlab.orchestration.runs import discover, evaluate_file, open_memory
from archlab.report import html_report
from archlab.sandbox.harness import RESULT_FILE
from archlab.sandbox.strict import StrictLauncher, strict_missing
from archlab.sandbox.trial import ResultError, read_result, run_trial
from archlab.sandbox.weights import (
    WEIGHTS_FILE,
    WeightsError,
    canonical,
    read_weights,
    serialize,
    weights_cap,
)
from archlab.tasks.mqar import MQAR
from support import EMBED as SMALLEST
from support import FAKE_WEIGHTS, TINY_MQAR, FakeExecutor, Scripted, cli, sandbox_trial

QUIET = Console(quiet=True)


def _settings(home: Path, ladder: dict[str, Any] | None = None, **run: Any) -> Settings:
    return load_settings(
        flags={
            "home": str(home),
            "run": {"task": "mqar", "lanes": 1, **run},  # the scripts number candidates in order
            "tasks": {"mqar": TINY_MQAR},
            "ladder": ladder or {},
        },
        environ={},
    )


def _in_order(memory: Memory, run_id: str) -> list[str]:
    ordered = sorted(memory.candidates(run_id), key=lambda c: c["created_at"])
    return [c["candidate_id"] for c in ordered]


# --- reading a weights file on the trusted side ---------------------------------------------


def _weights_bytes() -> bytes:
    tensors = {
        "layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "layer.scale": torch.ones(4, dtype=torch.bfloat16),
        "steps": torch.tensor([3], dtype=torch.int64),
    }
    return save(tensors, metadata={"format": "pt", "note": "<script>alert(1)</script>"})


def test_weights_are_rewritten_in_canonical_form_without_their_metadata(tmp_path: Path) -> None:
    raw = _weights_bytes()
    (tmp_path / WEIGHTS_FILE).write_bytes(raw)
    out = read_weights(tmp_path, cap=len(raw))
    header_len = int.from_bytes(out[:8], "little")
    assert header_len % 8 == 0  # the tensors' bytes start aligned
    assert json.loads(out[8 : 8 + header_len])["__metadata__"] == {"format": "pt"}
    before, after = load(raw), load(out)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in after)
    assert [after[k].dtype for k in sorted(after)] == [torch.bfloat16, torch.float32, torch.int64]
    assert canonical(out) == out


def _plant(folder: Path, forgery: str) -> None:
    path = folder / WEIGHTS_FILE
    if forgery == "oversized":  # sparse: its size alone refuses it
        path.write_bytes(_weights_bytes())
        os.truncate(path, 2**30)
    elif forgery == "symlink":
        (folder / "real.safetensors").write_bytes(_weights_bytes())
        path.symlink_to(folder / "real.safetensors")
    elif forgery == "fifo":
        os.mkfifo(path)
    elif forgery == "directory":
        path.mkdir()
    elif forgery == "text":
        path.write_text("these are not weights")
    elif forgery == "pickle":
        path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    elif forgery == "torch.save":
        torch.save({"w": torch.zeros(3)}, path)
    elif forgery == "lying header":  # claims 100 floats, holds 2
        header = b'{"w":{"dtype":"F32","shape":[100],"data_offsets":[0,8]}}'
        path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    elif forgery == "foreign dtype":
        path.write_bytes(serialize([("w", "F8_E4M3", [2], bytes(2))]))
    elif forgery == "no tensors":
        path.write_bytes(serialize([]))


FORGERIES = {
    "missing": "wrote no weights file",
    "oversized": "over the cap",
    "symlink": "cannot be opened safely",
    "fifo": "not a regular file",
    "directory": "not a regular file",
    "text": "not safetensors",
    "pickle": "not safetensors",
    "torch.save": "not safetensors",
    "lying header": "not valid safetensors",
    "foreign dtype": "not one a module holds",
    "no tensors": "holds no tensors",
}


@pytest.mark.parametrize(("forgery", "message"), FORGERIES.items(), ids=list(FORGERIES))
def test_forged_weights_files_are_refused(tmp_path: Path, forgery: str, message: str) -> None:
    _plant(tmp_path, forgery)
    with pytest.raises(WeightsError, match=message):
        read_weights(tmp_path, cap=2**20)


def test_a_directory_planted_as_the_result_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / RESULT_FILE).mkdir()  # os.fdopen would raise IsADirectoryError, uncaught
    with pytest.raises(ResultError, match="not a regular file"):
        read_result(tmp_path)


def test_the_cap_follows_the_tasks_parameter_budget() -> None:
    mqar = MQAR()
    assert weights_cap(mqar.max_params) == 8 * 2_000_000 + 16 * 2**20
    assert weights_cap(10) < weights_cap(mqar.max_params)


# --- which candidates keep theirs: the graph with instant trials --------------------------


def test_only_candidates_promoted_to_confirm_keep_their_weights(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fake = FakeExecutor({2: Scripted(score=0.75), 3: Scripted(score=0.25)})
    run_id = discover(_settings(home, trials=3), QUIET, fake)

    memory = open_memory(home)
    baseline, better, worse = _in_order(memory, run_id)
    kept = run_weights(memory, run_id)
    assert set(kept) == {baseline, better}  # the baseline is always confirmed; `worse` never
    for cid, row in kept.items():
        assert (home / row["path"]).read_bytes() == FAKE_WEIGHTS
        assert row["path"] == f"weights/{cid}.safetensors" and row["bytes"] == len(FAKE_WEIGHTS)
        assert row["trial_id"] == f"{cid}-proxy-s0" and row["spec"] == MQAR(**TINY_MQAR).spec
    assert weights_of(memory, worse) is None
    assert not list((home / "weights" / "pending").iterdir())  # nothing left waiting
    assert {r.stage for r in fake.requests if r.weights} == {"proxy"}  # the proxy seed only

    board = json.loads(cli(home, "show", run_id, "--json"))
    shown = {c["id"]: c["weights"] for c in board["candidates"]}
    assert shown[worse] is None
    assert shown[better]["sha256"] == kept[better]["sha256"]
    assert Path(shown[better]["file"]).read_bytes() == FAKE_WEIGHTS

    page = html_report(memory, run_id)
    assert (home / kept[better]["path"]).absolute().as_uri() in page
    assert f"archlab export {better} -o {better}" in page
    assert f"archlab export {worse} " not in page


def test_refused_weights_cost_the_trial_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    refused = "the weights file is not a regular file"
    fake = FakeExecutor({(1, "proxy"): Scripted(score=0.5, weights_error=refused)})
    run_id = discover(_settings(home, trials=1), QUIET, fake)

    memory = open_memory(home)
    (baseline,) = memory.candidates(run_id)
    assert baseline["status"] == "ok" and baseline["score"] == 0.5 and baseline["seeds"]
    assert baseline["message"] is None
    (proxy,) = [t for t in memory.trials(baseline["candidate_id"]) if t["stage"] == "proxy"]
    assert (proxy["status"], proxy["score"]) == ("ok", 0.5)
    assert proxy["message"] == f"weights not kept: {refused}"
    assert run_weights(memory, run_id) == {}
    with pytest.raises(ArchlabError, match=f"proxy trial's weights not kept: {refused}"):
        cli(home, "export", baseline["candidate_id"], "-o", str(tmp_path / "out"))


def test_keep_weights_off_asks_for_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fake = FakeExecutor()
    run_id = discover(_settings(home, {"keep_weights": False}, trials=1), QUIET, fake)
    assert not any(r.weights for r in fake.requests)
    assert run_weights(open_memory(home), run_id) == {}


# --- archlab export -------------------------------------------------------------------------


@pytest.fixture
def kept_run(tmp_path: Path) -> tuple[Path, str, str]:
    """A run with a confirmed baseline (weights kept) and a candidate below it (none)."""
    home = tmp_path / "home"
    run_id = discover(_settings(home, trials=2), QUIET, FakeExecutor({2: Scripted(score=0.25)}))
    baseline, worse = _in_order(open_memory(home), run_id)
    return home, baseline, worse


def test_export_writes_the_module_its_weights_and_a_loading_example(
    kept_run: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, baseline, _ = kept_run
    out = tmp_path / "export"
    cli(home, "export", baseline[:6], "-o", str(out))  # a unique prefix is enough
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "load.py", "model.py", "weights.safetensors",
    ]  # fmt: skip
    memory = open_memory(home)
    candidate, row = memory.get_candidate(baseline), weights_of(memory, baseline)
    assert row is not None
    assert (out / "weights.safetensors").read_bytes() == (home / row["path"]).read_bytes()
    assert (out / "model.py").read_text().endswith(candidate["source"])
    example = (out / "load.py").read_text()
    assert "SPEC = {'seq_len': 32, 'vocab_size': 64}" in example
    readme = (out / "README.md").read_text()
    assert baseline in readme and row["sha256"] in readme and "python load.py" in readme

    # a non-empty directory is refused, unless --force overwrites the export's files
    with pytest.raises(ArchlabError, match="not empty"):
        cli(home, "export", baseline, "-o", str(out))
    (out / "notes.txt").write_text("mine")
    (out / "load.py").write_text("stale")
    cli(home, "export", baseline, "-o", str(out), "--force")
    assert (out / "load.py").read_text() == example and (out / "notes.txt").exists()
    # a path ending in .py is the module alone, as before
    cli(home, "export", baseline, "-o", str(tmp_path / "alone.py"))
    assert (tmp_path / "alone.py").read_text() == (out / "model.py").read_text()


def test_export_refuses_what_it_cannot_stand_behind(
    kept_run: tuple[Path, str, str], tmp_path: Path
) -> None:
    home, baseline, worse = kept_run
    with pytest.raises(ArchlabError, match="only candidates promoted to the confirm stage"):
        cli(home, "export", worse, "-o", str(tmp_path / "worse"))
    assert not (tmp_path / "worse").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArchlabError, match="not a directory"):
        cli(home, "export", baseline, "-o", str(tmp_path / "file"))
    with pytest.raises(ArchlabError, match="no candidate"):
        cli(home, "export", "zzzz", "-o", str(tmp_path / "none"))
    kept = home / "weights" / f"{baseline}.safetensors"
    kept.write_bytes(kept.read_bytes()[:-1] + b"\0")  # changed behind the memory's back
    with pytest.raises(ArchlabError, match="not the one the memory recorded"):
        cli(home, "export", baseline, "-o", str(tmp_path / "tampered"))
    assert not (tmp_path / "tampered").exists()


# --- real trials ------------------------------------------------------------------------------

#: support.EMBED with its head tied to its embedding: stored once, loaded into both
EMBED = SMALLEST.replace(
    "        self.head = torch.nn.Linear(16, spec.vocab_size)\n",
    "        self.head = torch.nn.Linear(16, spec.vocab_size)\n"
    "        self.head.weight = self.embed.weight\n",
)

#: always answers token 0, a key: never right (values come from the vocabulary's upper half)
CONSTANT = """
import torch

class Model(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.vocab_size = spec.vocab_size
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        logits = torch.zeros(*x.shape, self.vocab_size)
        logits[..., 0] = 100.0
        return logits + 0.0 * self.scale

def build_model(spec):
    return Model(spec)
"""

#: what a hostile candidate does to the weights file once the harness has written it
FORGE = {
    "symlink": "os.unlink(W); os.symlink('/etc/passwd', W)",
    "fifo": "os.unlink(W); os.mkfifo(W)",
    "pickle": "import torch; torch.save({'w': torch.zeros(3)}, W)",
    "oversized": "open(W, 'r+b').truncate(40 * 2**20)",
}
REFUSED = {
    "symlink": "cannot be opened safely",
    "fifo": "not a regular file",
    "pickle": "not safetensors",
    "oversized": "over the cap",
}


@pytest.mark.slow
@pytest.mark.parametrize("forgery", list(FORGE))
def test_a_forged_weights_file_is_refused_and_the_trial_still_scores(
    tiny_task: MQAR, tmp_path: Path, forgery: str
) -> None:
    source = EMBED + textwrap.dedent(f"""
    import atexit, os
    W = "weights.safetensors"
    def forge(): {FORGE[forgery]}
    atexit.register(forge)
    """)
    report = sandbox_trial(tiny_task, tmp_path / "trial", source, weights=True)
    assert report.status == "ok", report.message
    assert [step for step, _ in report.checkpoints] == [8, 16]  # it scores as ever
    assert report.weights is None and REFUSED[forgery] in (report.weights_error or "")
    assert not os.path.lexists(tmp_path / "trial" / WEIGHTS_FILE)  # nothing left behind


@pytest.mark.slow
@pytest.mark.skipif(bool(strict_missing()), reason="strict is unavailable: see archlab doctor")
def test_weights_come_back_from_the_strict_sandbox(tiny_task: MQAR, tmp_path: Path) -> None:
    report = run_trial(
        launcher=StrictLauncher(), trial_dir=tmp_path / "trial", task=tiny_task,
        data=tiny_task.data(0), source=EMBED, stage="proxy", seed=0, threads=1,
        memory_bytes=6 * 2**30, weights=True,
    )  # fmt: skip
    assert report.status == "ok" and report.isolation == "strict", report.message
    assert report.weights is not None, report.weights_error
    stored = load(report.weights)
    assert len(stored) == 2 and "head.bias" in stored  # the tied matrix is stored once


#: run in the export's directory: the exported model, loaded by load.py, against the
#: stored weights and the held-out accuracy the trusted side measured in its proxy trial
CHECK = """
import json, sys
import numpy as np
import torch
from safetensors.torch import load_file
from archlab.tasks.mqar import MQAR, answer_accuracy
import load

torch.set_num_threads(1)
model = load.load_model()
stored = load_file(sys.argv[1])
state = model.state_dict()
same = all(torch.equal(state[name], tensor) for name, tensor in stored.items())
data = MQAR(**json.loads(sys.argv[2])).data(0)
with torch.no_grad():
    logits = torch.cat([model(torch.from_numpy(data.eval_x[i : i + 256].astype(np.int64)))
                        for i in range(0, len(data.eval_x), 256)])
print(json.dumps({"same": same, "accuracy": answer_accuracy(logits.argmax(-1).numpy(),
                                                            data.eval_y)}))
"""


@pytest.mark.slow
def test_a_real_run_keeps_the_confirmed_weights_and_the_export_reproduces_them(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ladder = {"confirm_seeds": 2, "scale_top": 0}
    settings = _settings(home, ladder, trials=1)
    run_id = discover(settings, QUIET)  # the baseline alone: confirmed, so it keeps them
    (tmp_path / "constant.py").write_text(CONSTANT)
    evaluated = evaluate_file(settings, tmp_path / "constant.py", QUIET)  # not above it
    memory = open_memory(home)
    (baseline,) = _in_order(memory, run_id)
    assert evaluated["verdict"]["verdict"] == "reject" and "seeds" not in evaluated
    assert set(run_weights(memory, run_id)) == {baseline}
    assert weights_of(memory, evaluated["candidate_id"]) is None
    assert not list((home / "weights" / "pending").iterdir())

    out = tmp_path / "export"
    cli(home, "export", baseline, "-o", str(out))
    ran = subprocess.run(
        [sys.executable, "load.py"], cwd=out, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "logits of shape (2, 32, 64), all finite: True"

    row = weights_of(memory, baseline)
    assert row is not None
    stored = home / row["path"]
    checked = subprocess.run(
        [sys.executable, "-c", CHECK, str(stored), json.dumps(TINY_MQAR)],
        cwd=out, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout)
    (proxy,) = [t for t in memory.trials(baseline) if t["stage"] == "proxy"]
    assert result["same"] is True
    assert result["accuracy"] == proxy["curve"][-1]["accuracy"]
    assert load_file(stored).keys() == load_file(out / "weights.safetensors").keys()
