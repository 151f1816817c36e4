"""Shutting down with MCP sessions open: after SIGTERM a new ``tools/call`` on a session the
client already has is refused with a clear JSON-RPC error (Loom is shutting down, retry on
the restarted daemon), while the call already running finishes and delivers its result;
then the process exits 0. Both transports, each with the MCP SDK's own client: ``loom
serve`` (streamable HTTP) and ``loom mcp`` (stdio)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from core.surfaces.mcp import SHUTTING_DOWN
from tests.conformance_plugin.entrypoint import write_dist_info
from tests.openai_helpers import ROOT, LoomDaemon

pytestmark = pytest.mark.anyio
SPIN_S = 3.0  # the call in flight when SIGTERM arrives (under server.drain_timeout, 5 s)


@pytest.fixture
def probe_env(tmp_path) -> dict[str, str]:
    """The probe plugin (tests.conformance_plugin.probe) through an entry point."""
    write_dist_info(tmp_path / "ep", {"probe": "tests.conformance_plugin.probe"})
    return {"PYTHONPATH": f"{tmp_path / 'ep'}{os.pathsep}{ROOT}", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "0"}


async def _call_across_sigterm(client: Client, terminate) -> tuple[str, MCPError, int]:
    """Start ``probe.spin``; once it runs, ``terminate()``; then start ``probe.echo`` on the same
    session. Returns the spin's text, the echo's error, and how often spin reported progress."""
    # As any client starts: the SDK validates results against the listing, and lists the
    # tools itself after a result if it has not (a request the ended drain would not answer).
    await client.list_tools()
    running = anyio.Event()
    progress = 0
    spun: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        nonlocal progress
        progress += 1
        running.set()

    async def spin() -> None:
        result = await client.call_tool("probe.spin", {"seconds": SPIN_S}, progress_callback=on_progress)
        assert not result.is_error, result
        spun.append(result.content[0].text)

    async with anyio.create_task_group() as tg:
        tg.start_soon(spin)
        with anyio.fail_after(30):
            await running.wait()
        terminate()
        await anyio.sleep(0.5)  # the signal is handled
        with pytest.raises(MCPError) as refused:
            await client.call_tool("probe.echo", {"text": "too late"})
    return spun[0], refused.value, progress


def _check_refusal(err: MCPError) -> None:
    assert err.error.code == SHUTTING_DOWN
    assert "shutting down" in err.error.message and "Retry" in err.error.message
    assert err.error.data == {"reason": "shutting_down", "retryable": True}


async def test_http_session_refuses_new_calls_while_the_running_one_finishes(tmp_path, probe_env):
    daemon = LoomDaemon(tmp_path, "admin,probe", env=probe_env).start()
    try:
        http = httpx2.AsyncClient(headers=daemon.headers, timeout=60)
        async with Client(streamable_http_client(daemon.base_url + "/mcp", http_client=http)) as client:
            before = await client.call_tool("probe.echo", {"text": "before"})
            assert before.content[0].text == "before"
            spun, refused, progress = await _call_across_sigterm(
                client, lambda: daemon.proc.send_signal(signal.SIGTERM))
            assert spun == "spun" and progress > 1
            _check_refusal(refused)
        assert daemon.proc.wait(timeout=60) == 0
    finally:
        daemon.stop()
    assert "tool call refused: shutting down" in daemon.stderr()


async def test_stdio_session_refuses_new_calls_while_the_running_one_finishes(tmp_path, probe_env):
    pid_file = tmp_path / "pid"
    env = {**os.environ, **probe_env, "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "LOOM_PLUGINS": "admin,probe",
           "LOOM_LOGGING__LEVEL": "warning"}
    # exec keeps the shell's pid: the test signals the very process the SDK talks to.
    params = StdioServerParameters(command="/bin/sh", args=["-c", f'echo $$ > {pid_file}; exec "$0" -m core.cli mcp',
                                                            sys.executable], env=env, cwd=str(ROOT))
    async with Client(params) as client:
        pid = int(await anyio.Path(pid_file).read_text())
        spun, refused, progress = await _call_across_sigterm(client, lambda: os.kill(pid, signal.SIGTERM))
        assert spun == "spun" and progress > 1
        _check_refusal(refused)
        with anyio.fail_after(30):  # the drain ends: the server exits by itself, stdin still open
            while _alive(pid):  # noqa: ASYNC110 - another process: nothing to wait on
                await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie the SDK has not reaped yet counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
