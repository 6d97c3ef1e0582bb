"""LoRA adapters shipped with composerag, as llama.cpp GGUF files with their manifests.

``generator.adapter: tuned`` loads ``smollm2-135m-tuned.gguf`` from here (see
``compose.generators.adapters``); each ``<name>.gguf`` has its ``<name>.gguf.json`` beside it.
"""
