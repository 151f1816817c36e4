"""Routing: input type from file content, intent and plan from rules + embeddings, `loom route`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def router():
    from plugins.assistant.router import Router
    from plugins.embed.minilm import MiniLM

    return Router(MiniLM().embed)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import av
    import numpy as np
    from PIL import Image

    d = tmp_path_factory.mktemp("attach")
    Image.new("RGB", (16, 16), (255, 0, 0)).save(d / "red.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(d / "blue.jpg")
    with wave.open(str(d / "voice.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 1600)
    (d / "photo.png").write_bytes((d / "voice.wav").read_bytes())  # a WAV named like a picture
    with av.open(str(d / "clip.mp4"), "w") as out:
        s = out.add_stream("mpeg4", rate=4)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for _ in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    (d / "doc.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n")
    (d / "notes.txt").write_text("plain notes, ünïcode ok\n")
    (d / "blob.bin").write_bytes(bytes(range(256)))
    return d


def test_input_type_comes_from_content_not_name(files):
    from plugins.assistant.sniff import detect

    kinds = {p.name: (detect(p).kind, detect(p).mime_type) for p in files.iterdir()}
    assert kinds["red.png"] == ("image", "image/png")
    assert kinds["blue.jpg"] == ("image", "image/jpeg")
    assert kinds["voice.wav"] == ("audio", "audio/wav")
    assert kinds["photo.png"] == ("audio", "audio/wav")
    assert kinds["clip.mp4"][0] == "video"
    assert kinds["doc.pdf"] == ("document", "application/pdf")
    assert kinds["notes.txt"][0] == "text"
    assert kinds["blob.bin"][0] == "file"
    with pytest.raises(FileNotFoundError, match="attachment not found"):
        detect(files / "missing.png")


@pytest.mark.parametrize("text,kinds,intent,steps", [
    ("Could you paint me a watercolour of a lighthouse at night?", [], "imagegen", ["imagegen.generate"]),
    ("Hazme un dibujo de un unicornio.", [], "imagegen", ["imagegen.generate"]),
    ("Produce a 6 second clip of snow falling on a forest.", [], "videogen", ["video.generate"]),
    ("Implement a linked list in TypeScript with insert and delete.", [], "code", ["coder.generate"]),
    ("Arregla el fallo en utils/fechas.py, la fecha sale al revés.", [], "code", ["coder.edit"]),
    ("What does 'ZeroDivisionError: division by zero' mean?", [], "code", ["coder.explain"]),
    ("¿Por qué el cielo es azul?", [], "chat", ["assistant.chat"]),
    ("Write a haiku about rain and read it out loud.", [], "chat", ["assistant.chat", "voice.speak"]),
    ("Busca información sobre vuelos baratos a Lima.", [], "research", ["browser.research"]),
    ("Open github.com/python/cpython and tell me what it is.", [], "research", ["browser.open"]),
    ("Right-click at 10, 20.", [], "pc_control", ["system.click"]),
    ("Abre Chrome y escribe 'hola'.", [], "pc_control", ["system.open_app", "system.type"]),
    ("How do I change my wallpaper on macOS?", [], "chat", ["assistant.chat"]),
    ("Don't forget that I take my coffee black.", [], "memory", ["memory.remember"]),
    ("¿Te acuerdas de cómo se llama mi hermana?", [], "memory", ["memory.recall"]),
    ("What breed is this dog?", ["image"], "vision", ["vision.answer"]),
    ("Read the text on this sign.", ["image"], "vision", ["vision.ocr"]),
    ("Turn this sketch into a Flutter screen.", ["image"], "code", ["vision.describe", "coder.generate"]),
    ("Quita el fondo de esta imagen.", ["image"], "imagegen", ["imagegen.edit"]),
    ("Describe what happens in this recording of the match.", ["video"], "vision", ["vision.video"]),
    ("Write down what this voicemail says and remember the phone number.", ["audio"], "transcribe",
     ["voice.transcribe", "memory.remember"]),
])
def test_routes_varied_requests(router, text, kinds, intent, steps):
    from plugins.assistant.turn import Attachment

    plan = router.decide(text, [Attachment(path=f"x.{k}", kind=k) for k in kinds])
    assert (plan.intent, plan.tool_names()) == (intent, steps), plan.reason
    assert 0 < plan.confidence <= 1 and plan.reason


def _score(router, path):
    from plugins.assistant.turn import Attachment

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    intent_ok = plan_ok = 0
    for ex in rows:
        text, transcript = ex["text"], None
        if text.startswith("[spoken] "):
            text, transcript = "", text[9:]
        plan = router.decide(text, [Attachment(path="x", kind=k) for k in ex["attachments"]], transcript=transcript)
        intent_ok += plan.intent == ex["intent"]
        plan_ok += plan.tool_names() == ex["steps"]
    return intent_ok / len(rows), plan_ok / len(rows)


def test_held_out_requests_meet_targets(router):
    intent, exact = _score(router, ROOT / "tests" / "routing_seen.jsonl")
    assert intent >= 0.95 and exact >= 0.85


def test_plan_arguments_are_extracted(router):
    click = router.decide("Click at coordinates 640, 360.").steps[0]
    assert (click.tool, click.args["x"], click.args["y"]) == ("system.click", 640, 360)
    keys = router.decide("Press Ctrl+Shift+T.").steps[0]
    assert keys.args["keys"] == "ctrl+shift+t"
    app = router.decide("Open Spotify.").steps[0]
    assert app.args["app"] == "Spotify"
    speak = router.decide("Say 'see you tomorrow' in a calm voice.").steps[0]
    assert speak.args["text"] == "see you tomorrow"
    page = router.decide("Open https://example.com/a and summarise it.").steps[0]
    assert page.args["url"] == "https://example.com/a"


def test_spoken_audio_without_transcriber_defers_the_rest(router):
    from plugins.assistant.turn import Attachment

    plan = router.decide("", [Attachment(path="a.wav", kind="audio")])
    assert plan.tool_names() == ["voice.transcribe"] and plan.then_route
    assert "route what it says" in plan.reason


def _cli(tmp_path, *argv):
    env = {**os.environ, "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "assistant,embed",
           "LOOM_PATHS__DATA_DIR": str(tmp_path / "data"), "LOOM_PATHS__ALLOWED_ROOTS": json.dumps([str(tmp_path)]),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(ROOT)}
    env.pop("LOOM_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "core.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_loom_route_cli_prints_plan_json(tmp_path, files):
    img = tmp_path / "mock.png"
    img.write_bytes((files / "red.png").read_bytes())
    r = _cli(tmp_path, "route", "Write the HTML for this mock-up", "--attach", str(img))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert set(plan) == {"intent", "steps", "reason", "confidence"}
    assert plan["intent"] == "code" and plan["steps"] == ["vision.describe", "coder.generate"]
    r = _cli(tmp_path, "route", "Describe it", "--attach", "/etc/hostname")
    assert r.returncode == 1 and "outside the allowed roots" in r.stderr
