"""coder tools end to end through the model pool: the packaged SmolLM2 (the default coder)
and a tiny generated GGUF configured for the coder role."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from core.config import LoomConfig, ModelConfig, PathsConfig
from tests.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.anyio


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return root


def build(make_app, ws: Path, data_dir: Path, models: dict | None = None):
    cfg = LoomConfig(paths=PathsConfig(data_dir=str(data_dir), allowed_roots=[str(ws)]), models=models or {})
    return make_app("llamacpp", "coder", config=cfg)


async def test_generate_writes_code_and_streams_it(make_app, ws, data_dir):
    app = build(make_app, ws, data_dir)
    seen: list[tuple[float, str | None]] = []

    async def progress(done, total, message):
        seen.append((done, message))

    async with app:
        result = await app.call("coder.generate", {"task": "python function that adds two numbers",
                                                   "temperature": 0, "max_tokens": 160}, on_progress=progress)
    assert "def" in result.text()
    assert "def" in result.structured["code"] and "```" not in result.structured["code"]
    assert result.structured["model"] == "smollm2-coder"  # the packaged coder
    assert len(seen) > 1 and "".join(m for _, m in seen) == result.text()
    steps = [d for d, _ in seen]
    assert all(a < b for a, b in itertools.pairwise(steps))
    usage = result.structured["usage"]
    assert 0 < usage["completion_tokens"] <= 160 and usage["ttft_s"] is not None


async def test_generate_reads_context_files(make_app, ws, data_dir):
    app = build(make_app, ws, data_dir)
    async with app:
        result = await app.call("coder.explain", {"code": (ws / "calc.py").read_text(), "language": "python",
                                                  "max_tokens": 48, "temperature": 0})
        assert result.text().strip()
        result = await app.call("coder.generate", {"task": "write a unit test for add", "context_files": ["calc.py"],
                                                   "max_tokens": 48, "temperature": 0})
        assert result.text().strip()


async def test_edit_returns_a_diff_and_applies_only_when_asked(make_app, ws, data_dir):
    app = build(make_app, ws, data_dir)
    target = ws / "calc.py"
    before = target.read_text()
    args = {"path": "calc.py", "instruction": "Fix the bug: add should return the sum a + b."}
    async with app:
        preview = await app.call("coder.edit", args)
        assert target.read_text() == before  # a preview writes nothing
        diff = preview.structured["diff"]
        assert diff.startswith("--- a/calc.py\n+++ b/calc.py\n@@")
        assert "-    return a - b" in diff and preview.structured["applied"] is False

        applied = await app.call("coder.edit", {**args, "apply": True})
    assert applied.structured["applied"] is True
    assert target.read_text() != before
    assert "return a + b" in target.read_text()


async def test_cancelling_generate_frees_the_model(make_app, ws, data_dir):
    app = build(make_app, ws, data_dir)
    first = anyio.Event()

    async def progress(done, total, message):
        first.set()

    async with app:
        async with anyio.create_task_group() as tg:
            async def run():
                await app.call("coder.generate", {"task": "write a very long essay about compilers in python comments",
                                                  "max_tokens": 2000}, on_progress=progress)
            tg.start_soon(run)
            await first.wait()
            tg.cancel_scope.cancel()
        # The generation stopped and let go of the model: nothing holds it, and it answers again.
        assert app.pool.model_status("smollm2-coder")["busy"] == 0
        again = await app.call("coder.explain", {"error": "NameError: name 'x' is not defined", "max_tokens": 8})
        assert again.text()


async def test_a_configured_coder_model_replaces_the_default(make_app, ws, data_dir, tmp_path):
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf", context=2048)
    models = {"tiny": ModelConfig(backend="llama_cpp", file=str(tiny), role="coder", context_size=2048,
                                  options={"n_threads": 1})}
    app = build(make_app, ws, data_dir, models)
    async with app:
        result = await app.call("coder.generate", {"task": "anything", "max_tokens": 8, "temperature": 0})
    assert result.structured["model"] == "tiny"
    assert result.structured["usage"]["completion_tokens"] <= 8


async def test_code_from_a_real_model_over_mcp(make_app, ws, data_dir):
    from mcp.client import Client

    from core.surfaces.mcp import McpSurface

    surface = McpSurface(build(make_app, ws, data_dir))
    progress: list[str] = []

    async def on_progress(done, total, message):
        progress.append(message or "")

    async with surface.app, surface.running(), Client(surface.server, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["coder.edit"].annotations.destructive_hint is True
        result = await client.call_tool("coder.generate", {"task": "python function that adds two numbers",
                                                           "temperature": 0, "max_tokens": 120},
                                        progress_callback=on_progress)
        prompt = await client.get_prompt("coder.review", {"code": "eval(input())"})
    assert not result.is_error
    assert "def" in result.content[0].text and "def" in result.structured_content["code"]
    assert progress and "".join(progress) == result.content[0].text
    assert "eval(input())" in prompt.messages[0].content.text
