#!/usr/bin/env bash
# Set up a fresh machine: a .venv with composerag and everything its tests use.
#
#   bash scripts/setup.sh          composerag with every extra and the test tools (extra dev)
#   bash scripts/setup.sh --core   composerag alone: run, evaluate and index with the embedded
#                                  models; no server, Ray, transformers backend, tuning or tests
# --core after a full set-up leaves the extras installed: remove .venv first for a core venv.
#
# llama-cpp-python compiles from source, here with llama.cpp's dynamic CPU backends: one
# kernel library per instruction-set level (AVX2, AVX512, AVX512-VNNI/BF16 as on Zen 4, AMX...),
# of which composerag registers the best one this machine really runs (compose/generators/
# cpu_backend.py: AMX only when the kernel grants it, since VMs that advertise AMX without
# enabling it crash in that variant). Built once (about 10 minutes on 2 cores) into a local
# wheelhouse keyed by the build flags, and installed from there.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") TARGET=".[dev]" ;;
  --core) TARGET="." ;;
  *) echo "usage: bash scripts/setup.sh [--core]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
# GGML_BACKEND_DIR is typed STRING so CMake keeps it relative: the variants then install into
# the wheel's llama_cpp/lib beside libggml.so. LLAVA (multimodal) is not used by composerag.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON \
-DGGML_BACKEND_DIR:STRING=llama_cpp/lib -DLLAVA_BUILD=OFF"
BUILD_KEY=$(printf '%s %s' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)
WHEELS=${COMPOSERAG_WHEELHOUSE:-$HOME/.cache/composerag/wheels}/$BUILD_KEY

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
  echo "Building llama-cpp-python $LLAMA_VERSION with CPU variants (once; about 10 minutes on 2 cores)..."
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="$LLAMA_CMAKE_ARGS" \
    python -m pip wheel --no-deps --no-cache-dir \
    "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
fi
python -m pip install -q --find-links "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
# A venv from before the variant build holds the same version without the variants: replace it.
if ! python - <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llama_cpp")
lib = pathlib.Path(spec.origin).parent / "lib"
sys.exit(0 if any(lib.glob("libggml-cpu-*.so")) else 1)
PY
then
  python -m pip install -q --force-reinstall --no-deps --find-links "$WHEELS" \
    "llama-cpp-python==$LLAMA_VERSION"
fi
# setuptools notes "Editable installation ... be careful with folders named like your
# package" for any editable install of a layout it cannot map with one path entry (here
# compose.modules -> modules/): information, not a fault, and pip shows it as a warning.
PYTHONWARNINGS="ignore:Editable installation" \
  python -m pip install -q --find-links "$WHEELS" -e "$TARGET"
# llama.cpp's LoRA converter for compose.tune.export, from this llama-cpp-python's sdist;
# fetched on first export otherwise, so a failure here only warns. Tuning is not in --core.
if [ "$TARGET" != "." ]; then
  python -m compose.tune.llama_sources ||
    echo "warning: llama.cpp's conversion scripts not fetched; compose.tune.export will retry"
fi
echo "composerag is installed in .venv"
