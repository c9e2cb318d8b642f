"""The docs stay true: generated references match the code, and every link resolves."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console

from archlab.config import load_settings
from archlab.memory.store import Memory
from archlab.orchestration.runs import discover, open_memory
from support import TINY_MQAR, FakeExecutor, Scripted

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_references_are_current() -> None:
    generate = _generator()
    assert not generate.stale(), (
        f"{generate.stale()} out of date with the code: run `{generate.COMMAND}`"
    )


def test_every_generated_section_is_in_its_file() -> None:
    generate = _generator()
    for name, (file, _) in generate.SECTIONS.items():
        assert f"<!-- generated: {name} -->" in (ROOT / "docs" / file).read_text(), file


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(doc: Path) -> None:
    targets = [t.split("#", 1)[0] for t in _LINK.findall(doc.read_text())]
    missing = [
        t for t in targets if t and not re.match(r"[a-z]+:", t) and not (doc.parent / t).exists()
    ]
    assert not missing, f"{doc.name} links to missing files: {missing}"


@pytest.mark.parametrize("name", ["configuration.md", "llm-brains.md"])
def test_config_examples_are_valid_settings(name: str, tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / name).read_text(), re.DOTALL)
    assert blocks
    for block in blocks:
        (tmp_path / "archlab.toml").write_text(block)
        load_settings(tmp_path / "archlab.toml", environ={})  # raises, naming a bad key


_SCHEMA = (ROOT / "docs" / "memory-schema.md").read_text()


@pytest.fixture(scope="module")
def memory_with_a_run(tmp_path_factory: pytest.TempPathFactory) -> Memory:
    """A real memory with a finished run: a baseline, a candidate and one that crashed."""
    home = tmp_path_factory.mktemp("schema") / "home"
    settings = load_settings(
        flags={
            "home": str(home),
            "run": {"trials": 3, "lanes": 1},
            "tasks": {"mqar": TINY_MQAR},
            "ladder": {"confirm_seeds": 2, "scale_top": 0},
        },
        environ={},
    )
    discover(settings, Console(quiet=True), FakeExecutor({3: Scripted(failure="crash")}))
    return open_memory(home)


def test_memory_schema_describes_every_table(memory_with_a_run: Memory) -> None:
    """The prose names every table the migrations make (the columns are generated)."""
    tables = {
        row["table_name"]
        for row in memory_with_a_run._query("SELECT table_name FROM duckdb_tables()")
    }
    described = set(re.findall(r"^- `(\w+)`:", _SCHEMA, re.MULTILINE))
    assert tables == described, f"memory-schema.md's list differs: {tables ^ described}"


@pytest.mark.parametrize("query", re.findall(r"```sql\n(.*?)```", _SCHEMA, re.DOTALL))
def test_memory_schema_queries_run_on_a_real_memory(query: str, memory_with_a_run: Memory) -> None:
    columns, _ = memory_with_a_run.read_only_sql(query)  # an error names the bad column
    assert columns
