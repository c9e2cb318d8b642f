"""Errors that reach the user as one clear line instead of a traceback."""


class ArchlabError(Exception):
    """A problem the user can act on: bad config, a corrupt memory, an unknown task."""


class ConfigError(ArchlabError):
    """A config file, environment variable or flag that does not validate."""


class MemoryCorruptError(ArchlabError):
    """The memory database cannot be opened or migrated."""


class Cancelled(Exception):
    """The run was told to stop (Ctrl-C, or a lane that failed): a lane leaves where it is,
    resumable."""
