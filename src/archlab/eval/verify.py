"""Static verification on the trusted side: parse (never execute) the candidate, check
the task contract, and hash it for duplicate detection."""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from dataclasses import dataclass

_SKIPPED_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
}


@dataclass(frozen=True)
class StaticCheck:
    ok: bool
    error_class: str | None = None
    message: str | None = None


def static_check(source: str) -> StaticCheck:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return StaticCheck(False, "syntax", f"line {e.lineno}: {e.msg}")
    except ValueError as e:  # e.g. null bytes
        return StaticCheck(False, "syntax", str(e))
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


def source_hash(source: str) -> str:
    """Hash of the token stream without comments or layout: whitespace and comment edits match."""
    try:
        tokens = [
            tok.string
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type not in _SKIPPED_TOKENS
        ]
        canonical = "\x00".join(tokens)
    except (tokenize.TokenError, SyntaxError):
        canonical = "".join(source.split())
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _Anonymize(ast.NodeTransformer):
    """Drop docstrings so that only the program's structure and names are compared."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return None
        return self.generic_visit(node)


def ast_hash(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    tree = _Anonymize().visit(tree)
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:32]
