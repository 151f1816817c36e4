"""``model="loom"`` with the official ``openai`` client on a real daemon: media inline (audio as
OpenAI audio output, generated images as data: URLs, no server paths), the client's tools
passed to the coordinator (a client tool call comes back as ``tool_calls``, its result goes
back to the coordinator), and usage in the coordinator's real tokens.

The coordinator is the packaged SmolLM2 (the assistant's default), speech is Piper, images
come from a tiny random Stable Diffusion pipeline (noise, but a real PNG from diffusers).
"""

from __future__ import annotations

import base64
import io
import json
import wave

import anthropic
import openai
import pytest

from tests.openai_helpers import LoomDaemon

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from plugins.imagegen import tiny as tiny_pipelines

    base = tmp_path_factory.mktemp("openai-loom")
    sd = tiny_pipelines.build_sd(base / "sd")
    toml = f"""
[plugin.assistant]
max_tokens = 40       # short answers: the test reads their shape, not their prose
llm_fallback = false
[models.tinysd]
backend = "diffusers"
file = "{sd}"
role = "imagegen"
options = {{ steps = 2 }}
"""
    d = LoomDaemon(base, "admin,models,llamacpp,assistant,voice,imagegen", toml).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    return daemon.openai()


def test_client_tool_call_comes_back_and_its_result_goes_to_the_coordinator(client):
    ask = [{"role": "user", "content": "What is the weather in Lisbon right now?"}]
    out = client.chat.completions.create(model="loom", temperature=0, max_tokens=60, tools=[WEATHER],
                                         tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                         messages=ask)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and out.model == "loom"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    assert out.usage.prompt_tokens > 20  # the tool schemas went into the coordinator's prompt
    follow = client.chat.completions.create(
        model="loom", temperature=0, max_tokens=40, tools=[WEATHER], tool_choice="auto",
        messages=[*ask, choice.message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}])
    assert follow.choices[0].message.content or follow.choices[0].message.tool_calls
    # Streamed, a forced call arrives as tool_calls deltas, which the SDK assembles into the call.
    with client.chat.completions.stream(model="loom", temperature=0, max_tokens=60, tools=[WEATHER],
                                        tool_choice="required", messages=ask) as stream:
        kinds = [e.type for e in stream]
        streamed = stream.get_final_completion().choices[0]
    assert "tool_calls.function.arguments.done" in kinds and streamed.finish_reason == "tool_calls"
    assert streamed.message.tool_calls[0].function.name == "get_weather"
    assert isinstance(json.loads(streamed.message.tool_calls[0].function.arguments)["city"], str)
    # Streamed with tools, a long plain answer arrives as it is written, not in one chunk at the end.
    chunks = list(client.chat.completions.create(model="loom", temperature=0, max_tokens=40, tools=[WEATHER],
                                                 stream=True, messages=[{"role": "user", "content":
                                                                         "Write a short poem about the sea."}]))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


def test_loom_assistant_is_reserved_and_tool_choice_none_ignores_tools(client):
    bad = {"type": "function", "function": {"name": "loom_assistant", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="loom_assistant"):
        client.with_options(max_retries=0).chat.completions.create(
            model="loom", tools=[bad], messages=[{"role": "user", "content": "hi"}])


def test_audio_output_is_inline_and_usage_is_real_tokens(client, daemon):
    question = "What is the capital of France? Answer in one short sentence."
    out = client.chat.completions.create(model="loom", modalities=["text", "audio"],
                                         audio={"voice": "alloy", "format": "wav"},
                                         messages=[{"role": "user", "content": question}])
    message = out.choices[0].message
    wav = base64.b64decode(message.audio.data)
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnframes() / w.getframerate() > 0.3  # real speech, not an empty clip
    assert message.audio.transcript == message.content and message.audio.id.startswith("audio_")
    assert "/" not in (message.content or "")  # no server path in the text
    # Usage: the coordinator's tokens for the question, as its own count_tokens gives them.
    claude = anthropic.Anthropic(base_url=daemon.base_url, api_key=daemon.token, max_retries=4, timeout=120)
    counted = claude.messages.count_tokens(model="smollm2", messages=[{"role": "user", "content": question}])
    assert out.usage.prompt_tokens == counted.input_tokens
    assert out.usage.completion_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    mp3 = client.chat.completions.create(model="loom", modalities=["text", "audio"],
                                         audio={"voice": "alloy", "format": "mp3"},
                                         messages=[{"role": "user", "content": question}])
    head = base64.b64decode(mp3.choices[0].message.audio.data)[:3]
    assert head == b"ID3" or head[0] == 0xFF  # an MP3 stream
    with pytest.raises(openai.BadRequestError, match="audio.format"):
        client.with_options(max_retries=0).chat.completions.create(
            model="loom", modalities=["text", "audio"], audio={"voice": "alloy", "format": "midi"},
            messages=[{"role": "user", "content": question}])
    with pytest.raises(openai.BadRequestError, match="model 'loom'"):
        client.with_options(max_retries=0).chat.completions.create(
            model="smollm2", modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
            messages=[{"role": "user", "content": question}])


def test_generated_image_comes_back_as_data_not_a_path(client, daemon):
    out = client.chat.completions.create(model="loom", messages=[
        {"role": "user", "content": "Draw a picture of a red bicycle."}])
    message = out.choices[0].message
    images = message.model_extra.get("images") or []
    assert images, message.content
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(daemon.base) not in (message.content or "") and "Saved:" not in (message.content or "")
    chunks = list(client.chat.completions.create(model="loom", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Draw a small blue boat."}]))
    streamed = [c.choices[0].delta.model_extra.get("images") for c in chunks if c.choices]
    assert any(streamed)
    assert chunks[-1].usage.prompt_tokens > 0


def test_a_spoken_answer_reads_as_the_words_spoken_not_the_tool_summary(client):
    # "Read this out loud" plans voice.speak: the audio comes back inline and the text beside
    # it is what was said (it used to be the tool's "1.4 s of speech ..." summary).
    out = client.chat.completions.create(model="loom", modalities=["text", "audio"],
                                         audio={"voice": "alloy", "format": "wav"},
                                         messages=[{"role": "user",
                                                    "content": "Read this out loud: the ferry leaves at nine."}])
    message = out.choices[0].message
    assert "ferry leaves at nine" in (message.content or "").lower(), message.content
    assert "of speech" not in message.content and "/" not in message.content
    assert message.audio.transcript == message.content
    with wave.open(io.BytesIO(base64.b64decode(message.audio.data))) as w:
        assert w.getnframes() / w.getframerate() > 0.5
