"""Loom's tools by profile for OpenAI/Anthropic-SDK apps (``/v1/tools``), on a real daemon.

A profile from loom.toml (``[profiles.speech]``) and the built-in ``discover`` select the
tool lists; the packaged SmolLM2, driven through each SDK, gets the list as its ``tools``,
makes a (forced) call, and the call runs on Loom through ``POST /v1/tools/call`` under the
profile's rules.
"""

from __future__ import annotations

import base64

import anthropic
import openai
import pytest

from tests.openai_helpers import daemon_fixture

TOML = """
[profiles.speech]
description = "Speak and list the voices"
tools = ["voice.*"]
exclude = ["voice.transcribe"]
"""


daemon = daemon_fixture("openai-tools", "admin,models,llamacpp,voice,toolsearch", TOML)


@pytest.fixture(scope="module")
def client(daemon):
    return daemon.openai()


@pytest.fixture(scope="module")
def claude(daemon):
    return anthropic.Anthropic(base_url=daemon.base_url, api_key=daemon.token, max_retries=4, timeout=120)


def _tools(client, **params) -> dict:
    return client.get("/tools", cast_to=object, options={"params": params})


def test_profiles_select_the_tool_lists(client, claude):
    speech = _tools(client, profile="speech")
    assert speech["names"] == {"voice_speak": "voice.speak", "voice_voices": "voice.voices"}
    assert [t["function"]["name"] for t in speech["data"]] == ["voice_speak", "voice_voices"]
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in speech["data"])
    every = _tools(client)
    assert every["profile"] == "all" and {"voice_transcribe", "tools_search", "voice_speak"} <= set(every["names"])
    assert [t["function"]["name"] for t in _tools(client, profile="discover")["data"]] == ["tools_search"]
    shaped = claude.get("/v1/tools", cast_to=object, options={"params": {"profile": "speech", "format": "anthropic"}})
    assert [t["name"] for t in shaped["data"]] == ["voice_speak", "voice_voices"]
    assert all("input_schema" in t for t in shaped["data"])
    listed = {p["id"]: p for p in client.get("/tools/profiles", cast_to=object)["data"]}
    assert listed["speech"]["description"] == "Speak and list the voices" and listed["speech"]["tools"] == 2
    assert listed["speech"]["mcp_path"] == "/mcp/speech" and {"all", "media", "coding", "discover"} <= set(listed)
    with pytest.raises(openai.NotFoundError, match="unknown tool profile 'nope'.*speech"):
        _tools(client.with_options(max_retries=0), profile="nope")


def test_openai_round_trip_with_a_profile(client):
    tools = _tools(client, profile="speech")["data"]
    ask = [{"role": "user", "content": "Which voices can you speak with?"}]
    out = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=40, messages=ask, tools=tools,
                                         tool_choice={"type": "function", "function": {"name": "voice_voices"}})
    call = out.choices[0].message.tool_calls[0]
    done = client.post("/tools/call", cast_to=object,
                       body={"name": call.function.name, "arguments": call.function.arguments, "profile": "speech"})
    assert done["tool"] == "voice.voices" and not done["is_error"]
    assert any(v["engine"] == "piper" for v in done["structured"])
    assert done["text"].strip()  # what goes back to the model as the tool message


def test_anthropic_round_trip_and_speech_comes_back_as_audio(claude):
    tools = claude.get("/v1/tools", cast_to=object, options={"params": {"profile": "speech", "format": "anthropic"}})
    msg = claude.messages.create(model="smollm2", max_tokens=40, tools=tools["data"],
                                 tool_choice={"type": "tool", "name": "voice_voices"},
                                 messages=[{"role": "user", "content": "Which voices do you have?"}])
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert msg.stop_reason == "tool_use" and uses and uses[0].name == "voice_voices", msg
    done = claude.post("/v1/tools/call", cast_to=object, body={"name": uses[0].name, "arguments": uses[0].input,
                                                               "profile": "speech"})
    assert done["tool"] == "voice.voices" and not done["is_error"]
    spoken = claude.post("/v1/tools/call", cast_to=object, body={"name": "voice_speak", "profile": "speech",
                                                                 "arguments": {"text": "Good morning."}})
    audio = [c for c in spoken["content"] if c["type"] == "audio"]
    assert not spoken["is_error"] and audio and audio[0]["mime_type"] == "audio/wav"
    assert base64.b64decode(audio[0]["data"])[:4] == b"RIFF"


def test_calls_outside_the_profile_are_refused(client):
    strict = client.with_options(max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="not in the 'speech' profile"):
        strict.post("/tools/call", cast_to=object, body={"name": "voice_transcribe", "arguments": "{}",
                                                         "profile": "speech"})
    with pytest.raises(openai.NotFoundError, match="no tool named"):
        strict.post("/tools/call", cast_to=object, body={"name": "voice_sing", "profile": "speech"})
    # discover lists only tools.search, and may call what it finds.
    found = strict.post("/tools/call", cast_to=object, body={"name": "tools_search", "profile": "discover",
                                                             "arguments": {"task": "which voices are there"}})
    assert "voice.voices" in [t["name"] for t in found["structured"]["tools"]]
    voices = strict.post("/tools/call", cast_to=object, body={"name": "voice_voices", "profile": "discover"})
    assert not voices["is_error"]
    bad = strict.post("/tools/call", cast_to=object, body={"name": "voice_speak", "profile": "speech",
                                                           "arguments": {"txt": "hi"}})
    assert bad["is_error"] and "txt" in bad["text"]  # the model reads the error and may retry
