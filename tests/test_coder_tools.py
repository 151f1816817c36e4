"""coder tools that need no model: workspace confinement, the editor launcher, the prompt."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.config import LoomConfig, PathsConfig
from core.tools import ToolError
from plugins.coder import prompts, workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return root


@pytest.fixture
def app(make_app, ws, data_dir):
    cfg = LoomConfig(paths=PathsConfig(data_dir=str(data_dir), allowed_roots=[str(ws)]))
    return make_app("coder", config=cfg)


def test_tools_and_prompt_are_registered(app):
    names = set(app.tools.names())
    assert {"coder.generate", "coder.explain", "coder.edit", "coder.open_in_editor"} <= names
    assert app.tools.get("coder.edit").annotations.destructive
    assert not app.tools.get("coder.generate").annotations.destructive
    assert "coder.review" in app.prompts
    (role, text), = app.prompts["coder.review"].func(code="x = 1", focus="naming")
    assert role == "user" and "x = 1" in text and "naming" in text


async def test_edit_refuses_paths_outside_the_roots(app, tmp_path):
    outside = tmp_path / "secret.py"
    outside.write_text("x = 1\n")
    for path in (str(outside), "../secret.py", "/etc/passwd"):
        with pytest.raises(ToolError, match="outside the workspace roots"):
            await app.call("coder.edit", {"path": path, "instruction": "rename x", "apply": True})
    assert outside.read_text() == "x = 1\n"


async def test_symlink_out_of_the_roots_is_refused(app, ws, tmp_path):
    outside = tmp_path / "elsewhere.py"
    outside.write_text("y = 2\n")
    (ws / "link.py").symlink_to(outside)
    with pytest.raises(ToolError, match="outside the workspace roots"):
        await app.call("coder.edit", {"path": "link.py", "instruction": "rename y"})


async def test_generate_context_files_are_confined_and_checked(app, ws):
    with pytest.raises(ToolError, match="outside the workspace roots"):
        await app.call("coder.generate", {"task": "x", "context_files": ["/etc/hostname"]})
    with pytest.raises(ToolError, match="does not exist"):
        await app.call("coder.generate", {"task": "x", "context_files": ["missing.py"]})
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    with pytest.raises(ToolError, match="binary"):
        await app.call("coder.generate", {"task": "x", "context_files": ["blob.bin"]})


async def test_bad_arguments_are_rejected_before_any_model(app):
    with pytest.raises(ToolError, match="task"):
        await app.call("coder.generate", {"language": "python"})
    with pytest.raises(ToolError, match="max_tokens"):
        await app.call("coder.generate", {"task": "x", "max_tokens": 0})
    with pytest.raises(ToolError, match="code"):
        await app.call("coder.explain", {})


async def test_open_in_editor_without_code_says_how_to_install(app, ws, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ToolError) as err:
        await app.call("coder.open_in_editor", {"path": "calc.py", "line": 2})
    msg = str(err.value)
    assert "not on PATH" in msg and "Install 'code' command in PATH" in msg and "calc.py:2" in msg


async def test_open_in_editor_runs_code_goto(app, ws, monkeypatch, tmp_path):
    # A stand-in `code` launcher (VS Code cannot run here) that records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "args.txt"
    fake = bin_dir / "code"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = await app.call("coder.open_in_editor", {"path": "calc.py", "line": 2, "column": 5})
    assert "Opened" in result.text()
    assert record.read_text().split() == ["--goto", f"{ws / 'calc.py'}:2:5"]
    with pytest.raises(ToolError, match="outside the workspace roots"):
        await app.call("coder.open_in_editor", {"path": "/etc/passwd"})


def test_extract_code_prefers_the_language_block_and_survives_truncation():
    answer = "Here:\n```text\nnot this\n```\n```python\ndef f():\n    return 1\n```\nDone."
    assert prompts.extract_code(answer, "python") == "def f():\n    return 1"
    assert prompts.extract_code("```py\nx = 1\ny = ", None) == "x = 1\ny = "
    assert prompts.extract_code("no code here", "python") is None


def test_unified_diff_and_atomic_write(ws):
    p = ws / "calc.py"
    old = p.read_text()
    new = old.replace("a - b", "a + b")
    diff = workspace.unified_diff(old, new, "calc.py")
    assert diff.startswith("--- a/calc.py\n+++ b/calc.py\n")
    assert "-    return a - b\n+    return a + b\n" in diff
    p.chmod(0o640)
    workspace.write_atomic(p, new)
    assert p.read_text() == new and stat.S_IMODE(p.stat().st_mode) == 0o640
    assert [f.name for f in ws.iterdir()] == ["calc.py"]
