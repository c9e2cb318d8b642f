from archlab.eval.verify import ast_hash, source_hash, static_check

GOOD = '''
import torch

def build_model(spec):
    """Docstring."""
    return torch.nn.Linear(spec.seq_len, spec.vocab_size)  # comment
'''


def test_static_check_accepts_the_contract() -> None:
    assert static_check(GOOD).ok


def test_syntax_error_names_the_line() -> None:
    check = static_check("def build_model(spec):\n    return (\n")
    assert not check.ok and check.error_class == "syntax" and "line" in (check.message or "")


def test_missing_builder_is_a_contract_error() -> None:
    check = static_check("def build(spec):\n    return None\n")
    assert (check.ok, check.error_class) == (False, "contract")


def test_builder_without_argument_is_a_contract_error() -> None:
    assert static_check("def build_model():\n    return None\n").error_class == "contract"


def test_source_hash_ignores_the_amount_of_whitespace() -> None:
    variant = GOOD.replace("\n\n", "\n\n\n").replace("    return", "  return")
    assert source_hash(variant) == source_hash(GOOD)
    assert source_hash(GOOD.replace("seq_len", "vocab_size")) != source_hash(GOOD)
    commented = GOOD.replace("# comment", "# another comment")
    assert source_hash(commented) != source_hash(GOOD)  # comments are ast_hash's to ignore
    assert ast_hash(commented) == ast_hash(GOOD)


def test_ast_hash_ignores_docstrings_and_formatting() -> None:
    variant = GOOD.replace('"""Docstring."""', '"""Another docstring."""').replace(
        "torch.nn.Linear(spec.seq_len, spec.vocab_size)",
        "torch.nn.Linear(\n        spec.seq_len,\n        spec.vocab_size,\n    )",
    )
    assert source_hash(variant) != source_hash(GOOD)
    assert ast_hash(variant) == ast_hash(GOOD)
    assert ast_hash("def (") is None
