"""The CLI as a client of the running daemon: work goes to the daemon (its metrics see it),
`--local` and a missing daemon run in-process (said once), consent is asked at the
terminal and audited, output to a closed pipe ends quietly, media files are named from
the request and never overwritten, progress shows on a terminal only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance_plugin.entrypoint import write_dist_info
from tests.openai_helpers import ROOT, LoomDaemon

PLUGINS = "admin,models,policy,clitest,assistant,llamacpp,embed,imagegen"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("loom-cli")
    write_dist_info(base / "ep", {"clitest": "tests.cli_plugin.tools"})
    env = {"PYTHONPATH": f"{base / 'ep'}{os.pathsep}{ROOT}", "LOOM_DISABLE_PLUGIN_AUTOLOAD": "",
           "LOOM_PLUGIN__ASSISTANT__MAX_TOKENS": "24", "LOOM_PLUGIN__ASSISTANT__LLM_FALLBACK": "false"}
    d = LoomDaemon(base, PLUGINS, env=env).start()
    yield d
    assert d.stop() == 0


def loom(daemon, *args, cwd=None, env=None, input=None):
    e = {**daemon.env, "LOOM_LOGGING__FORMAT": "auto", **(env or {})}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env=e, cwd=cwd or daemon.base,
                          capture_output=True, text=True, timeout=180, input=input)


def tool_count(daemon, tool: str) -> float:
    for line in daemon.get("/metrics").text.splitlines():
        if line.startswith("loom_tool_requests_total{") and f'tool="{tool}"' in line and 'status="ok"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_work_goes_to_the_daemon_and_local_stays_here(daemon):
    before = tool_count(daemon, "clitest.lines")
    out = loom(daemon, "call", "clitest.lines", "n=3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["line 0", "line 1", "line 2"]
    assert "no daemon" not in out.stderr
    assert tool_count(daemon, "clitest.lines") == before + 1, "the daemon ran it"
    local = loom(daemon, "call", "clitest.lines", "n=3", "--local")
    assert local.returncode == 0 and local.stdout == out.stdout
    assert tool_count(daemon, "clitest.lines") == before + 1, "--local did not touch the daemon"
    tools = loom(daemon, "tools")
    assert "clitest.wipe(path: string)  [destructive]" in tools.stdout


def test_without_a_daemon_it_runs_here_and_says_so_once(daemon, tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "LOOM_PLUGINS": "admin,clitest"}
    out = loom(daemon, "call", "clitest.lines", "n=2", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("no daemon is running") == 1 and "loom serve" in out.stderr
    quiet = loom(daemon, "-q", "call", "clitest.lines", "n=2", env=env)
    assert quiet.stderr == "" and quiet.stdout == out.stdout


def test_consent_is_asked_at_the_terminal_and_audited(daemon):
    pexpect = pytest.importorskip("pexpect")
    audit = Path(daemon.env["XDG_DATA_HOME"]) / "loom" / "audit.jsonl"
    env = {**daemon.env, "LOOM_LOGGING__FORMAT": "auto"}

    def run(answer: str) -> tuple[str, int]:
        child = pexpect.spawn(sys.executable, ["-m", "core.cli", "call", "clitest.wipe", "path=/tmp/precious"],
                              env=env, cwd=str(daemon.base), encoding="utf-8", timeout=60)
        child.expect(r"Allow clitest\.wipe\?")
        child.expect(r"/tmp/precious")  # the action is shown before the question
        child.expect(r"Allow\? \[y/N\] ")
        child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        return child.before, child.exitstatus

    said, status = run("y")
    assert status == 0 and "wiped /tmp/precious" in said
    said, status = run("n")
    assert status == 1 and "did not allow" in said
    # not at a terminal: a clean refusal, nothing run
    piped = loom(daemon, "call", "clitest.wipe", "path=/tmp/precious")
    assert piped.returncode == 1 and "consent" in piped.stderr and "Traceback" not in piped.stderr
    decisions = [json.loads(line)["decision"] for line in audit.read_text().splitlines()
                 if json.loads(line)["tool"] == "clitest.wipe"]
    assert decisions[-3:] == ["ask:accepted", "ask:refused", "ask:unavailable"]


def test_a_closed_pipe_ends_quietly(daemon):
    for cmd in ("call clitest.lines", "call clitest.lines --local", "models"):
        out = subprocess.run(f"{sys.executable} -m core.cli {cmd} | head -n 1", shell=True, env=daemon.env,
                             cwd=daemon.base, capture_output=True, text=True, timeout=120)
        assert len(out.stdout.splitlines()) == 1
        assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_media_files_are_named_from_the_request_and_never_overwritten(daemon, tmp_path):
    first = loom(daemon, "call", "clitest.picture", "prompt=A red square!", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "a-red-square.png").read_bytes().startswith(b"\x89PNG")
    assert "a picture of A red square!" in first.stdout and "saved: a-red-square.png" in first.stdout
    second = loom(daemon, "call", "clitest.picture", "prompt=A red square!", cwd=tmp_path)
    assert "saved: a-red-square-2.png" in second.stdout and (tmp_path / "a-red-square-2.png").exists()
    named = loom(daemon, "call", "clitest.sound", "prompt=hi", "--output", "hello.wav", cwd=tmp_path)
    assert named.returncode == 0 and (tmp_path / "hello.wav").read_bytes().startswith(b"RIFF")
    again = loom(daemon, "call", "clitest.sound", "prompt=hi", "--output", "hello.wav", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    as_json = loom(daemon, "call", "clitest.lines", "n=2", "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout) == [{"type": "text", "text": "line 0\nline 1"}]


def test_progress_is_a_bar_on_a_terminal_and_silent_in_a_pipe(daemon):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "core.cli", "call", "clitest.steps"], env=daemon.env,
                          cwd=str(daemon.base), encoding="utf-8", timeout=60, dimensions=(24, 120))
    child.expect(r"\[#+-*\]\s+\d+% step \d")  # counted steps: a bar with the real total
    child.expect(r"one two three")
    child.expect(pexpect.EOF)
    piped = loom(daemon, "call", "clitest.steps")
    assert piped.returncode == 0 and piped.stdout.strip() == "one two three"
    assert piped.stderr == "", "no progress noise when stderr is not a terminal"


def test_ask_reads_stdin_and_degrades_when_a_model_is_missing(daemon):
    route = loom(daemon, "route", "translate good morning into French")
    assert route.returncode == 0, route.stderr
    assert json.loads(route.stdout)["intent"] == "chat"
    assert tool_count(daemon, "assistant.route") == 1, "the daemon's router answered"
    out = loom(daemon, "ask", input="What is the capital of France?\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    drawn = loom(daemon, "ask", "draw a lighthouse and tell me about it")
    assert drawn.returncode == 0, drawn.stderr
    assert "Skipped imagegen.generate" in drawn.stdout and "--role imagegen" in drawn.stdout
    answer = drawn.stdout.split("(Skipped", 1)[0].strip()
    assert answer, "the part that could run still answered"


def test_chat_goes_to_the_daemon_and_streams(daemon):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "core.cli", "chat", "--session", "daemon-chat", "--max-tokens", "16"],
                          env=daemon.env,
                          cwd=str(daemon.base), encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect(rf"conversation daemon-chat with loom in the daemon \(pid {daemon.proc.pid}\)")
    child.expect_exact(">>> ")
    before = tool_count(daemon, "assistant.ask")
    child.sendline("Say hello.")
    child.expect_exact(">>> ")
    assert tool_count(daemon, "assistant.ask") == before + 1, "the daemon answered"
    child.sendline("/model smollm2")
    child.expect("talking to smollm2 directly")
    child.sendline("Name a colour.")
    child.expect(r"\S+")
    child.expect_exact(">>> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    turns = (Path(daemon.env["XDG_DATA_HOME"]) / "loom" / "chat" / "daemon-chat.jsonl").read_text().splitlines()
    assert [json.loads(t)["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert json.loads(turns[3])["model"] == "smollm2" and json.loads(turns[3])["content"].strip()
