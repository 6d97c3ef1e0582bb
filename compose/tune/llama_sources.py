"""llama.cpp's own conversion scripts, from the same llama.cpp as the installed library.

An adapter GGUF must be written the way the llama.cpp that reads it expects: tensor names,
metadata keys and the LoRA layout move between llama.cpp versions, and llama-cpp-python's
wheel ships only the compiled library. Its sdist vendors the whole llama.cpp tree, so the
scripts are taken from the sdist of exactly the installed version, fetched once with pip and
unpacked - only the two converters, the ``conversion/`` package they share, ``gguf-py``
(which they put on ``sys.path`` themselves), their requirements and the licence - into
``~/.cache/composerag/llama.cpp-src/<version>/`` through a staging directory renamed into
place, so a half-extracted tree is never used. ``COMPOSERAG_LLAMA_CPP_SRC`` points at a
llama.cpp checkout instead (offline machines).

Usage::

    python -m compose.tune.llama_sources      # prefetch, print the directory
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

from compose.config import DEFAULT_HOME

ENV_OVERRIDE = "COMPOSERAG_LLAMA_CPP_SRC"
CONVERTER = "convert_lora_to_gguf.py"
# Paths under vendor/llama.cpp/ that the converters import or that must travel with them.
_FILES = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "LICENSE")
_TREES = ("conversion/", "gguf-py/gguf/", "requirements/")


class LlamaSourcesError(RuntimeError):
    """The llama.cpp scripts could not be found or fetched."""


def llama_cpp_sources() -> Path:
    """The directory holding ``convert_lora_to_gguf.py`` and what it imports."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        path = Path(override).expanduser()
        if not (path / CONVERTER).is_file():
            raise LlamaSourcesError(f"{ENV_OVERRIDE}={override} holds no {CONVERTER}")
        return path
    release = version("llama-cpp-python")
    target = DEFAULT_HOME / "llama.cpp-src" / release
    if (target / CONVERTER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same version
        if not (target / CONVERTER).is_file():
            _fetch(release, target)
    return target


def _fetch(release: str, target: Path) -> None:
    print(f"composerag: fetching llama.cpp's conversion scripts from the llama-cpp-python "
          f"{release} sdist (once) -> {target}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="llama-cpp-sdist-") as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   f"llama-cpp-python=={release}", "-d", download]
        done = subprocess.run(command, capture_output=True, text=True)
        archives = list(Path(download).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode != 0 or not archives:
            tail = "\n".join(line[:300] for line in
                             (done.stderr or done.stdout).strip().splitlines()[-3:])
            raise LlamaSourcesError(
                f"could not download the llama-cpp-python {release} sdist with pip (needed "
                f"for llama.cpp's {CONVERTER}); set {ENV_OVERRIDE} to a llama.cpp checkout of "
                f"the same version instead. pip said:\n{tail}")
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{release}-"))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the scripts from other users
        try:
            _extract(archives[0], f"llama_cpp_python-{release}/vendor/llama.cpp/", staging)
            if not (staging / CONVERTER).is_file():
                raise LlamaSourcesError(f"the llama-cpp-python {release} sdist has no "
                                        f"vendor/llama.cpp/{CONVERTER}")
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, prefix: str, destination: Path) -> None:
    """Copy the wanted regular files out of the sdist; nothing else is written."""
    with tarfile.open(archive) as tar:
        for member in tar:
            relative = member.name[len(prefix):] if member.name.startswith(prefix) else ""
            wanted = relative in _FILES or relative.startswith(_TREES)
            if not (wanted and member.isfile()) or ".." in Path(relative).parts:
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            path = destination / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with source, open(path, "wb") as sink:
                shutil.copyfileobj(source, sink)


if __name__ == "__main__":
    print(llama_cpp_sources())
