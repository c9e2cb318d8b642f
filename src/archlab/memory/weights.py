"""Trained weights kept beside the memory: `HOME/weights/CANDIDATE.safetensors` for each
candidate that reached the confirm stage, and a row in the `weights` table saying which
trial trained them, the file's path (relative to the home), size and sha256, and the spec
`build_model` saw.

A proxy trial's weights wait in `HOME/weights/pending/` (`stash`) until the ladder decides:
a candidate promoted to confirm keeps them (`keep`), any other drops them (`discard`).
Moving a file and upserting its row are idempotent, so a graph node that runs again after
a crash finds the same state. The bytes were checked and rewritten on the trusted side
before they got here (sandbox.weights); this module files them and hands them out again,
checked against what the memory recorded."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError
from archlab.memory.store import Memory, now

WEIGHTS_DIR = "weights"
SUFFIX = ".safetensors"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _home(memory: Memory) -> Path:
    return memory.path.parent


def _name(candidate_id: str) -> str:
    """The file's name: a candidate id is made by archlab, but it names a file, so check."""
    if not _ID.fullmatch(candidate_id):
        raise ArchlabError(f"candidate id {candidate_id!r} cannot name a weights file")
    return candidate_id + SUFFIX


def relative_path(candidate_id: str) -> str:
    """Where a candidate's kept weights lie, relative to the home."""
    return f"{WEIGHTS_DIR}/{_name(candidate_id)}"


def _pending(memory: Memory, candidate_id: str) -> Path:
    return _home(memory) / WEIGHTS_DIR / "pending" / _name(candidate_id)


def stash(memory: Memory, candidate_id: str, data: bytes) -> None:
    """Hold a proxy trial's weights until the ladder decides (replacing any earlier)."""
    path = _pending(memory, candidate_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def discard(memory: Memory, candidate_id: str) -> None:
    """Drop the weights a candidate holds in waiting, if any (kept ones stay)."""
    if _ID.fullmatch(candidate_id):  # an id that names no file has nothing waiting
        _pending(memory, candidate_id).unlink(missing_ok=True)


def keep(
    memory: Memory, candidate_id: str, *, run_id: str, trial_id: str, spec: dict[str, Any]
) -> dict[str, Any] | None:
    """Keep the candidate's waiting weights and record them; the row, or None when no
    weights came back. Again after a crash: the file already moved is recorded."""
    if not _ID.fullmatch(candidate_id):  # nothing can have been stashed under it
        return None
    pending = _pending(memory, candidate_id)
    final = _home(memory) / relative_path(candidate_id)
    if pending.exists():
        os.replace(pending, final)
    if not final.is_file():
        return None
    data = final.read_bytes()
    row = {
        "candidate_id": candidate_id,
        "run_id": run_id,
        "trial_id": trial_id,
        "path": relative_path(candidate_id),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "spec": spec,
        "created_at": now(),
    }
    memory._upsert("weights", "candidate_id", row)
    return row


def weights_of(memory: Memory, candidate_id: str) -> dict[str, Any] | None:
    """The record of a candidate's kept weights (by exact id), or None."""
    rows = memory._query("SELECT * FROM weights WHERE candidate_id = ?", [candidate_id])
    return rows[0] if rows else None


def run_weights(memory: Memory, run_id: str) -> dict[str, dict[str, Any]]:
    """The records of the weights kept for the run's candidates, by candidate id."""
    rows = memory._query("SELECT * FROM weights WHERE run_id = ?", [run_id])
    return {row["candidate_id"]: row for row in rows}


def stored_bytes(memory: Memory, row: dict[str, Any]) -> bytes:
    """The kept file's bytes, refused unless it is a regular file under HOME/weights with
    the size and sha256 the memory recorded."""
    home = _home(memory)
    path = home / row["path"]
    if path.parent != home / WEIGHTS_DIR or path.name != _name(row["candidate_id"]):
        raise ArchlabError(f"the memory names weights outside {home / WEIGHTS_DIR}: {path}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ArchlabError(f"the weights file {path} cannot be read: {e.strerror}") from None
    try:  # a plain fd: os.fdopen refuses a directory with an error of its own
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArchlabError(f"the weights file {path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(row["bytes"] + 1)
    finally:
        os.close(fd)
    if len(data) != row["bytes"] or hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise ArchlabError(
            f"the weights file {path} is not the one the memory recorded "
            f"({row['bytes']:,} bytes, sha256 {row['sha256'][:12]}...)"
        )
    return data
