"""What the coder asks its model, and how code is taken back out of the answer."""

from __future__ import annotations

import re
from typing import Any

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:\n```|\Z)", re.S)


def generate_messages(task: str, language: str, context: list[tuple[str, str]]) -> list[dict[str, Any]]:
    system = (f"You are an expert {language} programmer. Write correct, complete, idiomatic {language} code "
              f"for the task. Put the code in one ```{language} block, then explain it in at most two sentences.")
    parts = []
    for name, text in context:
        parts.append(f"File {name}:\n```\n{text}\n```")
    parts.append(f"Task: {task}" if context else task)
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def explain_messages(code: str | None, error: str | None, language: str | None) -> list[dict[str, Any]]:
    lang = language or ""
    system = "You are an expert programmer who explains code and errors clearly and briefly."
    if code and error:
        user = (f"This {lang} code:\n```{lang}\n{code}\n```\nfails with:\n```\n{error}\n```\n"
                "Explain the cause and how to fix it.")
    elif error:
        user = f"Explain this error and how to fix it:\n```\n{error}\n```"
    else:
        user = f"Explain what this {lang} code does:\n```{lang}\n{code}\n```"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def edit_messages(name: str, language: str, original: str, instruction: str) -> list[dict[str, Any]]:
    system = ("You are an expert programmer editing a file. Apply the requested change and answer with the "
              "complete updated file in one fenced code block, and nothing else.")
    user = f"File {name}:\n```{language}\n{original}\n```\n\nChange: {instruction}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def review_prompt(code: str, focus: str = "") -> list[tuple[str, str]]:
    """The MCP prompt behind ``coder.review``."""
    ask = f" Focus on {focus}." if focus else ""
    return [("user", "Review this code like a careful senior engineer: point out bugs, security problems and "
                     f"unclear parts, most important first, each with a concrete fix.{ask}\n\n```\n{code}\n```")]


def extract_code(text: str, language: str | None = None) -> str | None:
    """The first fenced block (one tagged with ``language`` preferred); None without any.

    An unterminated block (the answer hit max_tokens) counts up to the end.
    """
    blocks = _FENCE.findall(text)
    if not blocks:
        return None
    if language:
        for tag, body in blocks:
            if tag.lower() == language.lower():
                return body
    return blocks[0][1]
