"""The model-backend contract between plugins and the central model pool.

A backend wraps one model family (llama.cpp GGUF, transformers, diffusers, piper,
faster-whisper…). Plugins register a factory with ``loom_register_backends``; the pool
is the only caller of ``load``/``unload`` and decides when, where and whether a model
may be resident. Requests and results are msgspec structs so a backend can later run in
a worker process or on a remote node without changing this contract.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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
    cache_dir: str | None = None  # where a backend may keep files derived from the weights

    @property
    def file(self) -> str | None:
        return self.config.file or self.config.files.get("model")


class ModelBackend:
    """Base class for backends. Subclasses implement ``estimate``, ``load`` and ``unload``.

    ``load`` and ``unload`` are synchronous and may take seconds: the pool runs them in a
    worker thread (or in a worker process, see ``core.workers``). ``load`` returns the
    loaded model object; nobody outside the backend ever sees it. Callers get typed
    capability handles (``core.capabilities``) whose operations arrive in ``run``.
    """

    name: ClassVar[str] = "base"
    #: the device kinds this backend can place a model on
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: capability kinds this backend can serve ("chat", "embed", "image", ...)
    capabilities: ClassVar[tuple[str, ...]] = ()
    #: where models go when their config says placement = "auto": "process" for backends that
    #: load native code or big weights (a crash there must not take the daemon down)
    default_placement: ClassVar[str] = "process"

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        raise NotImplementedError

    def load(self, spec: ModelSpec, device: str) -> Any:
        raise NotImplementedError

    def unload(self, handle: Any) -> None:
        """Release everything ``load`` took; after this the memory must be free."""
        raise NotImplementedError

    def describe(self, handle: Any, spec: ModelSpec) -> Any:
        """The loaded model's ``core.capabilities.ModelInfo`` (what it can serve, context size...)."""
        from .capabilities import ModelInfo

        return ModelInfo(name=spec.name, backend=self.name, capabilities=self.capabilities,
                         context_size=spec.config.context_size)

    def run(self, handle: Any, op: str, request: Any, emit: Callable[[Any], None],
            cancel: threading.Event) -> Any:
        """Serve one operation (``"chat.generate"``...) on a loaded model; blocking.

        ``emit`` hands an event (a text delta, progress) to the caller as it happens; check
        ``cancel`` between steps and stop early when it is set.
        """
        from .capabilities import CapabilityError

        raise CapabilityError(f"backend {self.name!r} does not serve {op!r}")

    def offload(self, handle: Any, mode: str) -> bool:
        """Optionally move part of a loaded model to the CPU (``model`` or ``sequential``).

        Returns True when the backend did it. The default backend cannot.
        """
        return False
