"""What a run prints: one reporter for every line the graph's nodes and the run's start and
end write to the terminal, so that the lines of a run with several lanes say which lane
printed them, and one progress line that follows the whole run: the candidate it is at of
its budget, the time left, the best so far and the stages in flight, cut to the width:

    candidate 4 of 12 · 3:12 left · best 0.3100 (ab12cd34), baseline 0.2900 · 2 in flight:
    3a4b5c6d proxy, 9f0e1a2b confirm

A terminal gets it as a live line under the others, redrawn twice a second (with the latest
step of the trial's log when one trial runs); output to a file or a pipe gets it printed
once each candidate is recorded, and nothing in between. The stages in flight are also
written to the memory (memory.in_flight), where the web UI reads them."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text

from archlab.memory import in_flight
from archlab.orchestration.budget import RunBudget
from archlab.records import Candidate, Outcome, Verdict, is_accepted, plan_title
from archlab.sandbox.process import read_tail
from archlab.sandbox.protocol import LOG_FILE

#: how often a terminal's progress line is redrawn
REFRESH_PER_S = 2
_SEP = " · "
#: which part of the progress line gets shorter next while it is too long: the trial's
#: step, the stages in flight (named, counted, left out), the baseline, the time left
_SHORTEN = ("step", "flight", "flight", "scores", "time")
#: what a stage in flight is doing, alone on the line
_DOING = {"verify": "verifying {}", "review": "waiting for review of {}", "scale": "scaling {}"}


@dataclass(frozen=True)
class Stage:
    """A stage in flight: `live`'s candidate (None: the run's best, at the scale stage)."""

    candidate_id: str | None
    stage: str
    lane: int
    started: float  # time.monotonic()

    @property
    def name(self) -> str:
        return "the best" if self.candidate_id is None else self.candidate_id[:8]


class Reporter:
    def __init__(self, console: Console, budget: RunBudget, trials_dir: Path) -> None:
        """`budget`: the run's (its counts, its settings, its memory); `trials_dir`: where
        the run's trials write their logs (the progress line reads the latest step)."""
        self.console, self.budget, self.trials_dir = console, budget, trials_dir
        self.lanes = budget.settings.lanes
        self._lock = threading.Lock()
        self._flight: dict[int, Stage] = {}
        self._keys = itertools.count()
        self._candidates = budget.settings.trials
        #: (accepted, score, candidate_id): the best as the run's summary would name it now
        self._best: tuple[bool, float, str] | None = None
        self._baseline: float | None = None

    def _tag(self, lane: int, indent: str = "") -> str:
        """Lines of a run with several lanes say which lane printed them."""
        return f"[dim]L{lane}[/] " if self.lanes > 1 else indent

    def say(self, line: str) -> None:
        """A line of the run's own (its start, resume), markup allowed."""
        self.console.print(line)

    def stopped(self, lane: int, why: str) -> None:
        self.console.print(f"{self._tag(lane)}stopped: {escape(why)}")

    def started(self, lane: int, n: int, candidate: Candidate, repair_of: str | None) -> None:
        """Candidate number `n` of the run was saved and goes to verification."""
        what = plan_title(candidate["plan"])
        if repair_of is not None:
            what = f"repair {candidate.get('repair', 0)} of {repair_of}: {what}"
        self.console.print(
            f"{self._tag(lane)}[bold]#{n}[/] {candidate['candidate_id']} "
            f"[cyan]{candidate['plan']['operator']}[/] {escape(what)}"
        )

    def promoted(self, lane: int, why: str, stage: str = "confirm") -> None:
        self.console.print(f"{self._tag(lane, '  ')}[cyan]promote[/] to {stage}: {escape(why)}")

    def note(self, lane: int, line: str) -> None:
        """A line about the candidate in flight (its outcome, a wait for its review)."""
        self.console.print(f"{self._tag(lane, '  ')}{line}")

    def recorded(self, lane: int, candidate: Candidate, outcome: Outcome, verdict: Verdict) -> str:
        """The candidate's outcome was recorded: its line, printed and returned, and the
        best so far kept (an accepted candidate before any that is not, as the run's
        summary ranks them). Output that is not a terminal gets the progress line here."""
        line = outcome_line(outcome, verdict)
        self.note(lane, line)
        score = outcome.get("score")
        if outcome["status"] == "ok" and score is not None:
            rank = (is_accepted(verdict["verdict"]), score)
            with self._lock:
                if candidate["origin"] == "baseline":
                    self._baseline = score
                elif self._best is None or rank > self._best[:2]:
                    self._best = (*rank, candidate["candidate_id"])
        if not self.console.is_terminal:
            width = max(self.console.width - len("progress: "), 20)
            self.console.print(Text(f"progress: {self.line(width)}"), soft_wrap=True)
        return line

    @contextmanager
    def running(self, task_fingerprint: str, candidates: int | None = None) -> Iterator[None]:
        """Around the run's lanes and its conclusion: the best so far and the task's
        baseline as the memory has them (a resumed run's), and on a terminal the live
        progress line. `candidates`: the count the line shows, if not the run's budget
        (one, for a hand-written candidate)."""
        memory, run_id = self.budget.memory, self.budget.run_id
        best, baseline = memory.best_of_run(run_id), memory.baseline(task_fingerprint)
        with self._lock:
            self._candidates = candidates or self.budget.settings.trials
            if best is not None:
                self._best = (best["accepted"], best["score"], best["candidate_id"])
            if baseline is not None and baseline["status"] == "ok":
                self._baseline = baseline["score"]
        in_flight.forget(memory, run_id)  # what a killed session of the run left
        try:
            if not self.console.is_terminal:
                yield
                return
            line = ProgressLine(self)
            with Live(line, console=self.console, refresh_per_second=REFRESH_PER_S, transient=True):
                yield
        finally:
            in_flight.forget(memory, run_id)

    @contextmanager
    def live(self, candidate_id: str | None, stage: str, lane: int = 0) -> Iterator[None]:
        """Around a stage of a candidate (None: the run's best at the scale stage): on the
        progress line while it runs, and in the memory for readers in other processes."""
        memory = self.budget.memory
        marker = in_flight.mark(memory, self.budget.run_id, lane, candidate_id, stage)
        key = next(self._keys)
        with self._lock:
            self._flight[key] = Stage(candidate_id, stage, lane, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                del self._flight[key]
            in_flight.clear(memory, marker)  # with the node's writes

    def line(self, width: int, follow: bool = False) -> str:
        """The progress line, in at most `width` characters: the least useful parts are
        shortened or left out first. `follow`: with the latest step of the trial's log when
        one trial runs (a file read: for the live line)."""
        started, left = self.budget.glance()
        with self._lock:
            total, best, baseline = self._candidates, self._best, self._baseline
            flight = sorted(self._flight.values(), key=lambda s: (s.lane, s.started))
        now = time.monotonic()
        scores = []
        if best is not None:
            scores.append(f"best {best[1]:.4f} ({best[2][:8]})")
        if baseline is not None:
            scores.append(f"baseline {baseline:.4f}")
        if best is None:
            scores.append("no best yet" if baseline is not None else "no score yet")
        parts = {  # each part's forms, the fullest first, in the line's order
            "count": (
                f"candidate {min(started, total)} of {total}" if total else f"candidate {started}",
            ),
            "time": (f"{_clock(left)} left", "") if left is not None else ("",),
            "scores": (", ".join(scores), scores[0]),
            "flight": (*_flight_forms(flight, now), ""),
            "step": ("",),
        }
        if follow and len(flight) == 1 and flight[0].stage != "review":
            parts["step"] = (self._step(flight[0]), "")
        return _fit(parts, _SHORTEN, width)

    def _step(self, stage: Stage) -> str:
        """The latest step line of the stage's newest trial log, if any."""
        pattern = "*" if stage.candidate_id is None else f"{stage.candidate_id}-*"
        logs = sorted(self.trials_dir.glob(f"{pattern}/{LOG_FILE}"), key=_mtime)
        lines = read_tail(logs[-1], 200).strip().splitlines() if logs else []
        return lines[-1] if lines and lines[-1].startswith("step:") else ""


class ProgressLine:
    """The progress line as a terminal draws it (`Reporter.running`): a spinner, then the
    line, cut to the width it is drawn in."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.spinner = Spinner("dots")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        frames = self.spinner.frames
        frame = frames[int(time.monotonic() * 1000 / self.spinner.interval) % len(frames)]
        # two columns stay free: a terminal echoes Ctrl-C as "^C" after the line, and a
        # full line would wrap, leaving the line on screen when the run clears it
        line = self.reporter.line(options.max_width - 4, follow=True)
        yield Text.assemble(frame, " ", line, no_wrap=True, overflow="ellipsis")


def _flight_forms(flight: list[Stage], now: float) -> tuple[str, ...]:
    """The stages in flight, from the fullest form to the shortest (none: nothing)."""
    if not flight:
        return ()
    if len(flight) == 1:
        (s,) = flight
        doing = _DOING.get(s.stage, "training {} " + s.stage).format(s.name)
        return (f"{doing} {_clock(now - s.started)}", doing)
    each = ", ".join(f"{s.name} {s.stage}" for s in flight)
    return (f"{len(flight)} in flight: {each}", f"{len(flight)} in flight")


def _fit(parts: dict[str, tuple[str, ...]], order: tuple[str, ...], width: int) -> str:
    """The parts joined in at most `width` characters: while too long, the part `order`
    names next goes to its next form; cut with an ellipsis if it never fits."""
    chosen = dict.fromkeys(parts, 0)

    def joined() -> str:
        return _SEP.join(form for name, forms in parts.items() if (form := forms[chosen[name]]))

    line = joined()
    for name in order:
        if len(line) <= width:
            break
        chosen[name] = min(chosen[name] + 1, len(parts[name]) - 1)
        line = joined()
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def _clock(seconds: float) -> str:
    """3:12, or 1:02:03 past an hour."""
    minutes, secs = divmod(int(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def outcome_line(outcome: Outcome, verdict: Verdict) -> str:
    """A recorded candidate in one line (with markup): the run's progress and history."""
    status = outcome["status"]
    if status == "ok":
        wall = outcome.get("wall_time_s") or 0.0
        return (
            f"[green]ok[/] score {outcome['score']:.4f} in {wall:.0f} s, "
            f"{outcome['n_params']:,} params: {verdict['verdict']} ({escape(verdict['reason'])})"
        )
    if status == "stopped":
        wall = outcome.get("wall_time_s") or 0.0
        return f"[yellow]stopped[/] early after {wall:.0f} s: {escape(str(outcome['message']))}"
    color = "yellow" if status == "duplicate" else "red"
    message = escape(str(outcome.get("message")))
    line = f"[{color}]{status}[/] {outcome.get('error_class')}: {message}"
    return line + (" [yellow]-> repair[/]" if verdict["verdict"] == "repair" else "")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a trial directory removed meanwhile
        return 0.0
