"""The `archlab` command line. Progress goes to stderr, results to stdout."""

import sys

from rich.markup import escape

from archlab.cli.common import app, progress
from archlab.errors import ArchlabError

# Importing a module registers its commands on `app`, in this order in `archlab --help`.
# isort: off
from archlab.cli import runs, setup, review  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except ArchlabError as e:
        progress.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)
