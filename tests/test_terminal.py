"""A run on a real terminal (a pseudo-terminal), replayed on a small screen model: what a
user sees after Ctrl-C."""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

#: narrow enough that the progress line is cut to the full width, as at 80 columns a line
#: that follows a trial's steps is
COLUMNS = 30
_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b[^\[]|(.)", re.DOTALL)


class Screen:
    """Enough of a VT100 to replay what a run draws: text with automatic wrapping (the
    cursor waits at the last column until the next character), CR, LF, cursor up and erase
    in line; other control sequences change nothing that is tested here."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.pending_wrap = False

    def feed(self, text: str) -> None:
        for match in _CONTROL.finditer(text):
            char = match.group(3)
            if char is None:
                self._control(match.group(1), match.group(2))
            elif char == "\r":
                self.col, self.pending_wrap = 0, False
            elif char == "\n":
                self.row, self.pending_wrap = self.row + 1, False
            elif char >= " ":
                self._put(char)

    def _control(self, arguments: str | None, command: str | None) -> None:
        if command == "A":
            self.row, self.pending_wrap = max(self.row - int(arguments or 1), 0), False
        elif command == "K":
            line = self._line()
            line[:] = [] if arguments == "2" else line[: self.col]

    def _put(self, char: str) -> None:
        if self.pending_wrap:
            self.row, self.col, self.pending_wrap = self.row + 1, 0, False
        line = self._line()
        line.extend(" " * (self.col + 1 - len(line)))
        line[self.col] = char
        if self.col == self.width - 1:
            self.pending_wrap = True
        else:
            self.col += 1

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]


def test_the_screen_model_wraps_as_a_terminal_does() -> None:
    screen = Screen(4)
    screen.feed("abcd^C\r\x1b[2Kxy\r\n\r\x1b[1A\x1b[2Kdone")
    assert screen.lines() == ["abcd", "done"]  # "^C" wrapped: the full line stays


def _own_terminal() -> None:
    """In the child: the terminal is its own, and Ctrl-C interrupts it as in a shell (a
    suite started in the background, `pytest &`, passes SIGINT on ignored)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_on_a_terminal_leaves_the_run_id_and_no_progress_line(lab_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHLAB_", "COLUMNS"))}
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "archlab", "run", "--trials", "20"],
        cwd=lab_dir,
        env={**env, "ARCHLAB_HOME": str(lab_dir / "home"), "TERM": "xterm"},
        stdin=child,
        stdout=child,
        stderr=child,
        start_new_session=True,
        preexec_fn=_own_terminal,
    )
    os.close(child)
    drawn = bytearray()

    def read(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    drawn.extend(os.read(main, 2**16))
                except OSError:  # the run has closed the terminal
                    return

    trials = lab_dir / "home" / "trials"
    deadline = time.monotonic() + 120
    while not list(trials.glob("*/*-proxy-*/log.txt")):
        assert time.monotonic() < deadline and proc.poll() is None, "no training started"
        read(0.1)
    read(1.0)  # the progress line is drawn meanwhile
    os.write(main, b"\x03")  # Ctrl-C: the terminal signals the run and echoes "^C"
    while proc.poll() is None:
        read(0.2)
    read(0.5)
    os.close(main)
    assert proc.returncode == 130

    screen = Screen(COLUMNS)
    screen.feed(drawn.decode(errors="replace"))
    shown = "\n".join(screen.lines())
    assert not re.search("[\u2800-\u28ff]", shown), shown  # no spinner frame is left
    run_id = re.findall(r"run (\d{8}-\d{6}-[0-9a-f]{4})", shown)[0]
    assert f"`archlab resume {run_id}`" in " ".join(shown.split()), shown
