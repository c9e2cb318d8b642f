"""The graph's nodes: plan, code, verify, train, critique and record.

Each is a function of the lane's state and the run's context (LangGraph's runtime context,
`runtime.context`: a `Lab`) that returns a partial update of the state. The roles do the
work; a node decides what the state keeps, what the memory records and what is printed.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from archlab.eval.verify import ast_hash, source_hash
from archlab.llm.brains import ReplayExhausted
from archlab.llm.client import LLMError, NoAnswer
from archlab.orchestration.budget import SAVE_ELAPSED_S
from archlab.orchestration.lab import Lab
from archlab.orchestration.state import LabState
from archlab.records import Candidate, Outcome
from archlab.roles import audit, coder, critic, ladder, planner, reviewer, trainer


def _lane(state: LabState) -> int:
    return state.get("lane", 0)


def _in_flight(state: LabState) -> Candidate:
    """The candidate the node works on: every node after plan has one (the edges say so)."""
    candidate = state.get("candidate")
    assert candidate is not None, "a node after plan runs without a candidate"
    return candidate


def plan(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
    lab = runtime.context
    # Steps number the brain's ideas (the baseline is step 0) and interleave the lanes
    # (lane k of K takes k+1, k+1+K, ...): the same step on a re-run after a crash, so that
    # LLM answers are found again, not paid twice, and a replay (with as many lanes) finds
    # its answers even where the baseline exists. Lanes plan them in order (Turns).
    lanes = lab.settings.run.lanes
    step = state["step"] + lanes if state.get("step") else _lane(state) + 1
    lab.turns.wait(step, lab.cancel)
    stopped = lab.budget.claim()
    if stopped is None:
        try:
            candidate = planner.plan(lab, step)
        except ReplayExhausted as e:
            lab.budget.release()
            stopped = f"replay complete: {e}"
        except BaseException:
            lab.budget.release()
            raise
        else:
            lab.inflight.add(
                candidate["candidate_id"], candidate["origin"], coder.genome_key(candidate)
            )
            if candidate["origin"] == "baseline":  # it takes no turn: step 0
                step = 0
            else:  # the next step may plan, knowing this idea
                lab.turns.planned(step)
            candidate.update({"step": step, "repair": 0, "lane": _lane(state)})
            return {
                "candidate": candidate,
                "step": max(step, state.get("step", 0)),
                "outcome": {},
                "verdict": None,
            }
    lab.turns.stopped(step)
    lab.report.stopped(_lane(state), str(stopped))
    return {"candidate": None, "stopped": stopped}


def code(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
    lab = runtime.context
    candidate: Candidate = {**_in_flight(state)}
    verdict = state.get("verdict")
    failed = None
    if verdict and verdict["verdict"] == "repair":
        failed = {
            "candidate_id": candidate["candidate_id"],
            "source": candidate["source"],
            "problem": verdict["reason"],
        }
        candidate = coder.next_attempt(candidate)
    outcome: Outcome = {}
    try:
        source = coder.write_code(lab, candidate, failed)
    except NoAnswer as e:
        source, outcome = "", ladder.rejected("answer", str(e))
    candidate["source"] = source
    with lab.budget.saving(candidate["candidate_id"]) as n:
        _save(lab, candidate)
        if lab.settings.run.lanes > 1:  # other lanes count saved candidates: commit
            lab.memory.flush()  # before the claim goes
    lab.report.started(
        _lane(state), n, candidate, None if failed is None else failed["candidate_id"]
    )
    if outcome and "unplanned" not in candidate:  # (the planner counted its own failure)
        _failed_step(lab, candidate, str(outcome["message"]))
    elif candidate["origin"] == "proposed":  # a step the models saw through
        lab.failed_steps.succeeded()
    # the repair's slot is settled by the save
    return {"candidate": candidate, "outcome": outcome, "verdict": None, "repair_next": False}


def _failed_step(lab: Lab, candidate: Candidate, problem: str) -> None:
    """Count a step without a usable answer; past the limit, the run stops with the
    step's candidate recorded as rejected."""
    try:
        lab.failed_steps.failed(lab.settings.run.max_failed_steps, problem)
    except LLMError:
        lab.memory.set_outcome(
            candidate["candidate_id"], status="rejected", error_class="answer", message=problem
        )
        lab.memory.flush()  # the node's writes, kept although it raises
        raise


def _save(lab: Lab, candidate: Candidate) -> None:
    source = candidate["source"]
    lab.memory.save_candidate(
        candidate_id=candidate["candidate_id"],
        run_id=lab.run_id,
        task=lab.task.name,
        task_fingerprint=lab.task_fingerprint,
        source=source,
        source_hash=source_hash(source),
        ast_hash=ast_hash(source),
        parents=candidate["parents"],
        plan=candidate["plan"],
        genome=candidate["genome"],
        genome_key=coder.genome_key(candidate),
        brain=candidate["brain"],
        origin=candidate["origin"],
        status="pending",
        lane=candidate.get("lane"),
        step=candidate.get("step"),
    )


def verify(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
    lab, candidate = runtime.context, _in_flight(state)
    with lab.report.live(candidate["candidate_id"], "verify", _lane(state)):
        return {"outcome": ladder.verify(lab, candidate), "stage": "proxy"}


def train(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
    lab, candidate = runtime.context, _in_flight(state)
    stage, cid = state.get("stage", "proxy"), candidate["candidate_id"]
    if stage == "proxy" and lab.settings.run.review:
        lab.report.note(_lane(state), reviewer.request_review(lab, candidate))
        with lab.report.live(cid, "review", _lane(state)):
            refused = reviewer.await_review(lab, candidate)
        if refused is not None:
            return {"outcome": refused}
    with lab.report.live(cid, stage, _lane(state)):
        if stage == "confirm":
            return {"outcome": {**state["outcome"], **ladder.confirm(lab, candidate)}}
        if stage == "audit":
            return {"outcome": {**state["outcome"], "audit": audit.audit(lab, candidate)}}
        ref, n_params = ladder.reference(lab, candidate), state["outcome"].get("n_params")
        stop = ladder.early_stop(lab, candidate, ref, n_params or 0)
        outcome = trainer.run_stage(lab, cid, candidate["source"], "proxy", stop=stop)
    ladder.record_proxy(lab, cid, outcome)
    return {"outcome": outcome}


def critique(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
    lab, candidate, outcome = runtime.context, _in_flight(state), state["outcome"]
    if outcome["status"] != "ok":
        return {"verdict": critic.critique(lab, candidate, outcome), "stage": "proxy"}
    score = outcome.get("score")
    assert score is not None, "a trained candidate has a score"
    ref = ladder.reference(lab, candidate)  # one look-up for both questions
    stage = state.get("stage")
    if stage == "proxy":
        why = ladder.worth_confirming(lab, candidate, score, ref)
        late = candidate["origin"] != "baseline" and not lab.budget.time_left()
        if why is not None and late:
            decision = ladder.out_of_time(why, "its confirm seeds")
            return {"verdict": critic.critique(lab, candidate, outcome, decision), "stage": "proxy"}
        if why is not None:
            lab.report.promoted(_lane(state), why)
            trainer.keep_weights(lab, candidate["candidate_id"])  # what it learnt, if asked
            return {"verdict": {"verdict": "promote", "reason": why}, "stage": "confirm"}
    decision = ladder.decide(lab, candidate, outcome, ref)
    if "audit" in outcome:  # the audit's outcome decides
        decision = audit.decide(decision, outcome["audit"])
    elif stage == "confirm" and (why := audit.due(candidate, decision)) is not None:
        if not lab.budget.time_left():
            decision = ladder.out_of_time(why, "its audit")
        else:
            lab.report.promoted(_lane(state), why, "audit")
            return {"verdict": {"verdict": "promote", "reason": why}, "stage": "audit"}
    return {"verdict": critic.critique(lab, candidate, outcome, decision), "stage": "proxy"}


def record(state: LabState, *, runtime: Runtime[Lab]) -> dict[str, Any]:
    lab, candidate, outcome = runtime.context, _in_flight(state), state["outcome"]
    verdict = state.get("verdict")
    assert verdict, "record runs after the critique"
    # the outcome, its verdict and (every few seconds) the run's time commit at once,
    # before other lanes stop seeing the candidate as in flight (they count the random
    # samples recorded and in flight)
    lab.memory.set_outcome(
        candidate["candidate_id"],
        status=outcome["status"],
        error_class=outcome.get("error_class"),
        message=outcome.get("message"),
        score=outcome.get("score"),
        metrics=outcome.get("metrics"),
        n_params=outcome.get("n_params"),
        duplicate_of=outcome.get("duplicate_of"),
        seeds=outcome.get("seeds"),
        fitness=trainer.fitness_of(lab).definition() if outcome.get("score") else None,
        audit=(outcome.get("audit") or {}).get("summary"),
    )
    lab.memory.save_verdict(candidate_id=candidate["candidate_id"], run_id=lab.run_id, **verdict)
    lab.budget.save_elapsed(every_s=SAVE_ELAPSED_S)
    if lab.settings.run.lanes > 1:
        lab.memory.flush()
    lab.inflight.discard(candidate["candidate_id"])
    trainer.drop_weights(lab, candidate["candidate_id"])  # not promoted: none are kept
    line = lab.report.recorded(_lane(state), candidate, outcome, verdict)
    # the repair's slot is claimed here, in a node, so that a re-run claims it again
    repair_next = (
        not state.get("single") and verdict["verdict"] == "repair" and lab.budget.claim() is None
    )
    return {
        "evaluated": state.get("evaluated", 0) + 1,
        "history": [*state.get("history", []), line][-20:],
        "repair_next": repair_next,
    }
