"""Serve chat, token counting and embeddings on a loaded ``llama_cpp.Llama``.

The backend's ``run`` calls these in the thread (or worker process) that owns the model;
callers reach them only through ``core.capabilities.Chat``/``Embed``. ``generate`` iterates
llama-cpp-python's own stream (``create_chat_completion(stream=True)``, i.e. the model's
chat template) and ``emit``s each text delta at once, so a slow consumer never slows the
model down. A wrapper on the token loop checks the call's cancel flag after every token
(the library's stream holds back text that may start a stop sequence, so checking only
between chunks could run on for many tokens). One generation runs at a time per model: a
``Llama`` is not thread-safe.

``llama_cpp`` is imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from core.capabilities import (
    CapabilityError,
    ChatDelta,
    ChatRequest,
    ChatResult,
    ChatUsage,
    CountRequest,
    EmbedRequest,
    EmbedResult,
    TokenCount,
    TokenLogprob,
    ToolCallOut,
)

from .speculative import speculating, speculator_for


class LlamaChatError(CapabilityError):
    """A request the loaded model cannot serve (no vision projector, no embeddings...)."""


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
    return schema_grammar(schema, "these tools' schemas; use tool_choice='auto'")


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


def model_lock(llm: Any) -> threading.Lock:
    lock = getattr(llm, "_loom_lock", None)
    if lock is None:
        with _locks_guard:
            lock = getattr(llm, "_loom_lock", None)
            if lock is None:
                lock = threading.Lock()
                llm._loom_lock = lock
    return lock


def _acquire(lock: threading.Lock, cancel: threading.Event) -> bool:
    while not lock.acquire(timeout=0.05):
        if cancel.is_set():
            return False
    return True


# --- building the call ---------------------------------------------------------------


def schema_grammar(schema: dict[str, Any], what: str = "this schema") -> Any:
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter rejects some schema features
        raise LlamaChatError(f"cannot constrain the output to {what} ({exc})") from None


def _response_grammar(fmt: dict[str, Any]) -> Any:
    """A grammar for OpenAI's ``response_format`` (json_object, or json_schema with a schema)."""
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = fmt.get("schema") or {"type": "object"}
        return schema_grammar(schema, "a JSON object")
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise LlamaChatError("response_format json_schema needs json_schema.schema (an object)")
        return schema_grammar(schema, f"the schema {spec.get('name') or ''!s}".strip())
    raise LlamaChatError(f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def prepare(llm: Any, req: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any], list[str] | None]:
    """Messages, ``create_chat_completion`` parameters and tool names for one request."""
    from llama_cpp import LlamaGrammar

    msgs = normalize_messages(llm, req.messages)
    if req.max_tokens is not None and req.max_tokens < 1:
        raise LlamaChatError("max_tokens must be at least 1")
    params: dict[str, Any] = {
        "max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k,
        "seed": req.seed, "stop": list(req.stop), "repeat_penalty": req.repeat_penalty,
        "presence_penalty": req.presence_penalty, "frequency_penalty": req.frequency_penalty,
        **req.options,
    }
    if req.min_p is not None:
        params["min_p"] = req.min_p
    if req.logit_bias:
        params["logit_bias"] = {int(k): float(v) for k, v in req.logit_bias.items()}
    if req.logprobs:
        params["logprobs"] = True
        params["top_logprobs"] = max(0, min(int(req.top_logprobs), 20))
    if req.grammar:
        try:
            params["grammar"] = LlamaGrammar.from_string(req.grammar, verbose=False)
        except Exception as exc:
            raise LlamaChatError(f"the grammar does not parse: {exc}") from None
    if req.response_format is not None:
        grammar = _response_grammar(req.response_format)
        if grammar is not None:
            params["grammar"] = grammar
    names = None
    specs = tool_specs(req.tools) if req.tools else []
    choice = req.tool_choice
    if specs and choice != "none":
        names = [t["function"]["name"] for t in specs]
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            chosen = [t for t in specs if t["function"]["name"] == wanted]
            if not chosen:
                raise LlamaChatError(f"tool_choice names {wanted!r}, which is not among the tools {names}")
            params["grammar"] = tool_call_grammar(chosen)
        elif choice == "required":
            params["grammar"] = tool_call_grammar(specs)
        elif choice != "auto":
            raise LlamaChatError(f"tool_choice must be 'auto', 'required', 'none' or a function, got {choice!r}")
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
    return msgs, params, names


# --- generation ------------------------------------------------------------------------


def generate(llm: Any, req: ChatRequest, emit: Callable[[Any], None], cancel: threading.Event) -> ChatResult:
    """One chat generation, emitting ``ChatDelta``s as text is produced (speculatively decoded
    when the request or the model's config asks for it: see ``speculative``)."""
    t0 = time.perf_counter()
    msgs, params, tool_names = prepare(llm, req)
    lock = model_lock(llm)
    if not _acquire(lock, cancel):
        return ChatResult("", "cancelled", usage=ChatUsage(total_s=time.perf_counter() - t0))
    gate = _TokenGate(llm, cancel, req.max_tokens)
    spec = None if req.logprobs else speculator_for(llm, req.speculative)
    speculation = speculating(llm, spec) if spec is not None else contextlib.nullcontext()
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    unsent = 0  # parts not yet handed over (batching)
    last_post = 0.0
    batch_s = req.batch_s
    first = None
    finish = "stop"
    tool_deltas: dict[int, dict[str, Any]] = {}
    try:
        if cancel.is_set():
            finish = "cancelled"
        else:
            with gate, speculation:
                stream = llm.create_chat_completion(messages=msgs, stream=True, **params)
                try:
                    for chunk in stream:
                        choice = chunk["choices"][0]
                        delta = choice["delta"]
                        text = delta.get("content")
                        if text:
                            parts.append(text)
                            if first is None:
                                first = last_post = time.perf_counter()
                                emit(ChatDelta(text, gate.count))
                            elif not batch_s:
                                emit(ChatDelta(text, gate.count))
                            else:
                                unsent += 1
                                now = time.perf_counter()
                                if now - last_post >= batch_s:
                                    emit(ChatDelta("".join(parts[-unsent:]), gate.count))
                                    unsent, last_post = 0, now
                        if req.logprobs and choice.get("logprobs"):
                            logprobs.extend(_logprobs(choice["logprobs"]))
                        if delta.get("tool_calls"):
                            _merge_tool_deltas(tool_deltas, delta["tool_calls"])
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                        if cancel.is_set():
                            break
                finally:
                    stream.close()
                    if unsent:
                        emit(ChatDelta("".join(parts[-unsent:]), gate.count))
            if cancel.is_set():
                finish = "cancelled"
        end = time.perf_counter()
    except BaseException as exc:
        raise _wrap_error(exc) from None
    finally:
        lock.release()
    completion = gate.count - (1 if gate.ended_on_eog() else 0)
    decode_from = gate.first_at or first
    usage = ChatUsage(
        prompt_tokens=gate.prompt_tokens,
        completion_tokens=completion,
        ttft_s=None if first is None else first - t0,
        total_s=end - t0,
        tokens_per_s=(gate.count - 1) / (end - decode_from)
        if decode_from is not None and gate.count > 1 and end > decode_from else None,
        draft_accepted=spec.accepted if spec is not None else None,
    )
    text = "".join(parts)
    calls = [ToolCallOut(d["name"], _loads(d["arguments"]) or {}, d.get("id", "")) for d in tool_deltas.values()]
    if tool_names is not None and not calls:
        text, calls = parse_tool_calls(text, tool_names)
    if calls and finish != "cancelled":
        finish = "tool_calls"
    return ChatResult(text, finish, calls, usage, logprobs if req.logprobs else None)


def _logprobs(block: Any) -> list[TokenLogprob]:
    """llama-cpp-python's chunk logprobs (OpenAI chat shape or completion shape) as TokenLogprobs."""
    out = []
    content = block.get("content") if isinstance(block, dict) else None
    if isinstance(content, list):
        for item in content:
            out.append(TokenLogprob(token=item.get("token", ""), logprob=float(item.get("logprob", 0.0)),
                                    bytes=item.get("bytes"), top_logprobs=list(item.get("top_logprobs") or [])))
        return out
    tokens = (block or {}).get("tokens") or []
    lps = (block or {}).get("token_logprobs") or []
    tops = (block or {}).get("top_logprobs") or []
    for i, tok in enumerate(tokens):
        top = tops[i] if i < len(tops) and tops[i] else {}
        out.append(TokenLogprob(token=tok, logprob=float(lps[i] if i < len(lps) and lps[i] is not None else 0.0),
                                bytes=list(tok.encode()),
                                top_logprobs=[{"token": k, "logprob": float(v), "bytes": list(k.encode())}
                                              for k, v in top.items()]))
    return out


def count(llm: Any, req: CountRequest) -> TokenCount:
    """Tokens a prompt takes: messages rendered through the chat template, or plain text."""
    with model_lock(llm):
        if req.messages is not None:
            msgs = normalize_messages(llm, req.messages)
            text = _render(llm, msgs)
        else:
            text = req.text or ""
        return TokenCount(len(llm.tokenize(text.encode(), add_bos=req.messages is not None, special=True)))


def _render(llm: Any, msgs: list[dict[str, Any]]) -> str:
    """The prompt text the chat template makes of ``msgs`` (text parts only)."""
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = (llm.metadata or {}).get("tokenizer.chat_template")
        if template:
            fmt = Jinja2ChatFormatter(template=template, eos_token="", bos_token="")
            plain = [{**m, "content": _text_of(m.get("content"))} for m in msgs]
            return fmt(messages=plain).prompt
    except Exception:  # a template the formatter cannot render: count the text alone
        pass
    return "\n".join(f"{m['role']}: {_text_of(m.get('content'))}" for m in msgs)


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


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


def _wrap_error(exc: BaseException) -> BaseException:
    if isinstance(exc, CapabilityError) or not isinstance(exc, Exception):
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


# --- embeddings ----------------------------------------------------------------------


def embeds(llm: Any) -> bool:
    params = getattr(llm, "context_params", None)
    return params is None or bool(getattr(params, "embeddings", False))


def embed(llm: Any, req: EmbedRequest) -> EmbedResult:
    """Sentence embeddings (one vector per text) from a model loaded with ``embedding=True``."""
    if not embeds(llm):
        raise LlamaChatError(
            "this model was not loaded for embeddings: set `options = { embedding = true }` in its "
            "[models.<name>] table (or use the embed role's model)")
    with model_lock(llm):
        vecs = llm.embed(req.texts, normalize=req.normalize)
        tokens = sum(len(llm.tokenize(t.encode(), add_bos=True)) for t in req.texts)
    # Models without a pooling type return one vector per token: mean-pool them.
    out = []
    for v in vecs:
        if v and isinstance(v[0], list):
            dim = len(v[0])
            mean = [sum(row[d] for row in v) / len(v) for d in range(dim)]
            if req.normalize:
                norm = math.sqrt(sum(x * x for x in mean)) or 1.0
                mean = [x / norm for x in mean]
            v = mean
        out.append(v)
    return EmbedResult.from_rows(out, prompt_tokens=tokens)
