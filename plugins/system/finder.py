"""Finding a target on the screen by its label or a description.

``system.click``/``system.type``/``system.scroll``/``system.drag`` may name their target
("the Save button", "Sign in") instead of giving coordinates. A screenshot is taken and
the target located:

- with the **vision model** when one is configured (role ``vlm``): it is asked for the
  target's centre and answers with coordinates (``[plugin.system] vision_coords`` says
  whether it answers in pixels or, like Qwen3-VL, on a 0-1000 grid);
- otherwise with **tesseract OCR** word boxes: the label's words are matched (case and
  punctuation ignored, small OCR slips tolerated) against words on one line, and the
  centre of the matched words is the point.

A target that cannot be found is an error listing what was seen, never a guess.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from core.tools import ToolError

_ACTION = re.compile(
    r"^\s*(?:please\s+|now\s+|can you\s+|could you\s+)*(?:double[- ]?click|right[- ]?click|click|press|tap|hit|"
    r"select|choose|push|type|write|enter|scroll|drag|focus|go to|haz clic en|pulsa|presiona)?\s*"
    r"(?:on|at|in|into|onto|to|en|sobre)?\s*(?:the|a|an|that|this|el|la|los|las)?\s*", re.I)
_WIDGET = re.compile(r"\s*\b(?:button|btn|icon|link|tab|menu item|menu|item|field|box|checkbox|option|label|"
                     r"entry|text box|textbox|input|control|boton|enlace|icono|campo)\b\s*$", re.I)
_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclass
class Found:
    x: int
    y: int
    box: tuple[int, int, int, int]  # left, top, width, height
    text: str  # what was matched (OCR words or the vision model's answer)
    engine: str  # "ocr" or "vision"
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "box": list(self.box), "matched": self.text, "engine": self.engine,
                "score": round(self.score, 3)}


def label_of(description: str) -> str:
    """The label to look for in a description: quoted text, else the words left once the
    action ("click on the") and the widget kind ("button") are taken away."""
    quoted = re.findall(r"[\"“'‘«]([^\"”'’»]{1,80})[\"”'’»]", description)
    if quoted:
        return quoted[0].strip()
    text = description.strip().rstrip(".!?")
    text = _ACTION.sub("", text, count=1)
    text = re.split(r"\s+(?:and|then|y|luego)\s+", text, maxsplit=1)[0]
    text = re.sub(r"\s+(?:in|on|at) the (?:window|screen|dialog|toolbar|page|top|bottom|left|right)\b.*$", "", text,
                  flags=re.I)
    text = _WIDGET.sub("", text)
    return text.strip() or description.strip()


_CONFUSABLE = str.maketrans({"1": "i", "l": "i", "|": "i", "!": "i", "0": "o", "5": "s", "3": "e", "8": "b"})


def _norm(word: str) -> str:
    """Case, punctuation and the glyphs OCR confuses (1/l/i, 0/o, rn/m...) folded, on both sides."""
    return _WORD.sub("", word).lower().replace("rn", "m").replace("vv", "w").translate(_CONFUSABLE)


def match_words(words: list[Any], label: str) -> list[Found]:
    """Every run of OCR words on one line that spells ``label``, best first."""
    target = [t for t in (_norm(w) for w in label.split()) if t]
    if not target:
        return []
    lines: dict[Any, list[Any]] = {}
    for w in words:
        lines.setdefault(w.line, []).append(w)
    found = []
    n = len(target)
    for line in lines.values():
        line.sort(key=lambda w: w.left)
        normed = [_norm(w.text) for w in line]
        for i in range(len(line) - n + 1):
            window = normed[i:i + n]
            score = sum(_similar(a, b) for a, b in zip(window, target, strict=True)) / n
            if score < 0.8:
                continue
            run = line[i:i + n]
            left = min(w.left for w in run)
            top = min(w.top for w in run)
            right = max(w.left + w.width for w in run)
            bottom = max(w.top + w.height for w in run)
            found.append(Found((left + right) // 2, (top + bottom) // 2, (left, top, right - left, bottom - top),
                               " ".join(w.text for w in run), "ocr",
                               score * (sum(w.conf for w in run) / n / 100)))
    return sorted(found, key=lambda f: -f.score)


def _similar(a: str, b: str) -> float:
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def locate_ocr(image: Any, description: str) -> Found:
    from core.ocr import ocr_words

    label = label_of(description)
    words = ocr_words(image)
    hits = match_words(words, label)
    if not hits:
        seen = ", ".join(sorted({w.text for w in words if len(_norm(w.text)) > 1})[:40]) or "no text at all"
        raise ToolError(f"could not find {label!r} on the screen (OCR). Words seen: {seen}. Give coordinates, "
                        "or a label exactly as it is written on the screen")
    return hits[0]


VISION_PROMPT = ("This is a screenshot, {w} pixels wide and {h} pixels high. Where is {target}? Answer with only "
                 "JSON: {{\"x\": <x>, \"y\": <y>}} for the centre of it{grid}, or {{\"x\": null, \"y\": null}} if "
                 "it is not visible.")


def vision_prompt(description: str, width: int, height: int, coords: str) -> str:
    grid = " on a 0-1000 grid across and down the image" if coords == "norm1000" else " in pixels"
    return VISION_PROMPT.format(w=width, h=height, target=description.strip().rstrip("?.!"), grid=grid)


def parse_vision_point(answer: str, width: int, height: int, coords: str) -> tuple[int, int] | None:
    """The point in a vision model's answer (JSON, or the first two numbers), in screen pixels."""
    x = y = None
    m = re.search(r"\{.*?\}", answer, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
            x, y = obj.get("x"), obj.get("y")
        except (ValueError, AttributeError):
            x = y = None
    if x is None or y is None:
        nums = re.findall(r"-?\d+(?:\.\d+)?", answer)
        if len(nums) < 2 or re.search(r"\bnull\b|not visible|cannot|can't", answer, re.I):
            return None
        x, y = float(nums[0]), float(nums[1])
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        return None
    if coords == "norm1000":
        x, y = x * width / 1000, y * height / 1000
    if not (0 <= x < width and 0 <= y < height):
        return None
    return round(x), round(y)
