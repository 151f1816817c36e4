"""Audio in and out for the voice tools: capped input, header probing, decoding, WAV writing.

Input audio is checked before anything decodes it:

1. bytes: a base64 payload is measured before it is decoded, a file by ``stat`` before
   it is read;
2. format: sniffed from magic bytes (WAV, FLAC, OGG, MP3; nothing else reaches a decoder);
3. duration: read from the headers (WAV data chunk and byte rate, FLAC STREAMINFO, the
   last Ogg page's granule position, an MP3 Xing/Info frame count or the CBR bitrate) and
   capped. A header that claims more bytes than the file holds is rejected.
4. decoding (PyAV, the demuxer named explicitly) stops as soon as the decoded audio runs
   past the cap, or past what the header claimed: a file that lies about its length is
   rejected, never decoded to the end.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.paths import confined_file
from core.tools import ToolError

WHISPER_RATE = 16_000
FORMATS = ("wav", "flac", "ogg", "mp3")


class AudioError(ToolError):
    """Audio the voice tools refuse, with the reason."""


@dataclass(frozen=True)
class AudioInfo:
    format: str  # "wav", "flac", "ogg" or "mp3"
    sample_rate: int
    channels: int
    duration: float  # seconds, from the headers
    exact: bool  # False for an MP3 estimated from its bitrate


# --- reading the argument -----------------------------------------------------------------


def read_audio_arg(value: Any, *, roots: list[Path], max_bytes: int) -> bytes:
    """Bytes from a path in the allowed roots, a data: URL, base64, or MCP audio content, capped."""
    if isinstance(value, dict):
        data = value.get("data")
        if value.get("type") not in (None, "audio") or not isinstance(data, str):
            raise AudioError("audio: expected MCP audio content {\"type\": \"audio\", \"data\": <base64>, "
                             "\"mimeType\": ...}")
        return _b64(data, max_bytes)
    if not isinstance(value, str) or not value:
        raise AudioError("audio: expected a file path, a data: URL, base64, or MCP audio content")
    if value.startswith("data:"):
        header, sep, payload = value.partition(",")
        if not sep or not header.endswith(";base64"):
            raise AudioError("audio: only base64 data URLs are supported (data:audio/wav;base64,...)")
        return _b64(payload, max_bytes)
    if len(value) > 1024 or "\n" in value:
        return _b64(value, max_bytes)  # too long for a path: must be base64
    return _read_path(value, roots, max_bytes)


def _b64(text: str, max_bytes: int) -> bytes:
    approx = len(text) * 3 // 4
    if approx > max_bytes + 3:
        raise AudioError(f"audio is about {approx:,} bytes, over the {max_bytes:,}-byte limit "
                         "(max_audio_bytes under [plugin.voice])")
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AudioError("audio: not valid base64 (nor an existing file path)") from None


def _read_path(text: str, roots: list[Path], max_bytes: int) -> bytes:
    real = confined_file(text, roots, max_bytes=max_bytes, what="audio file",
                         limit_setting="max_audio_bytes under [plugin.voice]", error=AudioError)
    with real.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise AudioError(f"{text!r} is over the {max_bytes:,}-byte limit")
    return data


# --- probing headers ---------------------------------------------------------------------------


def sniff(data: bytes) -> str:
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    raise AudioError("unsupported or unrecognised audio format: send WAV, MP3, OGG (Vorbis/Opus/FLAC) or FLAC")


def probe(data: bytes) -> AudioInfo:
    """Format, rate, channels and duration from the headers alone; malformed headers raise."""
    if not data:
        raise AudioError("the audio is empty")
    fmt = sniff(data)
    try:
        info = {"wav": _probe_wav, "flac": _probe_flac, "ogg": _probe_ogg, "mp3": _probe_mp3}[fmt](data)
    except (struct.error, IndexError, ValueError) as exc:
        raise AudioError(f"malformed {fmt.upper()} header: {exc}") from None
    if not 1000 <= info.sample_rate <= 768_000:
        raise AudioError(f"{fmt.upper()} header gives an implausible sample rate of {info.sample_rate} Hz")
    if not 1 <= info.channels <= 32:
        raise AudioError(f"{fmt.upper()} header gives an implausible channel count of {info.channels}")
    return info


def _probe_wav(data: bytes) -> AudioInfo:
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16:
                raise ValueError("fmt chunk too short")
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("data chunk before the fmt chunk")
            _, channels, rate, byte_rate, block_align, _ = fmt
            remaining = len(data) - body
            if size in (0, 0xFFFFFFFF):  # written by a streaming encoder: the data runs to the end
                size = remaining
            if size > remaining:
                raise AudioError(f"WAV header claims {size:,} bytes of audio but the file holds only "
                                 f"{remaining:,}: truncated, or lying about its length")
            if byte_rate <= 0 or block_align <= 0:
                raise ValueError("zero byte rate")
            return AudioInfo("wav", rate, channels, size / byte_rate, True)
        pos = body + size + (size & 1)
    raise ValueError("no data chunk")


def _probe_flac(data: bytes) -> AudioInfo:
    if len(data) < 42 or data[4] & 0x7F != 0:
        raise ValueError("first metadata block is not STREAMINFO")
    si = data[8:8 + 34]
    if len(si) < 34:
        raise ValueError("STREAMINFO truncated")
    bits = int.from_bytes(si[10:18], "big")
    rate = bits >> 44
    channels = ((bits >> 41) & 0x7) + 1
    total = bits & ((1 << 36) - 1)
    if total == 0:
        raise AudioError("this FLAC stream does not state its length (STREAMINFO total samples is 0); "
                         "re-encode it as a regular FLAC or WAV file")
    if rate == 0:
        raise ValueError("sample rate 0")
    return AudioInfo("flac", rate, channels, total / rate, True)


def _ogg_pages(data: bytes):
    pos = 0
    while pos + 27 <= len(data) and data[pos:pos + 4] == b"OggS":
        nseg = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + nseg]
        body = pos + 27 + nseg
        size = sum(lacing)
        yield pos, data[body:body + size]
        pos = body + size


def _probe_ogg(data: bytes) -> AudioInfo:
    first = next(_ogg_pages(data), None)
    if first is None:
        raise ValueError("no Ogg page")
    head = first[1]
    if head.startswith(b"\x01vorbis"):
        channels, rate = head[11], struct.unpack_from("<I", head, 12)[0]
        granule_rate, preskip = rate, 0
    elif head.startswith(b"OpusHead"):
        channels, preskip, rate = head[9], struct.unpack_from("<H", head, 10)[0], 48_000
        granule_rate = 48_000
    elif head.startswith(b"\x7fFLAC"):
        info = _probe_flac(head[9:])
        channels, rate, granule_rate, preskip = info.channels, info.sample_rate, info.sample_rate, 0
    else:
        raise AudioError("unsupported Ogg codec: Vorbis, Opus and FLAC are supported")
    last = data.rfind(b"OggS", max(0, len(data) - 65_536 - 27))
    if last < 0 or last + 14 > len(data):
        raise ValueError("no final Ogg page")
    granule = struct.unpack_from("<q", data, last + 6)[0]
    if granule <= 0:
        raise AudioError("the Ogg stream does not state its length (no granule position on its last page)")
    return AudioInfo("ogg", rate, channels, max(granule - preskip, 0) / granule_rate, True)


_MP3_BITRATES = {  # (version bit, layer) -> kbps table for index 1..14
    (1, 3): [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    (0, 3): [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
_MP3_RATES = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}


def _probe_mp3(data: bytes) -> AudioInfo:
    pos = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        pos = 10 + ((size[0] & 0x7F) << 21 | (size[1] & 0x7F) << 14 | (size[2] & 0x7F) << 7 | (size[3] & 0x7F))
    # find the first frame sync within a small window
    for start in range(pos, min(len(data) - 4, pos + 8192)):
        if data[start] == 0xFF and data[start + 1] & 0xE0 == 0xE0:
            h = struct.unpack_from(">I", data, start)[0]
            version, layer = (h >> 19) & 0x3, (h >> 17) & 0x3
            br_index, sr_index = (h >> 12) & 0xF, (h >> 10) & 0x3
            if version == 1 or layer != 1 or br_index in (0, 15) or sr_index == 3:
                continue  # reserved values: not a frame header (layer bits 01 = Layer III)
            break
    else:
        raise ValueError("no MPEG Layer III frame found")
    channels = 1 if (h >> 6) & 0x3 == 3 else 2
    rate = _MP3_RATES[version][sr_index]
    kbps = _MP3_BITRATES[(1 if version == 3 else 0, 3)][br_index - 1]
    samples_per_frame = 1152 if version == 3 else 576
    side = (17 if channels == 1 else 32) if version == 3 else (9 if channels == 1 else 17)
    xing = data[start + 4 + side:start + 4 + side + 12]
    if xing[:4] in (b"Xing", b"Info") and struct.unpack_from(">I", xing, 4)[0] & 1:
        frames = struct.unpack_from(">I", xing, 8)[0]
        return AudioInfo("mp3", rate, channels, frames * samples_per_frame / rate, True)
    return AudioInfo("mp3", rate, channels, (len(data) - start) * 8 / (kbps * 1000), False)


# --- decoding -------------------------------------------------------------------------------


def check_duration(info: AudioInfo, max_seconds: float) -> None:
    if info.duration > max_seconds:
        raise AudioError(f"the audio is {info.duration:.1f} s long (from its {info.format.upper()} header), over the "
                         f"{max_seconds:g} s limit (max_audio_seconds under [plugin.voice])")


def decode(data: bytes, info: AudioInfo, *, max_seconds: float, cancelled: Any = None) -> Any:
    """16 kHz mono float32 samples, decoding no further than the cap or the header's claim."""
    import av
    import numpy as np

    claimed = info.duration * (1.02 if info.exact else 1.5) + 0.5
    limit = min(max_seconds, claimed)
    chunks: list[Any] = []
    seconds = 0.0
    try:
        with av.open(io.BytesIO(data), mode="r", format=info.format, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"the {info.format.upper()} file has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=WHISPER_RATE)
            for frame in container.decode(stream):
                seconds += frame.samples / (frame.sample_rate or info.sample_rate)
                if seconds > limit:
                    if limit < max_seconds:
                        raise AudioError(f"the {info.format.upper()} header says {info.duration:.1f} s but the file "
                                         f"holds more audio: it lies about its length, refused")
                    raise AudioError(f"the audio runs past the {max_seconds:g} s limit "
                                     "(max_audio_seconds under [plugin.voice])")
                if cancelled is not None and cancelled.is_set():
                    raise AudioError("cancelled while decoding")
                chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise AudioError(f"could not decode the {info.format.upper()} audio: {exc}") from None
    if not chunks:
        raise AudioError(f"the {info.format.upper()} file decodes to no audio samples")
    pcm = np.concatenate([c.reshape(-1) for c in chunks])
    return pcm.astype(np.float32) / 32768.0


# --- output -----------------------------------------------------------------------------------


def wav_bytes(pcm16: bytes, sample_rate: int, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return buf.getvalue()
