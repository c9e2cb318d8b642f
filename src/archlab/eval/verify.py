"""Static verification on the trusted side: parse (never execute) the candidate, check
the task contract, and hash it for duplicate detection."""

from __future__ import annotations

import ast
import functools
import hashlib
import threading
from dataclasses import dataclass

import numpy as np

#: CPython 3.11 builds AST objects with interpreter-wide recursion bookkeeping, so lanes
#: parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
#: (python/cpython#106905): one parse at a time
_PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    with _PARSING:
        return ast.parse(source)


@dataclass(frozen=True)
class StaticCheck:
    ok: bool
    error_class: str | None = None
    message: str | None = None


def static_check(source: str) -> StaticCheck:
    return _analysis(source)[0]


def ast_hash(source: str) -> str | None:
    """Hash of the program's structure and names: blind to comments, layout and docstrings;
    None for code that does not parse."""
    return _analysis(source)[1]


# Both are pure functions of the source, asked for by the coder (to save the candidate)
# and again by the static and dedup stages: a small cache parses each source once.
@functools.lru_cache(maxsize=32)
def _analysis(source: str) -> tuple[StaticCheck, str | None]:
    try:
        tree = parse(source)
    except SyntaxError as e:
        return StaticCheck(False, "syntax", f"line {e.lineno}: {e.msg}"), None
    except ValueError as e:  # e.g. null bytes
        return StaticCheck(False, "syntax", str(e)), None
    check = _contract(tree)
    tree = _Anonymize().visit(tree)
    return check, hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:32]


def _contract(tree: ast.Module) -> StaticCheck:
    builders = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "build_model"
    ]
    if not builders:
        return StaticCheck(
            False, "contract", "the module must define build_model(spec) at top level"
        )
    fn = builders[-1]
    n_args = len(fn.args.posonlyargs) + len(fn.args.args)
    if isinstance(fn, ast.AsyncFunctionDef) or n_args < 1:
        return StaticCheck(False, "contract", "build_model must be a plain function taking spec")
    return StaticCheck(True)


@functools.lru_cache(maxsize=32)
def source_hash(source: str) -> str:
    """Hash of the code's words in order, whatever the amount of whitespace between them.
    Comments and docstrings are ast_hash's to ignore (dedup asks for either hash, and only
    code that parses gets that far): tokenizing to drop them here cost as much again as
    the AST hash."""
    return hashlib.sha256(" ".join(source.split()).encode()).hexdigest()[:32]


class _Anonymize(ast.NodeTransformer):
    """Drop docstrings so that only the program's structure and names are compared."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None
        return self.generic_visit(node)


# --- causality: judged on the trusted side from the model's own logits -----------------


@dataclass(frozen=True)
class CausalityProbe:
    """Inputs sent into the sandbox, and which of them form pairs that differ only after
    position t; unpaired inputs are mixed in so the pairs do not stand out."""

    inputs: np.ndarray
    pairs: list[tuple[int, int, int]]  # (row a, row b, last shared position t)


def causality_probe(
    source_rows: np.ndarray, vocab_size: int, n_pairs: int, seed: int
) -> CausalityProbe:
    rng = np.random.default_rng(seed)
    n, length = source_rows.shape
    picks = rng.choice(n, size=min(2 * n_pairs, n), replace=False)
    rows: list[np.ndarray] = []
    shared: list[tuple[int, int, int]] = []
    for k, pick in enumerate(picks):
        row = source_rows[pick].copy()
        rows.append(row)
        if k < n_pairs:
            t = int(rng.integers(0, length - 1))
            twin = row.copy()
            twin[t + 1 :] = (
                row[t + 1 :] + rng.integers(1, vocab_size, length - t - 1)
            ) % vocab_size
            rows.append(twin)
            shared.append((len(rows) - 2, len(rows) - 1, t))
    order = rng.permutation(len(rows))
    where = {old: new for new, old in enumerate(order)}
    pairs = [(where[a], where[b], t) for a, b, t in shared]
    return CausalityProbe(np.stack(rows)[order], pairs)


def causality_check(probe: CausalityProbe, logits: np.ndarray, rtol: float = 1e-3) -> StaticCheck:
    """Outputs up to t must not move when only inputs after t change."""
    worst = 0.0
    for a, b, t in probe.pairs:
        head_a, head_b = logits[a, : t + 1], logits[b, : t + 1]
        scale = max(1.0, float(np.abs(head_a).max()))
        worst = max(worst, float(np.abs(head_a - head_b).max()) / scale)
    if worst > rtol:
        return StaticCheck(
            False,
            "causality",
            f"outputs at position t change when only inputs after t change (relative change "
            f"{worst:.2g}): the model sees the future; mask attention and pad convolutions on "
            "the left only",
        )
    return StaticCheck(True)


# --- complexity: time growth with sequence length ---------------------------------------


def time_exponent(points: list[dict[str, float]]) -> float:
    """The least-squares slope of log(time) against log(length): time ~ length^slope."""
    xs = np.log([p["length"] for p in points])
    ys = np.log([max(p["seconds"], 1e-9) for p in points])
    return float(np.polyfit(xs, ys, 1)[0])


def complexity_check(points: list[dict[str, float]], max_exponent: float) -> StaticCheck:
    exponent = time_exponent(points)
    if exponent > max_exponent:
        lengths = ", ".join(f"{p['length']:.0f}: {p['seconds'] * 1e3:.1f} ms" for p in points)
        return StaticCheck(
            False,
            "complexity",
            f"forward time grows like length^{exponent:.2f}, above the task's limit of "
            f"{max_exponent:g} ({lengths})",
        )
    return StaticCheck(True, message=f"time ~ length^{exponent:.2f}")
