"""``/v1/audio/translations`` with the official ``openai`` client on a real daemon.

Two speech-to-text models: the packaged Whisper tiny.en (English-only: a translation is a
400 that says which model to configure) and a tiny *multilingual* Whisper with random
weights, generated at test time and converted with CTranslate2's converter
(``tests/whisper_factory.py``), so ``task="translate"`` really reaches faster-whisper. Its
text is gibberish; what the test can see is that translating and transcribing the same
audio decode from different prompts (the task token), so they write different text.
"""

from __future__ import annotations

import io
import math
import struct
import wave

import openai
import pytest

from tests.openai_helpers import LoomDaemon


def _tone_wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate) * math.sin(7 * i / rate)))
                      for i in range(int(seconds * rate)))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from tests.whisper_factory import write_tiny_multilingual_whisper

    base = tmp_path_factory.mktemp("openai-translate")
    multi = write_tiny_multilingual_whisper(base / "whisper-multi")
    toml = f"""
[models.whisper-multi]
backend = "faster_whisper"
file = "{multi}"
device = "cpu"
options = {{ beam_size = 1, temperature = 0.0 }}
"""
    d = LoomDaemon(base, "admin,models,voice", toml).start()
    yield d
    d.stop()


AUDIO = ("speech.wav", _tone_wav(), "audio/wav")


def test_english_only_model_answers_400_naming_what_to_configure(daemon):
    client = daemon.openai(max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.translations.create(model="whisper-1", file=AUDIO)
    body = err.value.body
    assert body["code"] == "model_not_multilingual" and body["param"] == "model"
    assert "English-only" in body["message"] and "multilingual" in body["message"]
    assert daemon.get("/healthz").status_code == 200  # and the daemon carries on


def test_multilingual_model_translates_in_every_format(daemon):
    client = daemon.openai()
    translated = client.audio.translations.create(model="whisper-multi", file=AUDIO)
    transcribed = client.audio.transcriptions.create(model="whisper-multi", file=AUDIO)
    assert translated.text.strip() and transcribed.text.strip()
    # Same audio, same model, same detected language: only the task token differs.
    assert translated.text != transcribed.text
    again = client.audio.translations.create(model="whisper-multi", file=AUDIO, response_format="text")
    assert again.strip() == translated.text.strip()  # greedy at one temperature: deterministic
    verbose = client.audio.translations.create(model="whisper-multi", file=AUDIO, response_format="verbose_json")
    assert verbose.task == "translate" and verbose.language == "en" and verbose.segments
    assert verbose.text == translated.text and math.isclose(verbose.duration, 1.0, abs_tol=0.01)
    srt = client.audio.translations.create(model="whisper-multi", file=AUDIO, response_format="srt")
    vtt = client.audio.translations.create(model="whisper-multi", file=AUDIO, response_format="vtt")
    first = verbose.segments[0]
    assert srt.startswith("1\n00:00:") and f"\n{first.text.strip()}\n" in srt and " --> " in srt
    assert vtt.startswith("WEBVTT\n\n00:00:") and f"\n{first.text.strip()}\n" in vtt


def test_translation_errors_are_openai_json(daemon):
    client = daemon.openai(max_retries=0)
    with pytest.raises(openai.NotFoundError, match="whisper-nope"):
        client.audio.translations.create(model="whisper-nope", file=AUDIO)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.audio.translations.create(model="whisper-multi", file=AUDIO, response_format="xml")
    r = daemon.post("/v1/audio/translations", json={"model": "whisper-multi"})
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
