"""The human in the loop, on the agents' side: a run with `--review` waits before each
training for `archlab approve` or `archlab reject` from another process, and the notes
given with `archlab steer` shape the planner's next proposals.

A model planner reads the notes as they are. The heuristic brain understands the genome's
vocabulary in them: a primitive named in a clause that says avoid (no, not, without,
drop, ...) is excluded; one named otherwise is preferred. A later note overrides an
earlier one about the same primitive."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.markup import escape

from archlab.memory import reviews
from archlab.records import Candidate, Outcome
from archlab.roles.context import Cancelled, RunContext
from archlab.roles.ladder import record, rejected
from archlab.search.genome import CHANNELS, MIXERS, NORMS, RESIDUALS, Genome

#: how often a waiting lane looks for a decision
POLL_S = 1.0

_NEGATIONS = {"avoid", "no", "not", "without", "drop", "stop", "never", "dont", "don't", "less"}
#: the words people use for each primitive, longest first so "linear attention" wins
_ALIASES = {
    "linear attention": "linear_attention",
    "softmax attention": "softmax_attention",
    "gated recurrence": "gated_recurrence",
    "gated mlp": "gated_mlp",
    "recurrence": "gated_recurrence",
    "recurrent": "gated_recurrence",
    "attention": "softmax_attention",
    "convolution": "causal_conv",
    "conv": "causal_conv",
    "rnn": "gated_recurrence",
    "gru": "gated_recurrence",
    "glu": "gated_mlp",
    "mlp": "mlp",
}
_PRIMITIVES = (*MIXERS, *(c for c in CHANNELS if c != "none"), *NORMS, *RESIDUALS)
_WORDS = sorted(
    {**{p.replace("_", " "): p for p in _PRIMITIVES}, **_ALIASES}.items(),
    key=lambda item: -len(item[0]),
)


@dataclass(frozen=True)
class Steer:
    """What the notes ask of the heuristic brain's proposals."""

    prefer: frozenset[str] = frozenset()
    avoid: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.prefer or self.avoid)

    def allows(self, genome: Genome) -> bool:
        used = primitives(genome)
        return not (used & self.avoid) and (not self.prefer or bool(used & self.prefer))

    def describe(self) -> str:
        parts = []
        if self.prefer:
            parts.append("prefer " + ", ".join(sorted(self.prefer)))
        if self.avoid:
            parts.append("avoid " + ", ".join(sorted(self.avoid)))
        return "; ".join(parts)


def primitives(genome: Genome) -> set[str]:
    used: set[str] = {genome.norm, genome.residual}
    for block in genome.blocks:
        used |= {block.mixer, block.channel}
    return used


def read_steer(notes: list[str]) -> Steer:
    prefer: set[str] = set()
    avoid: set[str] = set()
    for note in notes:
        for clause in re.split(r"[.;,\n]|\bbut\b|\band\b", note.lower()):
            text = " " + re.sub(r"[_\-]+", " ", clause) + " "
            negated = bool(_NEGATIONS & set(re.findall(r"[a-z']+", text)))
            for word, primitive in _WORDS:
                if f" {word} " in text:
                    text = text.replace(f" {word} ", " ")
                    (avoid if negated else prefer).add(primitive)
                    (prefer if negated else avoid).discard(primitive)
    return Steer(frozenset(prefer), frozenset(avoid))


def request_review(ctx: RunContext, candidate: Candidate) -> str:
    """Ask for a decision on the candidate; what to tell the person who gives it."""
    cid = candidate["candidate_id"]
    reviews.request_review(ctx.memory, ctx.run_id, cid)
    return (
        f"[yellow]waiting for review[/] of {cid} ({escape(candidate['plan'].get('summary', ''))}"
        f"): `archlab approve {ctx.run_id} --candidate {cid}` or `archlab reject ...`"
    )


def await_review(ctx: RunContext, candidate: Candidate) -> Outcome | None:
    """Wait until someone approves or rejects the candidate (`request_review` first); the
    rejection as its outcome, or None to train it."""
    cid = candidate["candidate_id"]
    while not (review := reviews.review_of(ctx.memory, cid) or {}).get("decision"):
        if ctx.cancel.wait(POLL_S):
            raise Cancelled("the run was told to stop while waiting for review")
    reason = review["reason"] or "no reason given"
    if review["decision"] == "approve":
        record(ctx, cid, "review", "passed", message=reason)
        return None
    message = f"rejected by the reviewer: {reason}"
    record(ctx, cid, "review", "failed", error_class="review", message=message)
    return rejected("review", message)
