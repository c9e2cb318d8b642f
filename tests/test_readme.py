"""The README's two commands are a promise: keep them and CI in step."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_commands() -> None:
    first, second = _commands()
    assert "archlab run --task mqar" in first and "-c constraints.txt" in first
    assert "'.[dev]'" in second and "pytest" in second


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci_lines
