"""OpenAI's Responses API (``POST /v1/responses``) and legacy ``POST /v1/completions``.

Both run on a configured chat model through the same queue and pool handles as
``/v1/chat/completions`` (``core.surfaces.openai``), which registers these routes.

* ``/v1/responses``: ``input`` (a string or message/``function_call``/``function_call_output``
  items, ``input_text``/``input_image`` parts), ``instructions``, ``max_output_tokens``,
  ``tools`` (function tools), ``tool_choice``, ``text.format`` (json_schema, enforced by
  constrained decoding). Streaming sends the SDK's typed events (``response.created`` ...
  ``response.output_text.delta`` ... ``response.completed``). Loom keeps no conversation
  state: ``previous_response_id`` is refused with a 400 that says to send the history.
* ``/v1/completions``: the prompt goes to the model as one user turn through its chat
  template (these are chat models), so it behaves like an instruct completion rather than
  raw text continuation. ``logprobs`` (an int, as the legacy API has it) needs a model
  loaded with ``logits_all``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core.capabilities import Chat, ChatResult

from .openai import ApiError, OpenAISurface, _decode, _finish, _invalid, _sse, check_messages, to_api_error
from .tool_stream import ToolTextStream


class CompletionRequest(msgspec.Struct, kw_only=True):
    model: str
    prompt: str | list[Any]
    max_tokens: int | None = 16  # the legacy API's default
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    n: int = 1
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    stream: bool = False
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None


def _usage(result: ChatResult) -> dict[str, Any]:
    u = result.usage
    return {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}


async def _generate(api: OpenAISurface, name: str, messages: list[dict[str, Any]],
                    options: dict[str, Any]) -> ChatResult:
    async with api.ops.queue.slot(name), api.app.pool.use(name, Chat, reason="over the OpenAI API") as chat:
        result = await chat.complete(messages, **options)
    if result.finish_reason == "error":
        raise ApiError(500, "generation failed")
    return result


async def _deltas(api: OpenAISurface, name: str, messages: list[dict[str, Any]], options: dict[str, Any],
                  hold: bool) -> AsyncIterator[str | ChatResult]:
    """Text deltas as generated, then the ``ChatResult``. ``hold`` (tools offered): text that
    may be a tool call waits until the call is parsed (``core.surfaces.tool_stream``)."""
    queue = api.ops.queue
    ticket = queue.enter(name)
    calls = ToolTextStream() if hold else None
    try:
        while not ticket.granted:
            await ticket.wait(1.0)
        async with api.app.pool.use(name, Chat, reason="over the OpenAI API") as chat:
            async with chat.stream(messages, **options) as s:
                async for delta in s:
                    delta += s.drain_text()
                    if calls is not None:
                        delta = calls.feed(delta)
                    if delta:
                        yield delta
            result = s.result
    finally:
        queue.leave(ticket)
    assert result is not None
    if result.finish_reason == "error":
        raise ApiError(500, "generation failed")
    rest = calls.finish(result.text) if calls is not None else ""
    if rest:
        yield rest
    yield result


async def _prepare(api: OpenAISurface, name: str) -> None:
    api._chat_model(name)
    api.ops.queue.check(name)
    await api._ensure_loaded(name)


# --- /v1/completions ---------------------------------------------------------------------


async def completions(api: OpenAISurface, request: Request) -> Response:
    req: CompletionRequest = _decode(await api._body(request), CompletionRequest)
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise _invalid("prompt must be a string or a list of one string (token arrays and batches are not "
                           "supported)", "prompt")
        prompt = prompt[0]
    if req.n != 1:
        raise _invalid("only n=1 is supported", "n")
    if req.suffix:
        raise _invalid("suffix (fill-in-the-middle) is not supported by chat models", "suffix")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise _invalid("max_tokens must be at least 1", "max_tokens")
    options: dict[str, Any] = {"max_tokens": req.max_tokens}
    for key in ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"):
        if getattr(req, key) is not None:
            options[key] = getattr(req, key)
    if req.logit_bias:
        options["logit_bias"] = {int(k): v for k, v in req.logit_bias.items() if k.lstrip("-").isdigit()}
    await _prepare(api, req.model)
    if req.logprobs is not None:
        options.update(api._logprob_options(req.model, True, req.logprobs))
    messages = [{"role": "user", "content": prompt}]
    cid, created, name = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time()), req.model
    head = prompt if req.echo else ""

    def body(text: str, finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": name,
                "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}]}

    if not req.stream:
        result = await _generate(api, name, messages, options)
        out = body(head + result.text, _finish(result.finish_reason), _legacy_logprobs(result))
        out["usage"] = _chat_usage(result)
        return JSONResponse(out)

    async def events() -> AsyncIterator[bytes]:
        try:
            if head:
                yield _sse(body(head, None))
            async for item in _deltas(api, name, messages, options, hold=False):
                if isinstance(item, str):
                    yield _sse(body(item, None))
                else:
                    yield _sse(body("", _finish(item.finish_reason), _legacy_logprobs(item)))
                    if (req.stream_options or {}).get("include_usage"):
                        yield _sse({**body("", None), "choices": [], "usage": _chat_usage(item)})
            yield b"data: [DONE]\n\n"
        except Exception as exc:
            yield _sse(to_api_error(exc).body())

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _chat_usage(result: ChatResult) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


def _legacy_logprobs(result: ChatResult) -> dict[str, Any] | None:
    if result.logprobs is None:
        return None
    offsets, at = [], 0
    for t in result.logprobs:
        offsets.append(at)
        at += len(t.token)
    return {"tokens": [t.token for t in result.logprobs], "token_logprobs": [t.logprob for t in result.logprobs],
            "top_logprobs": [{a["token"]: a["logprob"] for a in t.top_logprobs} for t in result.logprobs],
            "text_offset": offsets}


# --- /v1/responses -------------------------------------------------------------------------


def _content_parts(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of parts", "input")
    parts: list[dict[str, Any]] = []
    for j, p in enumerate(content):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(p.get("text", ""))})
        elif kind == "input_image":
            url = p.get("image_url")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise _invalid(f"{where}.content[{j}]: unsupported part type {kind!r} (input_text, input_image)",
                           "input")
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def response_messages(req: ResponsesRequest, limit: int) -> tuple[list[dict[str, Any]], int]:
    """``instructions`` + ``input`` as chat messages (checked like chat completions' messages)."""
    if req.previous_response_id:
        raise _invalid("previous_response_id is not supported: Loom stores no responses; send the whole "
                       "conversation in input", "previous_response_id")
    msgs: list[dict[str, Any]] = []
    if req.instructions:
        msgs.append({"role": "system", "content": req.instructions})
    items = [{"role": "user", "content": req.input}] if isinstance(req.input, str) else req.input
    pending: list[dict[str, Any]] = []  # consecutive function_call items form one assistant turn
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _invalid(f"input[{i}] must be an object", "input")
        kind = item.get("type", "message")
        if kind == "function_call":
            pending.append({"id": item.get("call_id") or item.get("id") or f"call_{i}", "type": "function",
                            "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"}})
            continue
        if pending:
            msgs.append({"role": "assistant", "content": None, "tool_calls": pending})
            pending = []
        if kind == "function_call_output":
            output = item.get("output")
            msgs.append({"role": "tool", "tool_call_id": item.get("call_id", ""),
                         "content": output if isinstance(output, str) else json.dumps(output)})
        elif kind == "message":
            msgs.append({"role": item.get("role"), "content": _content_parts(item.get("content"), f"input[{i}]")})
        elif kind == "reasoning":
            continue
        else:
            raise _invalid(f"input[{i}]: unsupported item type {kind!r} (message, function_call, "
                           "function_call_output)", "input")
    if pending:
        msgs.append({"role": "assistant", "content": None, "tool_calls": pending})
    return check_messages(msgs, limit)


def _response_options(req: ResponsesRequest) -> dict[str, Any]:
    opts: dict[str, Any] = {"max_tokens": req.max_output_tokens or 1024}
    if opts["max_tokens"] < 1:
        raise _invalid("max_output_tokens must be at least 1", "max_output_tokens")
    for key in ("temperature", "top_p"):
        if getattr(req, key) is not None:
            opts[key] = getattr(req, key)
    fmt = (req.text or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        opts["response_format"] = {"type": "json_schema", "json_schema": {"name": fmt.get("name", "output"),
                                                                          "schema": fmt.get("schema") or {}}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        opts["response_format"] = {"type": "json_object"}
    tools = []
    for i, t in enumerate(req.tools or []):
        if t.get("type") != "function" or not isinstance(t.get("name"), str):
            raise _invalid(f"tools[{i}]: only function tools ({{\"type\": \"function\", \"name\", \"parameters\"}}) "
                           "are available here", "tools")
        tools.append({"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                       "parameters": t.get("parameters") or {"type": "object"}}})
    if tools:
        choice = req.tool_choice or "auto"
        if isinstance(choice, dict):
            choice = {"type": "function", "function": {"name": choice.get("name")}}
        opts.update(tools=tools, tool_choice=choice)
    return opts


def _output(result: ChatResult) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        out.append({"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": result.text, "annotations": [], "logprobs": []}]})
    for call in result.tool_calls:
        out.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}",
                    "call_id": call.id or f"call_{uuid.uuid4().hex[:24]}", "name": call.name,
                    "arguments": json.dumps(call.arguments), "status": "completed"})
    return out


async def responses(api: OpenAISurface, request: Request) -> Response:
    req: ResponsesRequest = _decode(await api._body(request), ResponsesRequest)
    messages, images = response_messages(req, api.settings.max_messages)
    options = _response_options(req)
    cfg = api._chat_model(req.model)
    if images and not cfg.mmproj:
        raise _invalid(f"model {req.model!r} cannot see images: it has no vision projector (mmproj)", "input")
    await _prepare(api, req.model)
    rid, created, name = f"resp_{uuid.uuid4().hex[:24]}", int(time.time()), req.model

    def shell(status: str, output: list[dict[str, Any]], result: ChatResult | None = None) -> dict[str, Any]:
        incomplete = result is not None and result.finish_reason == "length"
        return {"id": rid, "object": "response", "created_at": created, "model": name,
                "status": "incomplete" if incomplete else status, "output": output,
                "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
                "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
                "parallel_tool_calls": True, "tool_choice": req.tool_choice or "auto", "tools": req.tools or [],
                "temperature": req.temperature, "top_p": req.top_p, "text": req.text or {"format": {"type": "text"}},
                "error": None, "metadata": req.metadata or {},
                "usage": _usage(result) if result is not None else None}

    if not req.stream:
        result = await _generate(api, name, messages, options)
        return JSONResponse(shell("completed", _output(result), result))

    hold = bool(options.get("tools")) and options.get("tool_choice") != "none"

    async def events() -> AsyncIterator[bytes]:
        seq = 0

        def ev(kind: str, **data: Any) -> bytes:
            nonlocal seq
            seq += 1
            return b"event: " + kind.encode() + b"\n" + _sse({"type": kind, "sequence_number": seq - 1, **data})

        yield ev("response.created", response=shell("in_progress", []))
        yield ev("response.in_progress", response=shell("in_progress", []))
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        text, opened = "", False
        try:
            async for item in _deltas(api, name, messages, options, hold=hold):
                if isinstance(item, str):
                    delta = item
                    if not opened:
                        opened = True
                        yield ev("response.output_item.added", output_index=0, item={
                            "type": "message", "id": mid, "status": "in_progress", "role": "assistant",
                            "content": []})
                        yield ev("response.content_part.added", item_id=mid, output_index=0, content_index=0,
                                 part={"type": "output_text", "text": "", "annotations": []})
                    text += delta
                    yield ev("response.output_text.delta", item_id=mid, output_index=0, content_index=0,
                             delta=delta, logprobs=[])
                if not isinstance(item, str):
                    result = item
            output = _output(result)
            index = 0
            if opened:
                part = {"type": "output_text", "text": text, "annotations": []}
                yield ev("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text,
                         logprobs=[])
                yield ev("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=part)
                output[0]["id"] = mid
                yield ev("response.output_item.done", output_index=0, item=output[0])
                index = 1
            for item_out in (o for o in output if o["type"] == "function_call"):
                yield ev("response.output_item.added", output_index=index,
                         item={**item_out, "arguments": "", "status": "in_progress"})
                yield ev("response.function_call_arguments.delta", item_id=item_out["id"], output_index=index,
                         delta=item_out["arguments"])
                yield ev("response.function_call_arguments.done", item_id=item_out["id"], output_index=index,
                         arguments=item_out["arguments"], name=item_out["name"])
                yield ev("response.output_item.done", output_index=index, item=item_out)
                index += 1
            if not opened and not result.tool_calls:
                output = []
            done = shell("completed", output, result)
            yield ev("response.incomplete" if done["status"] == "incomplete" else "response.completed", response=done)
        except Exception as exc:
            err = to_api_error(exc)
            yield ev("error", code=err.code, message=err.message, param=err.param)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
