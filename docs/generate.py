"""Rewrite the generated parts of the docs from the code they describe.

    python docs/generate.py          # rewrite them
    python docs/generate.py --check  # exit 1 and name the stale ones

A generated part sits between `<!-- generated: NAME -->` and `<!-- end generated -->`:
`config` (docs/configuration.md) from the settings models in src/archlab/config/settings.py,
`memory-schema` (docs/memory-schema.md) from the migrations in
src/archlab/memory/migrations/, applied in order to an in-memory DuckDB.
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from archlab.config import ENV_PREFIX, LLMProfile, Settings

DOCS = Path(__file__).resolve().parent
COMMAND = "python docs/generate.py"
_BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n).*?(<!-- end generated -->)", re.DOTALL)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(f'"{v}"' for v in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "unset"
    if typing.get_origin(annotation) is dict:
        return "table"
    return {Path: "path", str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, str(annotation)
    )


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "`{}`"
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "unset"
    return f"`{json.dumps(field.default)}`"  # as TOML spells it


def _bounds(field: FieldInfo) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    found = [
        f"{words[name]} {getattr(m, name)}"
        for m in field.metadata
        for name in words
        if getattr(m, name, None) is not None
    ]
    return ", ".join(found)


def _is_section(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def _fields_table(fields: dict[str, FieldInfo], env: str | None) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, field in fields.items():
        description = field.description or ""
        if bounds := _bounds(field):
            description = f"{description} ({bounds})" if description else bounds
        if env:
            description += f"{'; ' if description else ''}`{env}{key.upper()}`"
        rows.append(
            f"| `{key}` | {_cell(_type_name(field.annotation))} | {_default(field)} "
            f"| {_cell(description)} |"
        )
    return rows


def config_reference() -> str:
    """Every section and key of the settings, with its type, default and description."""
    fields = Settings.model_fields
    # sections, and the [llm.NAME] and [tasks.NAME] tables, get a heading of their own
    plain = {k: f for k, f in fields.items() if not _is_section(f) and k not in ("llm", "tasks")}
    lines = ["### Top level", "", *_fields_table(plain, ENV_PREFIX)]
    for name, field in fields.items():
        model = field.annotation
        if not _is_section(field) or model is None:
            continue
        lines += ["", f"### [{name}]", ""]
        if model.__doc__ and model.__doc__ != BaseModel.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += _fields_table(model.model_fields, f"{ENV_PREFIX}{name.upper()}__")
    lines += [
        "",
        "### [llm.NAME]",
        "",
        " ".join((LLMProfile.__doc__ or "").split()),
        "",
        *_fields_table(LLMProfile.model_fields, None),
        "",
        "### [tasks.NAME]",
        "",
        "Each task's own options; `archlab tasks` lists them with their current values, "
        "and a wrong key or value is an error naming `tasks.NAME.KEY`.",
    ]
    return "\n".join(lines)


def _column_notes(
    sql: str, notes: dict[tuple[str, str], str] | None = None
) -> dict[tuple[str, str], str]:
    """The `-- comment` beside each column in a migration, keyed by (table, column); a
    comment alone on the next line continues it. `COMMENT ON COLUMN` replaces a column's
    note, and `ALTER TABLE ... RENAME TO` carries the notes to the new name (a migration
    that rebuilds a table); `notes` are those of the migrations before."""
    notes = {} if notes is None else dict(notes)
    table: str | None = None
    last: tuple[str, str] | None = None  # the column the line before declared
    for line in sql.splitlines():
        if comment_on := re.match(r"COMMENT ON COLUMN (\w+)\.(\w+) IS '(.*)';", line.strip()):
            notes[(comment_on.group(1), comment_on.group(2))] = comment_on.group(3).replace(
                "''", "'"
            )
            last = None
            continue
        if rename := re.match(r"ALTER TABLE (\w+) RENAME TO (\w+)", line.strip()):
            old, new = rename.groups()
            for owner, column in [key for key in notes if key[0] == old]:
                notes[(new, column)] = notes.pop((owner, column))
            last = None
            continue
        code, _, comment = (part.strip() for part in line.partition("--"))
        if not code:  # a comment alone continues the column's; a blank line ends it
            if comment and last in notes:
                notes[last] += " " + comment
            else:
                last = None
            continue
        last = None
        if create := re.match(r"CREATE TABLE (\w+)", code):
            table = create.group(1)
        elif alter := re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", code):
            last = (alter.group(1), alter.group(2))
        elif table and (column := re.match(r"(?!PRIMARY )(\w+)\s+[A-Z]", code)):
            last = (table, column.group(1))
        if comment and last:
            notes[last] = comment
    return notes


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("archlab.memory.migrations")
    found = [
        (int(entry.name.partition("_")[0]), entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


def memory_schema() -> str:
    """Each table of the memory: its columns, types, keys, the migration that added each
    column and the migration's comment on it."""
    con = duckdb.connect()
    added: dict[tuple[str, str], int] = {}
    notes: dict[tuple[str, str], str] = {}
    for version, sql in _migrations():
        con.execute(sql)
        notes = _column_notes(sql, notes)
        for table, column in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
        ).fetchall():
            added.setdefault((table, column), version)
    keys = {
        (table, column)
        for table, columns in con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY'"
        ).fetchall()
        for column in columns
    }
    indexes: dict[str, list[str]] = {}
    for table, index, sql in con.execute(
        "SELECT table_name, index_name, sql FROM duckdb_indexes() ORDER BY index_name"
    ).fetchall():
        indexes.setdefault(table, []).append(f"`{index}` {sql[sql.index('(') :].rstrip(';')}")
    rows = con.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns ORDER BY table_name, ordinal_position"
    ).fetchall()
    lines: list[str] = []
    tables = con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_oid").fetchall()
    # in the order the migrations created them (a table rebuilt later keeps its place)
    tables.sort(key=lambda row: min(v for (t, _), v in added.items() if t == row[0]))
    for (table,) in tables:
        lines += [f"### `{table}`", "", "| column | type | null | added | note |"]
        lines += ["| --- | --- | --- | --- | --- |"]
        for _, column, data_type, nullable, default in (r for r in rows if r[0] == table):
            key = (table, column)
            flags = "key" if key in keys else ("yes" if nullable == "YES" else "no")
            note = notes.get(key, "")
            if default is not None:
                note = f"default {default}{'; ' if note else ''}{note}"
            lines.append(f"| `{column}` | {data_type} | {flags} | v{added[key]} | {_cell(note)} |")
        if table in indexes:
            lines += ["", "Indexes: " + "; ".join(indexes[table]) + "."]
        lines.append("")
    return "\n".join(lines).rstrip()


SECTIONS: dict[str, tuple[str, Callable[[], str]]] = {
    "config": ("configuration.md", config_reference),
    "memory-schema": ("memory-schema.md", memory_schema),
}


def render(text: str) -> str:
    """`text` with every generated part it holds rewritten."""

    def fill(match: re.Match[str]) -> str:
        _, make = SECTIONS[match.group(2)]
        return f"{match.group(1)}\n{make()}\n\n{match.group(3)}"

    return _BLOCK.sub(fill, text)


def stale() -> list[str]:
    """The doc files whose generated parts are not what the code gives now."""
    files = sorted({DOCS / name for name, _ in SECTIONS.values()})
    return [path.name for path in files if render(path.read_text()) != path.read_text()]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        for name in stale():
            print(f"docs/{name} is out of date: run `{COMMAND}`")
        return 1 if stale() else 0
    for path in sorted({DOCS / name for name, _ in SECTIONS.values()}):
        path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
