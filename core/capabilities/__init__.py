"""Typed capability handles: the only way callers talk to a loaded model.

``pool.use(name, Chat)`` loads ``name`` (or waits for it), checks that its backend serves
the ``chat`` capability, and yields a ``Chat`` handle; the model stays busy (never evicted)
while the ``async with`` block runs. The handle works the same whatever the model's
placement: a thread of the daemon, a worker process, a Ray actor. Requests and results are
msgspec structs; callers never see a ``llama_cpp.Llama`` or a diffusers pipeline.

Capability kinds (one module each): ``chat`` (``Chat``), ``embed`` (``Embed``), and the
media kinds in ``core.capabilities.media`` (``ImageGen``, ``VideoGen``, ``Speech``,
``Transcription``, ``VisionEmbed``). A backend lists the kinds it can serve in
``capabilities`` and says per loaded model which it does serve (``ModelInfo``).
"""

from .base import (
    CAPABILITIES,
    OPS,
    Capability,
    CapabilityError,
    InlineInvoker,
    Invoker,
    ModelInfo,
    OpSpec,
    OpStream,
    capability,
    operation,
)
from .chat import (
    COUNT,
    GENERATE,
    Chat,
    ChatDelta,
    ChatRequest,
    ChatResult,
    ChatStream,
    ChatUsage,
    CountRequest,
    TokenCount,
    TokenLogprob,
    ToolCallOut,
)
from .embed import EMBED, Embed, EmbedRequest, EmbedResult

__all__ = [
    "CAPABILITIES",
    "COUNT",
    "EMBED",
    "GENERATE",
    "OPS",
    "Capability",
    "CapabilityError",
    "Chat",
    "ChatDelta",
    "ChatRequest",
    "ChatResult",
    "ChatStream",
    "ChatUsage",
    "CountRequest",
    "Embed",
    "EmbedRequest",
    "EmbedResult",
    "InlineInvoker",
    "Invoker",
    "ModelInfo",
    "OpSpec",
    "OpStream",
    "TokenCount",
    "TokenLogprob",
    "ToolCallOut",
    "capability",
    "operation",
]
