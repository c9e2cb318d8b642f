"""A run's budgets (candidates, wall time, tokens, dollars), shared by its lanes and carried
across resumes: the run's counts, never one lane's. Saved candidates are counted in the
memory when a process takes the run up, then as its lanes save them.

A lane claims a candidate slot before planning and the slot is settled when the candidate
is saved, so K lanes never start more candidates than the budget allows. Time is the time
spent running, summed over sessions: a run resumed the next morning does not find its
budget spent by the night it lay killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from archlab.config import RunSettings
from archlab.memory.store import Memory

#: how often the run's time is stored as its candidates are recorded: a kill -9 loses at
#: most this much of it from the time budget (storing it with every candidate cost a write)
SAVE_ELAPSED_S = 10.0


class RunBudget:
    def __init__(
        self,
        settings: RunSettings,
        memory: Memory,
        run_id: str,
        elapsed_before: float = 0.0,
    ) -> None:
        """`elapsed_before`: the seconds earlier sessions of the run ran."""
        self.settings, self.memory, self.run_id = settings, memory, run_id
        self._elapsed_before = elapsed_before
        self._started = self._elapsed_saved_at = time.monotonic()
        self._claimed = 0
        # counted once, then kept as lanes save: the run's lease makes this its only writer
        self._saved_count = memory.count_candidates(run_id)
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started

    def time_left(self) -> bool:
        minutes = self.settings.minutes
        return not minutes or self.elapsed() < minutes * 60

    def glance(self) -> tuple[int, float | None]:
        """For the progress line: the candidates started (saved, or claimed by a lane that
        plans or codes one) and the seconds left of the time budget (None without one).
        Read without the lock, which a save holds: a moment behind at worst."""
        started = self._saved_count + self._claimed
        minutes = self.settings.minutes
        left = max(minutes * 60 - self.elapsed(), 0.0) if minutes else None
        return started, left

    def save_elapsed(self, every_s: float = 0.0) -> None:
        """Store the time the run has spent; with `every_s`, only if the last store is
        older than that."""
        clock = time.monotonic()
        if every_s and clock - self._elapsed_saved_at < every_s:
            return
        self._elapsed_saved_at = clock
        self.memory.set_elapsed(self.run_id, self.elapsed())

    def spent(self) -> str | None:
        """Which budget other than the candidates' is spent, if any."""
        run = self.settings
        if not self.time_left():
            return f"time budget spent ({run.minutes:g} minutes)"
        if run.max_tokens or run.max_usd:
            tokens, usd = self.memory.llm_usage(self.run_id)
            if run.max_tokens and tokens >= run.max_tokens:
                return f"token budget spent ({tokens:,} of {run.max_tokens:,} tokens)"
            if run.max_usd and usd >= run.max_usd:
                return f"dollar budget spent (${usd:.4f} of ${run.max_usd:g})"
        return None

    def claim(self) -> str | None:
        """Take a slot for one more candidate (a new idea or a repair), or say which budget
        is spent. Budgets are checked between candidates: one in flight always finishes."""
        spent = self.spent()
        if spent:
            return spent
        with self._lock:
            trials = self.settings.trials  # 0: no limit
            if trials and self._saved_count + self._claimed >= trials:
                return f"trial budget spent ({self.settings.trials} candidates)"
            self._claimed += 1
        return None

    def hold(self, slots: int) -> None:
        """Slots claimed before a crash: lanes resumed at a candidate not saved yet."""
        with self._lock:
            self._claimed += slots

    def release(self) -> None:
        """Give back a claimed slot that produced no candidate."""
        with self._lock:
            self._claimed -= 1

    @contextmanager
    def saving(self, candidate_id: str) -> Iterator[int]:
        """Around the first save of a candidate: its claim becomes a saved row. Saving it
        again (the node re-ran after a crash) settles nothing. Gives its number in the run
        (the candidates saved before it, and itself; other lanes' claims are not yet)."""
        with self._lock:
            known = self.memory.candidate_exists(candidate_id)
            yield self._saved_count + (0 if known else 1)
            if not known:
                self._claimed -= 1
                self._saved_count += 1
