"""Isolation levels without torch: cgroup discovery and files for v1 and v2 (on fake
trees), the seccomp filter, level selection, `archlab doctor`, the capped log, the
strict launcher on tiny commands, and each sandbox module importing alone (no import
cycle). The hostile candidates are in tests/redteam/."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from archlab import sandbox
from archlab.sandbox import strict
from archlab.sandbox.basic import BasicLauncher
from archlab.sandbox.cgroups import (
    CgroupUnavailable,
    Hierarchy,
    TrialCgroup,
    _enable_v2_controllers,
    locate,
)
from archlab.sandbox.levels import SandboxUnavailable, make_launcher
from archlab.sandbox.process import read_tail
from archlab.sandbox.protocol import LOG_FILE, Limits
from archlab.sandbox.seccomp import SeccompUnavailable, deny_list_bpf
from support import path_without_bubblewrap

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / {root}/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = "8:pids:/\n4:memory:/box/a\n1:cpu,cpuacct:/\n0::/\n"


def test_hybrid_hosts_use_the_v1_controllers(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")  # all bound to v1
    found = locate(HYBRID_MOUNTINFO.format(root=tmp_path), HYBRID_CGROUP)
    assert found.version == 1
    assert found.parents == {
        "memory": tmp_path / "memory" / "box" / "a",
        "pids": tmp_path / "pids",
        "cpu": tmp_path / "cpu,cpuacct",
        "cpuacct": tmp_path / "cpu,cpuacct",
    }


def test_v2_is_used_where_it_has_every_controller(tmp_path: Path) -> None:
    own = tmp_path / "unified" / "user.slice" / "archlab.scope"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mountinfo = f"41 31 0:38 /user.slice {tmp_path}/unified rw - cgroup2 cgroup2 rw\n"
    found = locate(mountinfo, "0::/user.slice/user.slice/archlab.scope\n")
    assert found == Hierarchy(2, dict.fromkeys(("memory", "pids", "cpu"), own))


def test_missing_controllers_are_named(tmp_path: Path) -> None:
    mountinfo = f"35 31 0:32 / {tmp_path}/memory rw - cgroup cgroup rw,memory\n"
    with pytest.raises(CgroupUnavailable, match="pids, cpu"):
        locate(mountinfo, "4:memory:/\n")


def test_v2_controllers_kept_above_our_cgroup_are_named_with_the_fix(tmp_path: Path) -> None:
    # a VM's layout: the root offers every controller, our cgroup memory only
    own = tmp_path / "process_api" / "abc"
    own.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own / "cgroup.controllers").write_text("memory\n")
    mountinfo = f"41 31 0:38 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    with pytest.raises(CgroupUnavailable) as raised:
        locate(mountinfo, "0::/process_api/abc\n")
    message = str(raised.value)
    assert f"cgroup v2 has pids, cpu at {tmp_path} but does not pass them down" in message
    assert "`echo '+pids +cpu' > DIR/cgroup.subtree_control`" in message
    assert f"from {tmp_path} down to {tmp_path / 'process_api'}" in message


def test_v2_without_delegation_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").mkdir()  # writing it fails, as EBUSY would
    (tmp_path / "cgroup.procs").write_text("1\n")  # and we are not alone in the cgroup
    with pytest.raises(CgroupUnavailable, match="Delegate=yes"):
        _enable_v2_controllers(tmp_path)


def test_v2_trial_cgroup_files(tmp_path: Path) -> None:
    cgroup = TrialCgroup(
        Hierarchy(2, dict.fromkeys(("memory", "pids", "cpu"), tmp_path)), 2**30, 64, 2
    )
    folder = cgroup.dirs["memory"]
    assert folder.parent == tmp_path and folder.name.startswith(f"archlab-{os.getpid()}-")
    assert (folder / "memory.max").read_text() == str(2**30)
    assert (folder / "pids.max").read_text() == "64"
    assert (folder / "cpu.max").read_text() == "200000 100000"
    assert not (folder / "memory.swap.max").exists()  # optional files are left alone
    assert (cgroup.oom_kills(), cgroup.hit_process_limit(), cgroup.cpu_seconds()) == (0, False, 0)
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    (folder / "pids.events").write_text("max 3\n")
    (folder / "memory.peak").write_text("123456\n")
    (folder / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert cgroup.oom_kills() == 1 and cgroup.hit_process_limit()
    assert cgroup.peak_memory_bytes() == 123456 and cgroup.cpu_seconds() == 2.5


def test_v1_trial_cgroup_files(tmp_path: Path) -> None:
    parents = {name: tmp_path / name for name in ("memory", "pids", "cpu", "cpuacct")}
    for parent in parents.values():
        parent.mkdir()
    (parents["memory"] / "memory.memsw.limit_in_bytes").touch()
    cgroup = TrialCgroup(Hierarchy(1, parents), 2**30, 64, 1)
    dirs = cgroup.dirs
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(2**30)
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "100000"
    assert (dirs["pids"] / "pids.max").read_text() == "64"
    (dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\noom_kill 2\n")
    (dirs["memory"] / "memory.max_usage_in_bytes").write_text("4096\n")
    (dirs["cpuacct"] / "cpuacct.usage").write_text("1500000000\n")
    assert cgroup.oom_kills() == 2 and cgroup.peak_memory_bytes() == 4096
    assert cgroup.cpu_seconds() == 1.5


def test_stale_trial_cgroups_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = _a_dead_pid()
    (tmp_path / f"archlab-{dead}-0123").mkdir()
    (tmp_path / f"archlab-{os.getpid()}-4567").mkdir()
    TrialCgroup(Hierarchy(2, dict.fromkeys(("memory", "pids", "cpu"), tmp_path)), 2**30, 8, 1)
    names = os.listdir(tmp_path)
    assert f"archlab-{dead}-0123" not in names and f"archlab-{os.getpid()}-4567" in names


def test_staging_left_by_killed_processes_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strict level's staging directories (in the temporary directory) are locked while
    in use: one left unlocked by a `kill -9` is removed, one in use or just made is not."""
    import fcntl
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("abandoned", "in-use", "just-made"):
        (tmp_path / f"archlab-trial-{name}").mkdir()
        (tmp_path / f"archlab-trial-{name}" / "data.npz").touch()
    for name in ("abandoned", "in-use"):
        os.utime(tmp_path / f"archlab-trial-{name}", (0, 0))
    holder = os.open(tmp_path / "archlab-trial-in-use", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a live process holds it
    try:
        strict._remove_abandoned_staging.__wrapped__()
    finally:
        os.close(holder)
    assert sorted(os.listdir(tmp_path)) == ["archlab-trial-in-use", "archlab-trial-just-made"]


def _a_dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_seccomp_filter_compiles() -> None:
    try:
        program = deny_list_bpf(65534)
    except SeccompUnavailable as e:
        pytest.skip(str(e))
    assert len(program) % 8 == 0 and len(program) > 100  # struct sock_filter is 8 bytes


def test_a_run_refuses_to_start_below_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strict, "strict_missing", lambda: ("bwrap is not installed",))
    assert isinstance(make_launcher("basic", 4000), BasicLauncher)
    with pytest.raises(SandboxUnavailable, match=r"requires sandbox level 'strict'.*bwrap"):
        make_launcher("strict", 4000)


def test_strict_names_every_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strict.shutil, "which", lambda tool: None)
    monkeypatch.setattr(strict.os, "geteuid", lambda: 1000)
    missing = " | ".join(strict.strict_missing.__wrapped__())
    for piece in ("needs root", "bwrap is not installed", "setpriv is not installed"):
        assert piece in missing


def test_doctor_reports_the_level(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "archlab", "doctor", "--json"],
        cwd=tmp_path,
        env={**env, "ARCHLAB_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(proc.stdout)
    assert report["sandbox_level"] in ("basic", "strict") and report["ok"]
    assert report["levels"]["basic"] == {"available": True, "missing": []}


def test_doctor_says_how_to_get_strict(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHLAB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "archlab", "doctor"],
        cwd=tmp_path,
        env={
            **env,
            "ARCHLAB_HOME": str(tmp_path / "home"),
            "PATH": path_without_bubblewrap(tmp_path),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sandbox level: basic" in proc.stdout and "bwrap is not installed" in proc.stdout
    assert "to get it: run archlab as root with bubblewrap" in proc.stdout
    assert "apt-get install bubblewrap" in proc.stdout


@pytest.mark.parametrize("module", sorted(m.name for m in pkgutil.iter_modules(sandbox.__path__)))
def test_each_sandbox_module_imports_alone(module: str) -> None:
    """A fresh interpreter importing this module first: with a cycle among the sandbox's
    modules, whichever one is imported first finds another half-initialised."""
    subprocess.run([sys.executable, "-c", f"import archlab.sandbox.{module}"], check=True)


def test_the_log_is_capped_and_keeps_its_tail(tmp_path: Path) -> None:
    limits = Limits(wall_s=30, memory_bytes=2**30, log_bytes=100_000)
    execution = BasicLauncher(log_tail_bytes=200).run(
        ["/bin/sh", "-c", "yes flood | head -c 3000000; echo THE END"], tmp_path, limits
    )
    assert execution.exit_reason == "ok" and execution.log_tail.endswith("THE END\n")
    log = (tmp_path / LOG_FILE).read_bytes()
    assert len(log) < 100_000 + 1000 and b"bytes of output dropped" in log
    assert log.endswith(b"THE END\n")


def test_read_tail_does_not_wait_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / LOG_FILE)
    assert read_tail(tmp_path / LOG_FILE, 100) == ""


needs_strict = pytest.mark.skipif(
    bool(strict.strict_missing()), reason="strict is unavailable here: see `archlab doctor`"
)


@needs_strict
def test_strict_gives_a_private_workdir_and_returns_only_outputs(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("given\n")
    script = (
        "id -u; pwd; cat input.txt; touch /tmp/t /dev/shm/t && echo writable; "
        "echo made > out.txt; echo junk > other.txt; ls /"
    )
    execution = strict.StrictLauncher(outputs=("out.txt",)).run(
        ["/bin/sh", "-c", script], tmp_path, Limits(wall_s=30, memory_bytes=2**30)
    )
    assert execution.exit_reason == "ok", execution.log_tail
    uid, cwd, given, scratch, *root = execution.log_tail.split()
    assert (uid, cwd, given, scratch) == ("65534", "/trial", "given", "writable")
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc"}
    python = {Path(path).parts[1] for path in strict._python_dirs()}
    assert set(root) <= system | python | {"tmp", "trial"}  # nothing else of the host
    assert (tmp_path / "out.txt").read_text() == "made\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.txt", LOG_FILE, "out.txt"]


@needs_strict
@pytest.mark.parametrize(
    ("code", "wall_s", "reason"),
    [
        ("import socket; socket.socket(socket.AF_INET)", 30, "policy"),
        ("import time; time.sleep(30)", 1, "timeout"),
        ("import os; os._exit(3)", 30, "crash"),
        ("pass", 30, "ok"),
    ],
    ids=["policy", "timeout", "crash", "ok"],
)
def test_strict_exit_reasons(tmp_path: Path, code: str, wall_s: float, reason: str) -> None:
    execution = strict.StrictLauncher().run(
        [sys.executable, "-I", "-c", code], tmp_path, Limits(wall_s=wall_s, memory_bytes=2**30)
    )
    assert execution.exit_reason == reason, execution.log_tail
