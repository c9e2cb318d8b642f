"""Errors that reach the user as one clear line instead of a traceback."""

import errno
import os

#: how DuckDB (quoting the system) and SQLite say that a write found the disk full
_FULL_WORDS = (os.strerror(errno.ENOSPC), "database or disk is full")


class ArchlabError(Exception):
    """A problem the user can act on: bad config, a corrupt memory, an unknown task."""


class ConfigError(ArchlabError):
    """A config file, environment variable or flag that does not validate."""


class MemoryCorruptError(ArchlabError):
    """The memory database cannot be opened or migrated."""


class Cancelled(Exception):
    """The run was told to stop (Ctrl-C, or a lane that failed): a lane leaves where it is,
    resumable."""


def disk_full(e: BaseException | None) -> BaseException | None:
    """The error in `e`'s chain (itself, or what it was raised from or during) that says a
    write found the disk full; None where none does."""
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        if any(words in str(e) for words in _FULL_WORDS):
            return e
        e = e.__cause__ or e.__context__
    return None
