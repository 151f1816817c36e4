"""Chat: streamed text generation with tool calls, structured output and token counting.

::

    async with app.pool.use(app.pool.model_for("chat"), Chat) as chat:
        result = await chat.complete([{"role": "user", "content": "hi"}], max_tokens=32)
        async with chat.stream(ChatRequest(messages=..., max_tokens=256), cancel=ctx.cancelled) as s:
            async for delta in s:          # text as it is generated
                ...
        s.result.usage.ttft_s
        many = await chat.sample(ChatRequest(messages=..., temperature=0.8), n=5)
        many.texts                       # five answers to one prompt

Messages are OpenAI-shaped dicts. Content is a string or a list of parts: ``{"type":
"text", "text": ...}``, ``{"type": "image", "data": <bytes>, "mime_type": ...}``, an OpenAI
``image_url`` part with a data: URL, or ``core.results.Image``. Images need a model with
``info.vision``. Remote image URLs are refused: fetch them through the vision plugin's
capped, confined loader and pass the bytes.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from .base import Capability, CapabilityError, OpStream, capability, operation


class ChatUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None  # from the call to the first generated text
    total_s: float = 0.0
    tokens_per_s: float | None = None  # decode speed after the first token
    draft_accepted: int | None = None  # speculative decoding: draft tokens the model kept


class ToolCallOut(msgspec.Struct):
    name: str
    arguments: dict[str, Any]
    id: str = ""

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


class TokenLogprob(msgspec.Struct):
    """One generated token's log-probability and the most likely alternatives (OpenAI's shape)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[dict[str, Any]] = []


class ChatResult(msgspec.Struct):
    text: str
    finish_reason: str  # "stop", "length", "tool_calls", "cancelled" or "error"
    tool_calls: list[ToolCallOut] = []
    usage: ChatUsage = msgspec.field(default_factory=ChatUsage)
    logprobs: list[TokenLogprob] | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message in OpenAI's shape (for the next turn or an HTTP answer)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [t.to_openai() for t in self.tool_calls]
        return msg


class ChatRequest(msgspec.Struct, kw_only=True):
    """One generation. Sampling defaults favour faithful answers; ``temperature=0`` is greedy."""

    messages: list[dict[str, Any]]
    max_tokens: int | None = 512
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    min_p: float | None = None
    seed: int | None = None
    stop: list[str] = []
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    #: OpenAI function tools (or MCP/Loom tool dicts); ``tool_choice`` "auto", "required",
    #: "none" or {"type": "function", "function": {"name": ...}}: the last two are enforced
    #: by constrained decoding, so even a small model produces a well-formed call
    tools: list[dict[str, Any]] = []
    tool_choice: str | dict[str, Any] = "auto"
    #: {"type": "json_object"} or {"type": "json_schema", "json_schema": {"schema": {...}}}
    response_format: dict[str, Any] | None = None
    grammar: str | None = None  # a GBNF grammar, for backends that take one
    logprobs: bool = False
    top_logprobs: int = 0
    #: speculative decoding for this call: None = the model's configured default
    speculative: bool | None = None
    #: > 0: hand text over at most this often after the first delta (fewer loop wake-ups)
    batch_s: float = 0.0
    options: dict[str, Any] = {}  # backend-specific extras


class ChatDelta(msgspec.Struct, frozen=True):
    text: str
    tokens: int = 0  # tokens generated so far (the model may run ahead of the text handed over)


class CountRequest(msgspec.Struct, kw_only=True):
    messages: list[dict[str, Any]] | None = None  # counted through the chat template
    text: str | None = None  # counted as plain text


class TokenCount(msgspec.Struct):
    tokens: int


class SampleRequest(msgspec.Struct, kw_only=True):
    """``n`` answers to one prompt (self-consistency, OpenAI's ``n``). Sample ``i`` is drawn
    with seed ``request.seed + i`` (a random base when ``request.seed`` is None)."""

    request: ChatRequest
    n: int = 2


class SampleResult(msgspec.Struct):
    texts: list[str]
    finish_reasons: list[str]
    #: ``prompt_tokens``: prompt tokens evaluated, all samples together (a shared
    #: evaluation counts once); ``completion_tokens``: tokens generated, all samples together
    usage: ChatUsage = msgspec.field(default_factory=ChatUsage)
    #: how many times the prompt was evaluated: 1 when the samples shared one evaluation
    #: (decoded together, one batch a step), ``n`` when they ran one after another
    prompt_evaluations: int = 1
    #: per sample, the log-probability (natural log) of each token it generated under the
    #: model's own distribution (the softmax of its logits, before temperature, top-k or
    #: top-p): how sure the model was of what it wrote. None where the backend cannot tell
    #: (a sample's entry is None when only that one lacks them).
    logprobs: list[list[float] | None] | None = None

    def mean_logprob(self, i: int = 0) -> float | None:
        """Sample ``i``'s mean token log-probability (None when unknown or empty)."""
        lps = self.logprobs[i] if self.logprobs is not None and i < len(self.logprobs) else None
        return sum(lps) / len(lps) if lps else None

    def min_logprob(self, i: int = 0) -> float | None:
        """Sample ``i``'s least likely token's log-probability (None when unknown or empty)."""
        lps = self.logprobs[i] if self.logprobs is not None and i < len(self.logprobs) else None
        return min(lps) if lps else None


GENERATE = operation("chat.generate", ChatRequest, ChatResult, ChatDelta)
COUNT = operation("chat.count", CountRequest, TokenCount)
SAMPLE = operation("chat.sample", SampleRequest, SampleResult)

#: ``ModelInfo.details`` key a backend sets when it serves ``chat.sample`` itself
PARALLEL_SAMPLES = "parallel_samples"


class ChatStream(OpStream[str, ChatResult]):
    """An ``OpStream`` whose events are the generated text deltas (``str``)."""

    generated = 0  # tokens generated as of the last delta taken

    def _take(self, kind: str, value: Any) -> Any:
        out = super()._take(kind, value)
        if isinstance(out, ChatDelta):
            self.generated = max(self.generated, out.tokens)
            return out.text
        return out

    def drain_text(self) -> str:
        """Text already waiting, joined, without waiting."""
        return "".join(self.drain())


def tool_dicts(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """Tools as plain dicts: OpenAI/MCP dicts stay as they are, Loom ``Tool`` objects become
    ``{"name", "description", "parameters"}`` (so a request can cross a process boundary)."""
    out = []
    for t in tools:
        if not isinstance(t, dict) and hasattr(t, "input_schema") and hasattr(t, "name"):
            t = {"name": t.name, "description": t.description, "parameters": t.input_schema}
        out.append(t)
    return out


def as_request(messages: ChatRequest | Sequence[Any] | str, options: dict[str, Any]) -> ChatRequest:
    stop = options.pop("stop", None)
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop or [])
    if options.get("tools"):
        options["tools"] = tool_dicts(options["tools"])
    if isinstance(messages, ChatRequest):
        return msgspec.structs.replace(messages, **options) if options else messages
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return ChatRequest(messages=list(messages), **options)


def combine_samples(results: Sequence[ChatResult]) -> SampleResult:
    """Samples generated one after another, as one ``SampleResult`` (each evaluated the prompt)."""
    usage = ChatUsage(prompt_tokens=sum(r.usage.prompt_tokens for r in results),
                      completion_tokens=sum(r.usage.completion_tokens for r in results),
                      ttft_s=results[0].usage.ttft_s if results else None,
                      total_s=sum(r.usage.total_s for r in results))
    logprobs = [[t.logprob for t in r.logprobs] if r.logprobs is not None else None for r in results]
    return SampleResult([r.text for r in results], [r.finish_reason for r in results], usage, len(results),
                        logprobs if any(lp is not None for lp in logprobs) else None)


@capability
class Chat(Capability):
    """Text (and, with ``info.vision``, image) chat with the model's own chat template."""

    kind = "chat"

    def stream(self, request: ChatRequest | Sequence[Any] | str, *, cancel: threading.Event | None = None,
               **options: Any) -> ChatStream:
        return ChatStream(self._invoker, GENERATE, as_request(request, options), cancel)

    async def complete(self, request: ChatRequest | Sequence[Any] | str, *,
                       on_delta: Callable[[str], Awaitable[None] | None] | None = None,
                       cancel: threading.Event | None = None, **options: Any) -> ChatResult:
        """One whole answer; ``on_delta`` sees the text as it streams (coalesced)."""
        s = self.stream(request, cancel=cancel, **options)
        async with s:
            async for delta in s:
                if on_delta is not None:
                    delta += s.drain_text()
                    if delta:
                        r = on_delta(delta)
                        if r is not None:
                            await r
        assert s.result is not None
        return s.result

    async def sample(self, request: ChatRequest | Sequence[Any] | str, n: int, *,
                     cancel: threading.Event | None = None, **options: Any) -> SampleResult:
        """``n`` answers to the same prompt. A backend that declares ``parallel_samples`` (llama.cpp)
        evaluates the prompt once and decodes the ``n`` sequences together; others run ``n``
        ordinary generations one after another. Nothing streams: samples are compared whole."""
        if n < 1:
            raise CapabilityError(f"n must be at least 1 (got {n})")
        req = as_request(request, options)
        if req.seed is None:
            req = msgspec.structs.replace(req, seed=random.randrange(2**31 - 64))
        if n > 1 and self.info.details.get(PARALLEL_SAMPLES):
            return await self._call(SAMPLE, SampleRequest(request=req, n=n), cancel=cancel)
        return await self._sample_one_by_one(req, n, cancel)

    async def _sample_one_by_one(self, req: ChatRequest, n: int, cancel: threading.Event | None) -> SampleResult:
        assert req.seed is not None
        results = [await self.complete(msgspec.structs.replace(req, seed=req.seed + i), cancel=cancel)
                   for i in range(n)]
        return combine_samples(results)

    async def count_tokens(self, messages: Sequence[Any] | str) -> int:
        """Tokens the prompt takes: messages through the chat template, a string as plain text."""
        req = CountRequest(text=messages) if isinstance(messages, str) else CountRequest(messages=list(messages))
        result: TokenCount = await self._call(COUNT, req)
        return result.tokens

    @property
    def context_size(self) -> int | None:
        return self.info.context_size

    @property
    def vision(self) -> bool:
        return self.info.vision
