"""The strict level: bubblewrap, an unprivileged uid, seccomp and per-trial cgroups.

Inside the sandbox the child sees a read-only system (/usr, a few files of /etc, the Python
installation), fresh /proc and /dev, and private sized tmpfs mounts for /tmp, /dev/shm and
its working directory /trial, where the trial directory's files lie read-only. It has new
pid, network, ipc, uts and cgroup namespaces, a new session, only the cleared environment,
and runs as uid 65534 with no capabilities and no-new-privs, under the seccomp deny-list and
a cgroup that caps memory (tmpfs included), processes and CPU.

bwrap run by root keeps root, so the command starts under a tiny wrapper that stays root
only to use setpriv for the drop, and, once the command has exited, to copy the declared
outputs (regular files only, size-capped) back to the host trial directory, which the
sandbox's uid cannot reach. What the child writes therefore never lands on the host's disk
unchecked: a disk-filling candidate fills its own tmpfs.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from archlab.sandbox.cgroups import CgroupUnavailable, TrialCgroup, hierarchy
from archlab.sandbox.harness import INPUT_FILES, RESULT_FILE, WEIGHTS_FILE
from archlab.sandbox.prewarm import HarnessStarts, Started, harness_argv, start_key
from archlab.sandbox.process import (
    Outcome,
    clean_env,
    kill_group,
    prologue,
    spawn,
    supervise,
    watch_child,
)
from archlab.sandbox.protocol import LOG_FILE, Execution, ExitReason, Limits, Watcher
from archlab.sandbox.seccomp import SeccompUnavailable, deny_list_bpf

SANDBOX_UID = 65534  # nobody
WORKDIR = "/trial"
_HOST_DIR = "/.archlab/out"  # the host trial directory, inside a directory only root enters
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = (
    *("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf"),
    *("hosts", "localtime", "alternatives"),
)
#: what the wrapper needs for setpriv's drop; setpriv gives them all up before the command
_WRAPPER_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
_WRAPPER = """"$@"; status=$?
for f in {outputs}; do
  if [ -f "$f" ] && [ ! -L "$f" ]; then head -c {cap} -- "$f" > {host}/"$f"; fi
done
exit $status"""


def _under(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


@cache
def _python_dirs() -> tuple[str, ...]:
    """The directories the sandboxed interpreter reads (its prefixes and import paths) as
    the child itself reports them under `-I`: our own sys.path may hold the working
    directory or test folders, which must stay outside."""
    script = "import sys; print(sys.prefix, sys.base_prefix, *sys.path, sep='\\n')"
    listed = subprocess.run(
        [sys.executable, "-I", "-c", script],
        env=clean_env(Path("/"), 1),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    found = {os.path.dirname(os.path.realpath(sys.executable)), *listed}
    kept: list[str] = []
    for path in sorted(p for p in found if p and os.path.isdir(p)):  # parents first
        if not _under(path, [*_SYSTEM, *kept]):
            kept.append(path)
    return tuple(kept)


@cache
def _system_mounts() -> tuple[str, ...]:
    args: list[str] = []
    for path in _SYSTEM:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in _python_dirs():
        # bwrap would create the missing parents as 0700, closed to the sandbox's uid
        for parent in reversed(Path(path).parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", path, path]
    return tuple(args)


#: the driver's shared device files, bound beside the trial's own /dev/nvidiaN when present
_NVIDIA_SHARED = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools")


def gpu_device_binds(gpus: tuple[int, ...], dev: Path = Path("/dev")) -> list[str]:
    """bwrap arguments exposing only the trial's own GPUs in its fresh /dev."""
    if not gpus:
        return []
    names = [f"nvidia{n}" for n in gpus] + [n for n in _NVIDIA_SHARED if (dev / n).exists()]
    return [arg for name in names for arg in ("--dev-bind", str(dev / name), f"/dev/{name}")]


class StrictLauncher(HarnessStarts):
    """Runs a command in the strict sandbox. The trial directory's files are the command's
    read-only inputs; of what it writes, the files named in `outputs` come back.

    A harness started ahead gets a fresh staging directory of empty input files, bound
    read-only into its sandbox as usual; at the go line they are filled in place with the
    trial's inputs, and its outputs come back to the staging directory, then the trial's."""

    level = "strict"

    def __init__(
        self,
        log_tail_bytes: int = 4000,
        outputs: tuple[str, ...] = (RESULT_FILE, WEIGHTS_FILE),
        prewarm: bool = False,
    ):
        super().__init__(prewarm)
        self.log_tail_bytes = log_tail_bytes
        self.outputs = outputs
        self.bwrap = shutil.which("bwrap") or "bwrap"
        self.setpriv = shutil.which("setpriv") or "setpriv"

    def run(self, argv: list[str], trial_dir: Path, limits: Limits) -> Execution:
        trial_dir = trial_dir.resolve()
        cgroup = TrialCgroup(hierarchy(), limits.memory_bytes, limits.max_processes, limits.threads)
        seccomp_fd = _filter_pipe()
        try:

            def kill(pid: int) -> None:
                cgroup.kill()
                kill_group(pid)

            outcome = supervise(
                self._argv(trial_dir, limits, seccomp_fd, cgroup, argv),
                trial_dir / LOG_FILE,
                limits,
                self.log_tail_bytes,
                kill=kill,
                watch=lambda: "pids" if cgroup.hit_process_limit() else None,
                env={},
                pass_fds=(seccomp_fd,),
            )
            return _execution(outcome, cgroup)
        finally:
            os.close(seccomp_fd)
            cgroup.kill()
            cgroup.remove()

    def start_harness(self, limits: Limits) -> Started:
        staging, lock = _new_staging()
        for name in INPUT_FILES:
            (staging / name).touch(mode=0o644)
        cgroup = TrialCgroup(hierarchy(), limits.memory_bytes, limits.max_processes, limits.threads)

        def kill(pid: int) -> None:
            cgroup.kill()
            kill_group(pid)

        def finish() -> None:
            cgroup.kill()
            cgroup.remove()
            shutil.rmtree(staging, ignore_errors=True)
            os.close(lock)

        seccomp_fd = _filter_pipe()
        try:
            argv = self._argv(staging, limits, seccomp_fd, cgroup, harness_argv())
            proc = spawn(argv, env={}, pass_fds=(seccomp_fd,))
        except BaseException:
            finish()
            raise
        finally:
            os.close(seccomp_fd)  # bwrap has its own copy
        return _StrictStarted(proc, start_key(limits), kill, finish, cgroup, staging)

    def go(
        self, started: Started, trial_dir: Path, limits: Limits, watcher: Watcher | None
    ) -> Execution:
        assert isinstance(started, _StrictStarted)
        cgroup, staging = started.cgroup, started.staging
        try:
            try:
                for name in INPUT_FILES:  # in place: the sandbox holds these very files
                    with open(trial_dir / name, "rb") as src, open(staging / name, "r+b") as dst:
                        shutil.copyfileobj(src, dst)
                        dst.truncate()
            except BaseException:
                started.discard()
                raise
            outcome = watch_child(
                started.proc,
                trial_dir / LOG_FILE,
                limits,
                self.log_tail_bytes,
                kill=started.kill,
                watch=lambda: "pids" if cgroup.hit_process_limit() else None,
                early_output=started.send_go(WORKDIR),
                watcher=watcher,
            )
            execution = _execution(outcome, cgroup)
            for name in self.outputs:  # the wrapper copied back regular files only
                if (staging / name).is_file():
                    shutil.move(staging / name, trial_dir / name)
            return execution
        finally:
            started.finish()

    def _argv(
        self, inputs: Path, limits: Limits, seccomp_fd: int, cgroup: TrialCgroup, argv: list[str]
    ) -> list[str]:
        # the cgroup caps memory, so no address-space limit (torch reserves plenty)
        return [
            *prologue(limits, address_space=False, join=cgroup.procs_files()),
            *self._bwrap_args(inputs, limits, seccomp_fd),
            *argv,
        ]

    def _bwrap_args(self, trial_dir: Path, limits: Limits, seccomp_fd: int) -> list[str]:
        inputs = sorted(
            entry.name
            for entry in os.scandir(trial_dir)
            if entry.is_file(follow_symlinks=False) and entry.name not in (LOG_FILE, *self.outputs)
        )
        env = clean_env(Path(WORKDIR), limits.threads, limits.gpus)
        scratch = str(limits.scratch_bytes)
        wrapper = _WRAPPER.format(
            outputs=" ".join(shlex.quote(name) for name in self.outputs),
            cap=limits.file_bytes,
            host=_HOST_DIR,
        )
        return [
            self.bwrap,
            *("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"),
            *("--unshare-cgroup", "--die-with-parent", "--new-session"),
            "--cap-drop", "ALL",
            *(arg for cap in _WRAPPER_CAPS for arg in ("--cap-add", cap)),
            *("--proc", "/proc", "--dev", "/dev"),
            *gpu_device_binds(limits.gpus),
            *("--perms", "1777", "--size", scratch, "--tmpfs", "/tmp"),
            *("--perms", "1777", "--size", scratch, "--tmpfs", "/dev/shm"),
            *_system_mounts(),  # after /tmp: a virtual environment may live beneath it
            *("--perms", "1777", "--size", scratch, "--tmpfs", WORKDIR),
            *(a for n in inputs for a in ("--ro-bind", str(trial_dir / n), f"{WORKDIR}/{n}")),
            *("--perms", "0700", "--dir", os.path.dirname(_HOST_DIR)),
            *("--bind", str(trial_dir), _HOST_DIR, "--chdir", WORKDIR),
            "--clearenv",
            *(a for key, value in env.items() for a in ("--setenv", key, value)),
            *("--seccomp", str(seccomp_fd)),
            *("--", "/bin/sh", "-c", wrapper, "sh"),
            *(self.setpriv, f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}"),
            *("--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"),
            "--",
        ]  # fmt: skip


_STAGING_PREFIX = "archlab-trial-"
#: a staging directory younger than this is never taken for abandoned: its maker may not
#: have locked it yet
_STAGING_GRACE_S = 10.0


def _new_staging() -> tuple[Path, int]:
    """A fresh directory for a harness's inputs and outputs, and a descriptor that holds
    its lock (flock) while it is in use. The kernel drops the lock with the process, so a
    directory whose lock is free was left by a killed one (`kill -9`): those are removed
    first, once per process."""
    _remove_abandoned_staging()
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX))
    lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return staging, lock


@cache
def _remove_abandoned_staging() -> None:
    now = time.time()
    for entry in Path(tempfile.gettempdir()).glob(_STAGING_PREFIX + "*"):
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone, not a directory, or not ours
        try:
            old = now - os.fstat(fd).st_mtime > _STAGING_GRACE_S
            if old and _try_lock(fd):
                shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class _StrictStarted(Started):
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        key: Limits,
        kill: Callable[[int], None],
        finish: Callable[[], None],
        cgroup: TrialCgroup,
        staging: Path,
    ) -> None:
        super().__init__(proc, key, kill, finish)
        self.cgroup, self.staging = cgroup, staging


def _execution(outcome: Outcome, cgroup: TrialCgroup) -> Execution:
    peak, cpu = cgroup.peak_memory_bytes(), cgroup.cpu_seconds()
    return Execution(
        exit_reason=outcome.forced or _exit_reason(outcome.returncode, cgroup),
        returncode=_as_popen_code(outcome.returncode),
        wall_s=outcome.wall_s,
        # the child's own rusage misses what bwrap's reaper collected
        cpu_s=outcome.cpu_s if cpu is None else cpu,
        peak_rss_mb=outcome.peak_rss_mb if peak is None else peak / 2**20,
        log_tail=outcome.log_tail,
    )


def _filter_pipe() -> int:
    """The read end of a pipe holding the compiled seccomp filter, for `bwrap --seccomp`."""
    reader, writer = os.pipe()
    with open(writer, "wb") as f:
        f.write(deny_list_bpf(SANDBOX_UID))  # a few hundred bytes: the pipe's buffer holds them
    return reader


def _signal_of(returncode: int) -> int | None:
    """The signal that ended the command: the wrapper's shell reports it as 128 + N."""
    if returncode < 0:
        return -returncode
    return returncode - 128 if 128 < returncode < 128 + 65 else None


def _as_popen_code(returncode: int) -> int:
    sig = _signal_of(returncode)
    return returncode if sig is None else -sig


def _exit_reason(returncode: int, cgroup: TrialCgroup) -> ExitReason:
    if returncode == 0:
        return "ok"
    if cgroup.oom_kills():
        return "oom"
    if cgroup.hit_process_limit():
        return "pids"
    if _signal_of(returncode) == signal.SIGSYS:
        return "policy"  # the seccomp filter killed it
    return "crash"


@cache
def strict_missing() -> tuple[str, ...]:
    """What keeps the strict level from working here, each piece in words; empty if none."""
    if sys.platform != "linux":
        return ("strict needs Linux (namespaces, seccomp, cgroups)",)
    missing = []
    if os.geteuid() != 0:
        missing.append(
            f"strict needs root, to create cgroups and drop to an unprivileged uid "
            f"(running as uid {os.geteuid()})"
        )
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} is not installed (Debian package {package})")
    try:
        deny_list_bpf(SANDBOX_UID)
    except SeccompUnavailable as e:
        missing.append(f"seccomp: {e}")
    try:
        hierarchy()
    except CgroupUnavailable as e:
        missing.append(f"cgroups: {e}")
    return tuple(missing) or _probe()


def _probe() -> tuple[str, ...]:
    """Start Python in the sandbox once: the kernel or a container may still refuse it."""
    with tempfile.TemporaryDirectory(prefix="archlab-probe-") as folder:
        check = f"import os; assert os.getuid() == {SANDBOX_UID}"
        execution = StrictLauncher(log_tail_bytes=500).run(
            [sys.executable, "-I", "-c", check], Path(folder), Limits(wall_s=60, memory_bytes=2**30)
        )
    if execution.exit_reason == "ok":
        return ()
    lines = execution.log_tail.strip().splitlines() or [execution.exit_reason]
    return (f"bubblewrap cannot start the sandbox here: {lines[-1]}",)
