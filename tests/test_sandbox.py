"""Candidates that break in every ordinary way, run through the real sandbox."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archlab.sandbox.basic import BasicLauncher, die_with_orchestrator_prefix
from archlab.sandbox.process import clean_env
from archlab.sandbox.protocol import Limits
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.tasks.base import Budget
from archlab.tasks.mqar import MQAR
from support import EMBED, sandbox_trial

pytestmark = pytest.mark.slow


def _trial(task: MQAR, tmp_path: Path, source: str, stage: str = "proxy") -> TrialReport:
    return sandbox_trial(task, tmp_path / "trial", textwrap.dedent(source), stage)


def test_baseline_trains_and_returns_predictions(tiny_task: MQAR, tmp_path: Path) -> None:
    report = _trial(tiny_task, tmp_path, tiny_task.baseline_source())
    assert report.status == "ok", report.message
    assert report.exit_reason == "ok"
    assert [step for step, _ in report.checkpoints] == [8, 16]
    assert report.checkpoints[0][1].shape == tiny_task.data(0).eval_x.shape
    assert report.n_params and report.n_params > 1000
    assert report.wall_time_s > 0 and report.peak_rss_mb > 10
    assert "step: 16/16" in report.log_tail
    assert not (tmp_path / "trial" / "data.npz").exists()  # training data is not left behind


def test_smoke_stage_needs_no_heldout_data(tiny_task: MQAR, tmp_path: Path) -> None:
    report = _trial(tiny_task, tmp_path, EMBED, stage="smoke")
    assert report.status == "ok" and report.checkpoints == []


@pytest.mark.parametrize(
    ("source", "error_class", "needle"),
    [
        ("def build_model(spec):\n    return (\n", "syntax", "line"),
        (
            "raise RuntimeError('boom at import')\ndef build_model(spec): ...\n",
            "import",
            "boom at import",
        ),
        (
            "import torch\ndef build_model(s):\n    return torch.nn.Embedding(s.vocab_size, 4)",
            "shape",
            "logits must have shape",
        ),
        ("def helper(): ...\n", "contract", "build_model"),
        (
            EMBED.replace(
                "return self.head(self.embed(x))", "return self.head(self.embed(x)) * float('nan')"
            ),
            "nan",
            "loss became nan",
        ),
        (
            EMBED.replace(
                "self.head = torch.nn.Linear(16, spec.vocab_size)",
                "self.head = torch.nn.Linear(16, spec.vocab_size)\n        raise KeyError('k')",
            ),
            "build",
            "KeyError",
        ),
        (  # what a trial that outgrows its share of a GPU sees
            EMBED.replace(
                "return self.head(self.embed(x))",
                "raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate')",
            ),
            "oom",
            "out of memory at step 1",
        ),
    ],
    ids=["syntax", "import", "shape", "contract", "nan", "build", "gpu_oom"],
)
def test_broken_candidates_are_classified(
    tiny_task: MQAR, tmp_path: Path, source: str, error_class: str, needle: str
) -> None:
    report = _trial(tiny_task, tmp_path, source)
    assert (report.status, report.error_class) == ("error", error_class)
    assert needle in (report.message or "")


def test_parameter_budget(tiny_task: MQAR, tmp_path: Path) -> None:
    tiny_task.max_params = 100
    report = _trial(tiny_task, tmp_path, EMBED)
    assert report.error_class == "params" and "exceed" in (report.message or "")


def test_timeout_kills_the_whole_process_group(tiny_task: MQAR, tmp_path: Path) -> None:
    tiny_task.budgets["proxy"] = Budget(steps=16, batch_size=16, eval_every=8, time_limit_s=4)
    pid_file = tmp_path / "trial" / "grandchild.pid"
    source = f"""
    import signal, subprocess, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "600"])
    open({str(pid_file)!r}, "w").write(str(child.pid))
    while True:
        time.sleep(0.1)
    def build_model(spec): ...
    """
    report = _trial(tiny_task, tmp_path, source)
    assert (report.status, report.error_class, report.exit_reason) == (
        "error",
        "timeout",
        "timeout",
    )
    assert 4 <= report.wall_time_s < 15
    assert not _alive(int(pid_file.read_text()))


def _alive(pid: int) -> bool:
    """A zombie waiting for a reaper (a container's init may never reap) counts as dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_secrets_do_not_reach_the_child(
    tiny_task: MQAR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    source = EMBED + "\nimport os\nopen('env.txt', 'w').write(repr(dict(os.environ)))\n"
    report = _trial(tiny_task, tmp_path, source, stage="smoke")
    assert report.status == "ok"
    seen = (tmp_path / "trial" / "env.txt").read_text()
    assert "sk-secret-value" not in seen and "OPENAI_API_KEY" not in seen
    assert "OMP_NUM_THREADS" in seen


def test_forged_result_cannot_fake_a_score(tiny_task: MQAR, tmp_path: Path) -> None:
    """A candidate that rewrites result.json at exit can claim anything; the score is still
    computed from its predictions against targets it never saw."""
    source = EMBED + textwrap.dedent("""
    import atexit, json
    def forge():
        result = json.load(open("result.json"))
        result["metrics"] = {"accuracy": 1.0}
        result["score"] = 1.0
        json.dump(result, open("result.json", "w"))
    atexit.register(forge)
    """)
    report = _trial(tiny_task, tmp_path, source)
    assert report.status == "ok"
    metrics = tiny_task.metrics(report.checkpoints, tiny_task.data(0))
    assert metrics.values["accuracy_auc"] < 0.5


def test_symlinked_result_is_refused(tiny_task: MQAR, tmp_path: Path) -> None:
    source = EMBED + textwrap.dedent("""
    import atexit, os
    def swap():
        os.replace("result.json", "real.json")
        os.symlink("/etc/passwd", "result.json")
    atexit.register(swap)
    """)
    report = _trial(tiny_task, tmp_path, source)
    assert (report.status, report.error_class) == ("error", "crash")
    assert "safely" in (report.message or "")


def test_exit_without_result_is_a_crash(tiny_task: MQAR, tmp_path: Path) -> None:
    report = _trial(tiny_task, tmp_path, "import os\nos._exit(3)\ndef build_model(spec): ...\n")
    assert (report.error_class, report.exit_reason) == ("crash", "crash")


def test_launcher_runs_in_the_trial_directory(tmp_path: Path) -> None:
    execution = BasicLauncher().run(
        ["/bin/sh", "-c", "pwd; echo $HOME"], tmp_path, Limits(wall_s=10, memory_bytes=2**30)
    )
    assert execution.exit_reason == "ok"
    assert execution.log_tail.split() == [str(tmp_path), str(tmp_path)]
    assert clean_env(tmp_path, 2)["OMP_NUM_THREADS"] == "2"


def test_a_trial_dies_with_its_orchestrator(tmp_path: Path) -> None:
    """`kill -9` of the process that runs a trial (a run's orchestrator) ends the trial
    too: nothing is left training with no clock on it."""
    if not die_with_orchestrator_prefix():
        pytest.skip("no setpriv with --pdeathsig here")
    driver = textwrap.dedent(f"""
        from pathlib import Path
        from archlab.sandbox.basic import BasicLauncher, die_with_orchestrator_prefix
        from archlab.sandbox.protocol import Limits
        BasicLauncher().run(
            ["/bin/sh", "-c", "echo $$ > trial.pid; exec sleep 600"],
            Path({str(tmp_path)!r}),
            Limits(wall_s=600, memory_bytes=2**30),
        )
    """)
    orchestrator = subprocess.Popen([sys.executable, "-c", driver])
    pid_file = tmp_path / "trial.pid"
    deadline = time.monotonic() + 60
    while not pid_file.is_file() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline and orchestrator.poll() is None, "no trial started"
        time.sleep(0.05)
    trial = int(pid_file.read_text())
    assert _alive(trial)
    orchestrator.kill()
    orchestrator.wait()
    deadline = time.monotonic() + 10
    while _alive(trial):
        assert time.monotonic() < deadline, "the trial outlived its orchestrator"
        time.sleep(0.05)


PLANTS = EMBED + textwrap.dedent("""
import builtins, os
if getattr(builtins, "PLANTED", False):
    raise RuntimeError("a trial before this one left something behind")
builtins.PLANTED = True
open("planted.txt", "w").write(str(os.getpid()))
""")


def test_harnesses_started_ahead_share_nothing(tiny_task: MQAR, tmp_path: Path) -> None:
    """With prewarm, each trial runs in the process started while the one before trained:
    a fresh interpreter (nothing a candidate set survives), a fresh working directory, and
    the one left over at the end is killed."""
    launcher = BasicLauncher(prewarm=True)
    try:
        pids = []
        for i in range(2):
            trial_dir = tmp_path / f"trial{i}"
            report = run_trial(
                launcher=launcher, trial_dir=trial_dir, task=tiny_task, data=tiny_task.data(0),
                source=PLANTS, stage="smoke", seed=0, threads=1, memory_bytes=6 * 2**30,
            )  # fmt: skip
            assert report.status == "ok", report.message
            pids.append(int((trial_dir / "planted.txt").read_text()))
        assert pids[0] != pids[1]
        spare = launcher._spares[0].proc.pid
        assert _alive(spare)
    finally:
        launcher.close()
    assert not _alive(spare)


@pytest.mark.parametrize("foreach", [False, True], ids=["per tensor (CPU)", "foreach (GPU)"])
def test_harness_adamw_follows_torch_adamw(foreach: bool) -> None:
    """The harness's own AdamW (kept free of torch.optim's torch._dynamo import) takes the
    same steps as torch.optim.AdamW, learning-rate changes included, on either path."""
    import torch

    from archlab.sandbox.optimizer import AdamW

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16))
    theirs = torch.nn.Sequential(torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16))
    theirs.load_state_dict(ours.state_dict())
    start = [p.detach().clone() for p in ours.parameters()]
    mine = AdamW(ours.parameters(), lr=3e-3, weight_decay=0.1)
    mine.foreach = foreach
    reference = torch.optim.AdamW(theirs.parameters(), lr=3e-3, weight_decay=0.1)
    tokens = torch.randint(0, 16, (4, 6))
    for step in range(12):
        lr = 3e-3 * (step + 1) / 12
        mine.lr = lr
        for group in reference.param_groups:
            group["lr"] = lr
        for model, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad()
            model(tokens).logsumexp(-1).mean().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(a, b) for a, b in zip(start, ours.parameters(), strict=True))
