"""The `archlab` command line. Progress goes to stderr, results to stdout."""

import signal
import sys
from types import FrameType

from rich.markup import escape

from archlab.cli.common import app, progress, whole_lines
from archlab.errors import ArchlabError

# Importing a module registers its commands on `app`, in this order in `archlab --help`.
# isort: off
from archlab.cli import runs, setup, review  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("stopped by SIGTERM")


def main() -> None:
    # SIGTERM (`kill`, a scheduler's time limit, `docker stop`) stops a command as Ctrl-C
    # does: a run is recorded as interrupted, its trials are ended, and it can be resumed
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except ArchlabError as e:
        progress.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=whole_lines())
        sys.exit(2)
