#!/usr/bin/env bash
# Installs llama-cpp-python built for ANY CPU of this architecture, never for the build machine's own CPU.
#
# A build with llama.cpp's default (GGML_NATIVE=ON) uses every instruction the build machine has (AVX-512, AMX on
# Sapphire Rapids) and dies with SIGSEGV/SIGILL on a machine without them. This script builds with
# GGML_NATIVE=OFF and a fixed, portable instruction set:
#   x86-64: AVX, AVX2, FMA, F16C (+ BMI2, which ggml enables with AVX2): any x86-64 CPU with AVX2 (Intel Haswell,
#           2013, AMD Excavator/Zen and later); no AVX-512, no AVX-VNNI, no AMX
#   arm64:  the compiler's baseline (NEON)
# The wheel is kept in ~/.cache/negclean/wheels/<version>-<flags hash>/ so a rebuild is only paid once per flag set,
# and pip's own wheel cache is bypassed (it keys wheels by URL, not by CMAKE_ARGS: it could hand back a native build).
# Afterwards the installed build is checked (scripts/check_llama_build.py).
#
# Usage: scripts/install-llama.sh [PYTHON] [EXTRA]   e.g. scripts/install-llama.sh .venv/bin/python server
# pip users without make: the same flags by hand, see README "Set up".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
EXTRA="${2:-}"
VERSION="0.3.36"
case "$(uname -m)" in
    x86_64|amd64)
        FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
    *)
        FLAGS="-DGGML_NATIVE=OFF" ;;
esac
# NEGCLEAN_LLAMA_CMAKE_ARGS replaces the flags (e.g. "-DGGML_NATIVE=ON" to measure the native build on purpose).
FLAGS="${NEGCLEAN_LLAMA_CMAKE_ARGS:-$FLAGS}"
HASH="$(printf '%s' "$VERSION $(uname -m) $FLAGS" | sha256sum | cut -c1-12)"
WHEELS="${NEGCLEAN_WHEEL_DIR:-$HOME/.cache/negclean/wheels}/llama-cpp-python-$VERSION-$HASH"
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $VERSION with CMAKE_ARGS=\"$FLAGS\" (about 9 minutes on 2 cores, once)"
    mkdir -p "$WHEELS.tmp"
    CMAKE_ARGS="$FLAGS" FORCE_CMAKE=1 "$PY" -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -w "$WHEELS.tmp"
    printf '%s\n' "$FLAGS" > "$WHEELS.tmp/CMAKE_ARGS"
    rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
fi
SPEC="llama-cpp-python==$VERSION"
if [ -n "$EXTRA" ]; then SPEC="llama-cpp-python[$EXTRA]==$VERSION"; fi
"$PY" -m pip install -q --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-*.whl
"$PY" -m pip install -q --find-links "$WHEELS" "$SPEC"
if [ -z "${NEGCLEAN_LLAMA_CMAKE_ARGS:-}" ]; then
    "$PY" scripts/check_llama_build.py
fi
