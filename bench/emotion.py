"""Emotion benchmark: the shipped classifier on the frozen held-out set.

Prints the nine-class macro-F1 (Plutchik's eight + neutral), F1 per class, accuracy per
style (casual, sarcastic, work stress, neutral task requests...) and per language, how
often a neutral task request reads as emotional, how often the reply's tone changes and
whether it changes to the right emotion, and the time per message. The baseline, run on
the same messages in the same process, is the keyword lexicon the stage used before
(an emotion per lexicon hit, the most hits win, none = neutral); the ratio is the
model's macro-F1 over the lexicon's. The cross-validated figures from training (5 folds
on the training set) are printed beside the held-out ones; ``--cv`` recomputes them.

Targets: macro-F1 >= 0.60; neutral task requests read as emotional <= 5%; median time
per message <= 5 ms. Exit status 1 when one is missed.

    .venv/bin/python bench/emotion.py [--cv] [-v]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.cognition import emotion, lexicon, textclf, train  # noqa: E402

HELDOUT = ROOT / "plugins/cognition/data/emotion_heldout.jsonl"
HELDOUT_SHA256 = "4c0fb44944955ab7a9543a6bba0722fbb49d2d129cf80f93a844fe0567c77c82"  # docs/cognition.md
TARGET_F1, TARGET_TASK, TARGET_MS = 0.60, 0.05, 5.0


def lexicon_label(text: str) -> str:
    votes: Counter[str] = Counter()
    for w in textclf.words(text):
        emo = lexicon.lookup(w)
        if emo:
            votes[emo] += 1
    for ch in text:
        if ch in lexicon.EMOJI:
            votes[lexicon.EMOJI[ch]] += 1
    return votes.most_common(1)[0][0] if votes else "neutral"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cv", action="store_true", help="recompute the cross-validated figures (minutes)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every held-out miss")
    args = ap.parse_args()
    digest = hashlib.sha256(HELDOUT.read_bytes()).hexdigest()
    if digest != HELDOUT_SHA256:
        print(f"held-out set changed: sha256 {digest}, frozen {HELDOUT_SHA256}", file=sys.stderr)
        return 2
    rows = train.load_jsonl(HELDOUT)
    clf = emotion.model()
    classes = list(emotion.CLASSES)
    gold = [r["label"] for r in rows]

    # Alternate the two sides per round; time each message.
    model_ms: list[float] = []
    pred, base = [""] * len(rows), [""] * len(rows)
    results: list[dict] = [{}] * len(rows)
    for rnd in range(3):
        for side in (("model", "lexicon") if rnd % 2 == 0 else ("lexicon", "model")):
            for i, r in enumerate(rows):
                if side == "model":
                    t0 = time.perf_counter()
                    res = emotion.detect(r["text"], clf)
                    model_ms.append((time.perf_counter() - t0) * 1e3)
                    results[i], pred[i] = res, res["dominant"]
                else:
                    base[i] = lexicon_label(r["text"])

    f1, per = textclf.macro_f1(gold, pred, classes)
    f1_base, per_base = textclf.macro_f1(gold, base, classes)
    tasks = [i for i, r in enumerate(rows) if r["label"] == "neutral" and r["style"] in train.NEUTRAL_TASK_STYLES]
    task_rate = sum(pred[i] != "neutral" for i in tasks) / len(tasks)
    task_rate_base = sum(base[i] != "neutral" for i in tasks) / len(tasks)
    tone_threshold = float(clf.meta.get("tone_threshold", 0.5))
    toned = [i for i in range(len(rows)) if emotion.tone_instruction(results[i], tone_threshold)]
    tone_right = sum(pred[i] == gold[i] for i in toned) / max(len(toned), 1)
    toned_tasks = sum(1 for i in toned if i in set(tasks)) / len(tasks)
    emotional = [i for i, g in enumerate(gold) if g != "neutral"]
    tone_recall = sum(1 for i in toned if gold[i] != "neutral" and pred[i] == gold[i]) / len(emotional)
    median_ms = statistics.median(model_ms)
    p95_ms = sorted(model_ms)[int(0.95 * len(model_ms))]
    cv = clf.meta.get("cv", {})
    if args.cv:
        cv = train.train_emotion(log=lambda s: print(s)).meta["cv"]

    print(f"emotion: {len(rows)} held-out messages (sha256 {digest[:12]}...), model trained on "
          f"{clf.meta.get('rows')} ({clf.meta.get('trained_sha256', '')[:12]}...)")
    print(f"{'':28}{'model':>8}{'lexicon':>9}{'cv (train)':>12}")
    print(f"{'macro-F1 (9 classes)':28}{f1:8.3f}{f1_base:9.3f}{cv.get('macro_f1', float('nan')):12.3f}")
    for c in classes:
        print(f"  F1 {c:24}{per[c]:8.3f}{per_base[c]:9.3f}{cv.get('per_class_f1', {}).get(c, float('nan')):12.3f}")
    print(f"{'neutral tasks -> emotional':28}{task_rate:8.1%}{task_rate_base:9.1%}"
          f"{cv.get('task_emotional', float('nan')):12.1%}")
    print(f"{'tone changed, right emotion':28}{tone_right:8.1%}{'':9}{cv.get('tone_precision', float('nan')):12.1%}"
          f"   (tone threshold {tone_threshold}, emotion threshold {clf.meta.get('threshold')})")
    print(f"{'tone changed / emotional':28}{tone_recall:8.1%}{'':9}{cv.get('tone_recall', float('nan')):12.1%}")
    print(f"{'tone changed on a task':28}{toned_tasks:8.1%}")
    print("accuracy by style / language:")
    for key in ("style", "lang"):
        for value in sorted({r[key] for r in rows}):
            idx = [i for i, r in enumerate(rows) if r[key] == value]
            acc = sum(pred[i] == gold[i] for i in idx) / len(idx)
            acc_b = sum(base[i] == gold[i] for i in idx) / len(idx)
            print(f"  {value:26}{acc:8.1%}{acc_b:9.1%}   (n={len(idx)})")
    print(f"time per message: median {median_ms:.3f} ms, p95 {p95_ms:.3f} ms (pure Python, one core)")
    print(f"ratio: model macro-F1 / lexicon macro-F1 = {f1 / max(f1_base, 1e-9):.2f}")
    if args.verbose:
        for i, r in enumerate(rows):
            if pred[i] != gold[i]:
                print(f"  miss [{r['style']}/{r['lang']}] {gold[i]} -> {pred[i]}: {r['text']}")
    missed = []
    if f1 < TARGET_F1:
        missed.append(f"macro-F1 {f1:.3f} < {TARGET_F1}")
    if task_rate > TARGET_TASK:
        missed.append(f"neutral tasks read as emotional {task_rate:.1%} > {TARGET_TASK:.0%}")
    if median_ms > TARGET_MS:
        missed.append(f"median {median_ms:.2f} ms > {TARGET_MS} ms")
    print("MISSED: " + "; ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
