"""The layering rules, read from the source: the kernel never imports a plugin, no plugin imports
another plugin's modules (shared helpers live in core/), and no module in core/ or a plugin's
top level imports a model library when it is imported (``loom --help`` must stay fast)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_LIBRARIES = {"torch", "transformers", "diffusers", "llama_cpp", "playwright", "pyautogui", "piper",
                   "faster_whisper", "ctranslate2", "onnxruntime"}


def _imports(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path`` (only those run at import time if asked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_core_never_imports_plugins():
    found = [f"{p.relative_to(ROOT)}:{line} {mod}" for p in (ROOT / "core").rglob("*.py")
             for line, mod in _imports(p) if mod == "plugins" or mod.startswith("plugins.")]
    assert not found, found


def test_no_plugin_imports_another_plugins_modules():
    found = []
    for p in (ROOT / "plugins").rglob("*.py"):
        own = p.relative_to(ROOT / "plugins").parts[0]
        for line, mod in _imports(p):
            parts = mod.split(".")
            if parts[0] == "plugins" and len(parts) > 1 and parts[1] != own:
                found.append(f"{p.relative_to(ROOT)}:{line} {mod}")
    assert not found, found


def test_no_model_library_is_imported_at_module_level():
    found = [f"{p.relative_to(ROOT)}:{line} {mod}"
             for base in ("core", "plugins") for p in (ROOT / base).rglob("*.py")
             for line, mod in _imports(p, top_level_only=True) if mod.split(".")[0] in MODEL_LIBRARIES]
    assert not found, found
