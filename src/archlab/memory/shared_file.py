"""The memory file's one connection per process, and its handover between processes.

DuckDB lets one process hold a database file open for writing, and then no other process
can open it, not even read-only; opening it costs tens of milliseconds, and closing it after
a write a checkpoint. So a process keeps one long-lived connection to the file and hands the
file over when another process asks for it:

- Asking: a process that cannot open the file because of the lock touches
  `memory.duckdb.wanted` beside it on every retry (backoff 5-25 ms, up to 30 s), and
  removes it once in.
- Yielding: the holder stats that file (microseconds) before and after each operation, and
  every 25 ms from a daemon thread. A new mtime is a request. The holder answers it at once
  when idle (no operation for 20 ms), otherwise once it has held the file 0.2 s, so two busy
  processes alternate in slices instead of trading the file per statement. It lets the
  operations in flight finish (a `with memory.connect():` batch delays the handover, it is
  never broken), closes the connection (every statement was committed; DuckDB
  checkpoints), and leaves the file to the asker until the request is removed (at most a
  second). Then its next operation opens the file again, asking in turn if need be.
- Within a process, every Memory object and thread on a file share that one connection.
  Each thread's outermost operation gets a cursor of its own (its own transaction); nested
  `with memory.connect():` in a thread share it. Writes through Memory's methods take a
  process-wide lock, so two threads upserting one row never conflict. While a handover
  waits, new operations wait too, but at most 0.5 s (one may be what a batch waits for).
  A read-only operation switches the connection to read-only once the others are done.
- `close()`, garbage collection or the process's exit close the connection. A killed
  holder's lock dies with it, and DuckDB replays its log on the next open.

A bare `duckdb` client cannot ask, so while a run holds the file use `archlab sql`. A
Memory does not survive a fork: open a new one in the child.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from archlab.errors import ArchlabError, MemoryCorruptError

WANTED_SUFFIX = ".wanted"
CORRUPT_SUFFIX = ".corrupt"  # where `archlab salvage` keeps a damaged memory
_LOCK_RETRY_S = 30.0
_RETRY_FIRST_S = 0.005
_RETRY_MAX_S = 0.025
_POLL_S = 0.025  # how often an idle holder looks for a request
_MIN_HOLD_S = 0.2  # a busy holder keeps the file this long before it answers a request
_IDLE_S = 0.02  # an idle holder answers at once: no operation for this long
_HANDOVER_WAIT_S = 1.0  # how long a holder that yielded leaves the file to the asker
_DRAIN_WAIT_S = 0.5  # how long a new operation waits for a handover before joining anyway
#: how long closing waits for operations in flight: a Ctrl-C that lands between taking the
#: connection and the `try` that gives it back leaves one counted forever
_CLOSE_WAIT_S = 5.0


def is_lock_error(e: duckdb.Error) -> bool:
    # not a bare "lock": a damaged file's error names the "block" that failed its checksum
    return "Could not set lock on file" in str(e)


def is_corruption(e: duckdb.Error) -> bool:
    """Whether DuckDB found a damaged block (on opening the file, or later on reading it)."""
    return "Corrupt database file" in str(e)


#: the operating system's refusals as DuckDB quotes them: no sign of damage to the file
_REFUSALS = tuple(
    os.strerror(n) for n in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOSPC)
)


def is_refused(e: duckdb.Error) -> bool:
    """Whether the system refused DuckDB the file (permissions, a read-only or full file
    system, a directory in its place): a damaged file is a different error."""
    return any(words in str(e) for words in _REFUSALS)


def corrupt_memory(path: Path, e: duckdb.Error) -> MemoryCorruptError:
    return MemoryCorruptError(
        f"memory {path} is corrupt or not a DuckDB database ({e}). Restore it from a "
        f"backup, or run `archlab salvage` (with the same --home) to copy what can still "
        f"be read into a fresh memory, keeping the damaged file beside it as "
        f"{path.name}{CORRUPT_SUFFIX}."
    )


class SharedFile:
    """This process's one connection to a memory file, for every Memory object and thread
    that uses the file, handed over to another process that asks for the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wanted = str(path) + WANTED_SUFFIX
        self.users = 0  # Memory objects attached
        self.write_lock = threading.RLock()  # re-entrant: writes nest in a transaction
        self.stats = {"opens": 0, "handovers": 0, "open_s": 0.0, "close_s": 0.0}
        self._cond = threading.Condition()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._read_only = False
        self._in_flight = 0  # outermost operations using the connection, over all threads
        self._draining = False  # no new operation starts on the connection; the last closes it
        self._asked_for = False  # the draining is a handover, not a switch of mode
        self._opened_at = 0.0
        self._last_used = 0.0  # when an operation last ended
        self._answered: int | None = None  # the request (the wanted file's mtime) answered
        self._yielded_at: float | None = None
        self._local = threading.local()
        self.batches = threading.local()  # each thread's held writes (Memory.batch)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @contextmanager
    def connection(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._stop.is_set():
            raise RuntimeError(f"memory {self.path} was closed")
        outer: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if outer is not None:
            if self._local.read_only != read_only:
                raise RuntimeError("a read-only and a read-write operation cannot nest")
            yield outer
            return
        con = self._acquire(read_only)
        try:
            cursor = con.cursor()
            self._local.cursor, self._local.read_only = cursor, read_only
            try:
                yield cursor
            except duckdb.Error as e:
                if is_corruption(e):
                    raise corrupt_memory(self.path, e) from None
                raise
            finally:
                self._local.cursor = None
                cursor.close()
        finally:
            self._release()

    def _acquire(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        patience = time.monotonic() + _DRAIN_WAIT_S
        with self._cond:
            while True:
                if self._con is not None and not self._draining:
                    if self._read_only == read_only and not self._asked():
                        break
                    self._draining = True
                if self._con is not None and self._in_flight:
                    if self._read_only == read_only and time.monotonic() > patience:
                        break  # in flight too long: maybe it waits on this thread
                    self._cond.wait(_POLL_S)
                    continue
                if self._con is not None:
                    self._close()
                self._open(read_only)
                break
            self._in_flight += 1
            assert self._con is not None
            return self._con

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._last_used = time.monotonic()
            if not self._in_flight and (self._draining or self._asked()):
                self._close()

    def _asked(self) -> bool:
        """Whether another process has asked for the file since it was last answered, and
        this one is idle or has had its turn; a request makes the connection drain."""
        mtime = self._wanted_mtime()
        if mtime is None or mtime == self._answered:
            return False
        clock = time.monotonic()
        idle = not self._in_flight and clock - self._last_used >= _IDLE_S
        asked = idle or clock - self._opened_at >= _MIN_HOLD_S
        if asked:
            self._answered = mtime
            self._asked_for = self._draining = True
        return asked

    def _close(self) -> None:
        con, self._con = self._con, None
        assert con is not None
        started = time.monotonic()
        con.close()
        self.stats["close_s"] += time.monotonic() - started
        if self._asked_for:
            self._yielded_at = time.monotonic()
            self.stats["handovers"] += 1
        self._draining = self._asked_for = False
        self._cond.notify_all()

    def _open(self, read_only: bool) -> None:
        started = time.monotonic()
        if self._yielded_at is not None:  # leave the file to the asker until it is in
            deadline = self._yielded_at + _HANDOVER_WAIT_S
            while os.path.exists(self.wanted) and time.monotonic() < deadline:
                time.sleep(_RETRY_FIRST_S)
            self._yielded_at = None
        self._con = self._connect(read_only)
        self._read_only = read_only
        self._opened_at = time.monotonic()
        self.stats["opens"] += 1
        self.stats["open_s"] += self._opened_at - started
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._poll, name=f"archlab-memory {self.path.name}", daemon=True
            )
            self._poller.start()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + _LOCK_RETRY_S
        delay = _RETRY_FIRST_S
        asked = False
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as e:
                if is_lock_error(e) and time.monotonic() < deadline:
                    self._ask()
                    asked = True
                    time.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                if asked:  # giving up: nobody is to answer a request any more
                    Path(self.wanted).unlink(missing_ok=True)
                if is_lock_error(e):
                    raise ArchlabError(
                        f"memory {self.path} stayed locked by another process ({e})"
                    ) from None
                if "different configuration" in str(e):
                    raise ArchlabError(
                        f"memory {self.path} is open in this process outside Memory, in "
                        "another mode (read-only or not); close that connection first"
                    ) from None
                if is_refused(e):
                    raise ArchlabError(
                        f"memory {self.path} could not be opened ({e}): the system refused "
                        "it, no sign of damage; archlab must be able to read and write it"
                    ) from None
                raise corrupt_memory(self.path, e) from None
            if asked:  # in: the request is answered
                Path(self.wanted).unlink(missing_ok=True)
            self._answered = self._wanted_mtime()  # older requests were someone else's turn
            return con

    def _wanted_mtime(self) -> int | None:
        try:
            return os.stat(self.wanted).st_mtime_ns
        except OSError:
            return None

    def _ask(self) -> None:
        with suppress(OSError):  # a read-only folder: nobody can be asked, waiting is all
            Path(self.wanted).touch()

    def _poll(self) -> None:
        """Answer requests while no operation runs."""
        while not self._stop.wait(_POLL_S):
            with self._cond:
                if self._con is not None and not self._in_flight and self._asked():
                    self._close()

    def release(self) -> None:
        with self._cond:
            if self._con is not None and not self._in_flight:
                self._close()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join()
        with self._cond:
            self._cond.wait_for(lambda: not self._in_flight, timeout=_CLOSE_WAIT_S)
            if self._con is not None:
                self._close()


_shared_files: dict[str, SharedFile] = {}
_shared_files_lock = threading.RLock()  # reentrant: a finalizer may run inside attach


def attach(path: Path) -> SharedFile:
    key = os.path.realpath(path)
    with _shared_files_lock:
        shared = _shared_files.get(key) or _shared_files.setdefault(key, SharedFile(path))
        shared.users += 1
    return shared


def detach(shared: SharedFile) -> None:
    with _shared_files_lock:
        shared.users -= 1
        if shared.users:
            return
        del _shared_files[os.path.realpath(shared.path)]
    shared.close()
