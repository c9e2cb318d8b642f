#!/usr/bin/env bash
# The GPU check (benchmarks/device_check.py, issue 21) on a lent machine that has PyTorch
# and an NVIDIA driver but no internet, in two steps:
#
#   bash .ci/device.sh prepare        here: archlab's dependencies as wheels for that
#                                     machine's Python, and bubblewrap's .deb, in .device/
#   bash .ci/device.sh run [PARTS]    there, with .device/ carried: installs them beside
#                                     its torch, runs the check's PARTS (comma-separated,
#                                     default all) and writes device.json to $OUT, and the
#                                     red team's output to $OUT/redteam.txt for containment
#
# Extra arguments after PARTS go to the check (`--smoke`: toy sizes, to try it on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.device
PARTS_ALL=sandbox,precision,compile,packing,containment

prepare() {
    local version=${DEVICE_PYTHON_VERSION:-3.12}
    mkdir -p "$DIR/wheels"
    # the machine has torch and numpy; everything else archlab and the red team import
    python3 -m pip download -q -d "$DIR/wheels" --only-binary=:all: \
        --python-version "$version" --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        openai json-repair langgraph langgraph-checkpoint-sqlite pydantic jinja2 \
        safetensors duckdb typer rich pyseccomp pytest pytest-timeout jsonschema
    (cd "$DIR" && apt-get download -q bubblewrap)
    echo "prepared $DIR: $(ls "$DIR/wheels" | wc -l) wheels for Python $version, $(ls "$DIR"/*.deb)"
}

run() {
    local parts=${1:-$PARTS_ALL}
    shift || true
    : "${OUT:=$PWD/device-out}"
    mkdir -p "$OUT"
    local python=${DEVICE_PYTHON:-python3}
    [ -x /opt/torch/.venv/bin/python ] && python=${DEVICE_PYTHON:-/opt/torch/.venv/bin/python}
    "$python" -m pip install -q --no-index --find-links "$DIR/wheels" "$DIR"/wheels/*.whl
    # the harness runs as `python -I`, which ignores PYTHONPATH: the source through a .pth
    local site
    site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PWD/src" >"$site/archlab-checkout.pth"
    command -v bwrap >/dev/null || dpkg -i "$DIR"/bubblewrap_*.deb >/dev/null

    local measured=${parts//containment/}
    measured=$(echo "$measured" | tr -s , | sed 's/^,//; s/,$//')
    if [ -n "$measured" ]; then
        "$python" benchmarks/device_check.py --parts "$measured" --json "$OUT/device.json" "$@" ||
            echo "the check failed: see $OUT/device.json"
    fi
    if [[ ,$parts, == *,containment,* ]]; then
        redteam "$python"
    fi
}

# The red team under the strict sandbox with GPU 0 in every trial. The strict level makes
# trial cgroups under its own cgroup, which on cgroup v2 needs the cpu and pids
# controllers and no other process in it: on a VM whose cgroup only gets memory, pass them
# down from the root (a lent machine is ours to change) into a cgroup of the suite's own.
redteam() {
    local python=$1 cgroup=""
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ "$(id -u)" = 0 ]; then
        local own dir=/sys/fs/cgroup
        own=$(sed -n 's/^0:://p' /proc/self/cgroup)
        for part in $(dirname "$own" | tr / ' '); do
            echo "+cpu +pids +memory" >"$dir/cgroup.subtree_control" || true
            dir=$dir/$part
        done
        echo "+cpu +pids +memory" >"$dir/cgroup.subtree_control" || true
        cgroup=$dir/archlab-redteam
        mkdir -p "$cgroup"
    fi
    # shellcheck disable=SC2016  # $$ is the shell that becomes pytest
    REDTEAM_GPUS=${REDTEAM_GPUS-0} CGROUP=$cgroup sh -c \
        '[ -z "$CGROUP" ] || echo $$ >"$CGROUP/cgroup.procs"; exec "$0" -m pytest tests/redteam -q -p no:randomly -k strict' \
        "$python" >"$OUT/redteam.txt" 2>&1 || true
    tail -3 "$OUT/redteam.txt"
}

case "${1:-}" in
prepare) prepare ;;
run) shift && run "$@" ;;
*) sed -n '2,12p' "$0" && exit 2 ;;
esac
