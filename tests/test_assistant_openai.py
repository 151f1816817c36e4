"""model="loom" on the OpenAI API with the official ``openai`` client and ``stream=True``, and
assistant.ask over MCP streamable HTTP (progress), both
over real HTTP: the coordinator's words arrive as separate SSE deltas while it is still
writing, in order, and the messages before the last user turn reach it as the
conversation. The coordinator is ``FakeCoordinator`` (a stand-in, so the test can see what
it was given and when each word left it)."""

from __future__ import annotations

import time

import pytest

from tests import fake_coordinator as fake

TRIP = ["I am planning a trip to Lisbon in May with my sister Ada.", "Lovely! May is a good month.",
        "Write a short packing list for her."]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from core.app import Loom
    from core.config import PathsConfig

    d = tmp_path_factory.mktemp("loom-openai-stream")
    model = fake.FakeCoordinator(delay=0.05)
    cfg = fake.config()
    cfg.paths = PathsConfig(data_dir=str(d / "data"), cache_dir=str(d / "cache"), allowed_roots=[str(d)])
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "assistant"},
                      plugins={"fake": fake.plugin(model)})
    with fake.Served(app) as server:
        yield server, model


def test_stream_delivers_words_as_they_are_written(served):
    server, model = served
    client = server.openai()
    arrivals: list[tuple[float, object]] = []
    for chunk in client.chat.completions.create(
            model="loom", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Tell me a story about a fox."}]):
        arrivals.append((time.perf_counter(), chunk))
    chunks = [c for _, c in arrivals]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [(t, c.choices[0].delta.content) for t, c in arrivals if c.choices and c.choices[0].delta.content]
    assert "".join(text for _, text in content) == fake.STORY
    assert len(content) >= len(fake.STORY.split()) // 2  # word by word, not one block
    # The first words reached the client before the model had written the last one.
    assert content[0][0] < model.finished_at[-1]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"] and chunks[-1].usage.completion_tokens > 0


def test_earlier_messages_are_the_conversation(served):
    server, model = served
    client = server.openai()
    out = client.chat.completions.create(model="loom", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": TRIP[0]}, {"role": "assistant", "content": TRIP[1]},
        {"role": "user", "content": TRIP[2]}])
    assert out.choices[0].message.content == "Packing list for Ada: passport, sun hat, walking shoes."
    given = [(m["role"], m["content"]) for m in model.calls[-1][1:]]
    assert given == [("user", TRIP[0]), ("assistant", TRIP[1]), ("user", TRIP[2])]
    alone = client.chat.completions.create(model="loom", messages=[{"role": "user", "content": TRIP[2]}])
    assert "for whom" in alone.choices[0].message.content


@pytest.mark.anyio
async def test_mcp_over_http_gets_the_partial_answer_as_progress(served):
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    server, _ = served
    messages: list[str] = []

    async def on_progress(progress, total, message):
        messages.append(message)

    http = httpx2.AsyncClient(timeout=30)
    async with Client(streamable_http_client(f"{server.base_url}/mcp", http_client=http), mode="legacy") as client:
        await client.call_tool("assistant.ask", {"text": TRIP[0]})
        out = await client.call_tool("assistant.ask", {"text": TRIP[2]}, progress_callback=on_progress)
    answer = out.structured_content["answer"]
    assert answer.startswith("Packing list for Ada")  # the MCP session carried the conversation
    partial = [m.removeprefix("answer: ") for m in messages if m.startswith("answer: ")]
    assert len(partial) >= 2 and partial[-1] == answer and all(answer.startswith(p) for p in partial)
    assert messages[0] == "step 1 assistant.chat: started" and messages[-1].startswith("step 1 assistant.chat: done")
