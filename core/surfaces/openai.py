"""The OpenAI-compatible HTTP API, on the same app, port and bearer token as MCP.

Apps written for the OpenAI SDK (or Ollama's / LocalAI's OpenAI endpoints) work by
changing the base URL to ``http://127.0.0.1:8765/v1`` and the API key to Loom's token.

* ``GET /v1/models``: the pool's models plus ``loom`` (the assistant).
* ``POST /v1/chat/completions``: ``model`` is a configured model name (chat directly on
  it through the pool) or ``loom`` (routed through ``assistant.ask``). Streaming over
  SSE and not, tool calls (``tools``/``tool_choice``), images as ``data:`` URLs.
* ``POST /v1/responses`` and ``/v1/completions``: see ``core.surfaces.openai_responses``.
* ``logprobs``/``top_logprobs`` on chat (a llama.cpp model needs ``logits_all = true`` in
  its options, else 400); ``response_format`` json_schema is enforced by constrained
  decoding, so ``client.chat.completions.parse`` gets valid JSON; ``tool_choice``
  "required" or a named function forces a call.
* ``POST /v1/embeddings``, ``/v1/images/generations``, ``/v1/audio/speech`` and
  ``/v1/audio/transcriptions`` / ``translations`` (multipart) call the ``embed.text``,
  ``imagegen.generate``, ``voice.speak`` and ``voice.transcribe`` tools through ``app.call``, so policy and
  events apply as on every surface.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 bad
request or no model/plugin for the task (the message says what to configure), 401 (from
the guard), 404 unknown model name, 413 body too large, 429 when too many
requests already wait for a model, 503 with ``Retry-After`` while a model is still
loading (the SDK retries by itself) or while the daemon drains.

Generation on one model runs one request at a time (a llama.cpp context is not
shareable); the others wait in a FIFO queue that is reported (``/metrics``, the
dashboard, and SSE comments ``: queued N`` on streamed requests) rather than timed out.
Settings: ``[plugin.openai]`` in loom.toml (see ``OpenAISettings``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from core.capabilities import Chat, Embed
from core.logging import get_logger
from core.results import Audio, Image, ToolResult
from core.tools import ToolArgumentError, ToolContext, ToolDenied, ToolError, ToolNotFound

from .http import api_endpoint
from .ops import DaemonOps, QueueFull
from .tool_stream import ToolTextStream

log = get_logger("loom.openai")

LOOM_MODEL = "loom"
# OpenAI model names an app may send unchanged: they mean "Loom's default for this task".
OPENAI_ALIASES = {
    "embeddings": {"text-embedding-ada-002", "text-embedding-3-small", "text-embedding-3-large"},
    "images": {"dall-e-2", "dall-e-3", "gpt-image-1"},
    "speech": {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"},
    "transcription": {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"},
}
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,",
                       re.I)


class OpenAISettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.openai]`` in loom.toml."""

    load_wait: float = 60.0  # seconds a request waits for a cold model before 503 + Retry-After
    max_waiting: int = 64  # requests queued per model beyond the running one; more get 429
    default_max_tokens: int = 1024  # when a chat request sets no max_tokens
    max_messages: int = 512
    max_embedding_inputs: int = 256


# --- errors -------------------------------------------------------------------------------

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return ApiError(status, message, code=code).body()


def to_api_error(exc: BaseException) -> ApiError:
    """The HTTP status a Loom exception means to an OpenAI client."""
    from core.arbiter import PoolCapacityError, PoolTimeout

    try:
        from core.pool import ModelUnavailable
    except ImportError:  # pragma: no cover - the pool is part of every build
        ModelUnavailable = ToolNotFound
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RecursionError | UnicodeDecodeError):
        return _malformed(exc)
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, QueueFull):
        return ApiError(429, msg, code="queue_full", retry_after=2)
    if isinstance(exc, PoolTimeout):
        if "queue is full" in msg:
            return ApiError(429, msg, code="queue_full", retry_after=5)
        return ApiError(503, msg, code="memory_busy", retry_after=10)
    if isinstance(exc, PoolCapacityError):
        return ApiError(500, msg, code="model_too_large")
    # No model (or plugin) serves this task: the route exists, the request cannot be served
    # as configured. 400, not 404 (the route is right) nor 503 (the SDK would retry in vain).
    if isinstance(exc, ModelUnavailable):
        return ApiError(400, msg, code="model_not_available", param="model")
    if isinstance(exc, ToolNotFound):
        return ApiError(400, f"{msg} (the plugin that provides it is not installed or is disabled: enable it "
                             "and configure a model for it in loom.toml)", code="not_available")
    if isinstance(exc, ToolDenied):
        return ApiError(403, msg, code="denied_by_policy")
    if isinstance(exc, ToolArgumentError):
        return ApiError(400, msg, code="invalid_arguments")
    if type(exc).__module__.startswith("jinja2"):  # the model's chat template refused these messages
        return ApiError(400, f"the model's chat template cannot format these messages: {msg}", param="messages")
    if type(exc).__name__ in ("ModelLoadError",):
        return ApiError(500, msg, code="model_load_failed")
    if isinstance(exc, ToolError):
        return ApiError(400, msg)
    log.error("unexpected error in the OpenAI surface", error=repr(exc))
    return ApiError(500, f"internal error: {type(exc).__name__}: {msg[:500]}")  # bounded: never echo a body


def _malformed(exc: BaseException) -> ApiError:
    """A body no decoder should choke on: too deep, or not UTF-8 (400, no exception names)."""
    if isinstance(exc, RecursionError):
        return ApiError(400, "the request body is nested too deeply; flatten it", code="invalid_json")
    return ApiError(400, "the request body is not valid UTF-8 JSON", code="invalid_json")


def _invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


# --- request shapes -----------------------------------------------------------------------


class ChatRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Any]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # llama.cpp extension
    repeat_penalty: float | None = None  # llama.cpp extension
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    user: str | None = None
    modalities: list[str] | None = None  # ["text", "audio"]: audio output (model "loom")
    audio: dict[str, Any] | None = None  # {"voice", "format"} for audio output


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[Any]
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None


class ImageRequest(msgspec.Struct, kw_only=True):
    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    response_format: str | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    negative_prompt: str | None = None  # extensions: the imagegen tool's own knobs
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None


class SpeechRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str
    voice: str | None = None
    response_format: str | None = None
    speed: float | None = None
    instructions: str | None = None


def _decode(body: bytes, type_: type[Any]) -> Any:
    if not body:
        raise _invalid("the request body is empty; send a JSON object")
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _invalid(f"the request body is not valid JSON: {exc}") from None
    except (RecursionError, UnicodeDecodeError) as exc:
        raise _malformed(exc) from None
    if not isinstance(raw, dict):
        raise _invalid("the request body must be a JSON object")
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = re.search(r"at `\$\.(\w+)", text)
        missing = re.search(r"missing required field `(\w+)`", text)
        param = m.group(1) if m else missing.group(1) if missing else None
        raise _invalid(f"invalid request: {text}", param) from None


# --- messages -----------------------------------------------------------------------------


def check_messages(messages: list[Any], limit: int) -> tuple[list[dict[str, Any]], int]:
    """Validate OpenAI chat messages before anything is queued; returns them (``developer``
    as ``system``) and how many images they carry."""
    if not messages:
        raise _invalid("messages must contain at least one message", "messages")
    if len(messages) > limit:
        raise _invalid(f"at most {limit} messages per request", "messages")
    out, images = [], 0
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _invalid(f"messages[{i}] must be an object with a role and content", "messages")
        role = msg.get("role")
        if role == "developer":
            msg = {**msg, "role": "system"}
        elif role not in ("system", "user", "assistant", "tool"):
            raise _invalid(f"messages[{i}].role must be system, developer, user, assistant or tool, got {role!r}",
                           "messages")
        content = msg.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    if not isinstance(part.get("text"), str):
                        raise _invalid(f"messages[{i}].content[{j}].text must be a string", "messages")
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    _check_data_url(url, f"messages[{i}].content[{j}]")
                    images += 1
                else:
                    raise _invalid(f"messages[{i}].content[{j}]: unsupported part type {kind!r} "
                                   "(text and image_url are supported)", "messages")
        elif content is not None and not isinstance(content, str):
            raise _invalid(f"messages[{i}].content must be a string or a list of parts", "messages")
        elif content is None and role == "assistant" and isinstance(msg.get("tool_calls"), list):
            # Chat templates read ``content``; show the calls the way the model was asked to write them.
            msg = {**msg, "content": "".join(_call_text(c) for c in msg["tool_calls"])}
        elif content is None:
            raise _invalid(f"messages[{i}].content is missing", "messages")
        out.append(msg)
    return out, images


def _call_text(call: Any) -> str:
    fn = call.get("function", {}) if isinstance(call, dict) else {}
    args = fn.get("arguments", "{}")
    try:
        args = json.loads(args) if isinstance(args, str) else args
    except ValueError:
        pass
    return "<tool_call>" + json.dumps({"name": fn.get("name", ""), "arguments": args}) + "</tool_call>"


def _check_data_url(url: Any, where: str) -> bytes:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise _invalid(f"{where}: image URLs must be inline data: URLs (data:image/png;base64,...); "
                       "remote URLs are not fetched", "messages")
    m = _DATA_URL.match(url)
    if not m or not m.group("b64"):
        raise _invalid(f"{where}: expected a base64 data: URL such as data:image/png;base64,...", "messages")
    mime = (m.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise _invalid(f"{where}: {mime} is not an image", "messages")
    try:
        data = base64.b64decode(url[m.end():], validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{where}: the data: URL is not valid base64", "messages") from None
    if not data:
        raise _invalid(f"{where}: the image is empty", "messages")
    return data


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(p["text"] for p in content or [] if p.get("type") == "text")
    raise _invalid("messages must contain a user message", "messages")


# --- the surface -----------------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


def _text_of(msg: dict[str, Any]) -> str:
    content = msg.get("content")
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if p.get("type") == "text")
    return content or ""


def _sse(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


class OpenAISurface:
    def __init__(self, app: Any, ops: DaemonOps) -> None:
        self.app = app
        self.ops = ops
        self.settings = app.config.plugin_settings("openai", OpenAISettings)
        ops.queue.max_waiting = self.settings.max_waiting

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/models", self._wrap(self.list_models), methods=["GET"]),
            Route("/v1/models/{model:path}", self._wrap(self.get_model), methods=["GET"]),
            Route("/v1/chat/completions", self._wrap(self.chat_completions), methods=["POST"]),
            Route("/v1/embeddings", self._wrap(self.embeddings), methods=["POST"]),
            Route("/v1/images/generations", self._wrap(self.images), methods=["POST"]),
            Route("/v1/audio/speech", self._wrap(self.speech), methods=["POST"]),
            Route("/v1/audio/transcriptions", self._wrap(self.transcriptions), methods=["POST"]),
            Route("/v1/audio/translations", self._wrap(self.translations), methods=["POST"]),
            Route("/v1/completions", self._wrap(self.completions), methods=["POST"]),
            Route("/v1/responses", self._wrap(self.responses), methods=["POST"]),
            Route("/v1/tools", self._wrap(self.tools_list), methods=["GET"]),
            Route("/v1/tools/profiles", self._wrap(self.tools_profiles), methods=["GET"]),
            Route("/v1/tools/call", self._wrap(self.tools_call), methods=["POST"]),
        ]

    # Loom's own tools by profile, for apps that drive their own model (core.surfaces.openai_tools).

    async def tools_list(self, request: Request) -> Response:
        from . import openai_tools

        return await openai_tools.list_tools(self, request)

    async def tools_profiles(self, request: Request) -> Response:
        from . import openai_tools

        return await openai_tools.list_profiles(self, request)

    async def tools_call(self, request: Request) -> Response:
        from . import openai_tools

        return await openai_tools.call_tool(self, request)

    async def completions(self, request: Request) -> Response:
        from . import openai_responses  # it builds on this module

        return await openai_responses.completions(self, request)

    async def responses(self, request: Request) -> Response:
        from . import openai_responses

        return await openai_responses.responses(self, request)

    def _wrap(self, handler: Any) -> Any:
        return api_endpoint(handler, self.ops.draining, on_error=lambda exc: to_api_error(exc).response(),
                            shutting_down=lambda: ApiError(503, "the daemon is shutting down; retry against the "
                                                           "restarted daemon", code="shutting_down",
                                                           retry_after=5).response())

    def _ctx(self, request: Request) -> ToolContext:
        return ToolContext(surface="openai", caller=request.client.host if request.client else "http")

    async def _body(self, request: Request) -> bytes:
        body = await request.body()
        if len(body) > self.app.config.server.max_body_bytes:  # a chunked body past the guard's cap
            raise ApiError(413, "request body too large", code="request_too_large")
        return body

    # -- models --

    def _models(self) -> dict[str, Any]:
        return self.app.pool.models()

    def _model_entry(self, name: str, cfg: Any) -> dict[str, Any]:
        roles = self.app.pool.roles_of(name) if cfg is not None else ["assistant"]
        return {"id": name, "object": "model", "created": int(self.ops.started_at), "owned_by": "loom",
                "backend": cfg.backend if cfg is not None else "assistant", "roles": roles}

    async def list_models(self, request: Request) -> Response:
        data = [self._model_entry(n, c) for n, c in sorted(self._models().items())]
        if "assistant.ask" in self.app.tools:
            data.insert(0, self._model_entry(LOOM_MODEL, None))
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        models = self._models()
        if name == LOOM_MODEL and "assistant.ask" in self.app.tools:
            return JSONResponse(self._model_entry(name, None))
        if name not in models:
            raise self._unknown_model(name)
        return JSONResponse(self._model_entry(name, models[name]))

    def _unknown_model(self, name: str) -> ApiError:
        known = sorted(self._models()) + ([LOOM_MODEL] if "assistant.ask" in self.app.tools else [])
        return ApiError(404, f"The model {name!r} does not exist; available: {', '.join(known) or 'none'} "
                             "(GET /v1/models lists them; configure more under [models.<name>] in loom.toml)",
                        code="model_not_found", param="model")

    def _task_model(self, name: str | None, task: str) -> str | None:
        """None for "the default model for this task", else a configured model name (404 if not)."""
        if name is None or name == LOOM_MODEL or name in OPENAI_ALIASES[task]:
            return None
        if name not in self._models():
            raise self._unknown_model(name)
        return name

    def _chat_model(self, name: str) -> Any:
        cfg = self._models().get(name)
        if cfg is None:
            raise self._unknown_model(name)
        serves = self.app.pool.backend(cfg.backend).capabilities if cfg.backend in self.app.backends else ()
        if "chat" not in serves or cfg.options.get("embedding"):
            raise _invalid(f"model {name!r} (backend {cfg.backend}) is not a chat model; use a model whose backend "
                           "serves chat (llama.cpp GGUF models do), or model 'loom' to let the assistant route "
                           "the request", "model")
        return cfg

    async def _ensure_loaded(self, name: str) -> None:
        """Return once ``name`` is resident. A cold model is loaded in the background; if it
        takes longer than ``load_wait`` the request gets 503 with Retry-After and the load
        goes on, so the client's retry finds it ready."""
        pool = self.app.pool
        state = pool.model_status(name).get("state")
        if state == "ready":
            return
        done = anyio.Event()
        failure: list[BaseException] = []

        async def load() -> None:
            try:
                await pool.load(name, reason="requested over the OpenAI API")
            except Exception as exc:
                failure.append(exc)
            finally:
                done.set()

        if not self.ops.spawn(load):
            await load()
        with anyio.move_on_after(self.settings.load_wait):
            await done.wait()
        if failure:
            raise failure[0]
        if not done.is_set():
            last = pool.model_status(name).get("last_load_seconds") or 0
            raise ApiError(503, f"model {name!r} is still loading; retry shortly", code="model_loading",
                           retry_after=min(max(last / 2, 1), 30))

    # -- chat --

    def _logprob_options(self, name: str, logprobs: bool, top: int | None) -> dict[str, Any]:
        """``logprobs``/``top_logprobs`` as Chat options; a llama.cpp model computes them only
        when loaded with every logit kept (a per-model option: it costs n_ctx x vocab floats)."""
        if top is not None and not logprobs:
            raise _invalid("top_logprobs needs logprobs: true", "top_logprobs")
        if not logprobs:
            return {}
        if top is not None and not 0 <= top <= 20:
            raise _invalid("top_logprobs must be between 0 and 20", "top_logprobs")
        cfg = self._models()[name]
        if cfg.backend == "llama_cpp" and not cfg.options.get("logits_all"):
            raise _invalid(f"model {name!r} was not loaded with logprobs: add logits_all = true to its options "
                           f"([models.{name}] options = {{ logits_all = true }} in loom.toml; it keeps a row of "
                           "logits per context token, so prefer a small context_size) and restart", "logprobs")
        return {"logprobs": True, "top_logprobs": top or 0}

    def _chat_options(self, req: ChatRequest) -> dict[str, Any]:
        s = self.settings
        max_tokens = req.max_completion_tokens or req.max_tokens or s.default_max_tokens
        if max_tokens < 1:
            raise _invalid("max_tokens must be at least 1", "max_tokens")
        opts: dict[str, Any] = {"max_tokens": max_tokens}
        for key in ("temperature", "top_p", "top_k", "seed", "stop", "repeat_penalty", "response_format",
                    "presence_penalty", "frequency_penalty"):
            value = getattr(req, key)
            if value is not None:
                opts[key] = value
        if req.logit_bias:
            opts["logit_bias"] = {int(k): v for k, v in req.logit_bias.items() if k.lstrip("-").isdigit()}
        if req.tools:
            opts["tools"] = req.tools
            opts["tool_choice"] = req.tool_choice or "auto"
        elif req.tool_choice not in (None, "auto", "none"):
            raise _invalid("tool_choice needs tools", "tool_choice")
        opts.update(self._logprob_options(req.model, bool(req.logprobs), req.top_logprobs))
        return opts

    async def chat_completions(self, request: Request) -> Response:
        req: ChatRequest = _decode(await self._body(request), ChatRequest)
        if req.n != 1:
            raise _invalid("only n=1 is supported", "n")
        messages, images = check_messages(req.messages, self.settings.max_messages)
        if req.model == LOOM_MODEL:
            from .openai_loom import LoomChat  # it builds on this module

            return await LoomChat(self, request, req, messages).respond()
        if "audio" in (req.modalities or []):
            raise _invalid(f"audio output comes from model 'loom' (the assistant speaks through the voice plugin); "
                           f"model {req.model!r} writes text only", "modalities")
        cfg = self._chat_model(req.model)
        if images and not cfg.mmproj:
            raise _invalid(f"model {req.model!r} cannot see images: it has no vision projector (mmproj). Use a "
                           "vision model, or model 'loom' to route the image to the vision plugin", "messages")
        options = self._chat_options(req)
        name = req.model
        self.ops.queue.check(name)
        await self._ensure_loaded(name)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if req.stream:
            usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(self._stream(name, cid, messages, options, usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        async with self.ops.queue.slot(name), self.app.pool.use(name, Chat, reason="chat over the OpenAI API") as chat:
            result = await chat.complete(messages, **options)
        if result.finish_reason == "error":
            raise ApiError(500, "generation failed")
        message = result.message()
        if message.get("tool_calls"):
            for call in message["tool_calls"]:
                call["id"] = call["id"] or f"call_{uuid.uuid4().hex[:24]}"
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": _now(), "model": name,
            "choices": [{"index": 0, "message": {**message, "refusal": None}, "logprobs": _logprobs(result),
                         "finish_reason": _finish(result.finish_reason)}],
            "usage": _usage(result.usage),
        })

    async def _stream(self, name: str, cid: str, messages: list[dict[str, Any]], options: dict[str, Any],
                      include_usage: bool) -> AsyncIterator[bytes]:
        created = _now()

        def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
            return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                         "system_fingerprint": None,
                         "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]})

        queue = self.ops.queue
        ticket = queue.enter(name)
        try:
            yield b": accepted\n\n"
            while not ticket.granted:  # report the queue (now, then every second) rather than time out
                yield f": queued, position {queue.position(ticket)}\n\n".encode()
                await ticket.wait(1.0)
            async with self.app.pool.use(name, Chat, reason="chat over the OpenAI API") as chat:
                yield chunk({"role": "assistant", "content": ""})
                # With tools the text may be a call: prose streams, a call waits until it is parsed.
                calls = ToolTextStream() if options.get("tools") and options.get("tool_choice") != "none" else None
                async with chat.stream(messages, **options) as s:
                    async for delta in s:
                        delta += s.drain_text()
                        if calls is not None:
                            delta = calls.feed(delta)
                        if delta:
                            yield chunk({"content": delta})
                result = s.result
            queue.leave(ticket)
            assert result is not None
            if result.finish_reason == "error":
                yield _sse(error_body(500, "generation failed"))
                return
            rest = calls.finish(result.text) if calls is not None else ""
            if rest:
                yield chunk({"content": rest})
            for i, call in enumerate(result.tool_calls):
                out = call.to_openai()
                out["id"] = out["id"] or f"call_{uuid.uuid4().hex[:24]}"
                yield chunk({"tool_calls": [{"index": i, **out}]})
            # the backend hands logprobs over with the result: they ride on the last chunk
            yield chunk({}, _finish(result.finish_reason), _logprobs(result))
            if include_usage:
                yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": name,
                            "choices": [], "usage": _usage(result.usage)})
            yield b"data: [DONE]\n\n"
        except Exception as exc:  # headers are sent: the error goes in the stream
            yield _sse(to_api_error(exc).body())
        finally:
            queue.leave(ticket)

    # -- embeddings --

    async def embeddings(self, request: Request) -> Response:
        req: EmbeddingRequest = _decode(await self._body(request), EmbeddingRequest)
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts:
            raise _invalid("input must not be empty", "input")
        if not all(isinstance(t, str) for t in texts):
            raise _invalid("input must be a string or a list of strings (token arrays are not supported)", "input")
        if len(texts) > self.settings.max_embedding_inputs:
            raise _invalid(f"at most {self.settings.max_embedding_inputs} inputs per request", "input")
        if req.encoding_format not in ("float", "base64"):
            raise _invalid("encoding_format must be 'float' or 'base64'", "encoding_format")
        name = self._task_model(req.model, "embeddings")
        cfg = self._models().get(name) if name else None
        if cfg is not None and "embed" in self.app.pool.backend(cfg.backend).capabilities:
            async with self.app.pool.use(name, Embed, reason="embeddings over the OpenAI API") as embedder:
                vectors = await embedder.embed(texts)
            used = name
        else:
            args: dict[str, Any] = {"texts": texts}
            if name:
                args["model"] = name
            result: ToolResult = await self.app.call("embed.text", args, ctx=self._ctx(request))
            data = result.structured or {}
            vectors, used = data.get("embeddings", []), data.get("model", name or "")
        if req.dimensions is not None:
            dim = len(vectors[0]) if vectors else 0
            if not 1 <= req.dimensions <= dim:
                raise _invalid(f"dimensions must be between 1 and {dim} for model {used!r}", "dimensions")
            vectors = [_renorm(v[: req.dimensions]) for v in vectors]
        out = []
        for i, v in enumerate(vectors):
            if req.encoding_format == "base64":
                import numpy as np

                emb: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
            else:
                emb = v
            out.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(_approx_tokens(t) for t in texts)
        return JSONResponse({"object": "list", "data": out, "model": used,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- images --

    async def images(self, request: Request) -> Response:
        req: ImageRequest = _decode(await self._body(request), ImageRequest)
        if not 1 <= req.n <= 4:
            raise _invalid("n must be between 1 and 4", "n")
        if req.response_format not in (None, "b64_json", "url"):
            raise _invalid("response_format must be 'b64_json' or 'url'", "response_format")
        args: dict[str, Any] = {"prompt": req.prompt}
        name = self._task_model(req.model, "images")
        if name:
            args["model"] = name
        if req.size and req.size != "auto":
            m = re.fullmatch(r"(\d{1,5})x(\d{1,5})", req.size)
            if not m:
                raise _invalid("size must look like 512x512 (width x height) or 'auto'", "size")
            args["width"], args["height"] = int(m.group(1)), int(m.group(2))
        for key in ("negative_prompt", "steps", "guidance", "seed"):
            if getattr(req, key) is not None:
                args[key] = getattr(req, key)
        data = []
        for i in range(req.n):
            if "seed" in args and i:
                args["seed"] += 1
            result: ToolResult = await self.app.call("imagegen.generate", args, ctx=self._ctx(request))
            image = next((c for c in result.content if isinstance(c, Image)), None)
            if result.is_error or image is None:
                raise ApiError(500, result.text() or "the image model returned no image")
            b64 = image.b64()
            item: dict[str, Any] = {"revised_prompt": req.prompt}
            if req.response_format == "url":
                item["url"] = f"data:{image.mime_type};base64,{b64}"
            else:
                item["b64_json"] = b64
            data.append(item)
        return JSONResponse({"created": _now(), "data": data})

    # -- audio --

    async def speech(self, request: Request) -> Response:
        req: SpeechRequest = _decode(await self._body(request), SpeechRequest)
        if not req.input.strip():
            raise _invalid("input must not be empty", "input")
        fmt = req.response_format or "mp3"  # OpenAI's default
        if fmt not in _SPEECH_FORMATS:
            raise _invalid(f"response_format {fmt!r} is not supported; use one of {', '.join(_SPEECH_FORMATS)}",
                           "response_format")
        self._task_model(req.model, "speech")
        args: dict[str, Any] = {"text": req.input}
        if req.voice and req.voice not in OPENAI_VOICES:
            args["voice"] = req.voice
        if req.speed is not None:
            if not 0.25 <= req.speed <= 4.0:
                raise _invalid("speed must be between 0.25 and 4.0", "speed")
            args["speed"] = req.speed
        result: ToolResult = await self.app.call("voice.speak", args, ctx=self._ctx(request))
        audio = next((c for c in result.content if isinstance(c, Audio)), None)
        if result.is_error or audio is None:
            raise ApiError(500, result.text() or "the speech model returned no audio")
        if fmt == "wav":
            return Response(audio.data, media_type=audio.mime_type or "audio/wav")
        return Response(await _transcode(audio.data, fmt), media_type=_SPEECH_FORMATS[fmt])

    async def transcriptions(self, request: Request) -> Response:
        return await self._speech_to_text(request, "transcribe")

    async def translations(self, request: Request) -> Response:
        """Speech in any language to English text: ``voice.transcribe`` with ``task="translate"``,
        which faster-whisper does natively on a multilingual Whisper; an English-only model (the
        packaged tiny.en) is a 400 that names what to configure."""
        return await self._speech_to_text(request, "translate")

    async def _speech_to_text(self, request: Request, task: str) -> Response:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise _invalid("send multipart/form-data with a 'file' part (and 'model')")
        try:
            form = await request.form(max_files=1, max_fields=32,
                                      max_part_size=self.app.config.server.max_body_bytes)
        except Exception as exc:
            raise _invalid(f"could not read the multipart form: {exc}") from None
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise _invalid("a 'file' part with the audio is required", "file")
            data = await upload.read()
            filename = upload.filename or "audio.wav"
            model = form.get("model")
            language = form.get("language") if task == "transcribe" else None  # translations take none
            fmt = form.get("response_format") or "json"
            grans = form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities")
        finally:
            await form.close()
        if not data:
            raise _invalid("the audio file is empty", "file")
        if fmt not in ("json", "text", "verbose_json", "srt", "vtt"):
            raise _invalid("response_format must be json, text, verbose_json, srt or vtt", "response_format")
        name = self._task_model(model if isinstance(model, str) else None, "transcription")
        args: dict[str, Any] = {"audio": _data_url(data, filename)}
        if name:
            args["model"] = name
        if task == "translate":
            args["task"] = "translate"
        if isinstance(language, str) and language:
            args["language"] = language
        if "word" in grans:
            args["word_timestamps"] = True
        try:
            result: ToolResult = await self.app.call("voice.transcribe", args, ctx=self._ctx(request))
        except ToolError as exc:
            raise _stt_error(str(exc)) from None
        if result.is_error:
            raise _stt_error(result.text() or "transcription failed")
        info = result.structured if isinstance(result.structured, dict) else {}
        text = info.get("text", result.text())
        if fmt == "text":
            return Response(text, media_type="text/plain")
        if fmt in ("srt", "vtt"):
            segments = info.get("segments") or [{"start": 0.0, "end": info.get("duration") or 0.0, "text": text}]
            return Response(_subtitles(segments, fmt), media_type="text/plain" if fmt == "srt" else "text/vtt")
        if fmt == "json":
            return JSONResponse({"text": text})
        # A translation is English whatever was spoken (OpenAI reports "english" there too).
        out = {"task": task, "language": "en" if task == "translate" else info.get("language"),
               "duration": info.get("duration"), "text": text, "segments": info.get("segments", [])}
        if "word" in grans:
            out["words"] = info.get("words") or [w for s in info.get("segments", []) for w in s.get("words", [])]
        return JSONResponse(out)


def _stt_error(message: str) -> ApiError:
    if "English-only" in message:  # the model is the problem: say so where the SDK looks
        return ApiError(400, message, code="model_not_multilingual", param="model")
    return ApiError(400, message)


def _logprobs(result: Any) -> dict[str, Any] | None:
    """OpenAI's ``choices[].logprobs`` for a result generated with logprobs."""
    if result.logprobs is None:
        return None
    return {"content": [msgspec.to_builtins(t) for t in result.logprobs], "refusal": None}


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def _usage(u: Any) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


def _approx_tokens(text: str) -> int:
    return max(1, len(re.findall(r"\w+|[^\w\s]", text)))


def _renorm(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def _data_url(data: bytes, filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "wav"
    mime = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "flac": "audio/flac", "m4a": "audio/mp4",
            "webm": "audio/webm", "mpga": "audio/mpeg", "mpeg": "audio/mpeg", "opus": "audio/ogg"}.get(ext,
                                                                                                    "audio/wav")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


_SPEECH_FORMATS = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                   "wav": "audio/wav", "pcm": "audio/pcm"}
_FFMPEG_OUT = {"mp3": ["-f", "mp3"], "opus": ["-c:a", "libopus", "-f", "ogg"], "aac": ["-c:a", "aac", "-f", "adts"],
               "flac": ["-f", "flac"], "pcm": ["-ar", "24000", "-ac", "1", "-f", "s16le"]}


async def _transcode(wav: bytes, fmt: str) -> bytes:
    """The speech WAV in another format through ffmpeg (``pcm`` is OpenAI's raw 24 kHz
    16-bit mono)."""
    import shutil

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        if fmt == "pcm":
            return _wav_frames(wav)
        raise ApiError(400, f"response_format {fmt!r} needs ffmpeg, which is not installed; use 'wav' or install "
                            "ffmpeg", param="response_format")
    done = await anyio.run_process([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", "pipe:0",
                                    *_FFMPEG_OUT[fmt], "pipe:1"], input=wav, check=False)
    if done.returncode != 0 or not done.stdout:
        raise ApiError(500, f"ffmpeg could not encode {fmt}: {done.stderr.decode(errors='replace')[:300]}")
    return done.stdout


def _subtitles(segments: list[dict[str, Any]], fmt: str) -> str:
    """Transcript segments as SubRip or WebVTT cues."""
    def stamp(t: float) -> str:
        ms = round(max(t, 0.0) * 1000)
        h, rest = divmod(ms, 3_600_000)
        m, rest = divmod(rest, 60_000)
        sec, ms = divmod(rest, 1000)
        return f"{h:02d}:{m:02d}:{sec:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"

    cues = []
    for i, seg in enumerate(segments, 1):
        timing = f"{stamp(float(seg.get('start', 0)))} --> {stamp(float(seg.get('end', 0)))}"
        body = str(seg.get("text", "")).strip()
        cues.append(f"{i}\n{timing}\n{body}\n" if fmt == "srt" else f"{timing}\n{body}\n")
    return ("WEBVTT\n\n" if fmt == "vtt" else "") + "\n".join(cues)


def _wav_frames(data: bytes) -> bytes:
    """The PCM samples of a WAV file (its ``data`` chunk)."""
    import io
    import wave

    try:
        with wave.open(io.BytesIO(data)) as w:
            return w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        return data



