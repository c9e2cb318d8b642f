"""What the command line prints is what the message says: square brackets (profile names,
config sections, paths) are text, not Rich markup to be swallowed."""

from pathlib import Path

import pytest

from support import archlab


def _unwrapped(text: str) -> str:
    return "".join(text.split())  # Rich wraps long lines, even inside a path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["llm", "check", "openai"], "no [llm.openai] profile in the configuration"),
        (["llm", "check"], "add [llm.NAME] or give --llm-base-url"),
        (["run", "--brain", "llm", "--trials", "1"], "no [llm.default] profile"),
    ],
)
def test_errors_print_their_brackets(lab_dir: Path, args: list[str], said: str) -> None:
    proc = archlab(lab_dir, *args, check=False)
    assert proc.returncode == 2 and _unwrapped(said) in _unwrapped(proc.stderr)


def test_a_path_with_brackets_is_printed_whole(tmp_path: Path) -> None:
    config = tmp_path / "x[lab]" / "archlab.toml"
    config.parent.mkdir()
    config.write_text("[run]\ntrails = 1\n")
    proc = archlab(tmp_path, "--config", str(config), "runs", check=False)
    assert proc.returncode == 2 and _unwrapped(f"{config}: unknown key 'run.trails'") in _unwrapped(
        proc.stderr
    )
