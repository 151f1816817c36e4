"""The coder: write, explain and edit code with a coding model, and open files in VS Code.

Tools ``coder.generate``, ``coder.explain``, ``coder.edit`` (destructive: it writes the
file only with ``apply=true`` and the policy's consent) and ``coder.open_in_editor``;
the MCP prompt ``coder.review``. The model is the pool's ``coder`` role (a Qwen3-Coder
GGUF on a GPU box); with none configured, the packaged SmolLM2-135M-Instruct answers.
Settings: ``[plugin.coder]`` (see ``tools.CoderSettings``).
"""

from __future__ import annotations

from typing import Any

from core.hookspecs import hookimpl
from core.tools import object_schema

from . import prompts, tools

# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "llama_cpp", "why": "the coding model runs on llama.cpp",
     "fix": "pip install 'loomd[coder]'"},
    {"check": "binary", "name": "code", "why": "coder.open_in_editor (optional)",
     "fix": "install VS Code, then run 'Shell Command: Install code command in PATH'"},
]


@hookimpl
def loom_register_tools(register: Any) -> None:
    register(tools.generate, read_only=True, title="Generate code",
             output_schema=object_schema(code=str, language=str | None, model=str, finish_reason=str | None,
                                         usage=dict | None))
    register(tools.explain, read_only=True, idempotent=True, title="Explain code or an error",
             output_schema=object_schema(explanation=str, model=str, usage=dict | None))
    register(tools.edit, destructive=True, title="Edit a workspace file",
             output_schema=object_schema(path=str, diff=str, applied=bool, model=str, usage=dict | None))
    register(tools.open_in_editor, read_only=True, idempotent=True, title="Open a file in VS Code")


@hookimpl
def loom_register_prompts(register: Any) -> None:
    register(prompts.review_prompt, name="coder.review",
             description="Review code for bugs, security problems and unclear parts, with fixes.")
