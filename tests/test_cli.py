"""The `loom` command line as a user runs it, and the kernel's import hygiene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import __version__
from core.plugins import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "diffusers", "llama_cpp", "playwright", "pyautogui", "faster_whisper",
         "piper", "onnxruntime", "ctranslate2", "numpy")


def loom(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "LOOM_DISABLE_PLUGIN_AUTOLOAD": "1", **env}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True,
                          env=environ, cwd=cwd or ROOT, timeout=120)


def test_help_and_version():
    out = loom("--help")
    assert out.returncode == 0
    for cmd in ("tools", "call", "plugins", "doctor"):
        assert cmd in out.stdout
    assert loom("--version").stdout.strip() == f"loom {__version__}"


def test_call_prints_the_result_and_reports_bad_input(tmp_path):
    ok = loom("call", "admin.plugins", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert any(p["name"] == "admin" for p in json.loads(ok.stdout))
    bad_json = loom("call", "admin.enable_plugin", "--json", "{nope", cwd=tmp_path)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    wrong_type = loom("call", "admin.enable_plugin", "--json", '{"name": 3}', cwd=tmp_path)
    assert wrong_type.returncode == 1 and "Expected `str`, got `int` - at `$.name`" in wrong_type.stderr
    unknown = loom("call", "admin.nothing", cwd=tmp_path)
    assert unknown.returncode == 1 and "Unknown tool 'admin.nothing'" in unknown.stderr


def test_tools_json_has_schemas_and_annotations(tmp_path):
    out = loom("tools", "--json", cwd=tmp_path)
    tools = {t["name"]: t for t in json.loads(out.stdout)}
    assert tools["admin.enable_plugin"]["input_schema"]["required"] == ["name"]
    assert tools["admin.plugins"]["annotations"]["readOnlyHint"] is True


def test_doctor_lists_each_plugin_with_fixes(tmp_path):
    out = loom("doctor", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "core:" in out.stdout and "python" in out.stdout
    rows = json.loads(loom("doctor", "--json", cwd=tmp_path).stdout)
    assert all({"plugin", "check", "name", "ok"} <= set(r) for r in rows)
    assert all(r.get("fix") for r in rows if not r["ok"]), "every missing item says how to fix it"


def test_importing_the_kernel_and_every_builtin_plugin_stays_light():
    modules = ["core", "core.app", "core.cli", *BUILTIN_PLUGINS.values()]
    code = (
        "import importlib, importlib.util, json, sys\n"
        f"for m in {modules!r}:\n"
        "    if importlib.util.find_spec(m) is not None: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [], "heavy libraries must be imported inside functions"


@pytest.mark.parametrize("argv", [["--help"], ["tools"]])
def test_commands_do_not_import_heavy_libraries(argv, tmp_path):
    code = (
        "import sys, json, runpy\n"
        f"sys.argv = ['loom', *{argv!r}]\n"
        "import core.cli\n"
        "try:\n    core.cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=60)
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


def test_logs_show_warnings_only_unless_verbose_and_never_as_json(tmp_path):
    from tests.gguf_factory import write_tiny_gguf

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "loom.toml").write_text(f'[models.tiny]\nbackend = "llama_cpp"\nfile = "{gguf}"\ncontext_size = 128\n'
                                        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n')
    env = {"LOOM_PLUGINS": "admin,models,llamacpp", "LOOM_CONFIG": str(tmp_path / "loom.toml")}
    plain = loom("models", "load", "tiny", cwd=tmp_path, **env)
    assert plain.returncode == 0, plain.stderr
    assert "model loaded" not in plain.stderr and '{"' not in plain.stderr
    assert plain.stdout.startswith("tiny: ready on cpu")
    verbose = loom("-v", "models", "load", "tiny", cwd=tmp_path, **env)
    assert "[info" in verbose.stderr and "model loaded" in verbose.stderr and '{"' not in verbose.stderr
    quiet = loom("models", "load", "tiny", "-q", cwd=tmp_path, **env)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_the_assistants_answer_streams_once_and_steps_stay_off_stdout(capsys):
    import anyio

    from core.commands.stream import TextStream

    async def feed(stream: TextStream, messages: list[str]) -> None:
        for i, m in enumerate(messages):
            await stream.on_progress(i + 1, None, m)

    stream = TextStream("ask", assistant=True)
    anyio.run(feed, stream, ["step 1 assistant.chat: started", "answer: Light", "answer: Lighthouses guide",
                             "step 1 assistant.chat: done in 1.00 s", "answer: Lighthouses guide ships."])
    stream.finish("Lighthouses guide ships.\n\n(Skipped imagegen.generate: ...)")
    assert capsys.readouterr().out == "Lighthouses guide ships.\n\n(Skipped imagegen.generate: ...)\n"
    coder = TextStream("call")  # any tool: progress without a total is streamed text
    anyio.run(feed, coder, ["def add", "(a, b):"])
    coder.finish("def add(a, b):")
    assert capsys.readouterr().out == "def add(a, b):\n"


def test_a_mistyped_tool_loads_no_model(tmp_path):
    from tests.gguf_factory import write_tiny_gguf

    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "loom.toml").write_text(f'[models.tiny]\nbackend = "llama_cpp"\nfile = "{gguf}"\npin = true\n'
                                        f'context_size = 128\n[paths]\ndata_dir = "{tmp_path / "data"}"\n')
    out = loom("-v", "call", "admin.plugin", cwd=tmp_path, LOOM_PLUGINS="admin,models,llamacpp",
               LOOM_CONFIG=str(tmp_path / "loom.toml"))
    assert out.returncode == 1 and "Unknown tool 'admin.plugin'" in out.stderr
    assert "model loaded" not in out.stderr, "a pinned model is not loaded for a call that cannot run"
