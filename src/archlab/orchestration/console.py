"""What a run prints: one reporter for every line the graph's nodes and the run's start and
end write to the terminal, so that the lines of a run with several lanes say which lane
printed them, and a terminal gets a spinner that follows the trial in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from archlab.records import Candidate, Outcome, Verdict, plan_title
from archlab.sandbox.process import read_tail
from archlab.sandbox.protocol import LOG_FILE


class Reporter:
    def __init__(self, console: Console, lanes: int, trials_dir: Path) -> None:
        """`trials_dir`: where the run's trials write their logs (the spinner reads them)."""
        self.console, self.lanes, self.trials_dir = console, lanes, trials_dir

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

    @contextmanager
    def live(self, candidate_id: str, stage: str) -> Iterator[None]:
        """A spinner that follows the newest trial log of the candidate: elapsed time and
        the latest step line. A terminal shows one spinner: a run with several lanes prints
        lines, and output to a file or pipe gets none (its threads would cost every
        candidate)."""
        if self.lanes > 1 or not self.console.is_terminal:
            yield
            return
        label = f"  {stage} {candidate_id}"
        started = time.monotonic()
        stop = threading.Event()
        with self.console.status(label) as status:

            def follow() -> None:
                while not stop.wait(0.5):
                    logs = sorted(self.trials_dir.glob(f"*/{LOG_FILE}"), key=_mtime)
                    lines = read_tail(logs[-1], 200).strip().splitlines() if logs else []
                    last = lines[-1] if lines and lines[-1].startswith("step:") else ""
                    status.update(f"{label} {time.monotonic() - started:4.0f} s  {last}")

            watcher = threading.Thread(target=follow, daemon=True)
            watcher.start()
            try:
                yield
            finally:
                stop.set()
                watcher.join()


def outcome_line(outcome: Outcome, verdict: Verdict) -> str:
    """A recorded candidate in one line (with markup): the run's progress and history."""
    status = outcome["status"]
    if status == "ok":
        wall = outcome.get("wall_time_s") or 0.0
        return (
            f"[green]ok[/] score {outcome['score']:.4f} in {wall:.0f} s, "
            f"{outcome['n_params']:,} params: {verdict['verdict']} ({escape(verdict['reason'])})"
        )
    color = "yellow" if status == "duplicate" else "red"
    message = escape(str(outcome.get("message")))
    line = f"[{color}]{status}[/] {outcome.get('error_class')}: {message}"
    return line + (" [yellow]-> repair[/]" if verdict["verdict"] == "repair" else "")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a trial directory removed meanwhile
        return 0.0
