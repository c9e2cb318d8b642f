"""The red-team suite: each hostile candidate of hostile.py runs through the real trial
path at each isolation level and must be contained: the report names the right exit
reason, nothing leaks into the log, no process outlives the trial, the memory (a real
DuckDB memory in a temporary home) is untouched, nothing lands outside the trial
directory, and the orchestrator goes on. Attacks that `basic` cannot stop are skipped
under it with the reason.

Each trial starts Python and torch (a few seconds), so the selected trials of a session
run two at a time, started by one fixture; each test waits for its own.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import select
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pytest
from hostile import ATTACKS, CONTROL, Attack, render

from archlab.memory.store import MEMORY_FILE, Memory
from archlab.sandbox.basic import BasicLauncher, network_isolation_prefix
from archlab.sandbox.process import read_tail
from archlab.sandbox.protocol import LOG_FILE, Launcher, Limits
from archlab.sandbox.strict import StrictLauncher, strict_missing
from archlab.sandbox.trial import TrialReport, run_trial
from archlab.tasks.mqar import MQAR
from support import TINY_MQAR

pytestmark = pytest.mark.slow

LEVELS = ("basic", "strict")
MEMORY_BYTES = 2**30
#: REDTEAM_GPUS=0 gives every trial that GPU (benchmarks/device_check.py): containment
#: must hold with a device present
GPUS = tuple(int(n) for n in os.environ.get("REDTEAM_GPUS", "").split(",") if n.strip())
TOKEN = secrets.token_hex(3)
#: an API key in the orchestrator's environment, a run's config and another trial's code
SECRET = f"sk-redteam-{secrets.token_hex(8)}"
RUN_ID = "redteam-run"


def skip_reason(attack: Attack, level: str) -> str | None:
    if level == "strict" and strict_missing():
        return "strict is unavailable here: " + "; ".join(strict_missing())
    if level == "basic" and attack.basic_gap:
        return f"basic cannot stop this: {attack.basic_gap}"
    if level == "basic" and attack.needs_netns and not network_isolation_prefix():
        return "basic has no network namespace here (unshare --net is not permitted)"
    return None


def make_launcher(level: str) -> Launcher:
    return StrictLauncher() if level == "strict" else BasicLauncher()


class Listener:
    """TCP, unix-path and abstract unix sockets on this machine that record every
    connection a candidate manages to open."""

    def __init__(self, root: Path) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.unix_path = str(root / "orchestrator.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.abstract_name = f"archlab-redteam-{TOKEN}"
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind("\0" + self.abstract_name)
        self.sockets = [self.tcp, self.unix, self.abstract]
        for s in self.sockets[1:]:
            s.listen()
        self.accepted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for s in select.select(self.sockets, [], [], 0.1)[0]:
                conn, _ = s.accept()
                self.accepted.append(str(s.getsockname()))
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for s in self.sockets:
            s.close()


@dataclass
class Result:
    report: TrialReport
    #: the whole log file as the orchestrator wrote it
    log: str
    trial_dir: Path


class Arena:
    """What an attacker is after: a home with a real memory and another trial, the
    orchestrator's sockets and environment, the installed packages, a folder outside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trials = root / "home" / "trials" / RUN_ID
        self.other_trial = self.trials / "other-trial"
        self.other_trial.mkdir(parents=True)
        (self.other_trial / "candidate.py").write_text(f"API_KEY = {SECRET!r}\n")
        self.outside = root / "outside"
        self.outside.mkdir()
        self.planted_marker = root / "planted-code-ran"
        self.victim = root / "victim.txt"
        self.victim.write_text("intact\n")
        self.site_packages = sysconfig.get_paths()["purelib"]
        self.memory_path = root / "home" / MEMORY_FILE
        Memory(self.memory_path).start_run(
            run_id=RUN_ID,
            task="mqar",
            task_fingerprint="redteam",
            brain="heuristic",
            seed=0,
            config={"api_key": SECRET},
        )
        self.memory_digest = self._digest()
        self.listener = Listener(root)
        self.task = MQAR(**TINY_MQAR)
        self.data = self.task.data(0)

    def _digest(self) -> str:
        return hashlib.sha256(self.memory_path.read_bytes()).hexdigest()

    def tag(self, attack: Attack, level: str) -> str:
        """The attack's process name: at most 15 characters, unique to this session."""
        index = ATTACKS.index(attack) if attack in ATTACKS else 99
        return f"rt{index:02d}{TOKEN}{level[0]}"

    def run(self, attack: Attack, level: str, trial_dir: Path | None = None) -> Result:
        trial_dir = trial_dir or self.trials / f"{level}-{attack.name}"
        arena = {
            "tag": self.tag(attack, level),
            "outside": str(self.outside),
            "memory": str(self.memory_path),
            "other_trial": str(self.other_trial),
            "tcp_port": self.listener.tcp.getsockname()[1],
            "unix_path": self.listener.unix_path,
            "abstract_name": self.listener.abstract_name,
            "site_packages": self.site_packages,
            "orchestrator_pid": os.getpid(),
            "planted_marker": str(self.planted_marker),
            "victim": str(self.victim),
        }
        budget = replace(self.task.budgets[attack.stage], time_limit_s=attack.time_limit_s)
        report = run_trial(
            launcher=make_launcher(level),
            trial_dir=trial_dir,
            task=self.task,
            data=self.data,
            source=render(attack.code, attack.where, arena),
            stage=attack.stage,
            seed=0,
            threads=1,
            memory_bytes=attack.memory_bytes or MEMORY_BYTES,
            budget=budget,
            gpus=GPUS,
        )
        return Result(report, read_tail(trial_dir / LOG_FILE, 2**30), trial_dir)

    def leftovers(self, tag: str) -> list[str]:
        """Live processes named after the attack; the kernel gets a moment to finish kills."""
        deadline = time.monotonic() + 3
        while (found := _processes_named(tag)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def assert_untouched(self, result: Result) -> None:
        """What must hold after every trial, whatever the candidate did."""
        assert "PWNED" not in result.log, result.log[-2000:]
        assert SECRET not in result.log and SECRET not in result.report.log_tail
        assert self._digest() == self.memory_digest, "the memory file changed"
        with duckdb.connect(str(self.memory_path), read_only=True) as con:
            config = con.execute("SELECT config FROM runs WHERE run_id = ?", [RUN_ID]).fetchone()
        assert config and SECRET in config[0]
        assert self.listener.accepted == [], "a candidate reached a socket on the host"
        assert list(self.outside.iterdir()) == []
        assert not self.planted_marker.exists(), "planted code was executed"
        assert self.victim.read_text() == "intact\n", "the orchestrator wrote through a symlink"
        planted = list(Path(self.site_packages).glob(f"zz_rt*{TOKEN}*.pth"))
        for path in planted:
            path.unlink()
        assert planted == [], "a candidate planted a file in site-packages"


def _processes_named(tag: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and (comm == tag or tag.encode() in cmdline):
            found.append(f"{entry.name} {comm} {cmdline!r}")
    return found


class RedTeam:
    """Runs the trials a session selected, two at a time, in the background."""

    def __init__(self, arena: Arena, wanted: list[tuple[Attack, str]]) -> None:
        self.arena = arena
        self._pool = ThreadPoolExecutor(max_workers=2)
        # the attacks that wait for a timeout go first, to overlap with the rest
        wanted = sorted(wanted, key=lambda pair: pair[0].time_limit_s)
        self._futures: dict[tuple[str, str], Future[Result]] = {
            (attack.name, level): self._pool.submit(arena.run, attack, level)
            for attack, level in wanted
        }

    def result(self, attack: Attack, level: str) -> Result:
        return self._futures[(attack.name, level)].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def redteam(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedTeam]:
    wanted = []
    for item in request.session.items:
        params = getattr(item, "callspec", None)
        if getattr(item, "module", None) is sys.modules[__name__] and params:
            attack, level = params.params.get("attack", CONTROL), params.params["level"]
            if skip_reason(attack, level) is None:
                wanted.append((attack, level))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", SECRET)
        arena = Arena(tmp_path_factory.mktemp("redteam"))
        team = RedTeam(arena, wanted)
        try:
            yield team
        finally:
            team.close()
            arena.listener.close()


def _require(attack: Attack, level: str) -> None:
    reason = skip_reason(attack, level)
    if reason and level == "strict" and os.environ.get("CI"):
        pytest.fail(f"CI must run the red team under strict: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("level", LEVELS)
def test_benign_control_passes(redteam: RedTeam, level: str) -> None:
    _require(CONTROL, level)
    result = redteam.result(CONTROL, level)
    assert result.report.status == "ok", result.report.message
    assert (result.report.exit_reason, result.report.error_class) == CONTROL.expect
    assert result.report.checkpoints[-1][0] == redteam.arena.task.budgets["proxy"].steps
    assert result.report.cpu_time_s > 0 and result.report.peak_rss_mb > 10
    redteam.arena.assert_untouched(result)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_contained(redteam: RedTeam, attack: Attack, level: str) -> None:
    _require(attack, level)
    arena = redteam.arena
    result = redteam.result(attack, level)
    report = result.report
    assert (report.exit_reason, report.error_class) == attack.expected(level), (
        f"{report.message}\n{result.log[-1500:]}"
    )
    arena.assert_untouched(result)
    assert arena.leftovers(arena.tag(attack, level)) == []
    CHECKS.get(attack.name, lambda *_: None)(arena, result, level)


def _trial_dir_stays_small(arena: Arena, result: Result, level: str) -> None:
    size = sum(p.stat().st_size for p in result.trial_dir.rglob("*") if p.is_file())
    assert size < 16 * 2**20


def _log_is_capped(arena: Arena, result: Result, level: str) -> None:
    assert len(result.log) < Limits(wall_s=1, memory_bytes=1).log_bytes + 2**16
    assert "bytes of output dropped" in result.log
    assert "the flood is over" in result.report.log_tail


def _score_comes_from_predictions(arena: Arena, result: Result, level: str) -> None:
    metrics = arena.task.metrics(result.report.checkpoints, arena.data)
    assert metrics.values["accuracy_auc"] < 0.5


def _planted_files_stay_inert(arena: Arena, result: Result, level: str) -> None:
    """A retry in the same directory neither imports planted files nor writes through
    planted symlinks; the orchestrator imports nothing from there."""
    again = arena.run(CONTROL, level, trial_dir=result.trial_dir)
    assert again.report.status == "ok", again.report.message
    arena.assert_untouched(again)
    trial_dir = str(result.trial_dir)
    assert not [m for m in sys.modules.values() if trial_dir in str(getattr(m, "__file__", ""))]


def _threads_were_started(arena: Arena, result: Result, level: str) -> None:
    """Basic lets the whole flood start (strict stops it at its process limit)."""
    if level == "basic":
        assert "threads started: 5000" in result.log


CHECKS = {
    "fill_the_disk": _trial_dir_stays_small,
    "flood_stdout": _log_is_capped,
    "forge_metrics_in_result": _score_comes_from_predictions,
    "plant_files_in_trial_dir": _planted_files_stay_inert,
    "symlinks_for_the_next_attempt": _planted_files_stay_inert,
    "thousands_of_threads": _threads_were_started,
}
