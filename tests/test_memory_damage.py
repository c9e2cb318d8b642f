"""A damaged memory file is told from a locked one at once, says what to do, leaves nothing
behind, and `archlab salvage` copies what DuckDB can still read into a fresh memory."""

import struct
import time
from pathlib import Path

import duckdb
import pytest

from archlab.errors import ArchlabError, MemoryCorruptError
from archlab.memory import shared_file
from archlab.memory.store import Memory
from support import archlab, held_by_another_process

#: DuckDB's file layout: a main header and two database headers of 4 KiB, then the blocks
_BLOCKS_AT = 3 * 4096
_BLOCK_SIZE = 262_144
_ROW_GROUP = 122_880


def _memory(home: Path, spans: int = 3 * _ROW_GROUP) -> Path:
    """A memory with one run and `spans` spans (several row groups, blocks of their own)."""
    path = home / "memory.duckdb"
    memory = Memory(path)
    memory.start_run(
        run_id="r1", task="mqar", task_fingerprint="fp", brain="heuristic", seed=0, config={}
    )
    with memory.connect() as con:
        con.execute(
            "INSERT INTO spans SELECT printf('%016x', i), 'r1', 'plan', 'planner', NULL, 'ok', "
            "NULL, now(), now() FROM range(?) t(i)",
            [spans],
        )
    memory.close()
    return path


def _damage(path: Path, block: int) -> None:
    """Overwrite part of a block, as a bad disk sector would: its checksum no longer holds."""
    with path.open("r+b") as f:
        f.seek(_BLOCKS_AT + block * _BLOCK_SIZE + 100)
        f.write(b"\xff" * 64)


def _metadata_block(path: Path) -> int:
    """The block the newer database header points to: the catalog, read on every open."""
    headers = path.read_bytes()[4096:_BLOCKS_AT]
    newer = max((struct.unpack_from("<QQQ", headers, at) for at in (0, 4096)), key=lambda h: h[1])
    return newer[2] & ((1 << 56) - 1)  # the low 56 bits: the block; the high 8: an index


def _data_blocks(path: Path) -> dict[str, set[int]]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {
            table: {
                b
                for (b,) in con.execute(
                    f"SELECT DISTINCT block_id FROM pragma_storage_info('{table}') "
                    "WHERE persistent AND block_id >= 0"
                ).fetchall()
            }
            for table in tables
        }


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if p.name != "memory.duckdb")


def test_a_damaged_memory_is_told_from_a_locked_one_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = _memory(home, spans=10)
    _damage(path, _metadata_block(path))
    started = time.monotonic()
    with pytest.raises(MemoryCorruptError, match="archlab salvage") as raised:
        Memory.open_existing(path)
    assert time.monotonic() - started < 3  # not the 30 s wait for a lock
    assert "Corrupt database file" in str(raised.value) and "backup" in str(raised.value)
    assert _leftovers(home) == []  # no memory.duckdb.wanted

    proc = archlab(tmp_path, "runs", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "archlab salvage" in " ".join(proc.stderr.split())  # Rich wraps the line
    assert _leftovers(home) == []


def test_a_lock_held_too_long_leaves_no_request_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    path = _memory(home, spans=10)
    monkeypatch.setattr(shared_file, "_LOCK_RETRY_S", 1.0)
    with held_by_another_process(path) as holder:
        with pytest.raises(ArchlabError, match="stayed locked by another process") as raised:
            Memory(path)
        assert not isinstance(raised.value, MemoryCorruptError)
        assert f"PID {holder.pid}" in str(raised.value)  # who holds it
        assert _leftovers(home) == []  # the request is withdrawn with the attempt


def test_salvage_copies_what_can_be_read_and_keeps_the_damaged_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = _memory(home)
    blocks = _data_blocks(path)
    others = set().union(*(b for table, b in blocks.items() if table != "spans"))
    _damage(path, min(blocks["spans"] - others))
    damaged_bytes = path.read_bytes()
    with pytest.raises(MemoryCorruptError, match="archlab salvage"):
        Memory(path).spans("r1")  # damage found on reading is told the same way

    proc = archlab(tmp_path, "salvage")
    assert "spans" in proc.stdout
    assert (home / "memory.duckdb.corrupt").read_bytes() == damaged_bytes  # kept as it was
    memory = Memory.open_existing(path)
    assert [r["run_id"] for r in memory.runs()] == ["r1"]
    with memory.connect() as con:
        (kept,) = con.execute("SELECT count(*) FROM spans").fetchone() or (0,)
    assert _ROW_GROUP <= kept < 3 * _ROW_GROUP  # the damaged row group lost, the others kept
    memory.close()
    assert _leftovers(home) == ["memory.duckdb.corrupt"]


def test_salvage_of_an_unreadable_file_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = _memory(home, spans=10)
    _damage(path, _metadata_block(path))
    damaged_bytes = path.read_bytes()
    proc = archlab(tmp_path, "salvage", check=False)
    assert proc.returncode == 2 and "nothing in" in proc.stderr
    assert path.read_bytes() == damaged_bytes and _leftovers(home) == []


def test_a_memory_the_system_refuses_is_not_called_damaged(tmp_path: Path) -> None:
    """Permissions, a read-only file system or (here) a directory in the file's place: the
    error says so, and sends nobody to `archlab salvage` for a file that is sound."""
    (tmp_path / "memory.duckdb").mkdir()
    with pytest.raises(ArchlabError) as raised:
        Memory(tmp_path / "memory.duckdb")
    assert not isinstance(raised.value, MemoryCorruptError)
    assert "could not be opened" in str(raised.value) and "Is a directory" in str(raised.value)
