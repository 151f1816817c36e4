"""Media capabilities: image and video generation, speech, transcription, vision embeddings.

::

    async with app.pool.use(name, ImageGen) as gen:
        result = await gen.generate(ImageRequest(prompt="a lighthouse", width=512, height=512, steps=20,
                                                 guidance=7.5, seed=1), on_progress=..., cancel=ctx.cancelled)
        result.image.to_pil()                      # RGB pixels, with result.pipeline, result.seconds

    async with app.pool.use(app.pool.model_for("tts"), Speech) as tts:
        async with tts.stream(["First sentence.", "Second."]) as s:
            async for chunk in s:                   # SpeechSegment: one sentence's PCM as soon as it is ready
                play(chunk.pcm)
        s.result.pcm                                # all of it, 16-bit mono at s.result.sample_rate

Everything that crosses a capability is a msgspec struct of plain values and bytes, never a
PIL image, a numpy array or a tensor, so a worker process or a Ray actor can serve the same
operation: pictures travel as raw RGB (``RawImage``) or encoded bytes (PNG, JPEG), video as
raw RGB frames with their fps, audio as 16-bit PCM (speech) or float32 samples
(transcription) with their sample rate. ``to_pil``/``array`` helpers import PIL and numpy
lazily on the caller's side.

Image and video generation emit a ``StepProgress`` after every denoising step and stop at
the next step when the call's cancel flag is set (``ToolCancelled`` saying at which step).
Speech emits a ``SpeechSegment`` per sentence; transcription a ``Segment`` per window.

Describing or answering about an image is chat: a model with ``info.vision`` takes image
parts in ``Chat`` messages (``core.capabilities.chat``). ``VisionEmbed`` embeds images and
texts into one space (a VLM's hidden states, a CLIP-style model).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import msgspec

from .base import Capability, CapabilityError, OpStream, capability, operation
from .embed import EmbedResult

OnEvent = Callable[[Any], Awaitable[None] | None] | None


class StepProgress(msgspec.Struct, frozen=True):
    """One denoising step done (image and video generation)."""

    step: int
    total: int


class RawImage(msgspec.Struct, frozen=True):
    """Uncompressed 8-bit RGB pixels, row-major (``width * height * 3`` bytes)."""

    width: int
    height: int
    data: bytes

    @classmethod
    def from_pil(cls, im: Any) -> RawImage:
        im = im if im.mode == "RGB" else im.convert("RGB")
        return cls(im.width, im.height, im.tobytes())

    def to_pil(self) -> Any:
        from PIL import Image

        return Image.frombytes("RGB", (self.width, self.height), self.data)


# --- image generation -------------------------------------------------------------------------


class ImageRequest(msgspec.Struct, kw_only=True):
    """One text-to-image generation; sizes, steps and guidance are the caller's final choice."""

    prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str | None = None
    options: dict[str, Any] = {}  # extra pipeline keyword arguments, backend-specific


class EditRequest(ImageRequest, kw_only=True):
    """Image-to-image: ``image`` (already at ``width`` x ``height``) redrawn by ``strength`` (0-1)."""

    image: RawImage
    strength: float = 0.6


class ImageResult(msgspec.Struct, kw_only=True):
    image: RawImage
    seed: int
    steps: int  # denoising steps that ran
    pipeline: str  # the pipeline class that made it
    seconds: float


IMAGE_GENERATE = operation("image.generate", ImageRequest, ImageResult, StepProgress)
IMAGE_EDIT = operation("image.edit", EditRequest, ImageResult, StepProgress)


class _Pipeline(Capability):
    """What image and video pipelines both report in ``info.details``."""

    @property
    def family(self) -> str:
        return str(self.info.details.get("family", ""))

    @property
    def size_step(self) -> int:
        return int(self.info.details.get("size_step", 8))


@capability
class ImageGen(_Pipeline):
    """Text-to-image and image-to-image. ``info.details``: ``family`` ("flux", "sd", "sdxl"...),
    ``pipeline``, ``size_step`` (sizes must be multiples of it), ``native_size`` ([w, h])."""

    kind = "image"

    def stream(self, request: ImageRequest, *, cancel: threading.Event | None = None) -> OpStream[StepProgress,
                                                                                                  ImageResult]:
        op = IMAGE_EDIT if isinstance(request, EditRequest) else IMAGE_GENERATE
        return self._open(op, request, cancel)

    async def generate(self, request: ImageRequest, *, on_progress: OnEvent = None,
                       cancel: threading.Event | None = None) -> ImageResult:
        """Run to the end; ``on_progress`` sees each ``StepProgress``."""
        return await self.stream(request, cancel=cancel).finish(on_progress)

    async def edit(self, request: EditRequest, *, on_progress: OnEvent = None,
                   cancel: threading.Event | None = None) -> ImageResult:
        return await self.stream(request, cancel=cancel).finish(on_progress)

    @property
    def native_size(self) -> tuple[int, int]:
        w, h = self.info.details.get("native_size", (512, 512))
        return int(w), int(h)


# --- video generation -------------------------------------------------------------------------


class VideoRequest(msgspec.Struct, kw_only=True):
    prompt: str
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    guidance: float
    seed: int
    negative_prompt: str | None = None
    options: dict[str, Any] = {}


class VideoResult(msgspec.Struct, kw_only=True):
    """The clip as raw RGB frames (``count x height x width x 3`` bytes) and its frame rate."""

    frames: bytes
    count: int
    width: int
    height: int
    fps: int
    seed: int
    steps: int
    pipeline: str
    seconds: float

    def array(self) -> Any:
        """The frames as a (count, height, width, 3) uint8 numpy array (no copy)."""
        import numpy as np

        return np.frombuffer(self.frames, dtype=np.uint8).reshape(self.count, self.height, self.width, 3)


VIDEO_GENERATE = operation("video.generate", VideoRequest, VideoResult, StepProgress)


@capability
class VideoGen(_Pipeline):
    """Text-to-video. ``info.details`` as for ``ImageGen`` (``size_step`` is the spatial one)."""

    kind = "video"

    def stream(self, request: VideoRequest, *, cancel: threading.Event | None = None) -> OpStream[StepProgress,
                                                                                                  VideoResult]:
        return self._open(VIDEO_GENERATE, request, cancel)

    async def generate(self, request: VideoRequest, *, on_progress: OnEvent = None,
                       cancel: threading.Event | None = None) -> VideoResult:
        return await self.stream(request, cancel=cancel).finish(on_progress)


# --- speech -----------------------------------------------------------------------------------


class SpeechRequest(msgspec.Struct, kw_only=True):
    """Sentences to speak in order (``split_sentences`` cuts a text into them)."""

    sentences: list[str]
    speed: float = 1.0  # 1.0: the voice's natural rate


class SpeechSegment(msgspec.Struct, frozen=True, kw_only=True):
    """One sentence, as soon as it is synthesized: 16-bit mono PCM at ``sample_rate``."""

    index: int
    total: int
    text: str
    sample_rate: int
    pcm: bytes


class SpeechResult(msgspec.Struct, kw_only=True):
    pcm: bytes  # every sentence, in order
    sample_rate: int
    sentences: int
    seconds: float  # synthesis time

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate if self.sample_rate else 0.0


SPEECH_SYNTHESIZE = operation("speech.synthesize", SpeechRequest, SpeechResult, SpeechSegment)


def split_sentences(text: str, max_chars: int = 400) -> list[str]:
    """Sentences to speak one at a time; very long ones are cut at commas, then at spaces."""
    import re

    out: list[str] = []
    for part in re.split(r"(?<=[.!?。！？])[\"')\]]*\s+|\n{2,}", text):
        part = " ".join(part.split())
        while len(part) > max_chars:
            cut = part.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 3 else part.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
            out.append(part[:cut].strip())
            part = part[cut:].strip()
        if part and any(c.isalnum() for c in part):
            out.append(part)
    return out


@capability
class Speech(Capability):
    """Text to speech, sentence by sentence. ``info.details``: ``sample_rate``, ``language``."""

    kind = "speech"

    def stream(self, text: str | Sequence[str], *, speed: float = 1.0,
               cancel: threading.Event | None = None) -> OpStream[SpeechSegment, SpeechResult]:
        """Each sentence's ``SpeechSegment`` as it is ready; a string is split into sentences."""
        sentences = split_sentences(text) if isinstance(text, str) else [str(s) for s in text]
        if not sentences:
            raise CapabilityError("nothing to say: the text has no letters or digits")
        return self._open(SPEECH_SYNTHESIZE, SpeechRequest(sentences=sentences, speed=speed), cancel)

    async def synthesize(self, text: str | Sequence[str], *, speed: float = 1.0, on_segment: OnEvent = None,
                         cancel: threading.Event | None = None) -> SpeechResult:
        return await self.stream(text, speed=speed, cancel=cancel).finish(on_segment)

    @property
    def sample_rate(self) -> int:
        return int(self.info.details.get("sample_rate", 0))


# --- transcription ----------------------------------------------------------------------------


class Word(msgspec.Struct):
    word: str
    start: float
    end: float
    probability: float


class Segment(msgspec.Struct):
    start: float
    end: float
    text: str
    words: list[Word] | None = None


class TranscribeRequest(msgspec.Struct, kw_only=True):
    """Decoded audio: float32 little-endian mono samples at ``sample_rate`` (16 kHz for Whisper)."""

    samples: bytes
    sample_rate: int = 16_000
    language: str | None = None  # None: detected (multilingual models)
    word_timestamps: bool = False
    beam_size: int | None = None  # None: the model's configured default
    # "translate": English text from speech in any language (multilingual models only)
    task: Literal["transcribe", "translate"] = "transcribe"


class TranscriptionResult(msgspec.Struct, kw_only=True):
    segments: list[Segment]
    language: str
    duration: float  # seconds of audio
    seconds: float  # time it took

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments).strip()


TRANSCRIBE = operation("transcription.transcribe", TranscribeRequest, TranscriptionResult, Segment)


@capability
class Transcription(Capability):
    """Speech to text with segment (and word) timestamps. ``info.details``: ``multilingual``."""

    kind = "transcription"

    def stream(self, samples: Any, *, sample_rate: int = 16_000, language: str | None = None,
               word_timestamps: bool = False, beam_size: int | None = None,
               task: Literal["transcribe", "translate"] = "transcribe",
               cancel: threading.Event | None = None) -> OpStream[Segment, TranscriptionResult]:
        """Each ``Segment`` as it is transcribed (``task="translate"``: translated into English,
        multilingual models only). ``samples``: float32 mono (numpy array or bytes)."""
        if not isinstance(samples, bytes | bytearray | memoryview):
            import numpy as np

            samples = np.ascontiguousarray(samples, dtype="<f4").tobytes()
        req = TranscribeRequest(samples=bytes(samples), sample_rate=sample_rate, language=language,
                                word_timestamps=word_timestamps, beam_size=beam_size, task=task)
        return self._open(TRANSCRIBE, req, cancel)

    async def transcribe(self, samples: Any, *, on_segment: OnEvent = None, cancel: threading.Event | None = None,
                         **options: Any) -> TranscriptionResult:
        return await self.stream(samples, cancel=cancel, **options).finish(on_segment)

    @property
    def multilingual(self) -> bool:
        return bool(self.info.details.get("multilingual", False))


# --- vision embeddings --------------------------------------------------------------------------


class ImageEmbedRequest(msgspec.Struct, kw_only=True):
    images: list[bytes]  # encoded (PNG, JPEG...), already checked and sized by the caller
    dims: int | None = None  # Matryoshka: keep the first N dimensions, re-normalised


class TextEmbedRequest(msgspec.Struct, kw_only=True):
    texts: list[str]
    dims: int | None = None


EMBED_IMAGES = operation("vision_embed.images", ImageEmbedRequest, EmbedResult)
EMBED_TEXTS = operation("vision_embed.texts", TextEmbedRequest, EmbedResult)


@capability
class VisionEmbed(Capability):
    """Images and texts embedded into one space (unit vectors). ``info.details``: ``dim``."""

    kind = "vision_embed"

    async def embed_images(self, images: Sequence[bytes], *, dims: int | None = None,
                           cancel: threading.Event | None = None) -> EmbedResult:
        if not images:
            raise CapabilityError("embed_images needs at least one image")
        return await self._call(EMBED_IMAGES, ImageEmbedRequest(images=[bytes(b) for b in images], dims=dims),
                                cancel=cancel)

    async def embed_texts(self, texts: Sequence[str], *, dims: int | None = None,
                          cancel: threading.Event | None = None) -> EmbedResult:
        if not texts or not all(isinstance(t, str) for t in texts):
            raise CapabilityError("embed_texts needs a non-empty list of strings")
        return await self._call(EMBED_TEXTS, TextEmbedRequest(texts=list(texts), dims=dims), cancel=cancel)

    @property
    def dim(self) -> int | None:
        d = self.info.details.get("dim")
        return int(d) if d else None


def matryoshka(vectors: Any, dims: int | None) -> Any:
    """Keep the first ``dims`` components of each row and re-normalise it to unit length."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    if dims is not None:
        if dims < 1 or dims > vectors.shape[1]:
            raise CapabilityError(f"dims must be between 1 and {vectors.shape[1]} for this model, got {dims}")
        vectors = vectors[:, :dims]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
