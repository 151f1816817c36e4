"""Ollama's native API on the daemon's port, for the apps and editor plugins that speak only it.

Point an Ollama client at Loom (``OLLAMA_HOST=http://127.0.0.1:8765``) with Loom's token as
a bearer header (``ollama.Client(host=..., headers={"Authorization": "Bearer ..."})``):

* ``POST /api/chat`` and ``/api/generate``: streamed NDJSON (the default) or one JSON answer;
  ``options`` (temperature, top_p, top_k, min_p, seed, num_predict, stop, repeat_penalty,
  presence/frequency_penalty), ``format`` ("json" or a JSON schema, enforced by constrained
  decoding), ``tools`` (tool calls come back in ``message.tool_calls``), ``images`` (base64,
  for a vision model), ``keep_alive`` ("5m", seconds, 0 unloads after the request, negative
  keeps the model). A ``generate`` with an empty prompt loads the model (or, with
  ``keep_alive`` 0, unloads it), as Ollama does.
* ``POST /api/embed`` (``input`` a string or a list) and the older ``/api/embeddings``.
* ``GET /api/tags`` (the configured models), ``GET /api/ps`` (the loaded ones),
  ``POST /api/show``, ``GET /api/version``.
* ``POST /api/pull`` downloads through ``core.pull`` when it is installed (``loom pull``);
  ``DELETE /api/delete`` removes a pulled model. ``create``/``copy``/``push`` answer 501:
  Loom's models are configured in loom.toml, not built from Modelfiles.

Names may carry Ollama's ``:latest`` tag (``smollm2:latest`` is ``smollm2``). Errors are
Ollama's ``{"error": "..."}`` with the HTTP status. Model calls go through the pool's
capability handles and the same per-model queue as the OpenAI API.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from core.capabilities import Chat, ChatResult, Embed
from core.tools import ToolError
from core.units import parse_duration

from .http import api_endpoint
from .ops import DaemonOps, QueueFull
from .tool_stream import ToolTextStream

#: the Ollama API version clients see (they gate features on it)
VERSION = "0.12.0"


class OllamaError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message}, status_code=self.status)


class Message(msgspec.Struct, kw_only=True):
    role: str
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class ChatBody(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Message] = []
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = {}
    keep_alive: str | int | float | None = None
    tools: list[dict[str, Any]] | None = None
    think: bool | str | None = None


class GenerateBody(msgspec.Struct, kw_only=True):
    model: str
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    images: list[str] | None = None
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = {}
    keep_alive: str | int | float | None = None
    raw: bool = False
    template: str | None = None
    context: list[int] | None = None
    think: bool | str | None = None


class EmbedBody(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[str] = ""
    prompt: str | None = None  # /api/embeddings
    truncate: bool = True
    options: dict[str, Any] = {}
    keep_alive: str | int | float | None = None


class NameBody(msgspec.Struct, kw_only=True):
    model: str | None = None
    name: str | None = None
    stream: bool = True
    insecure: bool = False
    verbose: bool = False

    def which(self) -> str:
        found = self.model or self.name
        if not found:
            raise OllamaError(400, "model is required")
        return found


# Ollama option -> ChatRequest field
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "seed": "seed",
            "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "stop": "stop"}
# accepted and ignored: they tune llama.cpp's context, which Loom's config owns
_IGNORED = {"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "use_mlock", "numa",
            "num_keep", "typical_p", "repeat_last_n", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta",
            "penalize_newline", "low_vram", "f16_kv", "vocab_only"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or time.time(), UTC).isoformat().replace("+00:00", "Z")


def _decode(body: bytes, type_: type[Any]) -> Any:
    if not body.strip():
        raise OllamaError(400, "missing request body")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise OllamaError(400, f"invalid request: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise OllamaError(400, "invalid JSON in the request body") from None


def _images(items: list[str] | None) -> list[dict[str, Any]]:
    parts = []
    for i, item in enumerate(items or []):
        if not isinstance(item, str):
            raise OllamaError(400, f"images[{i}] must be a base64 string")
        try:
            data = base64.b64decode(item.split(",", 1)[-1] if item.startswith("data:") else item, validate=True)
        except (binascii.Error, ValueError):
            raise OllamaError(400, f"images[{i}] is not valid base64") from None
        parts.append({"type": "image", "data": data, "mime_type": "image/png"})
    return parts


def _message(m: Message) -> dict[str, Any]:
    if m.role not in ("system", "user", "assistant", "tool"):
        raise OllamaError(400, f"unknown message role {m.role!r} (system, user, assistant or tool)")
    out: dict[str, Any] = {"role": m.role}
    images = _images(m.images)
    out["content"] = [{"type": "text", "text": m.content}, *images] if images else m.content
    if m.tool_calls:
        out["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                              "function": {"name": (c.get("function") or {}).get("name", ""),
                                           "arguments": json.dumps((c.get("function") or {}).get("arguments", {}))}}
                             for i, c in enumerate(m.tool_calls)]
    if m.tool_name:
        out["name"] = m.tool_name
    return out


def _options(options: dict[str, Any], fmt: str | dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key == "num_predict":
            if not isinstance(value, int) or isinstance(value, bool):
                raise OllamaError(400, "options.num_predict must be an integer")
            out["max_tokens"] = None if value < 0 else max(value, 1)
        elif key in _OPTIONS:
            out[_OPTIONS[key]] = value
        elif key not in _IGNORED:
            raise OllamaError(400, f"unknown option {key!r}")
    out.setdefault("max_tokens", 1024)
    out.setdefault("temperature", 0.8)  # Ollama's default
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    elif fmt not in (None, ""):
        raise OllamaError(400, "format must be \"json\" or a JSON schema object")
    return out


def _keep_alive(value: str | int | float | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise OllamaError(400, f"keep_alive: {exc}") from None


def _tool_calls(result: ChatResult) -> list[dict[str, Any]]:
    return [{"function": {"name": c.name, "arguments": c.arguments}} for c in result.tool_calls]


def _stats(result: ChatResult, started: float, load_s: float) -> dict[str, Any]:
    u = result.usage
    total = time.perf_counter() - started
    ttft = u.ttft_s or 0.0
    return {
        "done_reason": {"cancelled": "stop", "tool_calls": "stop"}.get(result.finish_reason, result.finish_reason),
        "total_duration": int(total * 1e9), "load_duration": int(load_s * 1e9),
        "prompt_eval_count": u.prompt_tokens, "prompt_eval_duration": int(ttft * 1e9),
        "eval_count": u.completion_tokens, "eval_duration": int(max(u.total_s - ttft, 0.0) * 1e9),
    }


class OllamaSurface:
    def __init__(self, app: Any, ops: DaemonOps) -> None:
        self.app = app
        self.ops = ops

    def routes(self) -> list[BaseRoute]:
        r = self._wrap
        return [
            Route("/api/version", r(self.version), methods=["GET"]),
            Route("/api/tags", r(self.tags), methods=["GET"]),
            Route("/api/ps", r(self.ps), methods=["GET"]),
            Route("/api/show", r(self.show), methods=["POST"]),
            Route("/api/chat", r(self.chat), methods=["POST"]),
            Route("/api/generate", r(self.generate), methods=["POST"]),
            Route("/api/embed", r(self.embed), methods=["POST"]),
            Route("/api/embeddings", r(self.embeddings), methods=["POST"]),
            Route("/api/pull", r(self.pull), methods=["POST"]),
            Route("/api/delete", r(self.delete), methods=["DELETE"]),
            *(Route(f"/api/{verb}", r(self.unsupported), methods=["POST"]) for verb in ("create", "copy", "push")),
        ]

    def _wrap(self, handler: Any) -> Any:
        def on_error(exc: Exception) -> Response:
            if isinstance(exc, OllamaError):
                return exc.response()
            if isinstance(exc, QueueFull):
                return OllamaError(429, str(exc)).response()
            if isinstance(exc, ToolError):
                return OllamaError(400, str(exc)).response()
            raise exc

        return api_endpoint(handler, self.ops.draining, on_error=on_error, shutting_down=lambda: OllamaError(
            503, "the daemon is shutting down; retry shortly").response())

    async def _body(self, request: Request) -> bytes:
        body = await request.body()
        if len(body) > self.app.config.server.max_body_bytes:
            raise OllamaError(413, "request body too large")
        return body

    # -- models --

    def _resolve(self, name: str) -> str:
        models = self.app.pool.models()
        plain = name.removesuffix(":latest")
        if plain in models:
            return plain
        known = ", ".join(f"{n}:latest" for n in sorted(models)) or "none"
        raise OllamaError(404, f"model '{name}' not found (available: {known}; configure models under "
                               f"[models.<name>] in loom.toml or run `loom pull`)")

    def _serves(self, name: str, kind: str) -> bool:
        cfg = self.app.pool.config_for(name)
        backend = self.app.backends.get(cfg.backend) and self.app.pool.backend(cfg.backend)
        serves = getattr(backend, "capabilities", ()) if backend else ()
        if kind == "chat" and cfg.options.get("embedding"):
            return False
        return kind in serves

    def _details(self, name: str) -> dict[str, Any]:
        cfg = self.app.pool.config_for(name)
        quant = ""
        if cfg.file and "." in cfg.file:
            stem = cfg.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            quant = stem.rsplit(".", 1)[-1] if "." in stem else ""
        return {"parent_model": "", "format": "gguf" if cfg.backend == "llama_cpp" else cfg.backend,
                "family": cfg.backend, "families": [cfg.backend], "parameter_size": "",
                "quantization_level": quant.upper() if quant.lower().startswith(("q", "f", "bf")) else ""}

    def _entry(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        size = status.get("measured") or status.get("estimate") or 0
        return {"name": f"{name}:latest", "model": f"{name}:latest", "modified_at": _iso(self.ops.started_at),
                "size": int(size), "digest": hashlib.sha256(name.encode()).hexdigest(),
                "details": self._details(name)}

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": VERSION})

    async def tags(self, request: Request) -> Response:
        pool = self.app.pool
        return JSONResponse({"models": [self._entry(n, pool.model_status(n)) for n in sorted(pool.models())]})

    async def ps(self, request: Request) -> Response:
        pool = self.app.pool
        out = []
        for name in sorted(pool.models()):
            st = pool.model_status(name)
            if st.get("state") != "ready":
                continue
            left = st.get("keep_alive_remaining")
            expires = time.time() + (left if left is not None else 10 * 365 * 86400)
            entry = self._entry(name, st)
            entry.update(expires_at=_iso(expires),
                         size_vram=int(st.get("reserved") or 0) if str(st.get("device", "")).startswith("cuda")
                         else 0)
            out.append(entry)
        return JSONResponse({"models": out})

    async def show(self, request: Request) -> Response:
        name = self._resolve(_decode(await self._body(request), NameBody).which())
        cfg = self.app.pool.config_for(name)
        caps = []
        if self._serves(name, "chat"):
            caps += ["completion", "tools"]
            if cfg.mmproj:
                caps.append("vision")
        if self._serves(name, "embed"):
            caps.append("embedding")
        params = "\n".join(f"{k} {v}" for k, v in sorted(cfg.options.items()))
        return JSONResponse({
            "modelfile": f"# Loom model {name}: configured in loom.toml\nFROM {cfg.file or ''}\n",
            "parameters": params, "template": "{{ .Prompt }}", "details": self._details(name),
            "model_info": {"general.architecture": cfg.backend, "loom.role": cfg.role, "loom.placement": cfg.placement,
                           "loom.context_size": cfg.context_size},
            "capabilities": caps, "modified_at": _iso(self.ops.started_at),
        })

    async def pull(self, request: Request) -> Response:
        body = _decode(await self._body(request), NameBody)
        try:
            from core import pull as pulling  # the CLI's downloader, when this build has it
        except ImportError:
            raise OllamaError(501, "this Loom cannot download models; configure them under [models.<name>] in "
                                   "loom.toml") from None
        runner = getattr(pulling, "pull_for_api", None)
        if runner is None:
            raise OllamaError(501, "pulling over the API is not available in this build; run `loom pull "
                                   f"{body.which()}` on the daemon's machine")
        return await runner(self.app, body.which(), stream=body.stream)

    async def delete(self, request: Request) -> Response:
        name = self._resolve(_decode(await self._body(request), NameBody).which())
        try:
            from core import pull as pulling
        except ImportError:
            pulling = None
        remover = getattr(pulling, "remove_for_api", None)
        if remover is None:
            raise OllamaError(400, f"model {name!r} is configured in loom.toml: remove its [models.{name}] block "
                                   "to delete it (Loom deletes only models it pulled)")
        return await remover(self.app, name)

    async def unsupported(self, request: Request) -> Response:
        verb = request.url.path.rsplit("/", 1)[-1]
        raise OllamaError(501, f"/api/{verb} is not supported: Loom's models are configured in loom.toml "
                               "(see `loom models add` and `loom pull`)")

    # -- generation --

    async def _ensure(self, name: str) -> float:
        """Load ``name`` if needed; returns the seconds the load took (0 when resident)."""
        if self.app.pool.model_status(name).get("state") == "ready":
            return 0.0
        t0 = time.perf_counter()
        await self.app.pool.load(name, reason="requested over the Ollama API")
        return time.perf_counter() - t0

    async def chat(self, request: Request) -> Response:
        body: ChatBody = _decode(await self._body(request), ChatBody)
        name = self._resolve(body.model)
        keep = _keep_alive(body.keep_alive)
        if not body.messages:  # Ollama: an empty chat loads (or with keep_alive 0 unloads) the model
            return await self._load_only(name, keep, {"message": {"role": "assistant", "content": ""}})
        if not self._serves(name, "chat"):
            raise OllamaError(400, f"model {name!r} does not support chat")
        messages = [_message(m) for m in body.messages]
        options = _options(body.options, body.format)
        if body.tools:
            options["tools"] = body.tools
        return await self._run(name, messages, options, keep, body.stream, chat_shape=True)

    async def generate(self, request: Request) -> Response:
        body: GenerateBody = _decode(await self._body(request), GenerateBody)
        name = self._resolve(body.model)
        keep = _keep_alive(body.keep_alive)
        if not body.prompt and not body.images:
            return await self._load_only(name, keep, {"response": ""})
        if not self._serves(name, "chat"):
            raise OllamaError(400, f"model {name!r} does not support generate")
        content: Any = body.prompt
        images = _images(body.images)
        if images:
            content = [{"type": "text", "text": body.prompt}, *images]
        messages = ([{"role": "system", "content": body.system}] if body.system else []) + \
            [{"role": "user", "content": content}]
        return await self._run(name, messages, _options(body.options, body.format), keep, body.stream,
                               chat_shape=False)

    async def _load_only(self, name: str, keep: float | None, shape: dict[str, Any]) -> Response:
        reason = "load"
        if keep == 0:
            await self.app.pool.unload(name)
            reason = "unload"
        else:
            await self._ensure(name)
            if keep is not None:
                await self.app.pool.set_keep_alive(name, keep)
        return JSONResponse({"model": f"{name}:latest", "created_at": _now_iso(), **shape, "done": True,
                             "done_reason": reason})

    async def _run(self, name: str, messages: list[dict[str, Any]], options: dict[str, Any], keep: float | None,
                   stream: bool, *, chat_shape: bool) -> Response:
        queue = self.ops.queue
        queue.check(name)
        started = time.perf_counter()
        tagged = f"{name}:latest"
        tools = bool(options.get("tools"))

        def piece(text: str) -> dict[str, Any]:
            if chat_shape:
                return {"model": tagged, "created_at": _now_iso(), "message": {"role": "assistant", "content": text},
                        "done": False}
            return {"model": tagged, "created_at": _now_iso(), "response": text, "done": False}

        def final(result: ChatResult, load_s: float, text: str) -> dict[str, Any]:
            out = piece(text)
            if chat_shape and result.tool_calls:
                out["message"]["tool_calls"] = _tool_calls(result)
            out.update(done=True, **_stats(result, started, load_s))
            return out

        if not stream:
            async with queue.slot(name):
                load_s = await self._ensure(name)
                async with self.app.pool.use(name, Chat, reason="chat over the Ollama API") as chat:
                    result = await chat.complete(messages, **options)
                    if keep is not None:
                        await self.app.pool.set_keep_alive(name, keep)
            if result.finish_reason == "error":
                raise OllamaError(500, "generation failed")
            return JSONResponse(final(result, load_s, result.text))

        async def lines() -> AsyncIterator[bytes]:
            ticket = queue.enter(name)
            try:
                while not ticket.granted:
                    await ticket.wait(1.0)
                load_s = await self._ensure(name)
                async with self.app.pool.use(name, Chat, reason="chat over the Ollama API") as chat:
                    # With tools the text may be a call: prose streams, a call waits until it is parsed.
                    calls = ToolTextStream() if tools else None
                    async with chat.stream(messages, **options) as s:
                        async for delta in s:
                            delta += s.drain_text()
                            if calls is not None:
                                delta = calls.feed(delta)
                            if delta:
                                yield _line(piece(delta))
                    result = s.result
                    if keep is not None:
                        await self.app.pool.set_keep_alive(name, keep)
                assert result is not None
                rest = calls.finish(result.text) if calls is not None else ""
                if rest:
                    yield _line(piece(rest))
                yield _line(final(result, load_s, ""))
            except Exception as exc:  # the status line is sent: the error goes in the stream
                yield _line({"error": str(exc) or type(exc).__name__})
            finally:
                queue.leave(ticket)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    # -- embeddings --

    async def _embed(self, name: str, texts: list[str], keep: float | None) -> tuple[list[list[float]], int, float]:
        if not self._serves(name, "embed"):
            raise OllamaError(400, f"model {name!r} does not support embeddings (for a llama.cpp model set "
                                   "options = { embedding = true } in its [models.*] table)")
        load_s = await self._ensure(name)
        async with self.app.pool.use(name, Embed, reason="embeddings over the Ollama API") as embedder:
            result = await embedder.embed_result(texts)
            if keep is not None:
                await self.app.pool.set_keep_alive(name, keep)
        tokens = result.prompt_tokens if result.prompt_tokens is not None else sum(len(t.split()) for t in texts)
        return result.rows(), tokens, load_s

    async def embed(self, request: Request) -> Response:
        body: EmbedBody = _decode(await self._body(request), EmbedBody)
        name = self._resolve(body.model)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise OllamaError(400, "input must be a string or a non-empty list of strings")
        t0 = time.perf_counter()
        vectors, tokens, load_s = await self._embed(name, texts, _keep_alive(body.keep_alive))
        return JSONResponse({"model": f"{name}:latest", "embeddings": vectors,
                             "total_duration": int((time.perf_counter() - t0) * 1e9),
                             "load_duration": int(load_s * 1e9), "prompt_eval_count": tokens})

    async def embeddings(self, request: Request) -> Response:
        body: EmbedBody = _decode(await self._body(request), EmbedBody)
        name = self._resolve(body.model)
        if body.prompt is None:
            raise OllamaError(400, "prompt is required")
        vectors, _, _ = await self._embed(name, [body.prompt], _keep_alive(body.keep_alive))
        return JSONResponse({"embedding": vectors[0]})


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"
