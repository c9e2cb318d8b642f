"""The audit: a confirmed gain too large to take on trust is checked by sandboxed trials
whose outcome decides it, and every view reads the one verdict the same way.

The fast tests drive the real graph with FakeExecutor (trials answered at once, the audit's
fresh data, shuffled targets and probes honoured as scripted); the slow ones put real
candidates, a legitimate one and cheats that get past the earlier stages, through the real
CLI and sandbox."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from archlab.config import Settings, load_settings
from archlab.memory.store import Memory
from archlab.orchestration.runs import discover, evaluate_file, open_memory, resume
from archlab.records import final_verdict, is_accepted
from archlab.report import html_report
from support import TINY_MQAR, FakeExecutor, Scripted, archlab, as_json, serving

QUIET = Console(quiet=True)
#: the baseline: far below what the candidates below reach, at chance when it cannot learn
BASELINE = Scripted(score=0.2, shuffled=0.02)
AUDITED = ["plan", "code", "verify", "train", "critique", "train", "critique", "train",
           "critique", "record"]  # fmt: skip


def _settings(tmp_path: Path, **run: Any) -> Settings:
    return load_settings(
        flags={
            "home": str(tmp_path / "home"),
            "run": {"task": "mqar", "lanes": 1, **run},  # the scripts number candidates in order
            "tasks": {"mqar": TINY_MQAR},
            "search": {"random_samples": 0},
        },
        environ={},
    )


def _with_baseline(tmp_path: Path) -> Settings:
    settings = _settings(tmp_path, trials=1)
    discover(settings, QUIET, FakeExecutor({1: BASELINE}))
    return settings


def _evaluate(
    tmp_path: Path, settings: Settings, script: dict[Any, Scripted], name: str = "candidate"
) -> dict[str, Any]:
    """`archlab eval` of a hand-written candidate whose trials are answered by `script`:
    the candidate is 1, and the baseline 2, should its shuffled-targets trial be asked for."""
    path = tmp_path / f"{name}.py"
    path.write_text(f"def build_model(spec):\n    return {name!r}\n")  # a code of its own
    return evaluate_file(settings, path, QUIET, FakeExecutor({2: BASELINE, **script}))


def _audit_checks(memory: Memory, candidate_id: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in memory.checks(candidate_id) if c["stage"] == "audit"}


def test_a_gain_that_survives_fresh_data_and_falls_to_chance_on_shuffled_targets_is_accepted(
    tmp_path: Path,
) -> None:
    settings = _with_baseline(tmp_path)
    result = _evaluate(tmp_path, settings, {1: Scripted(score=0.9, shuffled=0.02, fresh=0.88)})
    cid = result["candidate_id"]
    memory = open_memory(settings.home_dir)
    assert result["verdict"]["verdict"] == "accept"
    assert "beyond the audit ratio 3" in result["verdict"]["reason"]
    assert "passed the audit" in result["verdict"]["reason"]
    assert memory.get_candidate(cid)["audit"].startswith("passed the audit")
    spans = sorted((s for s in memory.spans(result["run_id"]) if s["candidate_id"] == cid),
                   key=lambda s: s["started_at"])  # fmt: skip
    assert [s["name"] for s in spans] == AUDITED[1:]  # eval plans nothing

    checks = _audit_checks(memory, cid)
    assert {name: c["status"] for name, c in checks.items()} == {
        "fresh_data": "passed", "shuffled_control": "passed", "causality": "passed",
    }  # fmt: skip
    fresh, control = checks["fresh_data"]["details"], checks["shuffled_control"]["details"]
    assert fresh["data_seed"] != 0 and fresh["score"] == pytest.approx(0.88, abs=0.01)
    assert fresh["threshold"] == pytest.approx(0.2 + 0.5 * (0.9 - 0.2), abs=0.01)
    assert control["chance"] == pytest.approx(0.02, abs=0.01)  # the baseline, shuffled
    assert control["allowed"] == pytest.approx(0.02 + 0.25 * (0.9 - 0.02), abs=0.01)
    assert checks["causality"]["details"]["pairs"] == 32
    trials = {t["trial_id"].rsplit("-", 2)[1]: t for t in memory.trials(cid)}
    assert {"audit_fresh", "audit_control"} <= trials.keys()
    assert trials["audit_fresh"]["stage"] == trials["audit_control"]["stage"] == "audit"
    assert memory.seed_scores(cid) == [pytest.approx(0.9, abs=0.01)] * 3  # audits are not seeds

    # the chance level is measured once per task, then reused
    again = _evaluate(tmp_path, settings, {1: Scripted(score=0.9, shuffled=0.02)}, "again")
    assert again["verdict"]["verdict"] == "accept"
    baseline_id = memory.baseline_id(memory.get_run(again["run_id"])["task_fingerprint"])
    assert baseline_id is not None
    controls = [t for t in memory.trials(baseline_id) if t["stage"] == "audit"]
    assert len(controls) == 1 and controls[0]["run_id"] == result["run_id"]


@pytest.mark.parametrize(
    ("answer", "failed", "evidence"),
    [
        # a score held up by the run's own data: memorised or regenerated held-out targets
        (Scripted(score=0.9, shuffled=0.02, fresh=0.05), "fresh_data", "on fresh data"),
        # a score that needs no learning: forged targets, or the answer written into the code
        (Scripted(score=0.9), "shuffled_control", "does not come from learning"),
        # sees the future once trained: the smoke stage's probe saw two steps of training
        (Scripted(score=0.9, shuffled=0.02, leaks=True), "causality", "sees the future"),
    ],
    ids=["fresh_data", "shuffled_control", "causality"],
)
def test_a_gain_that_fails_a_check_of_the_audit_is_rejected_with_the_evidence(
    tmp_path: Path, answer: Scripted, failed: str, evidence: str
) -> None:
    settings = _with_baseline(tmp_path)
    # the smoke trial's probe is answered causally: only the audit's probe leaks
    result = _evaluate(tmp_path, settings, {1: Scripted(score=answer.score), (1, "audit"): answer})
    memory = open_memory(settings.home_dir)
    cid = result["candidate_id"]
    verdict = memory.verdict(cid)
    assert verdict is not None and verdict["verdict"] == "reject"
    assert "failed the audit" in verdict["reason"] and evidence in verdict["reason"]
    checks = _audit_checks(memory, cid)
    assert checks[failed]["status"] == "failed" and evidence in checks[failed]["message"]
    assert checks[failed]["details"]  # what was measured is kept
    assert [n for n, c in checks.items() if c["status"] == "failed"] == [failed]
    assert memory.get_candidate(cid)["audit"].startswith("failed the audit")
    assert checks["shuffled_control"]["details"]["score"] is not None


def test_a_gain_within_the_audit_ratio_is_accepted_without_an_audit(tmp_path: Path) -> None:
    settings = _with_baseline(tmp_path)
    result = _evaluate(tmp_path, settings, {1: Scripted(score=0.6)})  # a gain of 2x
    memory = open_memory(settings.home_dir)
    assert result["verdict"]["verdict"] == "accept"
    assert not _audit_checks(memory, result["candidate_id"])
    assert memory.get_candidate(result["candidate_id"])["audit"] is None


def test_a_run_stopped_before_its_audit_leaves_the_candidate_undecided_until_resumed(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, trials=2)
    # the baseline's smoke, proxy and 2 confirm trials, the candidate's 4, then its audit
    script = {1: BASELINE, 2: Scripted(score=0.9, shuffled=0.02)}
    with pytest.raises(KeyboardInterrupt):
        discover(settings, QUIET, FakeExecutor(script, interrupt_at=9))
    memory = open_memory(settings.home_dir)
    (run,) = memory.runs()
    assert run["status"] == "interrupted"
    board = as_json(archlab(tmp_path, "show", run["run_id"], "--json"))
    shown = {c["origin"]: c for c in board["candidates"]}
    assert (shown["baseline"]["verdict"], shown["baseline"]["accepted"]) == ("accept", True)
    assert (shown["proposed"]["verdict"], shown["proposed"]["accepted"]) == (None, False)

    # the resumed run starts with the audit's trials: the candidate comes first, then the
    # baseline's shuffled-targets trial
    resumed = FakeExecutor({1: Scripted(score=0.9, shuffled=0.02), 2: BASELINE})
    resume(settings.home_dir, run["run_id"], QUIET, resumed)
    assert resumed.requests[0].trial_id.endswith("-audit_fresh-s0")
    verdict = memory.verdict(shown["proposed"]["id"])
    assert verdict is not None and verdict["verdict"] == "accept"
    assert "passed the audit" in verdict["reason"]
    assert memory.get_run(run["run_id"])["summary"]["best"]["accepted"] is True


def _report_verdicts(html: str, link: str) -> dict[str, str]:
    """The verdict word of each row of a page's candidates table, by shown id prefix."""
    row = (
        rf'{link}"><code>(\w+)</code></a></td>\n<td class="\w+">\w+</td>'
        r'<td class="num">[^<]*</td>\n<td><span class="verdict (\w+)">'
    )
    return dict(re.findall(row, html))


def test_show_json_the_report_and_the_web_ui_agree_on_every_verdict(tmp_path: Path) -> None:
    """One run whose candidates end every way a candidate can: the baseline (the reference
    point, accepted), audited and accepted, audited and rejected, rejected unconfirmed, and
    one still in flight (no verdict): `archlab show --json`, the run's summary, the HTML
    report and the web UI read each the same."""
    settings = _settings(tmp_path, trials=5)
    script = {
        1: BASELINE,
        2: Scripted(score=0.9, shuffled=0.02),  # audited, passes
        3: Scripted(score=0.95),  # audited (over its reference too), fails the control
        4: Scripted(score=0.1),  # below the baseline: not confirmed
    }
    run_id = discover(settings, QUIET, FakeExecutor(script))
    memory = open_memory(settings.home_dir)
    in_flight = dict(memory.candidates(run_id)[0], candidate_id="f" * 12, status="pending",
                     score=None, source="# in flight\n", source_hash="in-flight")  # fmt: skip
    memory.save_candidate(**{k: v for k, v in in_flight.items()
                             if k not in ("created_at", "updated_at")})  # fmt: skip
    memory.flush()

    board = as_json(archlab(tmp_path, "show", run_id, "--json"))
    shown = {c["id"]: c for c in board["candidates"]}
    stored = {cid: v["verdict"] for cid, v in memory.verdicts(run_id).items()}
    for cid, c in shown.items():
        assert c["verdict"] == final_verdict(stored.get(cid))
        assert c["accepted"] is is_accepted(stored.get(cid)) is (c["verdict"] == "accept")
    by_order = sorted(memory.candidates(run_id), key=lambda c: c["created_at"])
    baseline, audited, failed, low = (shown[c["candidate_id"]] for c in by_order[:4])
    assert (baseline["origin"], baseline["verdict"]) == ("baseline", "accept")
    assert audited["verdict"] == "accept" and audited["audit"].startswith("passed")
    assert failed["verdict"] == "reject" and failed["audit"].startswith("failed")
    assert low["verdict"] == "reject" and low["audit"] is None
    assert shown["f" * 12]["verdict"] is None and shown["f" * 12]["accepted"] is False

    best = board["summary"]["best"]
    assert best["candidate_id"] == audited["id"] and best["accepted"] is True
    assert shown[best["candidate_id"]]["accepted"] is best["accepted"]

    words = {cid: c["verdict"] or "none" for cid, c in shown.items()}
    report = html_report(memory, run_id)
    assert _report_verdicts(report, "#" + r"\w+") == {cid[:8]: w for cid, w in words.items()}
    assert "Best accepted:" in report
    with serving(memory) as url:
        page = urllib.request.urlopen(f"{url}/runs/{run_id}").read().decode()
        assert _report_verdicts(page, r"/candidates/\w+") == {
            cid[:12]: w for cid, w in words.items()
        }
        assert "Best accepted:" in page
        for cid, word in words.items():
            page = urllib.request.urlopen(f"{url}/candidates/{cid}").read().decode()
            assert f'id="final-verdict"><span class="verdict {word}">' in page


# --- real candidates, through the CLI and the sandbox -----------------------------------

#: finds the earlier occurrence of each token and reads the token after it (an exact
#: retrieval, causal), then maps what it read to the answer with a table learned from the
#: targets: right after a step of training, at chance when the targets say nothing
LEARNED = """
import torch
from torch import nn


class LearnedRecall(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.vocab_size = spec.vocab_size
        self.readout = nn.Embedding(spec.vocab_size, spec.vocab_size)
        nn.init.zeros_(self.readout.weight)
        self.steps = 0

    def read(self, x):
        length = x.shape[1]
        earlier = torch.ones(length, length, dtype=torch.bool, device=x.device).tril(-1)
        same = (x[:, :, None] == x[:, None, :]) & earlier
        first = same.float().argmax(dim=-1)
        return x.gather(1, (first + 1).clamp(max=length - 1)), same.any(dim=-1, keepdim=True)

    def forward(self, x):
        found, seen = self.read(x)
        return self.readout(found) * seen


def build_model(spec):
    return LearnedRecall(spec)
"""

#: the learned model, but once trained past the smoke stage's two steps it adds to every
#: logit a trace of the next input token: the score does not move (the same shift for every
#: class), the smoke stage's probe sees a causal model, and the model sees the future
LEAKS_ONCE_TRAINED = LEARNED.replace(
    "        return self.readout(found) * seen\n",
    "        if self.training:\n"
    "            self.steps += 1\n"
    "        logits = self.readout(found) * seen\n"
    "        if self.steps > 4:\n"
    "            logits = logits + 0.01 * x.roll(-1, dims=1)[..., None].float() / self.vocab_size\n"
    "        return logits\n",
)

#: regenerates the held-out targets with the task's own generator, at the data seed it finds
#: by regenerating the training inputs it was given (the run's seed is small); learns
#: nothing but a bias
FORGER = """
import numpy as np
import torch
from torch import nn


def forged_answers(spec):
    from archlab.tasks.mqar import generate_mqar

    with np.load("data.npz") as data:
        train_x, train_y, eval_x = (data[k].astype(np.int64) for k in ("train_x", "train_y",
                                                                       "eval_x"))
    if not len(eval_x):
        return {}
    common = dict(vocab_size=spec.vocab_size, seq_len=spec.seq_len,
                  num_kv_pairs=int((train_y[0] != -100).sum()))
    for seed in range(64):
        x, _ = generate_mqar(len(train_x), seed=2 * seed, **common)
        if np.array_equal(x, train_x):
            held_x, held_y = generate_mqar(len(eval_x), seed=2 * seed + 1, **common)
            return {row.astype(np.int64).tobytes(): y for row, y in zip(held_x, held_y)}
    return {}


class Forger(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.vocab_size = spec.vocab_size
        self.answers = forged_answers(spec)
        self.bias = nn.Parameter(torch.zeros(spec.vocab_size))

    def forward(self, x):
        logits = self.bias.expand(*x.shape, -1)
        if self.training:
            return logits
        forged = torch.zeros(*x.shape, self.vocab_size)
        for i, row in enumerate(x.cpu().numpy()):
            y = self.answers.get(row.astype(np.int64).tobytes())
            if y is not None:
                y = torch.from_numpy(np.where(y < 0, 0, y)).long()
                forged[i] = nn.functional.one_hot(y, self.vocab_size).float() * 10
        return logits + forged


def build_model(spec):
    return Forger(spec)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-task lab whose baseline is confirmed: what the candidates are judged against."""
    from support import NETGUARD, TINY_CONFIG

    path = tmp_path_factory.mktemp("audit")
    (path / "archlab.toml").write_text(TINY_CONFIG)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", str(NETGUARD))
        archlab(path, "run", "--trials", "1")
    return path


def _eval(lab: Path, name: str, source: str) -> tuple[int, dict[str, Any]]:
    path = lab / f"{name}.py"
    path.write_text(source)
    proc = archlab(lab, "eval", str(path), "--json", check=False)
    return proc.returncode, as_json(proc)


def _audit_stages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["stages"] if s["stage"] == "audit"}


@pytest.mark.slow
def test_a_learned_gain_far_beyond_the_baseline_passes_the_audit(lab: Path) -> None:
    code, report = _eval(lab, "learned", LEARNED)
    assert code == 0, report
    assert report["seeds"]["mean"] > 0.8  # the baseline, at 16 steps, is near chance
    assert report["verdict"]["verdict"] == "accept"
    assert "beyond the audit ratio" in report["verdict"]["reason"]
    assert "passed the audit" in report["verdict"]["reason"]
    audit = _audit_stages(report)
    assert {n: s["status"] for n, s in audit.items()} == {
        "fresh_data": "passed", "shuffled_control": "passed", "causality": "passed",
    }, audit  # fmt: skip
    assert audit["fresh_data"]["details"]["score"] > 0.8
    control = audit["shuffled_control"]["details"]
    assert control["score"] <= control["allowed"] < 0.5
    assert control["chance_from"] == "the baseline trained on shuffled targets"

    board = as_json(archlab(lab, "show", report["run_id"], "--json"))
    (shown,) = board["candidates"]
    assert (shown["verdict"], shown["accepted"]) == ("accept", True)
    assert shown["audit"].startswith("passed the audit")


@pytest.mark.slow
def test_a_forger_of_the_held_out_targets_fails_fresh_data_and_the_control(lab: Path) -> None:
    """Its predictions come from the task's own generator run inside the sandbox at the seed
    it recognised: perfect on every seed of the run's data, so the ladder confirms it."""
    code, report = _eval(lab, "forger", FORGER)
    assert code == 1
    assert report["seeds"]["mean"] > 0.95  # what the confirm stage saw
    assert report["verdict"]["verdict"] == "reject"
    audit = _audit_stages(report)
    assert audit["fresh_data"]["status"] == "failed"  # no seed to recognise
    assert audit["fresh_data"]["details"]["score"] < 0.2
    assert audit["shuffled_control"]["status"] == "failed"  # forged without learning
    assert audit["shuffled_control"]["details"]["score"] > 0.95
    assert "does not come from learning" in report["verdict"]["reason"]
    board = as_json(archlab(lab, "show", report["run_id"], "--json"))
    assert [(c["verdict"], c["accepted"]) for c in board["candidates"]] == [("reject", False)]


@pytest.mark.slow
def test_a_model_that_sees_the_future_once_trained_fails_the_audits_probe(lab: Path) -> None:
    code, report = _eval(lab, "leaks", LEAKS_ONCE_TRAINED)
    assert code == 1
    stages = {(s["stage"], s["name"]): s for s in report["stages"]}
    assert stages[("causality", "")]["status"] == "passed"  # two steps of training: causal
    audit = _audit_stages(report)
    assert audit["causality"]["status"] == "failed", audit
    assert "sees the future" in audit["causality"]["message"]
    assert audit["fresh_data"]["status"] == audit["shuffled_control"]["status"] == "passed"
    assert report["verdict"]["verdict"] == "reject"
