"""Finding a target on the screen without a screen: the label taken from a description, OCR
words matched on one line (with small slips), and a vision model's answer read as a point."""

from __future__ import annotations

import pytest

from core.ocr import Word
from plugins.system.finder import label_of, match_words, parse_vision_point


@pytest.mark.parametrize(("description", "label"), [
    ("click the Save button", "Save"),
    ("Click on 'Sign in'", "Sign in"),
    ("double-click the Recycle Bin icon", "Recycle Bin"),
    ("press the OK button and then wait", "OK"),
    ("Save As", "Save As"),
    ("click the Submit link in the toolbar", "Submit"),
])
def test_the_label_is_what_is_left_of_the_description(description, label):
    assert label_of(description) == label


def _w(text, left, line=(1, 1, 1), conf=90.0):
    return Word(text, left, 100, 10 * len(text), 20, conf, line)


def test_words_on_one_line_match_with_small_ocr_slips():
    words = [_w("File", 10), _w("Save", 60), _w("As...", 110), _w("Save", 300, line=(2, 1, 1)),
             _w("Sign", 500, line=(3, 1, 1)), _w("1n", 550, line=(3, 1, 1))]
    best = match_words(words, "Save As")
    assert best[0].text == "Save As..." and best[0].box == (60, 100, 100, 20) and (best[0].x, best[0].y) == (110, 110)
    assert [f.text for f in match_words(words, "sign in")] == ["Sign 1n"]  # "1n": an OCR slip, still a match
    assert match_words(words, "Publish") == []


def test_a_vision_answer_becomes_a_point_on_the_screen():
    assert parse_vision_point('{"x": 400, "y": 300}', 800, 600, "pixels") == (400, 300)
    assert parse_vision_point('The button is at {"x": 500, "y": 500}.', 800, 600, "norm1000") == (400, 300)
    assert parse_vision_point("(120, 45)", 800, 600, "pixels") == (120, 45)
    assert parse_vision_point('{"x": null, "y": null}', 800, 600, "pixels") is None
    assert parse_vision_point('{"x": 900, "y": 10}', 800, 600, "pixels") is None  # off the screen: no guess
