"""Routing: input type from file content, the learned router's plans (runnable, calibrated, taught by tool
examples), `loom route`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).resolve().parent.parent


class Volume(msgspec.Struct, forbid_unknown_fields=True):
    text: str


async def volume(args: Volume) -> str:
    """Set the speakers' volume (a throwaway tool that teaches the router by examples)."""
    return "ok"


PLUGINS = "assistant,voice,vision,imagegen,video,coder,browser,system,memory"


@pytest.fixture(scope="module")
def full_app(tmp_path_factory):
    """Every built-in plugin that plans can name, registered (no model is loaded)."""
    from core.app import Loom
    from core.config import LoomConfig, PathsConfig

    d = tmp_path_factory.mktemp("router")
    cfg = LoomConfig()
    cfg.paths = PathsConfig(data_dir=str(d / "data"), cache_dir=str(d / "cache"), allowed_roots=[str(d)])
    return Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": PLUGINS})


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A cache dir shared by this module's router and `loom route` subprocesses: trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def router(full_app, cache_dir):
    from plugins.assistant.router import Router

    r = Router(full_app.tools, cache_dir=cache_dir / "router")
    r.warm()
    return r


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


def _attachments(kinds):
    from plugins.assistant.turn import Attachment

    return [Attachment(path=f"x{i}.{k}", kind=k) for i, k in enumerate(kinds)]


def _decide(router, ex):
    text, transcript = ex["text"], None
    if text.startswith("[spoken] "):
        text, transcript = "", text[9:]
    return router.decide(text, _attachments(ex["attachments"]), transcript=transcript)


def _load(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _invalid_steps(app, plan):
    """Steps whose tool is not registered or whose arguments do not validate against its schema."""
    from core.tools import ToolError
    from plugins.assistant.plan import bind_args, resolve

    ns = {f"attachment{i}": f"/tmp/x{i}" for i in range(4)}
    for s in plan.steps:
        ns.update({f"{s.id}.text": "some text", f"{s.id}.file": "/tmp/out.png"})
    ns["request"] = "the request"
    bad = []
    for step in plan.steps:
        if step.tool not in app.tools:
            bad.append(f"{step.tool}: not registered")
            continue
        tool = app.tools.get(step.tool)
        try:
            tool.validate(bind_args(tool.input_schema, {k: resolve(v, ns) for k, v in step.args.items()}))
        except ToolError as exc:
            bad.append(f"{step.tool}: {exc}")
    return bad


def test_every_plan_for_the_corpus_and_dev_sets_is_runnable(full_app, router):
    """Routes every request of the training corpus and the dev sets: each step names a registered
    tool whose arguments validate against its schema (placeholders filled as at run time)."""
    from plugins.assistant.training import CORPUS, WRITTEN, human_files

    rows = _load(CORPUS) + _load(WRITTEN) + _load(ROOT / "tests" / "routing_seen.jsonl")
    rows += [row for f in human_files() for row in _load(f)]  # the writers' files, as they wrote them
    bad = []
    for ex in rows:
        plan = _decide(router, ex)
        bad += [f"{ex['id']} {ex['text'][:50]!r}: {b}" for b in _invalid_steps(full_app, plan)]
        assert plan.decided_by in ("model", "rules") and 0 < plan.confidence <= 1
    assert bad == [], f"{len(bad)} invalid steps, e.g. {bad[:5]}"


def test_hand_written_requests_are_built_into_the_corpus():
    """routing_written.jsonl is what build_corpus.py --written makes of written_requests.txt (each line's
    clauses paired with its tools, attachments turned into first steps), and training reads it."""
    from plugins.assistant import training
    from plugins.assistant.data.build_corpus import written_row, written_rows

    built = [{k: v for k, v in row.items() if k != "id"} for row in _load(training.WRITTEN)]
    assert built == written_rows() and len(built) >= 600
    assert {r["intent"] for r in built} >= {"chat", "research", "code", "imagegen", "videogen", "speak",
                                            "transcribe", "memory", "pc_control", "vision"}
    texts = {u.text for u in training.corpus_units(training.corpus_rows())}
    assert "btw my car is parked on level 3, spot 42" in texts
    row = written_row(["browser.research", "voice.speak"], [], "check the forecast and say it out loud")
    assert row["parts"] == [["check the forecast", "browser.research"], ["say it out loud", "voice.speak"]]
    assert written_row(["coder.generate"], ["image"], "code this mockup")["steps"] == ["vision.describe",
                                                                                         "coder.generate"]
    assert written_row(["memory.recall"], ["audio"], "[spoken] where did i park")["steps"] == [
        "voice.transcribe", "memory.recall"]
    with pytest.raises(ValueError, match="splits into 2 clauses"):
        written_row(["browser.open"], [], "open example.com and tell me the headlines")


def test_dev_format_requests_are_aligned_to_the_clauses_the_router_plans(tmp_path, monkeypatch):
    """A writer's file (dev format: whole plans) becomes clause-level training rows whose labels
    rebuild its plan as the router builds it, implicit first steps included; a row no labelling
    explains is reported, not learned; training reads the human folder with its own weight."""
    from plugins.assistant import align, training

    intents = training.intents_from(training.corpus_rows(human=[]))

    def parts(text, steps, intent, attachments=()):
        row, _, _, _ = align.align({"text": text, "attachments": list(attachments), "intent": intent,
                                      "steps": steps}, intents)
        return row and [label for _, label in row["parts"]]

    assert parts("check the forecast and say it out loud", ["browser.research", "voice.speak"],
                 "research") == ["browser.research", "voice.speak"]
    assert parts("busca el horario del museo y resúmelo", ["browser.research"], "research") == [
        "browser.research", "none"]
    # typed words about audio: the transcription is implicit, or the clause's own ("transcribe this")
    assert parts("summarise this voice note", ["voice.transcribe", "assistant.chat"], "transcribe",
                 ["audio"]) == ["assistant.chat"]
    assert parts("transcribe this and save the phone number", ["voice.transcribe", "memory.remember"],
                 "transcribe", ["audio"]) == ["voice.transcribe", "memory.remember"]
    # an image sent to a tool that takes none is described first; the intent decides a tie
    assert parts("write the html for this mockup", ["vision.describe", "coder.generate"], "code",
                 ["image"]) == ["coder.generate"]
    assert parts("read this sign out loud", ["vision.ocr", "voice.speak"], "vision",
                 ["image"]) == ["vision.ocr+voice.speak"]
    assert parts("[spoken] where did I park", ["voice.transcribe", "memory.recall"], "memory",
                 ["audio"]) == ["memory.recall"]
    assert parts("make a logo", ["imagegen.generate", "voice.speak", "memory.remember", "coder.edit", "browser.open"],
                 "imagegen") is None  # five steps cannot come from one clause

    human = tmp_path / "human"
    human.mkdir()
    (human / "w1.jsonl").write_text(
        json.dumps({"id": "w1-1", "text": "oye q hora es en tokio ahorita", "attachments": [], "intent": "research",
                    "steps": ["browser.research"]}) + "\n"
        + json.dumps({"id": "w1-2", "text": "hi", "attachments": [], "intent": "chat",
                      "steps": ["assistant.chat", "voice.speak", "memory.remember", "coder.edit"]}) + "\n"
        + json.dumps({"id": "w1-3", "text": "busca el tiempo de mañana", "attachments": [], "intent": "research",
                      "steps": ["browser.research", "memory.remember", "voice.speak"]}) + "\n")
    (human / "w2.jsonl").write_text("not json\n")
    monkeypatch.setattr(training, "HUMAN", human)
    aligned = training.human_rows(training.corpus_rows(human=[]), [human / "w1.jsonl"])
    assert [r["id"] for r in aligned.rows] == ["w1-1", "w1-3"] and aligned.failed[0][0] == "w1-2"
    assert aligned.rows[0]["weight"] == training.SETTINGS["human_weight"]
    assert "2 rows aligned" in aligned.summary() and "1 not alignable" in aligned.summary()
    # a pair of steps no other request asks of one clause is learned as its first step
    assert aligned.rows[1]["steps"] == ["browser.research", "memory.remember", "voice.speak"]
    assert aligned.rows[1]["parts"] == [["busca el tiempo de mañana", "browser.research"]]
    with pytest.raises(ValueError, match="w2.jsonl:1: not a dev-format request"):
        training.corpus_rows()
    (human / "w2.jsonl").unlink()
    units = training.corpus_units(training.corpus_rows())
    assert [u.weight for u in units if u.text == "oye q hora es en tokio ahorita"] == [
        training.SETTINGS["human_weight"]]


def test_clauses_split_before_a_second_action_not_inside_a_payload():
    from plugins.assistant.rules import split_clauses

    assert split_clauses("take a screenshot and copy out the error") == ["take a screenshot", "copy out the error"]
    assert split_clauses("mira cuándo abre la piscina y apúntamelo") == ["mira cuándo abre la piscina", "apúntamelo"]
    assert split_clauses("busca el teléfono del taller y guárdamelo") == ["busca el teléfono del taller", "guárdamelo"]
    assert split_clauses('say "copy and paste and save" out loud') == ['say "copy and paste and save" out loud']
    assert split_clauses("copy and paste this paragraph") == ["copy and paste this paragraph"]


def test_requests_seen_during_development_still_route(router):
    rows = _load(ROOT / "tests" / "routing_seen.jsonl")
    plans = [_decide(router, ex) for ex in rows]
    intent = sum(p.intent == ex["intent"] for p, ex in zip(plans, rows, strict=True)) / len(rows)
    exact = sum(p.tool_names() == ex["steps"] for p, ex in zip(plans, rows, strict=True)) / len(rows)
    assert intent >= 0.95 and exact >= 0.85, (intent, exact)


def test_confidence_comes_from_the_model(router):
    clear = router.decide("Generate an image of a red fox sleeping in the snow, watercolor style.")
    vague = router.decide("the blue one")
    assert clear.confidence > 0.95 and vague.confidence < clear.confidence
    assert clear.decided_by == "model" and clear.model and clear.decisions[0]["valid"][0]["tool"] == \
        "imagegen.generate"
    photo = router.decide("what's in this picture?", _attachments(["image"]))
    unsure = router.decide("hmm, and this one?", _attachments(["image"]))
    assert photo.tool_names() == ["vision.describe"] and photo.confidence > 0.9
    # with an image the intent (vision) is sure either way, but not which vision tool: no constant per kind
    assert unsure.decisions[0]["valid"][0]["p"] < photo.decisions[0]["valid"][0]["p"]


def test_plan_arguments_are_extracted(router):
    click = router.decide("Click at coordinates 640, 360.").steps[0]
    assert (click.tool, click.args["x"], click.args["y"]) == ("system.click", 640, 360)
    keys = router.decide("Press Ctrl+Shift+T.").steps[0]
    assert keys.args["keys"] == ["ctrl", "shift", "t"]
    app = router.decide("Open Spotify.").steps[0]
    assert app.args["app"] == "Spotify"
    speak = router.decide("Say 'see you tomorrow' in a calm voice.").steps[0]
    assert speak.args["text"] == "see you tomorrow"
    page = router.decide("Open https://example.com/a and summarise it.")
    assert page.tool_names() == ["browser.open"] and page.steps[0].args["url"] == "https://example.com/a"
    edit = router.decide("add retries to the fetch loop in src/net/client.py").steps[0]
    assert (edit.tool, edit.args["path"]) == ("coder.edit", "src/net/client.py")


def test_window_tools_are_routable_from_their_examples(router):
    """system.scroll, focus and windows teach the router by their registered examples (no corpus rows)."""
    plan = router.decide("could you scroll down a little on this page")
    assert plan.tool_names() == ["system.scroll"] and plan.steps[0].args["direction"] == "down"
    assert plan.intent == "pc_control"  # the intent the corpus gives the system plugin's other tools
    plan = router.decide("wechsle bitte zum Fenster von Thunderbird")
    assert plan.tool_names() == ["system.focus"] and plan.steps[0].args["window"] == "Thunderbird"
    assert router.decide("hey, which windows have I got open at the moment?").tool_names() == ["system.windows"]


def test_training_noise_changes_words_not_payloads():
    """The augmentation mistypes plain words, the same way on every start (so the model's cache key
    is stable); quoted payloads, code and URLs keep their shape."""
    from plugins.assistant.noise import noisy, rng_for

    text = "por favor abre https://example.com/docs y di 'hasta mañana' despacio, gracias `x = 1`"
    outs = {noisy(text, rng_for(text, salt)) for salt in range(40)}
    assert text not in outs and len(outs) > 20
    assert all("https://example.com/docs" in o and "'hasta mañana'" in o and "`x = 1`" in o for o in outs)
    assert noisy(text, rng_for(text, 3)) == noisy(text, rng_for(text, 3))


def test_a_tool_that_cannot_run_is_not_planned(router):
    # coder.edit needs a file to edit: with no path in the request, the plan writes new code instead.
    plan = router.decide("refactor the parser so it is faster")
    assert plan.tool_names() != ["coder.edit"] and "coder.edit" in plan.decisions[0]["cannot_run"]
    # "describe it" needs an image: after a screenshot it reads the screenshot's file.
    plan = router.decide("take a screenshot and then describe it")
    assert plan.tool_names() == ["system.screenshot", "vision.describe"]
    assert plan.steps[1].args["file"] == "{s1.file}"


def test_multi_step_requests_chain_outputs(router):
    plan = router.decide("look up the weekend forecast for Porto and say it out loud")
    assert plan.tool_names() == ["browser.research", "voice.speak"]
    assert plan.steps[1].args["text"] == "{s1.text}"
    plan = router.decide("abre el bloc de notas y escribe 'lista de la compra'")
    assert plan.tool_names() == ["system.open_app", "system.type"]
    assert plan.steps[1].args["text"] == "lista de la compra" and plan.steps[1].after == ["s1"]


def test_spoken_audio_is_transcribed_then_routed(router):
    plan = router.decide("", _attachments(["audio"]), transcript="uh make me a picture of a cat on a roof")
    assert plan.tool_names() == ["voice.transcribe", "imagegen.generate"] and plan.intent == "imagegen"
    assert plan.steps[1].args["text"] == "{s1.text}"
    plan = router.decide("", _attachments(["audio"]))
    assert plan.tool_names() == ["voice.transcribe"] and plan.then_route
    assert "route what it says" in plan.reason


VOLUME_EXAMPLES = ["turn the volume down", "make it louder", "mute the sound", "volume up please", "baja el volumen",
                   "sube el volumen", "quita el sonido", "lower the volume a bit", "silence the speakers",
                   "set the volume to 30 percent", "mets le son moins fort", "mach lauter"]


def volume_plugin(examples):
    from types import SimpleNamespace

    from core.hookspecs import hookimpl

    return SimpleNamespace(loom_register_tools=hookimpl(
        lambda register: register(volume, name="audio.volume", examples=examples)))


@pytest.fixture
def without_writers(monkeypatch, tmp_path):
    """Train without the writers' files (data/human): what these tests check is how tool
    examples and the cache behave, which those files do not change, and with them each new
    model costs ~20 s instead of ~4 s. The zero-invalid-plans test and the benches use them."""
    from plugins.assistant import training

    monkeypatch.setattr(training, "HUMAN", tmp_path / "no-writers")


def test_tool_examples_teach_the_router(make_app, without_writers):
    """A plugin's examples make its tool routable, with no change to the assistant."""
    from plugins.assistant.router import Router

    plugin = volume_plugin(VOLUME_EXAMPLES)
    sys.path.insert(0, str(ROOT / "tests" / "sample_plugin"))
    try:
        import loom_sample
    finally:
        sys.path.pop(0)
    asks = {"could you turn the volume down a little bit": "audio.volume", "make the music quieter": "audio.volume",
            "sube un poco el volumen": "audio.volume", "write 'loom' backwards": "sample.reverse",
            "reverse the word 'stressed' for me": "sample.reverse"}
    untaught = Router(make_app("assistant").tools)
    taught = Router(make_app("assistant", extra={"audio": plugin, "sample": loom_sample}).tools)
    for ask, tool in asks.items():
        assert untaught.decide(ask).tool_names() == ["assistant.chat"]
        plan = taught.decide(ask)
        assert plan.tool_names() == [tool] and plan.intent == tool.split(".")[0], plan.reason
    assert taught.decide("write 'loom' backwards").steps[0].args["text"] == "loom"  # the quoted payload
    assert taught.decide("write a haiku about rain").tool_names() == ["assistant.chat"]


def test_the_trained_model_is_cached_on_disk_and_retrained_when_examples_change(make_app, tmp_path, monkeypatch,
                                                                               without_writers):
    """A restart loads the model the last start trained; a tool whose examples changed gets a new one."""
    from plugins.assistant import training
    from plugins.assistant.router import Router

    cache = tmp_path / "router"
    first = Router(make_app("assistant", extra={"audio": volume_plugin(VOLUME_EXAMPLES)}).tools, cache_dir=cache)
    key = first.warm().key  # trained here, or earlier in this process: either way it is saved to disk
    assert [p.name for p in cache.glob("*.npz")] == [f"router-{key}.npz"]
    monkeypatch.setattr(training, "_MEMO", {})  # a new process: nothing in memory
    again = Router(make_app("assistant", extra={"audio": volume_plugin(VOLUME_EXAMPLES)}).tools, cache_dir=cache)
    assert not again.ready
    model = again.warm()
    assert model.key == key and model.source.startswith("loaded from the cache")
    assert again.decide("could you turn the volume down a little bit").tool_names() == ["audio.volume"]

    monkeypatch.setattr(training, "_MEMO", {})
    changed = [*VOLUME_EXAMPLES, "the speakers are way too loud", "los altavoces suenan demasiado fuerte"]
    other = Router(make_app("assistant", extra={"audio": volume_plugin(changed)}).tools, cache_dir=cache)
    model = other.warm()
    assert model.key != key and model.source.startswith("trained")
    assert sorted(p.name for p in cache.glob("*.npz")) == sorted([f"router-{key}.npz", f"router-{model.key}.npz"])


@pytest.mark.anyio
async def test_a_daemon_warms_the_router_in_the_background(make_app, data_dir, tmp_path):
    """`loom serve` holds the data dir: the assistant trains or loads the router's model at start,
    without holding the start up, so the first request does not pay for it."""
    import anyio

    from core import datadir
    from core.config import LoomConfig

    cache = tmp_path / "warm-cache"
    app = make_app("assistant", config=LoomConfig(plugin={"assistant": {"router_cache": str(cache)}}))
    datadir.hold(data_dir)
    try:
        async with app:
            svc = app.services["assistant"]  # created at start, before any request
            with anyio.fail_after(300):
                await svc.warmed.wait()
            router = svc.router
            assert router.ready
            assert list(cache.glob("router-*.npz"))  # the next start loads it
            out = (await app.call("assistant.route", {"text": "draw me a fox in the snow"})).structured
    finally:
        datadir.release(data_dir)
    assert out["steps"] == ["assistant.chat"] and out["model_source"] == router.model().source


def test_examples_must_be_request_strings():
    from core.tools import ToolRegistry

    with pytest.raises(ValueError, match="examples must be a list of non-empty request strings"):
        ToolRegistry().add(volume, plugin="t", examples="just one string")


def _cli(tmp_path, cache_dir, *argv):
    env = {**os.environ, "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": PLUGINS,  # as the module router
           "LOOM_PATHS__DATA_DIR": str(tmp_path / "data"), "LOOM_PATHS__CACHE_DIR": str(cache_dir),
           "LOOM_PATHS__ALLOWED_ROOTS": json.dumps([str(tmp_path)]),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "PYTHONPATH": str(ROOT)}
    env.pop("LOOM_CONFIG", None)
    env.pop("LOOM_PLUGIN__ASSISTANT__ROUTER_CACHE", None)  # the module's cache dir, which its router filled
    return subprocess.run([sys.executable, "-m", "core.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


def test_loom_route_cli_prints_plan_json(tmp_path, files, router, cache_dir):
    img = tmp_path / "mock.png"
    img.write_bytes((files / "red.png").read_bytes())
    r = _cli(tmp_path, cache_dir, "route", "Write the HTML for this mock-up", "--attach", str(img))
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["intent"] == "code" and plan["steps"] == ["vision.describe", "coder.generate"]
    # each decision explained: the model, the clause's context, its confidence and runner-ups, the fallback
    assert plan["decided_by"] == "model" and "logistic regression" in plan["model"]
    clause = plan["clauses"][0]
    assert clause["context"] == ["image"] and clause["tool"] == "coder.generate" and clause["valid"][0]["p"] > 0.5
    assert plan["fallback"].startswith("not needed") and plan["confidence"] >= 0.5
    # a new process loads the model the module's router trained and saved: it does not train again
    assert plan["model_source"].startswith("loaded from the cache"), plan["model_source"]
    r = _cli(tmp_path, cache_dir, "route", "Describe it", "--attach", "/etc/hostname")
    assert r.returncode == 1 and "outside the allowed roots" in r.stderr


@pytest.mark.anyio
async def test_low_confidence_asks_the_coordinator_within_a_json_schema(make_app):
    """Below the threshold, SmolLM2 (real llama.cpp) picks the tool; its answer is constrained by a
    JSON schema whose enum holds only the tools that can run, and the plan records that the LLM decided."""
    from core.config import LoomConfig

    cfg = LoomConfig(plugin={"assistant": {"llm_threshold": 0.999}})
    app = make_app("assistant", "llamacpp", "memory", "system", config=cfg)
    async with app:
        fast = (await app.call("assistant.route", {"text": "same again"})).structured
        slow = (await app.call("assistant.route", {"text": "same again",
                                                   "use_llm": True})).structured
    assert fast["decided_by"] == "model" and fast["fallback"].startswith("would be used")
    assert slow["decided_by"] == "llm" and slow["llm"].startswith("smollm2 chose ")
    runnable = [v["tool"] for v in fast["clauses"][0]["valid"]]
    assert slow["steps"][0] in runnable and slow["llm"].split()[2].rstrip(":") == slow["steps"][0]
    assert slow["fallback"].startswith("used") and "coordinator LLM decided" in slow["reason"]
