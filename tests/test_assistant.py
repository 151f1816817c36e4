"""assistant.ask end to end: plans run through app.call with events, failures name their step,
cognition stages see the Turn, resident models are preferred, SmolLM2 answers a chat question."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from core.hookspecs import hookimpl
from core.tools import Decision, ToolError

pytestmark = pytest.mark.anyio


# --- throwaway plugins (the real vision plugin needs a VLM, which cannot run here) -----------


class DescribeArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    detail: str = "normal"


class GenerateArgs(msgspec.Struct, forbid_unknown_fields=True):
    task: str
    language: str = "python"


class ImageArgs(msgspec.Struct, forbid_unknown_fields=True):
    prompt: str
    model: str | None = None


def fake_vision(seen: list):
    async def describe(args: DescribeArgs) -> str:
        seen.append(("vision.describe", args.image))
        return "A login form with an email field, a password field and a blue Sign in button."

    return SimpleNamespace(loom_register_tools=hookimpl(lambda register: register(describe, read_only=True)))


def fake_coder(seen: list, fail: bool = False):
    async def generate(args: GenerateArgs) -> str:
        seen.append(("coder.generate", args.task))
        if fail:
            raise ToolError("the coding model ran out of memory")
        return "<form><input type=email><input type=password><button>Sign in</button></form>"

    return SimpleNamespace(loom_register_tools=hookimpl(lambda register: register(generate)))


@pytest.fixture
def mockup(data_dir):
    from PIL import Image

    path = data_dir.parent / "mockup.png"
    Image.new("RGB", (32, 24), (240, 240, 240)).save(path)
    return path


def _events(app, kind):
    return [e for e in app.bus.recent if type(e).__name__ == kind]


async def test_plan_steps_feed_each_other_and_publish_events(make_app, mockup):
    seen: list = []
    app = make_app("assistant", "embed", extra={"vision": fake_vision(seen), "coder": fake_coder(seen)})
    async with app:
        result = await app.call("assistant.ask", {"text": "Write the HTML for this mock-up",
                                                  "attachments": [str(mockup)]})
    out = result.structured
    assert out["intent"] == "code" and out["steps"] == ["vision.describe", "coder.generate"]
    assert "<form>" in out["answer"]
    assert seen[0] == ("vision.describe", str(mockup))
    # the description fed the coder's task, next to the user's words
    assert "Write the HTML" in seen[1][1] and "password field" in seen[1][1]
    started = [(e.step, e.tool) for e in _events(app, "StepStarted")]
    assert started == [("s1", "vision.describe"), ("s2", "coder.generate")]
    assert all(e.ok for e in _events(app, "StepFinished"))
    assert _events(app, "PlanFinished")[-1].ok
    delegated = {e.tool: e for e in _events(app, "Delegated")}
    assert "programming is handed to the coding model" in delegated["coder.generate"].reason
    ready = _events(app, "PlanReady")[-1]
    assert ready.steps == out["steps"] and ready.reason


async def test_failed_step_fails_the_plan_naming_it(make_app, mockup):
    seen: list = []
    app = make_app("assistant", "embed", extra={"vision": fake_vision(seen), "coder": fake_coder(seen, fail=True)})
    async with app:
        with pytest.raises(ToolError, match=r"step 2 \(coder\.generate\) failed: the coding model ran out of memory"):
            await app.call("assistant.ask", {"text": "Turn this mock-up into a React component",
                                             "attachments": [str(mockup)]})
    finished = _events(app, "PlanFinished")[-1]
    assert not finished.ok and finished.failed_step == "s2"
    assert [e.ok for e in _events(app, "StepFinished")] == [True, False]


async def test_a_missing_tool_is_not_planned_and_the_reason_names_it(make_app):
    app = make_app("assistant", "embed")
    async with app:
        out = (await app.call("assistant.route", {"text": "Draw a red balloon over a desert."})).structured
    assert out["steps"] == ["assistant.chat"]  # every step of a plan is a registered tool
    assert "imagegen.generate would fit better but no enabled plugin provides it" in out["reason"]


async def test_steps_pass_the_authorization_hook(make_app, mockup):
    seen: list = []

    class Deny:
        @hookimpl
        def loom_authorize(self, call, app):
            if call.tool.name == "coder.generate":
                return Decision("deny", "coder.generate is blocked by test policy")
            return None

    app = make_app("assistant", "embed", extra={"vision": fake_vision(seen), "coder": fake_coder(seen),
                                                "deny": Deny()})
    async with app:
        with pytest.raises(ToolError, match=r"step 2 \(coder\.generate\) failed: coder.generate is blocked"):
            await app.call("assistant.ask", {"text": "Build this page in HTML", "attachments": [str(mockup)]})
    assert [s for s, _ in seen] == ["vision.describe"]  # the denied tool never ran


class FakeImageBackend:
    """A stand-in for a diffusers pipeline (no GPU here): loads instantly, holds nothing."""

    name = "fakeimg"
    devices = ("cpu",)

    def estimate(self, spec, device):
        from core.backends import MemoryEstimate

        return MemoryEstimate(total=3_000_000_000, device="cpu")

    def load(self, spec, device):
        return object()

    def unload(self, handle):
        pass


async def test_plan_prefers_a_resident_model_and_says_so(make_app):
    from core.config import LoomConfig, ModelConfig, PoolConfig

    used: list = []

    async def generate(args: ImageArgs) -> str:
        used.append(args.model)
        return "a picture"

    plugin = SimpleNamespace(
        loom_register_tools=hookimpl(lambda register: register(generate)),
        loom_register_backends=hookimpl(lambda register: register("fakeimg", FakeImageBackend)))
    cfg = LoomConfig(pool=PoolConfig(ram_budget="64GiB"), models={
        "flux": ModelConfig(backend="fakeimg", role="imagegen", priority=1),
        "sdxl": ModelConfig(backend="fakeimg", role="imagegen", priority=1),
    })
    app = make_app("assistant", "embed", extra={"imagegen": plugin}, config=cfg)
    async with app:
        assert app.pool.model_for("imagegen") == "flux"
        cold = await app.call("assistant.route", {"text": "Draw a fox in the snow."})
        assert "needs 'flux' loaded" in cold.structured["reason"]
        await app.pool.load("sdxl")
        warm = await app.call("assistant.route", {"text": "Draw a fox in the snow."})
        assert "preferred resident model 'sdxl' over loading 'flux'" in warm.structured["reason"]
        await app.call("assistant.ask", {"text": "Draw a fox in the snow."})
    assert used == ["sdxl"]


class RecordingStage:
    name = "recorder"

    def __init__(self) -> None:
        self.before_seen: dict = {}
        self.after_seen: dict = {}

    async def before(self, turn) -> None:
        self.before_seen = {"text": turn.text, "intent": turn.plan.intent, "answer": turn.answer}
        turn.instructions.append("Answer in one short sentence.")
        turn.metadata["recorder"] = "was here"

    async def after(self, turn) -> None:
        self.after_seen = {"answer": turn.answer, "candidates": list(turn.candidates),
                           "meta": turn.metadata.get("recorder")}


class BrokenStage:
    name = "broken"

    async def before(self, turn) -> None:
        raise RuntimeError("stage bug")


async def test_ask_answers_chat_with_smollm2_through_stages(make_app):
    stage = RecordingStage()
    stages = SimpleNamespace(loom_register_stages=hookimpl(
        lambda register: (register(stage, order=10), register(BrokenStage(), order=20))))
    app = make_app("assistant", "embed", "llamacpp", extra={"stages": stages})
    async with app:
        result = await app.call("assistant.ask", {"text": "What is the capital of France?", "session_id": "t1"})
    out = result.structured
    assert out["intent"] == "chat" and out["steps"] == ["assistant.chat"]
    assert isinstance(out["answer"], str) and len(out["answer"].strip()) > 0
    assert stage.before_seen == {"text": "What is the capital of France?", "intent": "chat", "answer": None}
    assert stage.after_seen["answer"] == out["answer"] and stage.after_seen["meta"] == "was here"
    assert stage.after_seen["candidates"] == [out["answer"]]
    direct = [e for e in _events(app, "Delegated") if e.tool == "assistant.chat"]
    assert direct and direct[0].direct and direct[0].model == "smollm2"
    failed = _events(app, "StageFailed")
    assert failed and failed[0].stage == "broken" and "stage bug" in failed[0].error


async def test_bad_input_gets_clear_errors(make_app, data_dir):
    app = make_app("assistant", "embed")
    async with app:
        with pytest.raises(ToolError, match="ask something"):
            await app.call("assistant.ask", {"text": "  "})
        with pytest.raises(ToolError, match="outside the allowed roots"):
            await app.call("assistant.ask", {"text": "what is this", "attachments": ["/etc/passwd"]})
        with pytest.raises(ToolError, match="attachment not found"):
            await app.call("assistant.ask", {"text": "what is this",
                                             "attachments": [str(data_dir / "nope.png")]})
        with pytest.raises(ToolError, match="Invalid arguments"):
            await app.call("assistant.ask", {"text": "hi", "session_id": "bad id with spaces"})


def test_a_step_file_is_saved_once_however_often_it_is_asked_for(tmp_path):
    # The answer's "Saved:" line and the turn's file list both ask for the step's file: they
    # must name the same file (they once named two copies, and the OpenAI surface then left a
    # server path in the text because the path it inlined was the other copy).
    from core.results import Audio, Text, ToolResult
    from plugins.assistant.plan import result_file

    result = ToolResult(content=[Audio(b"RIFF....WAVEfmt ", "audio/wav"), Text("0.1 s of speech")])
    first, second = result_file(result, tmp_path), result_file(result, tmp_path)
    assert first == second and list(tmp_path.iterdir()) == [Path(first)]
    assert Path(first).read_bytes() == b"RIFF....WAVEfmt "
