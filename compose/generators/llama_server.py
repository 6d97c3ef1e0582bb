"""llama-cpp-python's OpenAI-compatible server, with the CPU backend composerag chooses.

The setup builds llama.cpp with dynamic CPU backends, which plain ``python -m llama_cpp.server``
would search for in the working directory and find nothing (``no backends are loaded``). This
entry point registers the variant first (``cpu_backend``), then hands over to the server with
the same arguments.

Usage::

    python -m compose.generators.llama_server --model MODEL.gguf --port 8000
"""

from __future__ import annotations

import runpy
import sys

from compose.generators.cpu_backend import ensure_cpu_backend


def main() -> None:
    ensure_cpu_backend()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
