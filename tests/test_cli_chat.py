"""`loom chat` over a pseudo-terminal (pexpect), as a person types: streamed answers from the
packaged SmolLM2, multi-line input, /attach, /model, /history, Ctrl-D, and a conversation
resumed from its saved turns."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pexpect = pytest.importorskip("pexpect")

PROMPT = ">>> "


@pytest.fixture
def env(tmp_path):
    e = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1",
         "LOOM_PLUGINS": "admin,models,llamacpp", "XDG_DATA_HOME": str(tmp_path / "data"),
         "XDG_CONFIG_HOME": str(tmp_path / "config"), "TERM": "dumb"}
    e.pop("LOOM_CONFIG", None)
    return e


def spawn(env, cwd, *args):
    return pexpect.spawn(sys.executable, ["-m", "core.cli", "chat", "--local", *args], env=env, cwd=str(cwd),
                         encoding="utf-8", timeout=120, dimensions=(40, 200))


def test_a_conversation_at_the_terminal(env, tmp_path):
    (tmp_path / "notes.txt").write_text("buy milk\n")
    child = spawn(env, tmp_path, "--model", "smollm2", "--session", "kitchen", "--max-tokens", "12")
    child.expect(r"conversation kitchen with smollm2 in this process")
    child.expect_exact(PROMPT)
    child.sendline("Name a colour.")
    child.expect(r"\S+")  # the answer, streamed
    child.expect_exact(PROMPT)
    child.sendline("First line \\")
    child.expect_exact("... ")
    child.sendline("and the second line.")
    child.expect_exact(PROMPT)
    child.sendline("/attach nowhere.png")
    child.expect("no such file: nowhere.png")
    child.sendline("/attach notes.txt")
    child.expect(r"attached notes.txt \(9 bytes\)")
    child.sendline("/model")
    child.expect("talking to smollm2 directly")
    child.sendline("/history")
    child.expect("user: Name a colour.")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    turns = [json.loads(line) for line in
             (tmp_path / "data" / "loom" / "chat" / "kitchen.jsonl").read_text().splitlines()]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"] == "First line \nand the second line."
    assert all(t["content"].strip() for t in turns)

    again = spawn(env, tmp_path, "--model", "smollm2", "--session", "kitchen")
    again.expect(r"resuming 4 earlier turns")
    again.expect_exact(PROMPT)
    again.sendline("/exit")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0


def test_an_unknown_model_is_an_error_and_the_chat_goes_on(env, tmp_path):
    child = spawn(env, tmp_path, "--model", "nope")
    child.expect_exact(PROMPT)
    child.sendline("hello")
    child.expect(r"loom: .*nope")
    child.expect_exact(PROMPT)
    child.sendline("/model smollm2")
    child.expect("talking to smollm2 directly")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
