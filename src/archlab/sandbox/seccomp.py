"""The strict level's seccomp deny-list, compiled to the BPF program bubblewrap loads.

Everything a training job needs is allowed; what an attacker wants and a training job never
needs is denied: network families other than unix sockets, ptrace and reading other
processes' memory, mounts and namespaces, bpf, perf, io_uring, keyrings, kernel modules,
and changing to any uid but the sandbox's. A denied call kills the process (SIGSYS), so a
violation is reported as `policy` instead of being caught and hidden by the candidate.
"""

from __future__ import annotations

import errno
import socket
import tempfile
from functools import cache

_DENIED = (
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    # mounts and namespaces
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    # kernel attack surface a training job never touches
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "acct",
    "iopl",
    "ioperm",
)

#: namespace flags of clone(2): a new namespace is a way around the sandbox's
_CLONE_NEW = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

#: uid and gid changes: allowed only to the sandbox's own ids (setpriv's drop runs under
#: this filter), with the number of arguments each call takes
_ID_CALLS = {
    "setuid": 1,
    "setgid": 1,
    "setreuid": 2,
    "setregid": 2,
    "setresuid": 3,
    "setresgid": 3,
    "setfsuid": 1,
    "setfsgid": 1,
}


class SeccompUnavailable(Exception):
    """pyseccomp or libseccomp is missing, or the filter does not compile."""


@cache
def deny_list_bpf(sandbox_id: int) -> bytes:
    """The compiled filter (a `struct sock_filter` array) for `bwrap --seccomp FD`."""
    try:
        import pyseccomp as sc
    except ImportError:
        raise SeccompUnavailable("pyseccomp is not installed") from None
    except (OSError, RuntimeError) as e:  # libseccomp itself is missing
        raise SeccompUnavailable(f"pyseccomp cannot load libseccomp: {e}") from None
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        # a 32-bit or x32 system call would bypass every rule below
        f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
        for name in _DENIED:
            f.add_rule(sc.KILL_PROCESS, name)
        f.add_rule(sc.KILL_PROCESS, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
        for flag in _CLONE_NEW:
            f.add_rule(sc.KILL_PROCESS, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        # clone3 passes its flags in memory, out of a filter's reach; glibc falls back to clone
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
        for name, n_args in _ID_CALLS.items():
            for arg in range(n_args):
                f.add_rule(sc.KILL_PROCESS, name, sc.Arg(arg, sc.NE, sandbox_id))
        f.add_rule(sc.KILL_PROCESS, "setgroups", sc.Arg(0, sc.NE, 0))
        with tempfile.TemporaryFile() as out:
            f.export_bpf(out)
            out.seek(0)
            return out.read()
    except (OSError, RuntimeError, ValueError) as e:
        raise SeccompUnavailable(f"the seccomp filter does not compile: {e}") from None
