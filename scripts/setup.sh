#!/usr/bin/env bash
# Set up a fresh machine: a .venv with composerag and everything its tests use.
#
# llama-cpp-python compiles from source. Its default native build emits AMX instructions on
# CPUs that advertise AMX, which crash (SIGILL) on virtual machines that do not enable it, so
# it is built once with AMX off into a local wheelhouse and installed from there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
WHEELS=${COMPOSERAG_WHEELHOUSE:-$HOME/.cache/composerag/wheels}
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

# graphviz's `dot` renders `composerag show --png`; optional, so a failure only warns.
if ! command -v dot >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -qq graphviz >/dev/null 2>&1 ||
   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq graphviz >/dev/null 2>&1)) ||
    echo "warning: graphviz not installed; composerag show --png will be unavailable"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip setuptools wheel

mkdir -p "$WHEELS"
if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; then
  echo "Building llama-cpp-python $LLAMA_VERSION (once; about 10-15 minutes on 2 cores)..."
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" python -m pip wheel --no-deps --no-cache-dir \
    "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
fi
python -m pip install -q --find-links "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
python -m pip install -q --find-links "$WHEELS" -e ".[dev]"
echo "composerag is installed in .venv"
