"""Talk to a loaded llama.cpp model: streamed chat, tool calls, embeddings, images.

Every Loom caller that holds a ``llama_cpp.Llama`` (from ``pool.use(name)``) goes
through here, so streaming, cancellation, stop sequences and usage figures behave the
same for the coder, the coordinator and the HTTP surface::

    async with app.pool.use(name) as llm:
        async with stream_chat(llm, messages, max_tokens=256, cancel=ctx.cancelled) as s:
            async for delta in s:
                ...
        s.result.usage.ttft_s

Generation runs in a dedicated worker thread that iterates llama-cpp-python's own
stream (``create_chat_completion(stream=True)``, i.e. the model's chat template) and
hands each delta to the event loop without waiting for it, so a slow consumer never
slows the model down. Between tokens the thread checks a ``threading.Event``; setting
it (or cancelling the consuming task, or leaving the ``async with`` early) closes the
llama stream within a token or two. One generation runs at a time per model: a
``Llama`` is not thread-safe.

``llama_cpp`` is imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import msgspec

from core.tools import ToolError


class LlamaChatError(ToolError):
    """A request the loaded model cannot serve (no vision projector, no embeddings...)."""


class ChatUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None  # from the call to the first generated text
    total_s: float = 0.0
    tokens_per_s: float | None = None  # decode speed after the first token


class ToolCallOut(msgspec.Struct):
    name: str
    arguments: dict[str, Any]
    id: str = ""

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments)}}


class ChatResult(msgspec.Struct):
    text: str
    finish_reason: str  # "stop", "length", "tool_calls" or "cancelled"
    tool_calls: list[ToolCallOut] = []
    usage: ChatUsage = msgspec.field(default_factory=ChatUsage)

    def message(self) -> dict[str, Any]:
        """The assistant message in OpenAI's shape (for the next turn or an HTTP answer)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [t.to_openai() for t in self.tool_calls]
        return msg


# --- messages and images ------------------------------------------------------------

_ROLES = {"system", "user", "assistant", "tool"}


def image_part(data: bytes, mime_type: str = "image/png") -> dict[str, Any]:
    """An OpenAI-style image content part carrying the bytes inline (a data: URL)."""
    return {"type": "image_url",
            "image_url": {"url": f"data:{mime_type};base64,{base64.b64encode(data).decode()}"}}


def has_vision(llm: Any) -> bool:
    """Whether the model was loaded with an mmproj chat handler that can see images."""
    handler = getattr(llm, "chat_handler", None)
    return handler is not None and hasattr(handler, "load_image")


def normalize_messages(llm: Any, messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Check roles and content and turn image parts into inline data: URLs.

    Image parts may be OpenAI ``image_url`` parts with a data: URL, ``{"type": "image",
    "data": bytes, "mime_type": ...}``, or ``core.results.Image``. Remote and file URLs
    are refused: llama-cpp-python would fetch them itself without any guard, so callers
    fetch through the vision plugin's capped, confined loader and pass the bytes.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not messages:
        raise LlamaChatError("no messages to answer: pass at least one {'role': 'user', 'content': ...}")
    out: list[dict[str, Any]] = []
    images = 0
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise LlamaChatError(f"message {i} must be a dict with a role in {sorted(_ROLES)}, got {msg!r:.80}")
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                part = _part(part, i)
                if part["type"] == "image_url":
                    images += 1
                parts.append(part)
            msg = {**msg, "content": parts}
        elif content is not None and not isinstance(content, str):
            raise LlamaChatError(f"message {i}: content must be a string or a list of parts")
        out.append(msg)
    if images and not has_vision(llm):
        raise LlamaChatError(
            "this model cannot see images: it was loaded without a vision projector. Configure a "
            "vision model with its mmproj file, e.g. `loom models add vlm --backend llama_cpp "
            "--file Qwen3-VL-8B.gguf --mmproj mmproj-Qwen3-VL-8B.gguf` (role = \"vlm\")")
    return out


def _part(part: Any, i: int) -> dict[str, Any]:
    from core.results import Image

    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, Image):
        return image_part(part.data, part.mime_type)
    if not isinstance(part, dict):
        raise LlamaChatError(f"message {i}: unsupported content part {part!r:.80}")
    kind = part.get("type")
    if kind == "text":
        return part
    if kind == "image" and isinstance(part.get("data"), bytes | str):
        data = part["data"]
        raw = base64.b64decode(data) if isinstance(data, str) else data
        return image_part(raw, part.get("mime_type") or part.get("mimeType") or "image/png")
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if not isinstance(url, str) or not url.startswith("data:"):
            raise LlamaChatError(
                f"message {i}: image URLs must be inline data: URLs; fetch remote images with the "
                "vision plugin (it caps size and refuses private addresses) and pass the bytes")
        return {"type": "image_url", "image_url": {"url": url}}
    raise LlamaChatError(f"message {i}: unsupported content part type {kind!r}")


# --- tool calling ------------------------------------------------------------------

_TOOL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_XML_FUNC = re.compile(r"<function=([\w.\-]+)>(.*?)</function>", re.S)
_XML_PARAM = re.compile(r"<parameter=([\w.\-]+)>\n?(.*?)\n?</parameter>", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_TOOL_SYSTEM = (
    "You can call these tools:\n{tools}\n\nTo call a tool, answer with only "
    '<tool_call>{{"name": "<tool name>", "arguments": {{...}}}}</tool_call>. '
    "Otherwise answer normally."
)


def tool_specs(tools: Iterable[Any]) -> list[dict[str, Any]]:
    """OpenAI ``tools`` entries from dicts (OpenAI or MCP shape) or Loom ``Tool`` objects."""
    out = []
    for t in tools:
        if hasattr(t, "input_schema") and hasattr(t, "name"):  # core.tools.Tool
            t = {"name": t.name, "description": t.description, "parameters": t.input_schema}
        if not isinstance(t, dict):
            raise LlamaChatError(f"a tool must be a dict with a name and parameters, got {t!r:.80}")
        fn = t.get("function", t)
        if not isinstance(fn.get("name"), str):
            raise LlamaChatError(f"tool without a name: {t!r:.80}")
        params = fn.get("parameters") or fn.get("inputSchema") or fn.get("input_schema") or {"type": "object"}
        out.append({"type": "function", "function": {
            "name": fn["name"], "description": fn.get("description", ""), "parameters": params}})
    return out


def tool_call_grammar(tools: list[dict[str, Any]]) -> Any:
    """A grammar that only admits ``{"name": <one tool>, "arguments": <its schema>}``."""
    from llama_cpp import LlamaGrammar

    choices = []
    defs: dict[str, Any] = {}
    for t in tools:
        params = dict(t["function"]["parameters"])
        defs.update(params.pop("$defs", {}))  # "#/$defs/X" refs must resolve from the new root
        params.setdefault("type", "object")
        params.setdefault("additionalProperties", False)
        choices.append({"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                                         "arguments": params},
                        "required": ["name", "arguments"], "additionalProperties": False})
    schema: dict[str, Any] = choices[0] if len(choices) == 1 else {"anyOf": choices}
    if defs:
        schema = {**schema, "$defs": defs}
    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter rejects some schema features
        raise LlamaChatError(f"cannot constrain the output to these tools' schemas ({exc}); "
                             "use tool_choice='auto'") from None


def parse_tool_calls(text: str, names: Iterable[str] | None = None) -> tuple[str, list[ToolCallOut]]:
    """Find tool calls in a model's answer; returns the remaining text and the calls.

    Understands the formats chat templates teach: Hermes/Qwen ``<tool_call>{json}
    </tool_call>``, Qwen3-Coder ``<tool_call><function=x><parameter=k>v</parameter>``,
    Mistral ``[TOOL_CALLS] [...]``, Llama 3.1 ``<|python_tag|>{json}`` and a bare JSON
    object (or list, or ``{"tool_calls": [...]}``), fenced or not. Calls naming a tool
    outside ``names`` are ignored (left in the text).
    """
    known = set(names) if names is not None else None
    calls: list[ToolCallOut] = []

    def accept(obj: Any) -> bool:
        found = [c for c in _calls_from_json(obj) if known is None or c.name in known]
        calls.extend(found)
        return bool(found)

    rest = text
    if "<tool_call>" in text:
        def block(m: re.Match[str]) -> str:
            body = m.group(1)
            xml = _XML_FUNC.findall(body)
            if xml:
                found = [ToolCallOut(n, {k: _scalar(v) for k, v in _XML_PARAM.findall(b)})
                         for n, b in xml if known is None or n in known]
                calls.extend(found)
                return "" if found else m.group(0)
            return "" if accept(_loads(body)) else m.group(0)
        rest = _TOOL_BLOCK.sub(block, text)
    elif "[TOOL_CALLS]" in text:
        head, _, tail = text.partition("[TOOL_CALLS]")
        rest = head if accept(_loads(tail)) else text
    elif "<|python_tag|>" in text:
        head, _, tail = text.partition("<|python_tag|>")
        rest = head if accept(_loads(tail.replace("<|eom_id|>", ""))) else text
    elif _XML_FUNC.search(text):
        for name, body in _XML_FUNC.findall(text):
            obj = _loads(body)
            if isinstance(obj, dict) and (known is None or name in known):
                calls.append(ToolCallOut(name, obj))
        if calls:
            rest = _XML_FUNC.sub("", text)
    else:
        stripped = text.strip()
        m = _FENCE.match(stripped)
        if m:
            stripped = m.group(1)
        if stripped[:1] in "{[" and accept(_loads(stripped)):
            rest = ""
    for n, c in enumerate(calls):
        if not c.id:
            c.id = f"call_{uuid.uuid4().hex[:12]}_{n}"
    return rest.strip(), calls


def _loads(s: str) -> Any:
    try:
        return json.loads(s.strip())
    except (ValueError, TypeError):
        return None


def _scalar(v: str) -> Any:
    v = v.strip()
    parsed = _loads(v)
    return v if parsed is None and v != "null" else parsed


def _calls_from_json(obj: Any) -> list[ToolCallOut]:
    if isinstance(obj, list):
        return [c for item in obj for c in _calls_from_json(item)]
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get("tool_calls"), list):
        return _calls_from_json(obj["tool_calls"])
    if isinstance(obj.get("function"), dict):  # OpenAI shape
        return [ToolCallOut(c.name, c.arguments, str(obj.get("id") or "")) for c in _calls_from_json(obj["function"])]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args = _loads(args)
    if not isinstance(name, str) or not isinstance(args, dict):
        return []
    return [ToolCallOut(name, args)]


# --- the per-model lock --------------------------------------------------------------

_locks_guard = threading.Lock()


def _model_lock(llm: Any) -> threading.Lock:
    lock = getattr(llm, "_loom_lock", None)
    if lock is None:
        with _locks_guard:
            lock = getattr(llm, "_loom_lock", None)
            if lock is None:
                lock = threading.Lock()
                llm._loom_lock = lock
    return lock


# --- streaming chat ------------------------------------------------------------------


class ChatStream:
    """An async iterator of text deltas from one generation; ``result`` once it ends.

    Use it as an async context manager: leaving early (break, error, cancellation)
    stops the model and waits until the worker thread has let go of it, so the pool may
    unload the model right after.
    """

    def __init__(self, llm: Any, messages: list[dict[str, Any]], params: dict[str, Any],
                 cancel: threading.Event | None, tool_names: list[str] | None, batch_s: float = 0.0) -> None:
        self.llm = llm
        self.cancel = cancel if cancel is not None else threading.Event()
        self.result: ChatResult | None = None
        self._messages = messages
        self._params = params
        self._tool_names = tool_names
        self._batch_s = batch_s
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, Any]](math.inf)
        self._done = threading.Event()
        self._gate: _TokenGate | None = None
        self._started = False
        self._t0 = time.perf_counter()

    @property
    def generated(self) -> int:
        """Tokens the model has produced so far (it runs ahead of the deltas consumed)."""
        return self._gate.count if self._gate is not None else 0

    # -- consumer side (event loop) --

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        post = _poster(self._send)
        threading.Thread(target=self._run, args=(post,), name="loom-llama", daemon=True).start()

    def __aiter__(self) -> AsyncIterator[str]:
        self._start()
        return self

    async def __anext__(self) -> str:
        if self.result is not None:
            raise StopAsyncIteration
        try:
            kind, value = await self._receive.receive()
        except anyio.get_cancelled_exc_class():
            self.cancel.set()
            raise
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        if kind == "delta":
            return value
        if kind == "error":
            self.result = ChatResult("", "error")
            raise value
        self.result = value
        raise StopAsyncIteration

    def drain(self) -> str:
        """Every delta already waiting, joined, without waiting (for coalescing)."""
        parts = []
        while True:
            try:
                kind, value = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            if kind == "delta":
                parts.append(value)
            else:
                self.result = value if kind == "done" else ChatResult("", "error")
                if kind == "error":
                    raise value
                break
        return "".join(parts)

    async def collect(self, on_delta: Callable[[str], Awaitable[None] | None] | None = None) -> ChatResult:
        """Run to the end; ``on_delta`` sees coalesced text as it arrives."""
        async with self:
            async for delta in self:
                if on_delta is not None:
                    delta += self.drain()
                    if delta:
                        r = on_delta(delta)
                        if r is not None:
                            await r
        assert self.result is not None
        return self.result

    async def __aenter__(self) -> ChatStream:
        self._start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop generating (if still running) and wait for the thread to let go."""
        if not self._started:
            return
        with anyio.CancelScope(shield=True):
            if self.result is None:
                self.cancel.set()
                while self.result is None:
                    kind, value = await self._receive.receive()
                    if kind == "done":
                        self.result = value
                    elif kind == "error":
                        self.result = ChatResult("", "error")
            if not self._done.is_set():
                await anyio.to_thread.run_sync(self._done.wait)

    # -- producer side (worker thread) --

    def _run(self, post: Callable[[tuple[str, Any]], None]) -> None:
        try:
            post(("done", self._generate(post)))
        except BaseException as exc:  # handed to the consumer, raised there
            post(("error", _wrap_error(exc)))
        finally:
            self._done.set()

    def _generate(self, post: Callable[[tuple[str, Any]], None]) -> ChatResult:
        llm, cancel = self.llm, self.cancel
        lock = _model_lock(llm)
        while not lock.acquire(timeout=0.05):
            if cancel.is_set():
                return ChatResult("", "cancelled", usage=ChatUsage(total_s=time.perf_counter() - self._t0))
        gate = self._gate = _TokenGate(llm, cancel, self._params.get("max_tokens"))
        parts: list[str] = []
        unsent = 0  # parts not yet handed to the loop (batching)
        last_post = 0.0
        batch_s = self._batch_s
        first = None
        finish = "stop"
        tool_deltas: dict[int, dict[str, Any]] = {}
        try:
            if cancel.is_set():
                finish = "cancelled"
            else:
                with gate:
                    stream = llm.create_chat_completion(messages=self._messages, stream=True, **self._params)
                    try:
                        for chunk in stream:
                            choice = chunk["choices"][0]
                            delta = choice["delta"]
                            text = delta.get("content")
                            if text:
                                parts.append(text)
                                if first is None:
                                    first = last_post = time.perf_counter()
                                    post(("delta", text))
                                elif not batch_s:
                                    post(("delta", text))
                                else:
                                    unsent += 1
                                    now = time.perf_counter()
                                    if now - last_post >= batch_s:
                                        post(("delta", "".join(parts[-unsent:])))
                                        unsent, last_post = 0, now
                            if delta.get("tool_calls"):
                                _merge_tool_deltas(tool_deltas, delta["tool_calls"])
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
                            if cancel.is_set():
                                break
                    finally:
                        stream.close()
                        if unsent:
                            post(("delta", "".join(parts[-unsent:])))
                if cancel.is_set():
                    finish = "cancelled"
            end = time.perf_counter()
        finally:
            lock.release()
        completion = gate.count - (1 if gate.ended_on_eog() else 0)
        decode_from = gate.first_at or first
        usage = ChatUsage(
            prompt_tokens=gate.prompt_tokens,
            completion_tokens=completion,
            ttft_s=None if first is None else first - self._t0,
            total_s=end - self._t0,
            tokens_per_s=(gate.count - 1) / (end - decode_from)
            if decode_from is not None and gate.count > 1 and end > decode_from else None,
        )
        text = "".join(parts)
        calls = [ToolCallOut(d["name"], _loads(d["arguments"]) or {}, d.get("id", ""))
                 for d in tool_deltas.values()]
        if self._tool_names is not None and not calls:
            text, calls = parse_tool_calls(text, self._tool_names)
        if calls and finish != "cancelled":
            finish = "tool_calls"
        return ChatResult(text, finish, calls, usage)


class _TokenGate:
    """Wraps ``llm.generate`` for one call: counts tokens and stops at the next token once
    ``cancel`` is set.

    llama-cpp-python's stream does not yield a chunk for every token (it holds back text
    that may be the start of a stop sequence or of a multi-byte character), so checking
    only between chunks could let a cancelled call run on for many tokens. The wrapper
    sits on the token loop itself; leaving it ends the completion as if by length. It
    also enforces ``max_tokens`` exactly (the library's own check is skipped while it holds
    back a partial character).
    """

    def __init__(self, llm: Any, cancel: threading.Event, limit: int | None = None) -> None:
        self.llm = llm
        self.cancel = cancel
        self.limit = limit if limit and limit > 0 else None
        self.count = 0
        self.prompt_tokens = 0
        self.first_at: float | None = None
        self.last: int | None = None

    def __enter__(self) -> _TokenGate:
        original = self.llm.generate
        cancel, limit = self.cancel, self.limit

        def generate(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Any:
            self.prompt_tokens = len(tokens)
            inner = original(tokens, *args, **kwargs)
            try:
                for token in inner:
                    if self.first_at is None:
                        self.first_at = time.perf_counter()
                    self.count += 1
                    self.last = token
                    yield token
                    if cancel.is_set() or (limit is not None and self.count >= limit):
                        return
            finally:
                inner.close()

        self.llm.generate = generate  # an instance attribute shadows the method for this call only
        return self

    def __exit__(self, *exc: Any) -> None:
        self.llm.__dict__.pop("generate", None)

    def ended_on_eog(self) -> bool:
        """Whether the last sampled token was end-of-generation (not part of the answer)."""
        if self.last is None:
            return False
        try:
            import llama_cpp

            return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, self.last))
        except (AttributeError, ImportError):
            return self.last == self.llm.token_eos()


def _merge_tool_deltas(acc: dict[int, dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    for d in deltas:
        slot = acc.setdefault(d.get("index", len(acc)), {"name": "", "arguments": "", "id": ""})
        fn = d.get("function") or {}
        slot["id"] = d.get("id") or slot["id"]
        slot["name"] += fn.get("name") or ""
        slot["arguments"] += fn.get("arguments") or ""


def _poster(send: Any) -> Callable[[tuple[str, Any]], None]:
    """A thread-side function that hands an item to the loop without waiting for it."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): hand over through anyio, waiting each time
        loop = None
    if loop is not None:

        def post(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(send.send_nowait, item)
            except RuntimeError:
                pass  # the loop is closed: nobody is listening any more

        return post
    token = anyio.lowlevel.current_token()

    def post_blocking(item: tuple[str, Any]) -> None:
        try:
            anyio.from_thread.run_sync(send.send_nowait, item, token=token)
        except RuntimeError:
            pass

    return post_blocking


def _wrap_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ToolError):
        return exc
    msg = str(exc)
    if isinstance(exc, ValueError) and ("context window" in msg or "exceeds n_ctx" in msg):
        return LlamaChatError(f"the conversation is too long for this model's context: {msg}; shorten it "
                              "or raise context_size in the model's config")
    if isinstance(exc, RuntimeError) and "llama_decode" in msg:
        return LlamaChatError(f"llama.cpp failed while generating ({msg}); the context may be full: shorten "
                              "the conversation or raise context_size")
    if isinstance(exc, ValueError | KeyError | TypeError):
        return LlamaChatError(f"the model could not format or answer this request: {type(exc).__name__}: {msg}")
    return exc


def stream_chat(
    llm: Any,
    messages: Sequence[Any] | str,
    *,
    max_tokens: int | None = 512,
    temperature: float = 0.2,
    top_p: float = 0.95,
    top_k: int = 40,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    repeat_penalty: float = 1.0,
    tools: Iterable[Any] | None = None,
    tool_choice: str | dict[str, Any] = "auto",
    response_format: dict[str, Any] | None = None,
    cancel: threading.Event | None = None,
    batch_s: float = 0.0,
    **extra: Any,
) -> ChatStream:
    """Start a chat generation with the model's own chat template; see ``ChatStream``.

    ``tools`` are OpenAI-style (or MCP/Loom) tool descriptions. With ``tool_choice``
    ``"auto"`` the model may answer or call; ``"required"`` or ``{"type": "function",
    "function": {"name": ...}}`` constrain the output with a grammar so even a small
    model produces a well-formed call; ``"none"`` hides the tools. Calls are parsed into
    ``result.tool_calls``.

    ``batch_s`` > 0 hands text over at most that often after the first delta (the rest
    waits in the worker): fewer wake-ups of the event loop for consumers that do not need
    every token on its own, such as progress notifications.
    """
    msgs = normalize_messages(llm, messages)
    if max_tokens is not None and max_tokens < 1:
        raise LlamaChatError("max_tokens must be at least 1")
    params: dict[str, Any] = {
        "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
        "seed": seed, "stop": [stop] if isinstance(stop, str) else list(stop or []),
        "repeat_penalty": repeat_penalty, **extra,
    }
    if response_format is not None:
        params["response_format"] = response_format
    names = None
    specs = tool_specs(tools) if tools else []
    if specs and tool_choice != "none":
        names = [t["function"]["name"] for t in specs]
        if isinstance(tool_choice, dict):
            wanted = (tool_choice.get("function") or {}).get("name")
            specs_for_grammar = [t for t in specs if t["function"]["name"] == wanted]
            if not specs_for_grammar:
                raise LlamaChatError(f"tool_choice names {wanted!r}, which is not among the tools {names}")
            params["grammar"] = tool_call_grammar(specs_for_grammar)
        elif tool_choice == "required":
            params["grammar"] = tool_call_grammar(specs)
        elif tool_choice != "auto":
            raise LlamaChatError(f"tool_choice must be 'auto', 'required', 'none' or a function, got {tool_choice!r}")
        template = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template", "")
        if "tools" in template and getattr(llm, "chat_handler", None) is None:
            params["tools"] = specs
        else:  # the template cannot show tools: describe them in a system message
            listing = "\n".join(json.dumps(t["function"]) for t in specs)
            note = {"role": "system", "content": _TOOL_SYSTEM.format(tools=listing)}
            if msgs[0]["role"] == "system" and isinstance(msgs[0].get("content"), str):
                msgs[0] = {**msgs[0], "content": msgs[0]["content"] + "\n\n" + note["content"]}
            else:
                msgs.insert(0, note)
    return ChatStream(llm, msgs, params, cancel, names, batch_s)


async def chat(
    llm: Any,
    messages: Sequence[Any] | str,
    *,
    on_delta: Callable[[str], Awaitable[None] | None] | None = None,
    **options: Any,
) -> ChatResult:
    """One whole answer (``on_delta`` sees text as it streams); options as ``stream_chat``."""
    return await stream_chat(llm, messages, **options).collect(on_delta)


# --- embeddings ----------------------------------------------------------------------


async def embed(llm: Any, texts: str | Sequence[str], *, normalize: bool = True) -> list[list[float]]:
    """Sentence embeddings (one vector per text) from a model loaded with ``embedding=True``."""
    batch = [texts] if isinstance(texts, str) else list(texts)
    if not batch or not all(isinstance(t, str) for t in batch):
        raise LlamaChatError("embed needs a string or a non-empty list of strings")
    params = getattr(llm, "context_params", None)
    if params is not None and not getattr(params, "embeddings", False):
        raise LlamaChatError(
            "this model was not loaded for embeddings: set `options = { embedding = true }` in its "
            "[models.<name>] table (or use the embed role's model)")

    def run() -> list[list[float]]:
        with _model_lock(llm):
            vecs = llm.embed(batch, normalize=normalize)
        # Models without a pooling type return one vector per token: mean-pool them.
        out = []
        for v in vecs:
            if v and isinstance(v[0], list):
                dim = len(v[0])
                mean = [sum(row[d] for row in v) / len(v) for d in range(dim)]
                if normalize:
                    norm = math.sqrt(sum(x * x for x in mean)) or 1.0
                    mean = [x / norm for x in mean]
                v = mean
            out.append(v)
        return out

    return await anyio.to_thread.run_sync(run)
