"""Score the router on a labelled file (the format of ../shared/routing_dev.jsonl).

For each example it creates small REAL attachment files of the listed kinds (a PNG, an
MP4 encoded with PyAV, a WAV) and routes through the running assistant with the no-LLM
path: rules + MiniLM embeddings from the model pool. Texts starting with ``[spoken] ``
become a WAV of those words spoken by espeak-ng (or Piper) and are sent with NO text; the
router then learns what they say only if the voice plugin can transcribe them while
routing. Without a TTS the WAV is a tone and the words are lost: the bench says so.

Prints intent accuracy, exact-plan accuracy, confusion by intent, p50 decision time
(rules + embedding, after warm-up), and the same figures for a baseline measured in the
same run: nearest-prototype embedding alone (no rules).

    python bench/routing.py [FILE] [--predictions OUT.jsonl] [--no-voice]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_FILE = ROOT.parent / "shared" / "routing_dev.jsonl"
RECORDING = ("The quarterly results were discussed on Tuesday, and the team agreed to revisit the budget next "
             "month after the audit is finished.")


# --- real attachment files -------------------------------------------------------------


def make_png(path: Path) -> Path:
    from PIL import Image

    img = Image.new("RGB", (64, 48))
    img.putdata([(x * 4, y * 5, 128) for y in range(48) for x in range(64)])
    img.save(path, "PNG")
    return path


def make_mp4(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(8):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:, : (i + 1) * 8] = (200, 80, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def tts_engine() -> str | None:
    return "espeak-ng" if shutil.which("espeak-ng") else ("espeak" if shutil.which("espeak") else None)


def make_speech(path: Path, words: str) -> bool:
    """A WAV of ``words`` spoken by espeak-ng; False when no TTS is installed (a tone is written)."""
    engine = tts_engine()
    if engine:
        subprocess.run([engine, "-v", "en-us" if words.isascii() else "es", "-s", "150", "-w", str(path), words],
                       check=True, capture_output=True, timeout=60)
        return True
    make_tone(path)
    return False


def make_tone(path: Path) -> None:
    import wave

    import numpy as np

    t = np.arange(16000) / 16000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)


class Files:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.image = make_png(folder / "image.png")
        self.video = make_mp4(folder / "video.mp4")
        self.recording = folder / "recording.wav"
        self.spoken_ok = make_speech(self.recording, RECORDING)
        self.engines: set[str] = set()

    async def speech(self, words: str, app: object) -> Path:
        """English words through the voice plugin's Piper voice when it is there, else espeak-ng."""
        path = self.folder / f"spoken-{hashlib.sha1(words.encode()).hexdigest()[:10]}.wav"
        if path.exists():
            return path
        if words.isascii() and "voice.speak" in app.tools:  # type: ignore[attr-defined]
            from core.results import Audio

            result = await app.call("voice.speak", {"text": words})  # type: ignore[attr-defined]
            audio = next((c for c in result.content if isinstance(c, Audio)), None)
            if audio is not None:
                path.write_bytes(audio.data)
                self.engines.add("piper (voice.speak)")
                return path
        make_speech(path, words)
        self.engines.add(tts_engine() or "tone")
        return path

    async def for_example(self, ex: dict, app: object) -> tuple[str, list[str]]:
        text = ex["text"]
        paths = []
        for kind in ex["attachments"]:
            if kind == "image":
                paths.append(str(self.image))
            elif kind == "video":
                paths.append(str(self.video))
            elif kind == "audio":
                if text.startswith("[spoken] "):
                    paths.append(str(await self.speech(text[len("[spoken] "):], app)))
                    text = ""  # the harness sends the audio with no text
                else:
                    paths.append(str(self.recording))
            else:
                raise SystemExit(f"{ex['id']}: unknown attachment kind {kind!r}")
        return text, paths


# --- scoring -------------------------------------------------------------------------------


def load(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{n}: not JSON: {exc}") from None
    return out


def report(name: str, examples: list[dict], preds: list[dict], times: list[float]) -> tuple[float, float, float]:
    n = len(examples)
    intent_ok = sum(p["intent"] == e["intent"] for e, p in zip(examples, preds, strict=True))
    plan_ok = sum(p["steps"] == e["steps"] for e, p in zip(examples, preds, strict=True))
    p50 = statistics.median(times) * 1000
    print(f"{name}: intent accuracy {intent_ok / n:.1%} ({intent_ok}/{n}), exact plans {plan_ok / n:.1%} "
          f"({plan_ok}/{n}), p50 decision {p50:.2f} ms, p90 {sorted(times)[int(0.9 * (n - 1))] * 1000:.2f} ms")
    return intent_ok / n, plan_ok / n, p50


def confusion(examples: list[dict], preds: list[dict]) -> None:
    pairs = Counter((e["intent"], p["intent"]) for e, p in zip(examples, preds, strict=True))
    intents = sorted({e["intent"] for e in examples} | {p["intent"] for p in preds})
    print("confusion by intent (expected -> predicted counts):")
    for exp in intents:
        row = {got: c for (e, got), c in pairs.items() if e == exp}
        if not row:
            continue
        total = sum(row.values())
        right = row.get(exp, 0)
        wrong = ", ".join(f"{g}:{c}" for g, c in sorted(row.items()) if g != exp)
        print(f"  {exp:<11} {right}/{total}" + (f"   confused with {wrong}" if wrong else ""))


async def run(args: argparse.Namespace) -> int:
    from core.app import Loom
    from core.config import LoomConfig, PathsConfig
    from plugins.assistant import get_assistant
    from plugins.assistant.prototypes import PROTOTYPES
    from plugins.assistant.router import INTENT_TOOL

    examples = load(Path(args.file))
    work = Path(tempfile.mkdtemp(prefix="loom-routing-"))
    files = Files(work)
    plugins = ["assistant", "embed"] + ([] if args.no_voice else ["voice"])
    cfg = LoomConfig()
    cfg.paths = PathsConfig(data_dir=str(work / "data"), cache_dir=str(work / "cache"), allowed_roots=[str(work)])
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": ",".join(plugins)},
                      configure_logs=False)
    voice = "voice.transcribe" in app.tools
    async with app:
        svc = get_assistant(app)
        inputs = [await files.for_example(ex, app) for ex in examples]
        print(f"{len(examples)} examples from {args.file}; attachments: PNG, MP4 (PyAV), WAV (spoken requests by "
              f"{', '.join(sorted(files.engines)) or 'none'}; recordings by "
              f"{tts_engine() if files.spoken_ok else 'a tone: no TTS installed'}); transcription while routing: "
              f"{'voice.transcribe' if voice else 'unavailable (spoken requests cannot be understood)'}")
        atts = [svc.attachments(paths) for _, paths in inputs]
        for (text, _), a in list(zip(inputs, atts, strict=True))[:8]:  # warm-up: load models, fill caches
            await svc.route(text, a, use_llm=False, transcribe=False)
        preds, decide_times, route_times, transcribed = [], [], [], []
        for ex, (text, _), a in zip(examples, inputs, atts, strict=True):
            t0 = time.perf_counter()
            plan, pre = await svc.route(text, a, use_llm=False)
            total = time.perf_counter() - t0
            decide_times.append(plan.decide_s)
            (transcribed if pre else route_times).append(total)
            preds.append({"id": ex["id"], "intent": plan.intent, "steps": plan.tool_names(),
                          "confidence": plan.confidence, "reason": plan.reason, "by": plan.decided_by})
        # Baseline in the same run: nearest prototypes by embedding alone, the intent's main tool.
        labels = [i for i, ts in PROTOTYPES.items() for _ in ts]
        async with app.pool.use(app.pool.model_for("embed")) as mini:
            protos = mini.embed([t for ts in PROTOTYPES.values() for t in ts])
            base_preds, base_times = [], []
            kinds_tool = {"image": ("vision", ["vision.describe"]), "video": ("vision", ["vision.video"]),
                          "audio": ("transcribe", ["voice.transcribe"])}
            for (text, _), a in zip(inputs, atts, strict=True):
                t0 = time.perf_counter()
                kind = next((x.kind for x in a if x.kind in kinds_tool), None)
                if kind:
                    intent, steps = kinds_tool[kind]
                else:
                    intent = labels[int((protos @ mini.embed([text])[0]).argmax())]
                    steps = [INTENT_TOOL.get(intent, {"code": "coder.generate", "research": "browser.research",
                                                      "pc_control": "system.open_app",
                                                      "memory": "memory.recall"}.get(intent, "assistant.chat"))]
                base_times.append(time.perf_counter() - t0)
                base_preds.append({"intent": intent, "steps": steps})
    print()
    acc, exact, p50 = report("router (rules + embeddings, no LLM)", examples, preds, decide_times)
    b_acc, b_exact, b_p50 = report("baseline (embedding nearest prototype)", examples, base_preds, base_times)
    print(f"ratio router/baseline: intent {acc / max(b_acc, 1e-9):.2f}x, exact plans "
          f"{exact / max(b_exact, 1e-9):.2f}x, p50 time {p50 / max(b_p50, 1e-9):.2f}x")
    if route_times:
        print(f"p50 whole route() incl. pool lease and plan costs: {statistics.median(route_times) * 1000:.2f} ms")
    if transcribed:
        print(f"{len(transcribed)} spoken requests transcribed while routing: "
              f"p50 {statistics.median(transcribed):.2f} s")
    by = Counter(p["by"] for p in preds)
    print("decided by: " + ", ".join(f"{k} {v}" for k, v in by.most_common())
          + " (rules alone when they are decisive; the MiniLM embedding otherwise)")
    emb = [t for t, p in zip(decide_times, preds, strict=True) if p["by"] == "embedding"]
    if emb:
        print(f"p50 decision when the embedding was computed: {statistics.median(emb) * 1000:.2f} ms")
    print()
    confusion(examples, preds)
    wrong = [(e, p) for e, p in zip(examples, preds, strict=True)
             if e["steps"] != p["steps"] or e["intent"] != p["intent"]]
    if wrong:
        print("mistakes:")
        for e, p in wrong:
            print(f"  {e['id']}: {e['text'][:60]!r} expected {e['intent']} {e['steps']}, "
                  f"got {p['intent']} {p['steps']}")
    print(f"targets: intent >= 95% {'OK' if acc >= 0.95 else 'MISSED'}, exact plans >= 85% "
          f"{'OK' if exact >= 0.85 else 'MISSED'}, p50 < 5 ms {'OK' if p50 < 5 else 'MISSED'}")
    if args.predictions:
        with open(args.predictions, "w") as f:
            for p in preds:
                f.write(json.dumps({"id": p["id"], "intent": p["intent"], "steps": p["steps"]}) + "\n")
        print(f"predictions written to {args.predictions}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=str(DEFAULT_FILE), help="labelled JSONL (default: %(default)s)")
    parser.add_argument("--predictions", metavar="OUT.jsonl", help="write each example's predicted intent and steps")
    parser.add_argument("--no-voice", action="store_true", help="route without the voice plugin (no transcription)")
    args = parser.parse_args()
    if not Path(args.file).is_file():
        print(f"bench/routing.py: no such file {args.file}", file=sys.stderr)
        return 2
    return anyio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
