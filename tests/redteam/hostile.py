"""The red team: hostile candidates, each a valid-looking module defining build_model whose
import, build_model or forward pass attacks the machine, the orchestrator or the score.

Every candidate first names its process after the attack (prctl PR_SET_NAME; children
inherit the name) and runs anything it spawns under that name as argv[0], so the test can
find whatever it left behind. An attack that gets anything out prints `PWNED`.
`ARENA` holds the paths and addresses of what the attacker is after, as if it knew them.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal

Where = Literal["import", "build", "forward"]
#: (exit reason, error class) of the trial's report
Outcome = tuple[str, str | None]

OK: Outcome = ("ok", None)
#: the attack raises, and the harness reports it where it ran
FAILS: Outcome = ("ok", "<where>")
POLICY: Outcome = ("policy", "policy")
TIMEOUT: Outcome = ("timeout", "timeout")

#: why basic cannot stop an attack; the test skips it under basic with this reason
SAME_USER = "basic runs the candidate as the orchestrator's own user on the host file system"
NO_SECCOMP = "basic has no seccomp filter, and its candidate keeps the orchestrator's uid"
NO_PROCESS_LIMIT = "basic has no process limit (RLIMIT_NPROC does not bind root)"
LEAVES_SESSION = "basic kills the process group; a process that starts its own session escapes"


@dataclass(frozen=True)
class Attack:
    name: str
    #: the attack as the issue lists it
    category: str
    #: Python statements; they run where `where` says
    code: str
    expect: Outcome
    where: Where = "import"
    #: what basic reports when it differs from strict
    expect_basic: Outcome | None = None
    #: why basic cannot contain it: skipped under basic
    basic_gap: str | None = None
    #: under basic only contained in a network namespace
    needs_netns: bool = False
    stage: str = "smoke"
    time_limit_s: float = 60
    #: the trial's memory limit, where the red team's default does not suit the attack
    memory_bytes: int | None = None

    def expected(self, level: str) -> Outcome:
        reason, error = self.expect_basic if level == "basic" and self.expect_basic else self.expect
        where = {"import": "import", "build": "build", "forward": "runtime"}[self.where]
        return reason, where if error == "<where>" else error


PRELUDE = """\
import ctypes, os, signal, socket, sys, time
ARENA = {arena!r}
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, ARENA["tag"].encode(), 0, 0, 0)  # PR_SET_NAME
"""

MODEL = """
import torch

class Model(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.embed = torch.nn.Embedding(spec.vocab_size, 16)
        self.head = torch.nn.Linear(16, spec.vocab_size)

    def forward(self, x):
        {forward}
        return self.head(self.embed(x))

def build_model(spec):
    {build}
    return Model(spec)
"""


def render(attack_code: str, where: Where, arena: dict[str, object]) -> str:
    """The candidate module: the prelude, the attack as a function, and a working model
    that calls it where it should run."""
    body = textwrap.indent(textwrap.dedent(attack_code).strip(), "    ")
    calls = {place: "attack()" if place == where else "pass" for place in ("build", "forward")}
    return (
        PRELUDE.format(arena=arena)
        + f"\ndef attack():\n{body}\n"
        + ("\nattack()\n" if where == "import" else "")
        + MODEL.format(**calls)
    )


CONTROL = Attack("benign_control", "control", "pass", OK, stage="proxy")

ATTACKS = [
    Attack(
        "fork_bomb",
        "fork bomb",
        """
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        ("pids", "pids"),
        basic_gap=NO_PROCESS_LIMIT,
    ),
    Attack(
        "thousands_of_threads",
        "thousands of threads",
        """
        import threading
        for _ in range(5000):
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        print("threads started:", threading.active_count() - 1)
        """,
        ("pids", "pids"),
        # Basic has no thread limit. Under a tight address space the flood would end where
        # CPython happens to run out (a failed start, or a wedged one when the new thread
        # cannot allocate its first frame: the wall clock then ends it), so give it room
        # for every stack: the threads are created, and they die with the trial.
        expect_basic=OK,
        memory_bytes=2**36,
    ),
    Attack(
        "memory_bomb",
        "memory bomb",
        """
        hoard = []
        while True:
            hoard.append(b"x" * (64 << 20))
        """,
        ("oom", "oom"),
        where="forward",
        expect_basic=("ok", "oom"),  # RLIMIT_AS: the harness catches the MemoryError
    ),
    Attack(
        "busy_loop_ignoring_signals",
        "infinite loop ignoring signals",
        """
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            pass
        """,
        TIMEOUT,
        time_limit_s=6,
    ),
    Attack(
        "sleep_past_budget",
        "sleeping past the budget",
        "time.sleep(3600)",
        TIMEOUT,
        where="build",
        time_limit_s=6,
    ),
    Attack(
        "dns_lookup",
        "network access (DNS)",
        'print("PWNED", socket.getaddrinfo("example.com", 443))',
        POLICY,
        expect_basic=FAILS,
        needs_netns=True,
    ),
    Attack(
        "tcp_to_orchestrator_host",
        "network access (TCP)",
        """
        conn = socket.create_connection(("127.0.0.1", ARENA["tcp_port"]), timeout=5)
        conn.sendall(ARENA["tag"].encode())
        print("PWNED tcp")
        """,
        POLICY,
        expect_basic=FAILS,
        needs_netns=True,
    ),
    Attack(
        "unix_socket_on_host",
        "network access (unix sockets)",
        """
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(ARENA["unix_path"])
        conn.sendall(ARENA["tag"].encode())
        print("PWNED unix")
        """,
        FAILS,
        basic_gap=SAME_USER,
    ),
    Attack(
        "abstract_unix_socket",
        "network access (unix sockets)",
        """
        conn = socket.socket(socket.AF_UNIX)
        conn.connect("\\0" + ARENA["abstract_name"])
        conn.sendall(ARENA["tag"].encode())
        print("PWNED abstract")
        """,
        FAILS,
        needs_netns=True,
    ),
    Attack(
        "env_secrets",
        "reading env secrets",
        """
        print("ENV", dict(os.environ))
        print("ENV", open("/proc/self/environ", "rb").read())
        """,
        OK,
    ),
    Attack(
        "proc_environ_of_others",
        "reading /proc/*/environ",
        """
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                env = open(f"/proc/{pid}/environ", "rb").read()
            except OSError:
                continue
            print("ENV of", pid, [v for v in env.split(b"\\0") if b"KEY" in v])
        """,
        OK,
        basic_gap=SAME_USER,
    ),
    Attack(
        "write_outside_trial_dir",
        "writing outside the trial directory",
        """
        open(ARENA["outside"] + "/pwned.txt", "w").write("pwned")
        print("PWNED wrote outside")
        """,
        FAILS,
        basic_gap=SAME_USER,
    ),
    Attack(
        "read_other_trial",
        "reading other trials",
        'print("PWNED", open(ARENA["other_trial"] + "/candidate.py").read())',
        FAILS,
        basic_gap=SAME_USER,
    ),
    Attack(
        "read_memory",
        "reading the memory",
        'print("PWNED memory", open(ARENA["memory"], "rb").read()[:64])',
        FAILS,
        where="build",
        basic_gap=SAME_USER,
    ),
    Attack(
        "tamper_with_memory",
        "tampering with the memory",
        """
        with open(ARENA["memory"], "r+b") as f:
            f.write(b"\\0" * 4096)
        print("PWNED memory overwritten")
        """,
        FAILS,
        basic_gap=SAME_USER,
    ),
    Attack(
        "flood_stdout",
        "flooding stdout",
        """
        line = "A" * 65535 + "\\n"
        for _ in range(1024):  # 64 MiB
            sys.stdout.write(line)
        print("the flood is over")
        """,
        OK,
    ),
    Attack(
        "fill_the_disk",
        "filling the disk",
        """
        block = b"x" * (16 << 20)
        for n in range(100_000):
            with open(f"fill-{n}.bin", "wb") as f:
                f.write(block)
        """,
        ("crash", "crash"),  # the harness finds no room left for its result
        basic_gap="basic caps each file's size (RLIMIT_FSIZE) but not how many files",
    ),
    Attack(
        "kill_the_parent",
        "killing the parent",
        """
        for pid in (os.getppid(), 1, ARENA["orchestrator_pid"]):
            try:
                os.kill(pid, signal.SIGKILL)
                print("PWNED killed", pid)
            except OSError:
                pass
        try:  # reports success even when every process refused: the trial must go on
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        """,
        OK,
        basic_gap=SAME_USER,
    ),
    Attack(
        "daemonize",
        "daemonizing to outlive the trial",
        """
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", [ARENA["tag"], "3600"])
            os._exit(0)
        os.wait()
        """,
        OK,
        basic_gap=LEAVES_SESSION,
    ),
    Attack(
        "spawn_subprocesses",
        "spawning subprocesses",
        """
        import subprocess
        for _ in range(3):
            subprocess.Popen([ARENA["tag"], "3600"], executable="/bin/sleep")
        """,
        OK,
        where="build",
    ),
    Attack(
        "ctypes_unshare",
        "ctypes system calls (unshare)",
        'print("PWNED unshare", libc.unshare(0x10000000))  # CLONE_NEWUSER',
        POLICY,
        basic_gap=NO_SECCOMP,
    ),
    Attack(
        "ctypes_mount",
        "ctypes system calls (mount)",
        'print("PWNED mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))',
        POLICY,
        basic_gap=NO_SECCOMP,
    ),
    Attack(
        "ctypes_ptrace",
        "ctypes system calls (ptrace)",
        'print("PWNED ptrace", libc.ptrace(16, os.getppid(), 0, 0))  # PTRACE_ATTACH',
        POLICY,
        where="forward",
        basic_gap=NO_SECCOMP,
    ),
    Attack(
        "ctypes_setuid",
        "ctypes system calls (setuid)",
        'print("PWNED setuid", libc.setuid(0))',
        POLICY,
        basic_gap=NO_SECCOMP,
    ),
    Attack(
        "ctypes_bpf",
        "ctypes system calls (bpf)",
        """
        import platform
        bpf = {"x86_64": 321, "aarch64": 280}[platform.machine()]
        print("PWNED bpf", libc.syscall(bpf, 5, None, 0))  # BPF_PROG_LOAD
        """,
        POLICY,
        basic_gap=NO_SECCOMP,
    ),
    Attack(
        "plant_files_in_trial_dir",
        "planting files the orchestrator might import",
        """
        payload = f"open({ARENA['planted_marker']!r}, 'w').write('ran')\\n"
        for name in ("sitecustomize.py", "usercustomize.py", "numpy.py", "torch.py"):
            open(name, "w").write(payload)
        os.makedirs("archlab", exist_ok=True)
        open("archlab/__init__.py", "w").write(payload)
        """,
        OK,
    ),
    Attack(
        "symlinks_for_the_next_attempt",
        "planting files the orchestrator might import",
        """
        # a retry reuses the trial directory: let the orchestrator write through these
        for name in ("log.txt", "candidate.py", "trial.json", "data.npz"):
            try:
                os.unlink(name)
            except OSError:
                pass
            os.symlink(ARENA["victim"], name)
        """,
        FAILS,
        # basic lets it replace its own inputs, so the harness then fails to read them
        expect_basic=("ok", "runtime"),
    ),
    Attack(
        "plant_pth_in_site_packages",
        "planting files the orchestrator might import",
        """
        path = ARENA["site_packages"] + f"/zz_{ARENA['tag']}.pth"
        open(path, "w").write(f"import os; open({ARENA['planted_marker']!r}, 'w')\\n")
        print("PWNED planted", path)
        """,
        FAILS,
        basic_gap=SAME_USER,
    ),
    Attack(
        "forge_metrics_in_result",
        "forging metrics or result files",
        """
        import atexit, json
        def forge():
            result = json.load(open("result.json"))
            result.update(score=1.0, metrics={"accuracy": 1.0, "accuracy_auc": 1.0})
            json.dump(result, open("result.json", "w"))
        atexit.register(forge)
        """,
        OK,
        stage="proxy",
    ),
    Attack(
        "result_symlink_to_host_file",
        "forging metrics or result files",
        """
        import atexit
        def swap():
            os.replace("result.json", "real.json")
            os.symlink("/etc/passwd", "result.json")
        atexit.register(swap)
        """,
        ("ok", "crash"),
    ),
    Attack(
        "result_fifo",
        "forging metrics or result files",
        """
        import atexit
        def swap():
            os.unlink("result.json")
            os.mkfifo("result.json")
        atexit.register(swap)
        """,
        ("ok", "crash"),
    ),
]
