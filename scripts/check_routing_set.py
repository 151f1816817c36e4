"""Check a routing request set (JSONL in tests/routing_dev.jsonl's format) against the tool registry.

Each line must parse and carry exactly `id`, `text`, `attachments`, `intent`, `steps`; every
step must name a registered tool, and the arguments that step would get (from the request's
words, a URL or file path in it, an attachment of the right kind, or an earlier step's output)
must validate against that tool's input schema. Also flags: an intent that does not follow
from the plan (the dev set's conventions), an attachment no step reads, spoken requests not
written as `[spoken] ...` with audio transcribed first, and exact or near duplicates within
the files given (and against --against files, whose lines are never printed).

    .venv/bin/python -m core.cli tools --json > /tmp/tools.json
    .venv/bin/python scripts/check_routing_set.py tests/routing_dev3.jsonl --tools /tmp/tools.json

Exit 1 when any line is invalid; near-duplicates and intent mismatches are warnings.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema

FIELDS = ["id", "text", "attachments", "intent", "steps"]
INTENTS = {"chat", "research", "imagegen", "videogen", "memory", "code", "speak", "transcribe",
           "vision", "pc_control"}
KINDS = {"image", "audio", "video"}
# The intent a plan's leading tool stands for (by tool name prefix).
TOOL_INTENT = {"assistant": "chat", "browser": "research", "imagegen": "imagegen", "video": "videogen",
               "memory": "memory", "coder": "code", "voice.speak": "speak", "voice.transcribe": "transcribe",
               "vision": "vision", "system": "pc_control"}
IMAGE_MAKERS = {"imagegen.generate", "imagegen.edit", "system.screenshot", "browser.screenshot"}
URL = re.compile(r"https?://\S+")
SOURCE_EXTS = ("py|js|ts|tsx|jsx|sh|c|h|cpp|go|rs|java|rb|php|html|css|md|toml|yaml|yml|json|sql|kt|swift|"
               "R|Rmd|jl|scala|lua|dart|ipynb|ino|ini|cfg|conf|properties|xml|j2|gradle|ps1|vue|svelte|scss|txt")
PATH = re.compile(rf"[\w./-]+\.(?:{SOURCE_EXTS})\b|\b(?:Makefile|Dockerfile|Jenkinsfile)\b")
COORDS = re.compile(r"(-?\d{1,5})\s*[, x]\s*(-?\d{1,5})")


def tool_intent(tool: str) -> str:
    for prefix, intent in TOOL_INTENT.items():
        if tool == prefix or tool.startswith(prefix + "."):
            return intent
    return "?"


def step_args(tool: str, text: str, sources: dict[str, bool], prior: bool) -> tuple[dict, str | None]:
    """The arguments `tool` would be called with, or why it could not be called."""
    words = text.removeprefix("[spoken]").strip() or ("{previous}" if prior else "")
    image = "input.png" if sources["image"] else None
    if tool in ("vision.answer", "vision.describe", "vision.ocr", "imagegen.edit") and not image:
        return {}, "needs an image (attachment or an earlier step that makes one)"
    if tool == "voice.transcribe" and not sources["audio"]:
        return {}, "needs an audio attachment"
    if tool == "vision.video" and not sources["video"]:
        return {}, "needs a video attachment"
    url = URL.search(text)
    path = PATH.search(text)
    coords = COORDS.search(text)
    args: dict = {
        "assistant.chat": {"text": words},
        "browser.research": {"question": words},
        "browser.open": {"url": url.group(0).rstrip(".,)") if url else ""},
        "imagegen.generate": {"prompt": words},
        "imagegen.edit": {"image": image, "prompt": words},
        "video.generate": {"prompt": words},
        "memory.remember": {"text": words},
        "memory.recall": {"query": words},
        "memory.forget": {"query": words},
        "coder.generate": {"task": words},
        "coder.edit": {"path": path.group(0) if path else "", "instruction": words},
        "coder.explain": {"code": words},
        "voice.speak": {"text": words},
        "voice.transcribe": {"audio": "input.wav"},
        "vision.answer": {"image": image, "question": words},
        "vision.describe": {"image": image},
        "vision.ocr": {"image": image},
        "vision.video": {"video": "input.mp4", "prompt": words},
        "system.open_app": {"command": "app"},
        "system.click": {"target": words},
        "system.type": {"text": words},
        "system.hotkey": {"keys": ["enter"]},
        "system.scroll": {"direction": "down"},
        "system.focus": {"window": words},
        "system.windows": {},
        "system.screenshot": {},
        "system.move": ({"x": int(coords.group(1)), "y": int(coords.group(2))} if coords else {}),
    }.get(tool, {})
    if tool == "browser.open" and not url and not prior:
        return args, "needs a URL in the request"
    if tool == "coder.edit" and not path:
        return args, "needs a file path in the request"
    return args, None


def check_line(n: int, raw: str, tools: dict[str, dict]) -> tuple[dict | None, list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, [f"line {n}: not JSON ({exc})"], []
    if list(row) != FIELDS:
        errors.append(f"line {n}: fields {list(row)}, expected {FIELDS}")
        return row, errors, warnings
    rid, text, atts, intent, steps = (row[k] for k in FIELDS)
    where = f"line {n} ({rid})"
    if not isinstance(text, str) or not isinstance(atts, list) or not isinstance(steps, list) or not steps:
        return row, [f"{where}: wrong field types or no steps"], warnings
    if intent not in INTENTS:
        errors.append(f"{where}: unknown intent {intent!r}")
    if set(atts) - KINDS:
        errors.append(f"{where}: unknown attachment kinds {sorted(set(atts) - KINDS)}")
    spoken = text.startswith("[spoken] ")
    if spoken and ("audio" not in atts or steps[0] != "voice.transcribe"):
        errors.append(f"{where}: a [spoken] request needs an audio attachment transcribed first")
    if "audio" in atts and steps[0] != "voice.transcribe":
        errors.append(f"{where}: attached audio is not transcribed first")
    sources = {k: k in atts for k in KINDS}
    used: set[str] = set()
    for i, tool in enumerate(steps):
        if tool not in tools:
            errors.append(f"{where}: step {tool!r} is not a registered tool")
            continue
        args, why = step_args(tool, text, sources, prior=i > 0)
        if why:
            errors.append(f"{where}: {tool} {why}")
            continue
        try:
            jsonschema.validate(args, tools[tool]["input_schema"])
        except jsonschema.ValidationError as exc:
            errors.append(f"{where}: {tool} arguments {args} invalid: {exc.message}")
        if tool == "voice.transcribe":
            used.add("audio")
        if tool == "vision.video":
            used.add("video")
        if "image" in args and sources["image"]:
            used.add("image")
        if tool in IMAGE_MAKERS:
            sources["image"] = True
    for kind in set(atts) - used:
        warnings.append(f"{where}: attached {kind} is read by no step")
    lead = steps[1:] if spoken and len(steps) > 1 else steps
    expected = "transcribe" if "audio" in atts and not spoken else tool_intent(lead[0])
    if expected != intent and not (intent == "code" and lead[0] == "vision.describe"
                                   and any(s.startswith("coder.") for s in lead)):
        warnings.append(f"{where}: intent {intent!r} but the plan starts with {lead[0]} ({expected})")
    return row, errors, warnings


def grams(text: str) -> set[str]:
    t = re.sub(r"\W+", " ", text.lower().removeprefix("[spoken]")).strip()
    return {t[i:i + 4] for i in range(max(1, len(t) - 3))}


def near_duplicates(mine: list[tuple[str, str]], other: list[tuple[str, str]], same: bool,
                    threshold: float) -> list[tuple[str, str, float]]:
    out = []
    gm = [(rid, text, grams(text)) for rid, text in mine]
    go = gm if same else [(rid, text, grams(text)) for rid, text in other]
    for a, (ida, _, ga) in enumerate(gm):
        for b, (idb, _, gb) in enumerate(go):
            if same and b <= a:
                continue
            j = len(ga & gb) / max(1, len(ga | gb))
            if j >= threshold:
                out.append((ida, idb, j))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--tools", type=Path, help="output of `core.cli tools --json` (default: run it)")
    ap.add_argument("--against", type=Path, action="append", default=[],
                    help="also flag near-duplicates of lines in this file (its lines are not printed)")
    ap.add_argument("--threshold", type=float, default=0.6, help="4-gram Jaccard for a near-duplicate")
    opts = ap.parse_args()
    raw = opts.tools.read_text() if opts.tools else subprocess.run(
        [sys.executable, "-m", "core.cli", "tools", "--json"], check=True, capture_output=True, text=True).stdout
    tools = {t["name"]: t for t in json.loads(raw)}
    bad = 0
    texts: list[tuple[str, str]] = []
    for path in opts.files:
        intents: Counter[str] = Counter()
        steps: Counter[str] = Counter()
        ids: set[str] = set()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            row, errors, warnings = check_line(n, line, tools)
            for msg in errors:
                print(f"ERROR {path}: {msg}")
            for msg in warnings:
                print(f"warn  {path}: {msg}")
            bad += bool(errors)
            if row is None:
                continue
            if row.get("id") in ids:
                print(f"ERROR {path}: line {n}: duplicate id {row.get('id')}")
                bad += 1
            ids.add(row.get("id"))
            intents[row.get("intent")] += 1
            steps.update(row.get("steps", []))
            texts.append((f"{path.name}:{row.get('id')}", row.get("text", "")))
        print(f"{path}: {sum(intents.values())} requests; intents {dict(intents.most_common())}")
        print(f"  steps {dict(steps.most_common())}")
    for a, b, j in near_duplicates(texts, [], same=True, threshold=opts.threshold):
        print(f"warn  near-duplicate {a} ~ {b} ({j:.2f})")
    for other in opts.against:
        theirs = [(f"{other.name}:{json.loads(x)['id']}", json.loads(x)["text"])
                  for x in other.read_text(encoding="utf-8").splitlines() if x.strip()]
        for a, b, j in near_duplicates(texts, theirs, same=False, threshold=opts.threshold):
            print(f"warn  near-duplicate {a} ~ {b} ({j:.2f})")
    print("OK" if not bad else f"{bad} invalid lines")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
