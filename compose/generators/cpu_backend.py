"""Choose llama.cpp's CPU kernels for this machine, safely, before llama.cpp would.

The setup builds llama-cpp-python with llama.cpp's dynamic CPU backends
(``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``): one ``libggml-cpu-<variant>.so`` per
instruction-set level (haswell, skylakex, icelake, zen4, sapphirerapids, ...). Left alone,
llama.cpp loads the variant whose CPUID score is highest, and it would also search the
current directory for such files. CPUID is not the whole truth on virtual machines: AMX has
been seen advertised on VMs whose kernel does not let a process use it, and the AMX variant
then dies with SIGILL. So this module registers the variant itself, from the package's own
library directory only: the best-scoring one whose instructions the OS really enables, never
an AMX one unless asked for, or the one named by ``COMPOSERAG_LLAMA_CPU`` (to opt in to AMX,
or for benchmarks that compare builds). AMX is opt-in because the kernel's permission is not
proof either: on a Xeon VM that granted it (``arch_prctl`` succeeded), the sapphirerapids
variant still died with SIGILL on the first quantized matmul. A wheel built without variants
(a user's own llama-cpp-python) is used as it is.

Usage::

    from compose.generators.cpu_backend import ensure_cpu_backend
    ensure_cpu_backend().variant   # "zen4" here; "built-in" for a single-variant build
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from pathlib import Path

from pydantic import BaseModel

VARIANT_ENV = "COMPOSERAG_LLAMA_CPU"
_VARIANT_FILE = re.compile(r"^libggml-cpu-(?P<variant>[\w.]+)\.so$")
# Variants whose kernels use AMX tiles: usable only once the kernel grants the permission.
_NEEDS_AMX = frozenset({"sapphirerapids"})
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158  # x86-64

_LOCK = threading.Lock()
_CHOSEN: CpuBackend | None = None


class CpuBackend(BaseModel):
    """The CPU kernels llama.cpp runs in this process."""

    variant: str
    path: str | None = None
    score: int = 0
    candidates: dict[str, int] = {}


class CpuBackendError(RuntimeError):
    """No usable CPU backend, or the requested one does not exist or cannot run here."""


def library_dir() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def variant_files(directory: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(directory.glob("libggml-cpu-*.so")):
        match = _VARIANT_FILE.match(path.name)
        if match:
            found[match["variant"]] = path
    return found


def amx_usable() -> bool:
    """True when the kernel lets this process use AMX tile data (Linux x86-64 only)."""
    if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    status: int = libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)
    return status == 0


def variant_score(path: Path) -> int:
    """llama.cpp's own score of a variant on this CPU (0: cannot run here). Reading it loads
    the library, as llama.cpp itself does; its feature check is compiled without the
    variant's instruction set, so loading is safe on any x86 CPU."""
    import _ctypes

    library = ctypes.CDLL(str(path))
    try:
        score = library.ggml_backend_score
    except AttributeError:
        return 0
    score.restype = ctypes.c_int
    value = int(score())
    _ctypes.dlclose(library._handle)
    return value


def ensure_cpu_backend() -> CpuBackend:
    """Register the CPU backend once per process (idempotent, thread-safe)."""
    global _CHOSEN
    with _LOCK:
        if _CHOSEN is None:
            _CHOSEN = _register(os.environ.get(VARIANT_ENV) or None)
        return _CHOSEN


def _register(requested: str | None) -> CpuBackend:
    from llama_cpp._logger import set_verbose

    directory = library_dir()
    set_verbose(False)  # llama.cpp's info lines (backend loaded, tensors quantized) stay quiet
    files = variant_files(directory)
    ggml = ctypes.CDLL(str(_loaded_ggml(directory)))
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if not files:
        if requested:
            raise CpuBackendError(
                f"{VARIANT_ENV}={requested}, but this llama-cpp-python build has no CPU "
                "variants (rebuild it with scripts/setup.sh)")
        return CpuBackend(variant="built-in")
    scores = {name: (0 if name in _NEEDS_AMX and not amx_usable() else variant_score(path))
              for name, path in files.items()}
    automatic = {name: score for name, score in scores.items() if name not in _NEEDS_AMX}
    if requested:
        if requested not in files:
            raise CpuBackendError(f"{VARIANT_ENV}={requested}: no such CPU variant; built: "
                                  f"{', '.join(sorted(files))}")
        if scores[requested] == 0:
            raise CpuBackendError(f"{VARIANT_ENV}={requested}: this CPU (or its OS) lacks "
                                  "instructions that variant needs")
        chosen = requested
    else:
        chosen = max(automatic, key=lambda name: automatic[name])
        if automatic[chosen] == 0:
            raise CpuBackendError("no llama.cpp CPU variant can run on this CPU")
    if ggml.ggml_backend_reg_count() == 0 or not _cpu_registered(ggml):
        ggml.ggml_backend_load.restype = ctypes.c_void_p
        ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
        if not ggml.ggml_backend_load(str(files[chosen]).encode()):
            raise CpuBackendError(f"llama.cpp could not load {files[chosen]}")
    return CpuBackend(variant=chosen, path=str(files[chosen]), score=scores[chosen],
                      candidates=scores)


def _loaded_ggml(directory: Path) -> Path:
    """The libggml file llama.cpp itself loaded. A wheel stores libggml.so, .so.0 and
    .so.0.x as separate copies (zip has no symlinks), and each copy keeps its own backend
    registry: registering in the wrong one leaves llama.cpp with no backend."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        maps = []
    directory = directory.resolve()  # the maps list resolved paths; a venv may sit under a symlink
    for line in maps:
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if Path(path).parent == directory and Path(path).name.startswith("libggml.so"):
            return Path(path)
    return directory / "libggml.so"


def _cpu_registered(ggml: ctypes.CDLL) -> bool:
    ggml.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    ggml.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    return bool(ggml.ggml_backend_reg_by_name(b"CPU"))
