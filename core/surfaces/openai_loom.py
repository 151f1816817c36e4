"""``model="loom"`` on OpenAI's chat API: the assistant, with media inline, client tools and real usage.

* The last user message goes to ``assistant.ask`` (the messages before it are the
  conversation); streamed, the coordinator's text arrives as SSE deltas while it writes.
* **Media inline, never server paths.** Files the turn produced are read and sent back:
  audio as OpenAI's audio output (``message.audio``: ``id``, base64 ``data``,
  ``expires_at``, ``transcript``; in the format of the request's ``audio.format``, wav by
  default), images as ``message.images`` (``[{"type": "image_url", "image_url": {"url":
  "data:..."}}]``, the shape OpenRouter uses for generated images). The answer text loses
  its ``Saved: /path`` lines. With ``modalities: ["text", "audio"]`` a turn that made no
  audio has its answer spoken by ``voice.speak``.
* **Client tools.** With ``tools`` (and ``tool_choice`` not ``"none"``) the coordinator
  model sees the conversation and the client's tools first, plus one more, ``loom_assistant``
  (hand the request to Loom's own routing and specialists). A call to a client tool comes
  back as ``tool_calls`` for the client to run; its result (a ``tool`` message) goes back to
  the coordinator on the next request. ``tool_choice: "required"`` or a named tool forces a
  client tool (``loom_assistant`` is not offered then). A plain answer is the answer.
  Streamed, the coordinator's prose arrives as content deltas while it writes (``core.surfaces.
  tool_stream`` holds back only what may be a call) and a client tool call as ``tool_calls``
  deltas once parsed.
* **Usage** is counted in tokens by the coordinator model's tokenizer (``Chat.count_tokens``:
  the conversation through its chat template, the answer as text); only when no coordinator
  can be loaded is it estimated from words, and the log says so.
"""

from __future__ import annotations

import base64
import math
import mimetypes
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core.capabilities import Chat
from core.logging import get_logger
from core.results import Audio
from core.tools import ToolContext, ToolError

from .openai import (
    LOOM_MODEL,
    ApiError,
    ChatRequest,
    _approx_tokens,
    _check_data_url,
    _finish,
    _invalid,
    _last_user_text,
    _sse,
    _text_of,
    _transcode,
    to_api_error,
)
from .tool_stream import ToolTextStream

log = get_logger("loom.openai")

COORDINATOR_ROLE = "coordinator"
LOOM_TOOL = "loom_assistant"
LOOM_TOOL_SPEC = {"type": "function", "function": {
    "name": LOOM_TOOL,
    "description": "Hand the request to Loom, the local assistant, which can see and describe images, draw "
                   "pictures, make videos, speak and transcribe audio, research the web, control this PC, "
                   "remember things and write code. Use it when no other tool fits and you cannot answer "
                   "yourself.",
    "parameters": {"type": "object", "properties": {}}}}
# OpenAI's chat audio output formats, as the speech endpoint's transcoder names them.
AUDIO_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "opus": "opus", "aac": "aac", "pcm16": "pcm"}
MAX_INLINE_BYTES = 32 * 1024 * 1024  # a file bigger than this stays a file (named, not sent)
AUDIO_TTL_S = 3600


def _now() -> int:
    return int(time.time())


def check_audio_request(req: ChatRequest) -> str | None:
    """The audio output format the client asked for (None: no audio asked)."""
    modalities = req.modalities or ["text"]
    unknown = [m for m in modalities if m not in ("text", "audio")]
    if unknown:
        raise _invalid(f"modalities may contain 'text' and 'audio', got {unknown}", "modalities")
    fmt = (req.audio or {}).get("format", "wav")
    if fmt not in AUDIO_FORMATS:
        raise _invalid(f"audio.format must be one of {', '.join(AUDIO_FORMATS)}", "audio")
    if "audio" in modalities:
        return fmt
    return None


class LoomChat:
    """One ``model="loom"`` request: built by ``OpenAISurface.chat_completions``."""

    def __init__(self, surface: Any, request: Request, req: ChatRequest, messages: list[dict[str, Any]]) -> None:
        self.surface, self.app, self.req, self.messages = surface, surface.app, req, messages
        self.ctx: ToolContext = surface._ctx(request)
        self.cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.audio_format = check_audio_request(req)
        self.client_tools = bool(req.tools) and req.tool_choice != "none"

    # -- the request -----------------------------------------------------------------------

    def ask_args(self) -> dict[str, Any]:
        messages = self.messages
        text = _last_user_text(messages)
        last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        args: dict[str, Any] = {"text": text}
        history = [{"role": m["role"], "content": _text_of(m)} for m in messages[:last]
                   if m.get("role") in ("user", "assistant") and _text_of(m)]
        if history:
            args["history"] = history
        attachments = self._save_images()
        if attachments:
            args["attachments"] = attachments
        if self.req.user:
            args["session_id"] = self.req.user
        return args

    def _save_images(self) -> list[str]:
        """The last user message's images as files in the data dir, for the assistant's router
        (it reads attachments by path, confined to the allowed roots)."""
        last = next((m for m in reversed(self.messages) if m.get("role") == "user"), None)
        parts = last.get("content") if last else None
        if not isinstance(parts, list):
            return []
        folder = self.app.config.data_dir / "uploads"
        paths = []
        for part in parts:
            if part.get("type") != "image_url":
                continue
            url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
            data = _check_data_url(url, "image")
            mime = url[5:url.index(";")] if ";" in url else "image/png"
            ext = {"image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}.get(mime, ".png")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{uuid.uuid4().hex}{ext}"
            path.write_bytes(data)
            paths.append(str(path))
        return paths

    async def respond(self) -> Response:
        if "assistant.ask" not in self.app.tools:
            raise self.surface._unknown_model(LOOM_MODEL)
        if self.req.stream:
            include_usage = bool((self.req.stream_options or {}).get("include_usage"))
            # Checked (and loaded) before the 200: a bad request is still an HTTP error.
            plan = await self._coordinator_plan() if self.client_tools else None
            body = self._stream_coordinator(plan, include_usage) if plan is not None else self._stream(include_usage)
            return StreamingResponse(body, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        decided = await self._coordinator() if self.client_tools else None
        if decided is not None:
            message, finish, usage = decided
        else:
            args = self.ask_args()
            answer, files = _loom_answer(await self.app.call("assistant.ask", args, ctx=self.ctx))
            message, finish = await self._message(answer, files), "stop"
            usage = await self.usage(args, answer)
        return JSONResponse({
            "id": self.cid, "object": "chat.completion", "created": _now(), "model": LOOM_MODEL,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
        })

    # -- client tools: the coordinator decides first ----------------------------------------

    async def _coordinator_plan(self) -> tuple[str, dict[str, Any]] | None:
        """The coordinator model (loaded) and its options: the client's tools, plus
        ``loom_assistant`` unless a client tool is forced. None: Loom's routing takes the request."""
        req, surface, pool = self.req, self.surface, self.app.pool
        names = [t.get("function", {}).get("name") for t in req.tools or [] if isinstance(t, dict)]
        if LOOM_TOOL in names:
            raise _invalid(f"{LOOM_TOOL!r} is the name of Loom's own tool here; rename yours", "tools")
        forced = req.tool_choice not in (None, "auto")
        try:
            name = pool.model_for(COORDINATOR_ROLE)
        except ToolError as exc:
            raise ApiError(400, f"model 'loom' with tools needs a coordinator chat model: {exc}", param="tools",
                           code="model_not_available") from None
        images = any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
                     for m in self.messages)
        if images and not pool.config_for(name).mmproj:
            if forced:
                raise _invalid(f"the coordinator model {name!r} cannot see images, so it cannot choose a tool for "
                               "this request; configure a vision model (one with an mmproj) as the coordinator, or "
                               "let tool_choice be 'auto'", "tool_choice")
            return None  # the assistant's vision specialists take the images
        options: dict[str, Any] = {"max_tokens": req.max_completion_tokens or req.max_tokens
                                   or surface.settings.default_max_tokens,
                                   "tools": list(req.tools or []) + ([] if forced else [LOOM_TOOL_SPEC]),
                                   "tool_choice": req.tool_choice or "auto"}
        for key in ("temperature", "top_p", "seed", "stop"):
            if getattr(req, key) is not None:
                options[key] = getattr(req, key)
        surface.ops.queue.check(name)
        await surface._ensure_loaded(name)
        return name, options

    async def _coordinator(self) -> tuple[dict[str, Any], str, dict[str, int]] | None:
        """The coordinator's turn, whole: a client tool call or a plain answer, or None when it
        hands over to Loom."""
        plan = await self._coordinator_plan()
        if plan is None:
            return None
        name, options = plan
        async with (self.surface.ops.queue.slot(name),
                    self.app.pool.use(name, Chat, reason="model loom with client tools") as chat):
            result = await chat.complete(self.messages, cancel=self.ctx.cancelled, **options)
        if result.finish_reason == "error":
            raise ApiError(500, "generation failed")
        if _hands_over(result):
            return None  # the coordinator hands the request to Loom's routing
        usage = _usage(result)
        message = result.message()
        if message.get("tool_calls"):
            for call in message["tool_calls"]:
                call["id"] = call["id"] or f"call_{uuid.uuid4().hex[:24]}"
            return {**message, "refusal": None}, "tool_calls", usage
        message = {"role": "assistant", "content": result.text, "refusal": None}
        if self.audio_format:
            message = await self._message(result.text, [])
        return message, _finish(result.finish_reason), usage

    # -- media ---------------------------------------------------------------------------------

    async def _message(self, answer: str, files: list[str]) -> dict[str, Any]:
        """The assistant message: the answer without server paths, audio and images inline."""
        images, audio = [], None
        for path in files:
            media = await anyio.to_thread.run_sync(_read_media, path)
            if media is None:
                continue
            mime, data = media
            answer = _drop_path(answer, path, "image" if mime.startswith("image/") else "audio")
            if mime.startswith("image/"):
                images.append({"type": "image_url",
                               "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}})
            elif audio is None:
                audio = (mime, data)
        if audio is None and self.audio_format and "voice.speak" in self.app.tools and answer.strip():
            spoken = await self.app.call("voice.speak", {"text": answer}, ctx=self.ctx)
            clip = next((c for c in spoken.content if isinstance(c, Audio)), None)
            if clip is not None and not spoken.is_error:
                audio = (clip.mime_type, clip.data)
        message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None}
        if audio is not None:
            message["audio"] = await self._audio_output(audio, answer)
        if images:
            message["images"] = images
        return message

    async def _audio_output(self, audio: tuple[str, bytes], transcript: str) -> dict[str, Any]:
        mime, data = audio
        fmt = AUDIO_FORMATS[self.audio_format or "wav"]
        if not (fmt == "wav" and mime in ("audio/wav", "audio/x-wav")):
            data = await _transcode(data, fmt)
        return {"id": f"audio_{uuid.uuid4().hex[:24]}", "data": base64.b64encode(data).decode(),
                "expires_at": _now() + AUDIO_TTL_S, "transcript": transcript}

    # -- usage ---------------------------------------------------------------------------------

    async def usage(self, args: dict[str, Any], answer: str) -> dict[str, int]:
        """Tokens by the coordinator's tokenizer: the conversation through its chat template, the answer as text."""
        prompt = [*args.get("history", []), {"role": "user", "content": args["text"]}]
        try:
            name = self.app.pool.model_for(COORDINATOR_ROLE)
            async with self.app.pool.use(name, Chat, reason="token counts for model loom") as chat:
                counts = await chat.count_tokens(prompt), await chat.count_tokens(answer) if answer else 0
        except Exception as exc:  # no coordinator, or it cannot load now: words are the best estimate
            log.warning("model loom: usage estimated from words", reason=str(exc)[:200])
            counts = sum(_approx_tokens(m["content"]) for m in prompt), _approx_tokens(answer)
        return {"prompt_tokens": counts[0], "completion_tokens": counts[1], "total_tokens": counts[0] + counts[1]}

    # -- streaming -------------------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({"id": self.cid, "object": "chat.completion.chunk", "created": _now(), "model": LOOM_MODEL,
                     "system_fingerprint": None,
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    def _usage_chunk(self, usage: dict[str, int]) -> bytes:
        return _sse({"id": self.cid, "object": "chat.completion.chunk", "created": _now(), "model": LOOM_MODEL,
                     "choices": [], "usage": usage})

    async def _stream_coordinator(self, plan: tuple[str, dict[str, Any]],
                                  include_usage: bool) -> AsyncIterator[bytes]:
        """The coordinator's turn as it is written: prose as content deltas, a client tool call
        as ``tool_calls`` deltas once parsed; a hand-over to Loom streams the assistant's answer."""
        name, options = plan
        queue = self.surface.ops.queue
        ticket = queue.enter(name)
        calls = ToolTextStream()
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            while not ticket.granted:
                await ticket.wait(1.0)
            async with self.app.pool.use(name, Chat, reason="model loom with client tools") as chat:
                async with chat.stream(self.messages, cancel=self.ctx.cancelled, **options) as s:
                    async for delta in s:
                        delta = calls.feed(delta + s.drain_text())
                        if delta:
                            yield self._chunk({"content": delta})
                result = s.result
            queue.leave(ticket)
            assert result is not None
            if result.finish_reason == "error":
                raise ApiError(500, "generation failed")
            if _hands_over(result):
                async for piece in self._stream(include_usage, opened=True):
                    yield piece
                return
            rest = calls.finish(result.text)
            if rest:
                yield self._chunk({"content": rest})
            for i, call in enumerate(result.tool_calls):
                out = call.to_openai()
                out["id"] = out["id"] or f"call_{uuid.uuid4().hex[:24]}"
                yield self._chunk({"tool_calls": [{"index": i, **out}]})
            if self.audio_format and not result.tool_calls:
                message = await self._message(result.text, [])
                if message.get("audio"):
                    yield self._chunk({"audio": message["audio"]})
            yield self._chunk({}, "tool_calls" if result.tool_calls else _finish(result.finish_reason))
            if include_usage:
                yield self._usage_chunk(_usage(result))
            yield b"data: [DONE]\n\n"
        except Exception as exc:  # headers are sent: the error goes in the stream
            yield _sse(to_api_error(exc).body())
        finally:
            queue.leave(ticket)

    async def _stream(self, include_usage: bool, *, opened: bool = False) -> AsyncIterator[bytes]:
        """The assistant's answer as it is written (``opened``: the role chunk went out already)."""
        args = self.ask_args()
        ctx = self.ctx
        send, receive = anyio.create_memory_object_stream[tuple[str, Any]](math.inf)

        async def on_delta(text: str) -> None:  # called by the assistant as the coordinator writes
            send.send_nowait(("delta", text))

        ctx.extra["answer_delta"] = on_delta

        async def run() -> None:
            with send:
                try:
                    send.send_nowait(("done", await self.app.call("assistant.ask", args, ctx=ctx)))
                except Exception as exc:
                    send.send_nowait(("error", exc))

        streamed = ""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                if not opened:
                    yield self._chunk({"role": "assistant", "content": ""})
                result = None
                async with receive:
                    async for kind, value in receive:
                        if kind == "delta":
                            streamed += value
                            yield self._chunk({"content": value})
                        elif kind == "error":
                            yield _sse(to_api_error(value).body())
                            return
                        else:
                            result = value
            try:
                answer, files = _loom_answer(result)
                message = await self._message(answer, files)
            except Exception as exc:
                yield _sse(to_api_error(exc).body())
                return
            answer = message["content"]
            if not answer.startswith(streamed):  # a stage rewrote it, or a path was dropped: send the final form
                yield self._chunk({"content": "\n\n" + answer})
            elif len(answer) > len(streamed):
                yield self._chunk({"content": answer[len(streamed):]})
            for key in ("audio", "images"):
                if key in message:
                    yield self._chunk({key: message[key]})
            yield self._chunk({}, "stop")
            if include_usage:
                yield self._usage_chunk(await self.usage(args, answer))
            yield b"data: [DONE]\n\n"
        finally:
            ctx.cancelled.set()  # the client went away: stop generating


def _hands_over(result: Any) -> bool:
    """Whether the coordinator called ``loom_assistant`` (Loom's routing takes the request)."""
    return any(c.name == LOOM_TOOL for c in result.tool_calls)


def _usage(result: Any) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


def _loom_answer(result: Any) -> tuple[str, list[str]]:
    """The answer text and the files the turn produced."""
    if result is None or result.is_error:
        raise ApiError(400, (result.text() if result is not None else "") or "the assistant could not answer")
    data = result.structured if isinstance(result.structured, dict) else {}
    answer = data["answer"] if isinstance(data.get("answer"), str) else result.text()
    files = [f for f in data.get("files") or [] if isinstance(f, str)]
    return answer, files


def _read_media(path: str) -> tuple[str, bytes] | None:
    """An image or audio file the turn produced, as (mime, bytes); None for anything else."""
    p = Path(path)
    mime = mimetypes.guess_type(p.name)[0] or ""
    if mime == "audio/x-wav":
        mime = "audio/wav"
    if not mime.startswith(("image/", "audio/")):
        return None
    try:
        if not p.is_file() or p.stat().st_size > MAX_INLINE_BYTES:
            return None
        return mime, p.read_bytes()
    except OSError:
        return None


def _drop_path(answer: str, path: str, kind: str) -> str:
    """The answer without the server path of a file sent inline."""
    lines = [ln for ln in answer.splitlines() if ln.strip() != f"Saved: {path}"]
    return "\n".join(lines).replace(path, f"(the {kind} attached)").strip()

