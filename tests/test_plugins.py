"""Plugin discovery, the third-party author story, failure reporting, enable/disable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from core.events import PluginFailed, ToolsChanged
from core.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A site dir with the sample plugin pip-installed, plus two broken distributions."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
         "--target", str(target), str(ROOT / "tests" / "sample_plugin")],
        check=True, capture_output=True,
    )
    # A distribution whose module fails to import, and one whose registration raises.
    for dist, module, body in (
        ("loom_broken", "loom_broken", "raise ImportError('needs libfoo, which is not installed')\n"),
        ("loom_badreg", "loom_badreg",
         "from core.hookspecs import hookimpl\n"
         "import msgspec\n"
         "class A(msgspec.Struct):\n    x: int\n"
         "async def ok(args: A) -> str:\n    return 'x'\n"
         "@hookimpl\ndef loom_register_tools(register):\n"
         "    register(ok)\n    raise RuntimeError('half-registered')\n"),
    ):
        (target / f"{module}.py").write_text(body)
        info = target / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[loom]\n{module.removeprefix('loom_')} = {module}\n")
    return target


def loom(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "LOOM_PLUGINS": "", **env}
    environ.pop("LOOM_DISABLE_PLUGIN_AUTOLOAD", None)
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, env=environ,
                          cwd=site, timeout=60)


def test_installed_plugin_is_discovered_and_its_tool_callable(site: Path):
    out = loom(site, "tools")
    assert "sample.reverse(text: string, times?: integer)" in out.stdout
    called = loom(site, "call", "sample.reverse", "--json", '{"text": "loom"}')
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "mool"


def test_failures_are_reported_with_name_and_error_and_the_rest_load(site: Path):
    out = loom(site, "plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert out.returncode == 1, "plugins exits non-zero when any plugin failed"
    assert plugins["sample"]["version"] == "1.2.3" and plugins["sample"]["source"] == "entrypoint"
    assert "loom_register_tools" in plugins["sample"]["hooks"]
    assert "needs libfoo" in plugins["broken"]["errors"][0] and not plugins["broken"]["loaded"]
    assert "half-registered" in plugins["badreg"]["errors"][0]
    tools = loom(site, "tools").stdout
    assert "badreg.ok" not in tools, "a plugin that failed to register leaves nothing behind"
    assert "admin.plugins" in tools and "sample.reverse" in tools
    text = loom(site, "plugins").stdout
    assert "broken" in text and "error: import: ImportError: needs libfoo" in text


def test_allowlist_and_autoload_switch(site: Path):
    only = json.loads(loom(site, "plugins", "--json", LOOM_PLUGINS="sample").stdout)
    assert [p["name"] for p in only] == ["sample"]
    off = json.loads(loom(site, "plugins", "--json", LOOM_DISABLE_PLUGIN_AUTOLOAD="1").stdout)
    names = {p["name"] for p in off}
    assert "admin" in names and not names & {"sample", "broken", "badreg"}


def test_plugin_can_be_disabled_by_config(site: Path):
    (site / "loom.toml").write_text('[plugins]\ndisabled = ["sample"]\n')
    try:
        assert "sample.reverse" not in loom(site, "tools").stdout
    finally:
        (site / "loom.toml").unlink()


class HelloArgs(msgspec.Struct):
    name: str


class _Throwaway:
    """A plugin object, the way tests (and embedders) register one without packaging."""

    @hookimpl
    def loom_register_tools(self, register):
        async def hello(args: HelloArgs) -> str:
            """Say hello."""
            return f"hello {args.name}"

        register(hello, read_only=True)


@pytest.mark.anyio
async def test_disable_and_enable_at_run_time(make_app):
    app = make_app("admin", extra={"greet": _Throwaway()})
    changes: list[ToolsChanged] = []
    app.bus.subscribe(ToolsChanged, changes.append)
    async with app:
        assert (await app.call("greet.hello", {"name": "ada"})).text() == "hello ada"
        await app.call("admin.disable_plugin", {"name": "greet"})
        assert "greet.hello" not in app.tools
        await app.call("admin.enable_plugin", {"name": "greet"})
        assert "greet.hello" in app.tools
        from core.tools import ToolError

        with pytest.raises(ToolError, match="no plugin named 'nope'"):
            await app.call("admin.disable_plugin", {"name": "nope"})
    assert [c.removed for c in changes if c.removed] == [["greet.hello"]]


@pytest.mark.anyio
async def test_failing_startup_hook_is_reported_and_the_app_runs(make_app):
    class BadStart:
        @hookimpl
        def loom_startup(self, app):
            raise RuntimeError("cannot reach the GPU")

    app = make_app("admin", extra={"bad": BadStart()})
    failures: list[PluginFailed] = []
    app.bus.subscribe(PluginFailed, failures.append)
    async with app:
        assert (await app.call("admin.plugins")).structured
    assert failures and failures[0].stage == "startup" and "GPU" in failures[0].error
    assert "startup" in app.host.plugins["bad"].errors[0]


@pytest.mark.anyio
async def test_resources_and_prompts_are_registered(site: Path, make_app):
    sys.path.insert(0, str(site))
    try:
        import loom_sample

        app = make_app("admin", extra={"sample": loom_sample})
        async with app:
            await app.call("sample.reverse", {"text": "ab", "times": 2})
            import anyio

            await anyio.sleep(0.01)
            assert await app.resources["sample://seen"].read(app) == ["sample.reverse"]
            status = await app.resources["loom://status"].read(app)
            assert status["name"] == "loom" and any(p["name"] == "sample" for p in status["plugins"])
        prompt = app.prompts["sample.shout"]
        assert prompt.arguments() == [{"name": "text", "required": True}]
        assert "capital" in prompt.func(text="hi")
    finally:
        sys.path.remove(str(site))


@pytest.mark.anyio
async def test_third_party_plugin_chats_with_the_role_model_through_the_capability_api(site: Path, make_app):
    sys.path.insert(0, str(site))
    try:
        import loom_sample

        app = make_app("llamacpp", extra={"sample": loom_sample})
        async with app:
            result = await app.call("sample.tagline", {"product": "a lighthouse keeper's lamp"})
    finally:
        sys.path.remove(str(site))
    out = result.structured
    assert out["model"] == "smollm2" and out["tokens"] > 0
    assert out["tagline"] and out["tagline"] != "a lighthouse keeper's lamp"


@pytest.mark.anyio
async def test_background_tasks_from_startup_run_and_their_failures_are_reported(make_app):
    import anyio

    done = anyio.Event()

    class Warm:
        @hookimpl
        def loom_startup(self, app):
            async def warm():
                done.set()

            async def broken():
                raise OSError("disk full")

            app.spawn(warm, name="warm")
            app.spawn(broken, name="warm.broken")

    app = make_app("admin", extra={"warm": Warm()})
    failures: list[PluginFailed] = []
    app.bus.subscribe(PluginFailed, failures.append)
    async with app:
        with anyio.fail_after(5):
            await done.wait()
        assert (await app.call("admin.plugins")).structured, "the app runs on after a background failure"
        await anyio.sleep(0.05)
    assert [(f.plugin, f.stage) for f in failures] == [("warm.broken", "background")]
    assert "disk full" in failures[0].error
