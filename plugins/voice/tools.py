"""``voice.speak``, ``voice.transcribe`` and ``voice.voices``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec

from core.blocking import run_blocking
from core.capabilities import Segment, Speech, SpeechSegment, Transcription, split_sentences
from core.events import Event
from core.results import Audio, Text, ToolResult
from core.tools import NoArgs, ToolCancelled, ToolContext, ToolError

from . import audio, engines

TTS_ROLE, STT_ROLE = "tts", "stt"


class VoiceSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[plugin.voice]`` in loom.toml."""

    max_text_chars: int = 20_000
    max_audio_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 900.0
    fallback_voice: str = "en-us"  # the espeak-ng voice used when no Piper voice can speak
    beam_size: int = 5


def settings(app: Any) -> VoiceSettings:
    return app.config.plugin_settings("voice", VoiceSettings)


class SpeechChunk(Event, frozen=True, kw_only=True):
    """One spoken sentence of a ``voice.speak`` call, as soon as it is ready (for streaming
    playback): 16-bit mono PCM at ``sample_rate``."""

    index: int
    total: int
    text: str
    sample_rate: int
    pcm: bytes


# --- speak -------------------------------------------------------------------------------------


class SpeakArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Annotated[str, msgspec.Meta(min_length=1, description="What to say.")]
    voice: Annotated[str | None, msgspec.Meta(
        description="A voice from voice.voices: a Piper voice model name, or espeak:<voice>. "
                    "Default: the tts model (the packaged en_US joe voice).")] = None
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0, description="1.0 is the voice's natural rate.")] = 1.0


def _pick_voice(app: Any, voice: str | None) -> tuple[str, str | None]:
    """(engine, name): ("piper", model) or ("espeak", espeak voice)."""
    from core.pool import ModelUnavailable

    if voice and voice.startswith("espeak:"):
        return "espeak", voice.split(":", 1)[1] or settings(app).fallback_voice
    if voice == "espeak":
        return "espeak", settings(app).fallback_voice
    pool = app.pool
    if voice:
        cfg = pool.models().get(voice)
        if cfg is None or cfg.backend != "piper":
            names = [n for n, c in pool.models().items() if c.backend == "piper"]
            raise ToolError(f"unknown voice {voice!r}; installed: {', '.join([*names, 'espeak:<voice>'])} "
                            "(see voice.voices)")
        return "piper", voice
    try:
        return "piper", pool.model_for(TTS_ROLE)
    except ModelUnavailable:
        return "espeak", settings(app).fallback_voice


async def speak(args: SpeakArgs, ctx: ToolContext) -> ToolResult:
    """Say a text out loud: returns a WAV (16-bit mono) as audio content.

    Uses Piper with the packaged en_US voice by default, espeak-ng as the fallback.
    Long texts are spoken sentence by sentence: progress is reported after each one and
    each sentence is published as a SpeechChunk event for streaming playback."""
    app = ctx.app
    limits = settings(app)
    text = "".join(c for c in args.text if c.isprintable() or c in "\n\t")
    if len(text) > limits.max_text_chars:
        raise ToolError(f"the text is {len(text):,} characters, over the {limits.max_text_chars:,} limit "
                        "(max_text_chars under [plugin.voice]); split it into several calls")
    parts = split_sentences(text)
    if not parts:
        raise ToolError("nothing to say: the text has no letters or digits")
    engine, name = _pick_voice(app, args.voice)
    note = ""
    started = time.perf_counter()
    report = _reporter(ctx, len(parts))
    if engine == "piper":
        try:
            async with app.pool.use(name, Speech, reason="voice.speak") as tts:
                result = await tts.synthesize(parts, speed=args.speed, on_segment=report, cancel=ctx.cancelled)
            pcm, rate = result.pcm, result.sample_rate
        except ToolCancelled:
            raise
        except ToolError as exc:
            if args.voice:  # the caller asked for this voice: say why it failed
                raise
            engine, note = "espeak", f" (Piper voice {name!r} unavailable: {exc}; fell back to espeak-ng)"
            name = limits.fallback_voice
    if engine == "espeak":
        pcm = await _espeak(ctx, parts, name, args.speed, report)
        rate = engines.ESPEAK_RATE
    seconds = time.perf_counter() - started
    duration = len(pcm) / 2 / rate
    data = audio.wav_bytes(pcm, rate)
    info = {"engine": engine, "voice": name, "sample_rate": rate, "duration": round(duration, 3),
            "sentences": len(parts), "seconds": round(seconds, 3),
            "rtf": round(seconds / duration, 4) if duration else None}
    return ToolResult(content=[Audio(data, "audio/wav"),
                               Text(f"{duration:.1f} s of speech, {len(parts)} sentence(s), {engine} voice "
                                    f"{name}{note}")],
                      structured=info)


def _reporter(ctx: ToolContext, total: int) -> Callable[[SpeechSegment], Any]:
    """Each spoken sentence: a SpeechChunk on the bus (streaming playback) and a progress report."""
    bus = ctx.bus

    async def report(seg: SpeechSegment) -> None:
        if bus is not None:
            bus.publish_nowait(SpeechChunk(index=seg.index, total=total, text=seg.text, sample_rate=seg.sample_rate,
                                           pcm=seg.pcm, correlation_id=ctx.correlation_id, source="voice"))
        await ctx.progress(float(seg.index + 1), float(total), f"sentence {seg.index + 1}/{total}: {seg.text[:80]}")

    return report


async def _espeak(ctx: ToolContext, parts: list[str], voice: str, speed: float,
                  report: Callable[[SpeechSegment], Any]) -> bytes:
    """espeak-ng sentence by sentence in one worker thread, reported like Piper's sentences."""
    token = anyio.lowlevel.current_token()

    def work() -> bytes:
        out = []
        for i, sentence in enumerate(parts):
            ctx.check_cancelled()
            pcm = engines.espeak_pcm(sentence, voice, speed)
            out.append(pcm)
            seg = SpeechSegment(index=i, total=len(parts), text=sentence, sample_rate=engines.ESPEAK_RATE, pcm=pcm)
            try:
                anyio.from_thread.run(report, seg, token=token)
            except RuntimeError:
                pass  # loop shutting down
        return b"".join(out)

    return await run_blocking(work, ctx.cancelled, stop_wait=600.0)


# --- transcribe ---------------------------------------------------------------------------------


class TranscribeArgs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    audio: Annotated[Any, msgspec.Meta(description="WAV, MP3, OGG or FLAC: a path inside the allowed roots, a "
                                                   "data: URL, base64, or MCP audio content.")]
    language: Annotated[str | None, msgspec.Meta(description="ISO code such as 'en'; detected when omitted "
                                                             "(multilingual models).")] = None
    word_timestamps: Annotated[bool, msgspec.Meta(description="Also return each word's start and end.")] = False
    model: Annotated[str | None, msgspec.Meta(description="A configured faster-whisper model; default: "
                                                          "the stt model (packaged tiny.en).")] = None
    task: Annotated[Literal["transcribe", "translate"], msgspec.Meta(
        description="'translate': English text from speech in any language (needs a multilingual "
                    "model; tiny.en is English-only).")] = "transcribe"


class Transcript(msgspec.Struct):
    text: str
    language: str
    duration: float
    format: str
    segments: list[Segment]
    model: str
    seconds: float
    rtf: float | None
    task: str = "transcribe"  # "translate": ``text`` is English, ``language`` the speech's own


def prepare_audio(value: Any, app: Any, cancelled: Any = None) -> tuple[Any, audio.AudioInfo]:
    """Read, cap, probe and decode (blocking): 16 kHz mono float32 and the header's facts."""
    limits = settings(app)
    data = audio.read_audio_arg(value, roots=app.config.allowed_roots(), max_bytes=limits.max_audio_bytes)
    info = audio.probe(data)
    audio.check_duration(info, limits.max_audio_seconds)
    return audio.decode(data, info, max_seconds=limits.max_audio_seconds, cancelled=cancelled), info


async def transcribe(args: TranscribeArgs, ctx: ToolContext) -> ToolResult:
    """Turn speech into text with faster-whisper (packaged Whisper tiny.en by default).

    Audio is capped in bytes and duration before it is decoded (the duration is read from
    the file's headers; a file that lies about its length is refused). Progress follows
    the transcribed seconds; word timestamps on request. ``task="translate"`` writes English
    text from speech in any language (a multilingual model; tiny.en is English-only)."""
    app = ctx.app
    limits = settings(app)
    name = args.model or app.pool.model_for(STT_ROLE)
    if args.model:
        cfg = app.pool.config_for(args.model)
        if cfg.backend != "faster_whisper":
            raise ToolError(f"model {args.model!r} is not a faster-whisper model (backend {cfg.backend!r})")
    samples, info = await anyio.to_thread.run_sync(prepare_audio, args.audio, app, ctx.cancelled)
    duration = len(samples) / audio.WHISPER_RATE
    beam_size = int(app.pool.config_for(name).options.get("beam_size", limits.beam_size))

    async def on_segment(seg: Segment) -> None:
        await ctx.progress(min(seg.end, duration), duration, seg.text[:80])

    async with app.pool.use(name, Transcription, reason="voice.transcribe") as stt:
        language = args.language
        if args.task == "translate" and not stt.multilingual:
            raise ToolError(f"model {name!r} is English-only and cannot translate speech into English; configure "
                            "a multilingual faster-whisper model (e.g. Whisper small converted with "
                            "ct2-transformers-converter) with role = \"stt\", or pass its name as model")
        if language and not stt.multilingual and language.split("-")[0].lower() != "en":
            raise ToolError(f"model {name!r} is English-only and cannot transcribe {language!r}; configure a "
                            "multilingual faster-whisper model (e.g. small) with role = \"stt\"")
        if not stt.multilingual:
            language = "en"
        started = time.perf_counter()
        out = await stt.transcribe(samples, sample_rate=audio.WHISPER_RATE, language=language,
                                   word_timestamps=args.word_timestamps, beam_size=beam_size, task=args.task,
                                   on_segment=on_segment, cancel=ctx.cancelled)
        seconds = time.perf_counter() - started
    segments, lang = out.segments, out.language
    text = " ".join(s.text for s in segments).strip()
    result = Transcript(text=text, language=lang, duration=round(duration, 3), format=info.format,
                        segments=segments, model=name, seconds=round(seconds, 3),
                        rtf=round(seconds / duration, 4) if duration else None, task=args.task)
    return ToolResult(content=[Text(text or "(no speech detected)")], structured=msgspec.to_builtins(result))


# --- voices -------------------------------------------------------------------------------------


class VoiceInfo(msgspec.Struct):
    name: str
    engine: str
    language: str
    default: bool = False
    file: str | None = None


async def voices(args: NoArgs, ctx: ToolContext) -> list[VoiceInfo]:
    """List the voices voice.speak can use: Piper voice models (configured and packaged) and
    espeak-ng's voices (as espeak:<name>)."""
    app = ctx.app
    pool = app.pool
    try:
        default = pool.model_for(TTS_ROLE)
    except ToolError:
        default = None
    out: list[VoiceInfo] = []
    for name, cfg in sorted(pool.models().items()):
        if cfg.backend == "piper":
            out.append(VoiceInfo(name, "piper", str(cfg.options.get("language", "")) or _piper_language(cfg),
                                 name == default, cfg.file))
    fallback = settings(app).fallback_voice
    for v in await anyio.to_thread.run_sync(engines.espeak_voices):
        out.append(VoiceInfo(f"espeak:{v['name']}", "espeak-ng", v["language"],
                             default is None and v["language"] == fallback))
    return out


def _piper_language(cfg: Any) -> str:
    """The voice's language from its .onnx.json, without loading the model."""
    import json

    from core.backends import ModelSpec

    try:
        path = engines._resolve(ModelSpec("voice", cfg), want="onnx")
        meta = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
        return str(meta.get("language", {}).get("code") or meta.get("espeak", {}).get("voice") or "")
    except (ToolError, OSError, ValueError):
        return ""
