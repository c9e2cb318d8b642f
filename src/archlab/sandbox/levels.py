"""Isolation levels, and the factory that picks one. A launcher runs one command for a
trial and enforces limits from outside the child: the wall clock, memory, processes, file
size and the log's size.

- `basic` (`basic.py`): a subprocess in its own session with rlimits, a cleared
  environment, no network where `unshare` allows, and a wall-clock kill of the whole
  process group.
- `strict` (`strict.py`): bubblewrap namespaces, an unprivileged uid, seccomp and cgroups.

`make_launcher` picks the strongest level available and refuses to go below the configured
minimum.
"""

from __future__ import annotations

from archlab.errors import ArchlabError
from archlab.sandbox import strict
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.protocol import Launcher

LEVELS = ("basic", "strict")  # weakest first


class SandboxUnavailable(ArchlabError):
    """The configured minimum isolation level cannot be had on this machine."""


def make_launcher(min_level: str, log_tail_bytes: int, prewarm: bool = True) -> Launcher:
    """The strongest launcher available here; refuses if that is weaker than `min_level`.
    With `prewarm`, each trial's harness starts while the trial before it runs."""
    missing = strict.strict_missing()
    if not missing:
        return strict.StrictLauncher(log_tail_bytes=log_tail_bytes, prewarm=prewarm)
    if min_level == "strict":
        raise SandboxUnavailable(
            "the config requires sandbox level 'strict', which this machine cannot provide: "
            + "; ".join(missing)
            + " (see `archlab doctor`)"
        )
    return BasicLauncher(log_tail_bytes=log_tail_bytes, prewarm=prewarm)
