"""The coder: turns a plan into the candidate module that is stored and run.

In compose mode the code is always the genome rendered through the templates, so what
is stored is exactly what ran. In design mode a model writes the module, as edits on the
parent's code or in full, and repairs it when verification or training fails."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel

from archlab.errors import ArchlabError
from archlab.llm.answers import Unusable, fenced_blocks
from archlab.llm.brains import Asker
from archlab.llm.client import NoAnswer, Question
from archlab.prompts import task_brief
from archlab.records import Candidate
from archlab.roles.context import RunContext
from archlab.search.genome import Genome, render

#: one search/replace edit: the SEARCH lines, then what replaces them
_EDIT = re.compile(
    r"^<{7} ?SEARCH[^\n]*\n(.*?)^={7}[^\n]*\n(.*?)^>{7} ?REPLACE[^\n]*$", re.DOTALL | re.MULTILINE
)
LOG_LINES = 30


class CodeAnswer(BaseModel):
    source: str
    #: how many search/replace edits made it; 0 for a whole module
    edits: int = 0


def write_code(ctx: RunContext, candidate: Candidate, failed: dict[str, Any] | None = None) -> str:
    """The candidate's module. `failed` (candidate_id, source, problem) asks for a repair."""
    if candidate.get("source") is not None:  # hand-written (archlab eval)
        return str(candidate["source"])
    if candidate["origin"] == "baseline":
        return ctx.task.baseline_source()
    if "unplanned" in candidate:  # no plan, no code: the planner's failure is the outcome
        raise NoAnswer(candidate["unplanned"])
    if candidate["genome"] is not None:
        return render(Genome.model_validate(candidate["genome"]))
    return ctx.brains.coder.write(ctx, candidate, failed)


class TemplateCoder:
    """The offline coder: every module it gives is a genome rendered by the templates
    (above), so it has none of its own to write or repair."""

    writes_code = False

    def write(self, ctx: RunContext, candidate: Candidate, failed: dict[str, Any] | None) -> str:
        raise ArchlabError("design mode needs a model for the coder (see [roles])")


class ModelCoder:
    """A model (or a replayed run) writes the module, as edits on the parent's code or in
    full, and repairs it from the failure's message and log."""

    writes_code = True

    def __init__(self, asker: Asker) -> None:
        self.asker = asker

    def write(self, ctx: RunContext, candidate: Candidate, failed: dict[str, Any] | None) -> str:
        return _ask_model(ctx, self.asker, candidate, failed)


def genome_key(candidate: Candidate) -> str | None:
    genome = candidate.get("genome")
    return Genome.model_validate(genome).key() if genome else None


def repair_id(candidate_id: str) -> str:
    """The id of the attempt after `candidate_id`: derived, not drawn, so that a coder
    node re-run after a crash saves the same candidate again instead of a second one."""
    return hashlib.sha256(f"{candidate_id}:repair".encode()).hexdigest()[:12]


def next_attempt(candidate: Candidate) -> Candidate:
    """A failed candidate's idea, tried again: a new candidate with the same plan."""
    attempt: Candidate = {
        **candidate,
        "candidate_id": repair_id(candidate["candidate_id"]),
        "repair": candidate["repair"] + 1,
        "plan": {**candidate["plan"], "repair_of": candidate["candidate_id"]},
    }
    attempt.pop("source", None)  # the coder writes the attempt's own
    return attempt


def read_code(text: str, base: str | None) -> CodeAnswer:
    """The module an answer gives: `base` with its search/replace edits applied, or the
    whole module from a fenced block. What cannot be used says why, for the re-ask."""
    edits = _EDIT.findall(text)
    if edits:
        if base is None:
            raise Unusable("there is no code to edit: send the whole module in a ```python block")
        source = base
        for i, (search, replace) in enumerate(edits, 1):
            where = f"edit {i} of {len(edits)}"
            if not search.strip():
                raise Unusable(f"{where} has an empty SEARCH section")
            found = source.count(search)
            if found == 0:
                raise Unusable(
                    f"the SEARCH lines of {where} are not in the code (after the edits before "
                    "it): copy them exactly, whitespace included, or send the whole module"
                )
            if found > 1:
                raise Unusable(
                    f"the SEARCH lines of {where} occur {found} times: add lines around them "
                    "so that they match one place"
                )
            source = source.replace(search, replace, 1)
    else:
        blocks = [body for lang, body in fenced_blocks(text) if lang in ("python", "py", "")]
        if not blocks:
            raise Unusable("found neither SEARCH/REPLACE edits nor a ```python block")
        source = max(blocks, key=len).strip("\n") + "\n"
    if base is not None and source.strip() == base.strip():
        raise Unusable("the code is unchanged: change it as the plan says")
    return CodeAnswer(source=source, edits=len(edits))


def _ask_model(
    ctx: RunContext, asker: Asker, candidate: Candidate, failed: dict[str, Any] | None
) -> str:
    prompts = ctx.brains.prompts
    task = task_brief(ctx.task)
    if failed is not None:
        base = failed["source"]
        trials = ctx.memory.trials(failed["candidate_id"])
        log = trials[-1]["log_tail"] if trials else ""
        prompt = prompts.render(
            "coder_repair.j2",
            task=task,
            plan=candidate["plan"],
            code=base,
            problem=failed["problem"],
            log="\n".join((log or "").strip().splitlines()[-LOG_LINES:]),
        )
    else:
        by_id = ctx.memory.candidates_by_id(candidate["parents"])
        parents = [by_id[p] for p in candidate["parents"] if p in by_id]
        base = parents[0]["source"] if parents else None
        shown = [
            {"id": p["candidate_id"], "score": p["score"], "code": p["source"]} for p in parents
        ]
        prompt = prompts.render("coder_write.j2", task=task, plan=candidate["plan"], parents=shown)
    question = Question(
        role="coder",
        purpose="repair" if failed else "write",
        messages=[
            {"role": "system", "content": prompts.render("coder_system.j2")},
            {"role": "user", "content": prompt},
        ],
        answer=CodeAnswer,
        parse=lambda text: read_code(text, base),
        candidate_id=candidate["candidate_id"],
        step=candidate["step"],
        repair=candidate["repair"],
    )
    return asker.ask(question).source
