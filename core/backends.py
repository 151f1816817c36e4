"""The model-backend contract between plugins and the central model pool.

A backend wraps one model family (llama.cpp GGUF, transformers, diffusers, piper,
faster-whisper…). Plugins register a factory with ``loom_register_backends``; the pool
is the only caller of ``load``/``unload`` and decides when, where and whether a model
may be resident. Requests and results are msgspec structs so a backend can later run in
a worker process or on a remote node without changing this contract.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from .config import ModelConfig


class MemoryEstimate(msgspec.Struct, frozen=True):
    """Bytes a model will hold once loaded, on one device."""

    total: int
    device: str = "cpu"  # "cpu" or "cuda:N"
    breakdown: dict[str, int] = {}  # e.g. {"weights": ..., "kv_cache": ..., "compute": ...}
    source: str = "estimate"  # "estimate", "override" or "measured"


class ModelSpec(msgspec.Struct, frozen=True):
    """What the pool hands a backend: the model's name and its configuration."""

    name: str
    config: ModelConfig

    @property
    def file(self) -> str | None:
        return self.config.file or self.config.files.get("model")


class ModelBackend:
    """Base class for backends. Subclasses implement ``estimate``, ``load`` and ``unload``.

    ``load`` and ``unload`` are synchronous and may take seconds: the pool runs them in a
    worker thread. ``load`` returns a handle (the loaded model object) that tools receive
    from ``pool.use(name)``.
    """

    name: ClassVar[str] = "base"
    #: the device kinds this backend can place a model on
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        raise NotImplementedError

    def load(self, spec: ModelSpec, device: str) -> Any:
        raise NotImplementedError

    def unload(self, handle: Any) -> None:
        """Release everything ``load`` took; after this the memory must be free."""
        raise NotImplementedError

    def offload(self, handle: Any, mode: str) -> bool:
        """Optionally move part of a loaded model to the CPU (``model`` or ``sequential``).

        Returns True when the backend did it. The default backend cannot.
        """
        return False
