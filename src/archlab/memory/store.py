"""The experience memory: runs, their candidates, trials, verdicts, verification checks,
LLM calls and graph-node spans, as the rest of archlab reads and writes them. Every SQL
statement of archlab lives in this package (memory.database says how it reaches DuckDB)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from archlab.errors import ArchlabError
from archlab.memory import leases
from archlab.memory.database import Database, now

MEMORY_FILE = "memory.duckdb"
#: what a run's name may be: one word, typed in commands
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: a task's baseline: its first candidate of origin baseline that was evaluated
_BASELINE = (
    "FROM candidates WHERE task_fingerprint = ? AND origin = 'baseline' "
    "AND status NOT IN ('pending', 'duplicate') ORDER BY created_at LIMIT 1"
)

#: a task's random samples, the yardstick: drawn by the planner (origin random), trained
_RANDOM_SAMPLES = (
    "FROM candidates WHERE task_fingerprint = ? AND origin = 'random' AND status = 'ok' "
    "AND score IS NOT NULL ORDER BY created_at"
)


class Memory(Database):
    """The experience memory of a home: named reads and writes, one per question asked."""

    # --- runs -----------------------------------------------------------------
    def start_run(self, **run: Any) -> None:
        self._upsert("runs", "run_id", {**run, "status": "running", "started_at": now()})

    def resume_run(self, run_id: str) -> None:
        self._update("runs", "run_id", run_id, {"status": "running", "message": None})

    def finish_run(self, run_id: str, status: str, message: str | None = None) -> None:
        self._update(
            "runs", "run_id", run_id, {"status": status, "message": message, "finished_at": now()}
        )

    def set_elapsed(self, run_id: str, seconds: float) -> None:
        """The time the run has spent so far (a resumed run goes on from it)."""
        self._update("runs", "run_id", run_id, {"elapsed_s": seconds})

    def runs(
        self, evals: bool = False, task: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The runs, newest first; a running one that no process drives shows `killed`.
        `archlab eval`'s own runs only with `evals`; `task` and `status` filter."""
        rows = self._query(
            "SELECT r.*, count(c.candidate_id) AS n_candidates, max(c.score) AS best_score "
            "FROM runs r LEFT JOIN candidates c USING (run_id) "
            "WHERE (? OR r.kind <> 'eval') AND r.task = coalesce(?, r.task) "
            "GROUP BY ALL ORDER BY r.started_at DESC",
            [evals, task],
        )
        shown = [leases.shown_status(self.path.parent, row) for row in rows]
        return [row for row in shown if status in (None, row["status"])]

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run by name, id or unique id prefix (its status as `runs` shows it)."""
        rows = self._query("SELECT * FROM runs WHERE name = ?", [run_id]) or self._query(
            "SELECT * FROM runs WHERE starts_with(run_id, ?)", [run_id]
        )
        if len(rows) != 1:
            what = "no run" if not rows else f"{len(rows)} runs"
            raise ArchlabError(f"{what} match '{run_id}' (see `archlab runs --all`)")
        return leases.shown_status(self.path.parent, rows[0])

    def check_run_name(self, name: str) -> None:
        """A new run's name: one word (it is typed in commands), not taken by another run."""
        if not _NAME.fullmatch(name):
            raise ArchlabError(
                f"run name {name!r}: letters, digits, '.', '_' and '-', starting with a "
                "letter or digit"
            )
        if self._query("SELECT 1 FROM runs WHERE name = ?", [name]):
            raise ArchlabError(f"run name {name!r} is taken (see `archlab runs --all`)")

    def save_run_changes(self, run_id: str, changes: dict[str, tuple[Any, Any]]) -> None:
        """What a resume changed in the run's settings, (old, new) by dotted key; the
        run's config becomes `config`."""
        stamp = now()
        for setting, (old, new) in changes.items():
            self._insert(
                "run_changes",
                {"run_id": run_id, "setting": setting, "old": old, "new": new, "changed_at": stamp},
            )

    def set_run_config(self, run_id: str, config: dict[str, Any]) -> None:
        self._update("runs", "run_id", run_id, {"config": config})

    def run_changes(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM run_changes WHERE run_id = ? ORDER BY changed_at, setting", [run_id]
        )

    # --- candidates -----------------------------------------------------------
    def save_candidate(self, **candidate: Any) -> None:
        stamp = now()
        self._upsert(
            "candidates", "candidate_id", {**candidate, "created_at": stamp, "updated_at": stamp}
        )

    def set_outcome(self, candidate_id: str, **outcome: Any) -> None:
        self._update("candidates", "candidate_id", candidate_id, {**outcome, "updated_at": now()})

    def get_candidate(self, candidate_id: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT * FROM candidates WHERE starts_with(candidate_id, ?)", [candidate_id]
        )
        if len(rows) != 1:
            what = "no candidate" if not rows else f"{len(rows)} candidates"
            raise ArchlabError(f"{what} match '{candidate_id}'")
        return rows[0]

    def candidates_by_id(self, candidate_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The candidates with these exact ids (those that exist), by id, in one query by
        the key (`get_candidate`, for ids a person typed, takes prefixes: a scan)."""
        if not candidate_ids:
            return {}
        marks = ", ".join("?" for _ in candidate_ids)
        rows = self._query(
            f"SELECT * FROM candidates WHERE candidate_id IN ({marks})", list(candidate_ids)
        )
        return {row["candidate_id"]: row for row in rows}

    def candidate_exists(self, candidate_id: str) -> bool:
        """Whether the candidate was saved, by its key."""
        return bool(self._query("SELECT 1 FROM candidates WHERE candidate_id = ?", [candidate_id]))

    def is_settled(self, candidate_id: str) -> bool:
        """Whether the candidate was saved and is no longer pending."""
        return bool(
            self._query(
                "SELECT 1 FROM candidates WHERE candidate_id = ? AND status <> 'pending'",
                [candidate_id],
            )
        )

    def count_candidates(self, run_id: str) -> int:
        rows = self._query("SELECT count(*) AS n FROM candidates WHERE run_id = ?", [run_id])
        return int(rows[0]["n"])

    def best_of_run(self, run_id: str) -> dict[str, Any] | None:
        """The run's best candidate other than a baseline, the one its summary names: the
        best accepted, else the best scored, the earlier on a tie (candidate_id, origin,
        score, accepted)."""
        rows = self._query(
            "SELECT c.candidate_id, c.origin, c.score, "
            "coalesce(v.verdict = 'accept', false) AS accepted "
            "FROM candidates c LEFT JOIN verdicts v USING (candidate_id) "
            "WHERE c.run_id = ? AND c.status = 'ok' AND c.origin <> 'baseline' "
            "AND c.score IS NOT NULL ORDER BY accepted DESC, c.score DESC, c.created_at LIMIT 1",
            [run_id],
        )
        return rows[0] if rows else None

    def genome_keys(self) -> set[str | None]:
        """The genome key of every candidate of every task."""
        return {r["genome_key"] for r in self._query("SELECT genome_key FROM candidates")}

    def scores_in_order(self, run_id: str) -> list[float | None]:
        """The run's candidates' scores, in the order they were proposed."""
        rows = self._query(
            "SELECT score FROM candidates WHERE run_id = ? ORDER BY created_at", [run_id]
        )
        return [row["score"] for row in rows]

    def fill_scored_candidates(
        self, task_fingerprint: str, genome: dict[str, Any], start: int, stop: int
    ) -> None:
        """Scored candidates c<start>..c<stop> of run `bench`, each with `genome`, in one
        statement: `archlab bench` measures reading a large memory, not filling it."""
        self._execute(
            "INSERT INTO candidates (candidate_id, run_id, task, task_fingerprint, source, "
            "source_hash, parents, plan, genome, genome_key, brain, origin, status, score, "
            "metrics, created_at, updated_at) "
            "SELECT 'c' || i, 'bench', 'mqar', ?, 'def build_model(spec): ...', 'h' || i, "
            "'[]', json_object('operator', 'mutate', 'hypothesis', 'h' || i), ?, 'k' || i, "
            "'heuristic', 'proposed', 'ok', random(), '{}', now(), now() FROM range(?, ?) t(i)",
            [task_fingerprint, json.dumps(genome), start, stop],
        )

    def candidates(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM candidates WHERE run_id = ? ORDER BY score DESC NULLS LAST, created_at",
            [run_id],
        )

    def find_duplicate(
        self, task_fingerprint: str, source_hash: str, ast_hash: str | None
    ) -> dict[str, Any] | None:
        """The earliest evaluated candidate of the task with the same code: its id, score,
        metrics and parameter count (the columns a duplicate reuses; all of them cost twice
        the time). The earliest is picked here: ORDER BY ... LIMIT 1 doubles the query's
        time, and candidates with the same code are few (later ones are duplicates)."""
        rows = self._query(
            "SELECT candidate_id, score, metrics, n_params, created_at FROM candidates "
            "WHERE task_fingerprint = ? AND status NOT IN ('pending', 'duplicate') "
            "AND (source_hash = ? OR (ast_hash IS NOT NULL AND ast_hash = ?))",
            [task_fingerprint, source_hash, ast_hash],
        )
        if not rows:
            return None
        earliest = min(rows, key=lambda row: row["created_at"])
        return {k: v for k, v in earliest.items() if k != "created_at"}

    def parent_pool(
        self, task_fingerprint: str, limit: int = 50, horizon: tuple[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """The best scored candidates of this exact task, across every run (those stopped
        early with the score of their partial curve: the search learns from them too).
        With `horizon` (run id, step), that run's candidates of later steps are left out."""
        run_id, step = horizon or ("", 0)
        return self._query(
            "SELECT candidate_id, score, genome FROM candidates "
            "WHERE task_fingerprint = ? AND status IN ('ok', 'stopped') AND score IS NOT NULL "
            "AND NOT (run_id = ? AND coalesce(step, 0) > ?) "
            "ORDER BY score DESC, candidate_id LIMIT ?",
            [task_fingerprint, run_id, step, limit],
        )

    def baseline(self, task_fingerprint: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT * {_BASELINE}", [task_fingerprint])
        return rows[0] if rows else None

    def baseline_id(self, task_fingerprint: str) -> str | None:
        """The baseline's id alone: half the time of its whole row."""
        rows = self._query(f"SELECT candidate_id {_BASELINE}", [task_fingerprint])
        return str(rows[0]["candidate_id"]) if rows else None

    # --- trials and verdicts --------------------------------------------------
    def save_trial(self, **trial: Any) -> None:
        self._upsert("trials", "trial_id", {**trial, "finished_at": now()})

    def trial(self, trial_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM trials WHERE trial_id = ?", [trial_id])
        return rows[0] if rows else None

    def trials(self, candidate_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM trials WHERE candidate_id = ? ORDER BY finished_at", [candidate_id]
        )

    def run_trials(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """`trials` of each candidate of the run that has any, by id, in one query."""
        rows = self._query("SELECT * FROM trials WHERE run_id = ? ORDER BY finished_at", [run_id])
        trials: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            trials.setdefault(row["candidate_id"], []).append(row)
        return trials

    def trial_counts(self, run_id: str) -> dict[str, Any]:
        """How many trials the run has finished (`trials`), and when the last one did (`last`)."""
        (row,) = self._query(
            "SELECT count(*) AS trials, max(finished_at) AS last FROM trials WHERE run_id = ?",
            [run_id],
        )
        return row

    def save_verdict(self, **verdict: Any) -> None:
        self._upsert("verdicts", "candidate_id", {**verdict, "created_at": now()})

    def verdict(self, candidate_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM verdicts WHERE candidate_id = ?", [candidate_id])
        return rows[0] if rows else None

    def verdicts(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The verdict on each candidate the run judged (`verdict`'s row), by id."""
        rows = self._query("SELECT * FROM verdicts WHERE run_id = ?", [run_id])
        return {row["candidate_id"]: row for row in rows}

    # --- the verification ladder ------------------------------------------------
    def save_check(
        self,
        candidate_id: str,
        stage: str,
        status: str,
        error_class: str | None = None,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        name: str = "",
    ) -> None:
        """Record one ladder stage's outcome (passed, failed or skipped), replacing any earlier;
        `name` tells apart the checks of a stage that has several (the audit's)."""
        self._upsert(
            "checks",
            "candidate_id, stage, name",
            {
                "candidate_id": candidate_id,
                "stage": stage,
                "name": name,
                "status": status,
                "error_class": error_class,
                "message": message,
                "details": details,
                "checked_at": now(),
            },
        )

    def checks(self, candidate_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM checks WHERE candidate_id = ? ORDER BY checked_at", [candidate_id]
        )

    def run_checks(self, run_id: str) -> dict[str, list[dict[str, Any]]]:
        """`checks` of each candidate of the run that has any, by id, in one query."""
        rows = self._query(
            "SELECT * FROM checks WHERE candidate_id IN "
            "(SELECT candidate_id FROM candidates WHERE run_id = ?) ORDER BY checked_at",
            [run_id],
        )
        checks: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            checks.setdefault(row["candidate_id"], []).append(row)
        return checks

    def seed_scores(self, candidate_id: str) -> list[float]:
        """Scores of the candidate's proxy-budget trials, one per seed (proxy and confirm)."""
        return self.seed_scores_of([candidate_id]).get(candidate_id, [])

    def seed_scores_of(self, candidate_ids: Sequence[str]) -> dict[str, list[float]]:
        """`seed_scores` of each candidate that has any, in one query. It selects by the
        key alone and filters here: DuckDB then finds the rows in the trials' index, where
        any other condition made it scan the table (three candidates at 200k trials: 0.8
        against 7 ms)."""
        if not candidate_ids:
            return {}
        rows = self._query(
            "SELECT candidate_id, stage, seed, status, score FROM trials "
            f"WHERE candidate_id IN ({', '.join('?' for _ in candidate_ids)})",
            list(candidate_ids),
        )
        scores: dict[str, list[float]] = {}
        for row in sorted(rows, key=lambda row: row["seed"]):
            proxy_budget = row["stage"] in ("proxy", "confirm")
            if proxy_budget and row["status"] == "ok" and row["score"] is not None:
                scores.setdefault(row["candidate_id"], []).append(float(row["score"]))
        return scores

    def random_samples(self, task_fingerprint: str) -> dict[str, float]:
        """The task's yardstick: the architectures the planner sampled at random from the
        genome space (origin `random`; a brain's own random restarts are proposals, not
        samples) that trained, in the order they were drawn, each with its proxy score (its
        first seed, whether or not it was confirmed later: every sample measured alike)."""
        rows = self._query(f"SELECT candidate_id, score {_RANDOM_SAMPLES}", [task_fingerprint])
        seeds = self.seed_scores_of([row["candidate_id"] for row in rows])
        return {
            row["candidate_id"]: (seeds.get(row["candidate_id"]) or [float(row["score"])])[0]
            for row in rows
        }

    def random_sample_scores(self, task_fingerprint: str) -> list[float]:
        """The scores of `random_samples` as recorded (a confirmed one's is its seeds' mean),
        in one query: what the planner counts."""
        rows = self._query(f"SELECT score {_RANDOM_SAMPLES}", [task_fingerprint])
        return [float(row["score"]) for row in rows]

    def set_run_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        self._update("runs", "run_id", run_id, {"summary": summary})

    # --- LLM calls ----------------------------------------------------------------
    def save_llm_call(self, **call: Any) -> None:
        self._upsert("llm_calls", "call_id", {**call, "created_at": now()})
        self.flush()  # a paid answer reaches the disk at once: a resume must not pay again

    def llm_calls(self, run_id: str) -> list[dict[str, Any]]:
        return self._query(
            "SELECT * FROM llm_calls WHERE run_id = ? ORDER BY created_at, attempt, retry",
            [run_id],
        )

    def llm_usage(self, run_id: str) -> tuple[int, float]:
        """Tokens and dollars the run's LLM calls have used so far."""
        rows = self._query(
            "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens, "
            "coalesce(sum(cost_usd), 0) AS usd FROM llm_calls WHERE run_id = ?",
            [run_id],
        )
        return int(rows[0]["tokens"]), float(rows[0]["usd"])

    def accepted_answers(self, run_id: str) -> dict[tuple[str, int, int], Any]:
        """The answers a run's roles acted on, by (role, step, repair): what replay re-plays."""
        rows = self._query(
            "SELECT role, step, repair, answer FROM llm_calls "
            "WHERE run_id = ? AND status = 'ok' ORDER BY created_at",
            [run_id],
        )
        return {(r["role"], r["step"], r["repair"]): r["answer"] for r in rows}

    def remembered_answer(self, run_id: str, role: str, step: int, repair: int) -> Any | None:
        """The latest answer the run's role accepted at (step, repair), if any."""
        rows = self._query(
            "SELECT answer FROM llm_calls WHERE run_id = ? AND role = ? AND step = ? "
            "AND repair = ? AND status = 'ok' ORDER BY created_at DESC LIMIT 1",
            [run_id, role, step, repair],
        )
        return rows[0]["answer"] if rows else None

    # --- spans -----------------------------------------------------------------
    def save_span(self, **span: Any) -> None:
        self._insert("spans", span)  # span ids are drawn fresh

    def save_handed_on_spans(self, spans: list[dict[str, Any]]) -> None:
        """Spans that nodes handed on in the graph's state (memory.spans): upserts, as a
        node that re-runs after a crash hands them on again."""
        for span in spans:
            self._upsert("spans", "span_id", span)

    def spans(self, run_id: str) -> list[dict[str, Any]]:
        """The run's graph-node spans (memory.spans derives the LLM and trial spans)."""
        return self._query("SELECT * FROM spans WHERE run_id = ? ORDER BY started_at", [run_id])

    def candidate_times(self, run_id: str) -> list[tuple[float, float, float]]:
        """Per candidate of the run whose nodes ran, in order: when its first node started
        and its last ended (epoch seconds), and its LLM calls' latency in seconds."""
        rows = self._query(
            "WITH node AS (SELECT candidate_id, min(started_at) AS first, "
            "max(ended_at) AS last FROM spans WHERE run_id = ? AND candidate_id IS NOT NULL "
            "GROUP BY candidate_id), "
            "llm AS (SELECT candidate_id, sum(latency_s) AS s FROM llm_calls "
            "WHERE run_id = ? GROUP BY candidate_id) "
            "SELECT epoch(node.first) AS first, epoch(node.last) AS last, "
            "coalesce(llm.s, 0) AS llm_s FROM node LEFT JOIN llm USING (candidate_id) "
            "ORDER BY node.first",
            [run_id, run_id],
        )
        return [(r["first"], r["last"], r["llm_s"]) for r in rows]
