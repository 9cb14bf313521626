#!/usr/bin/env bash
# End-to-end check of `abacus top` in a real terminal (tmux): starts `abacus serve` on a
# free loopback port with 1 s windows, loads it with `abacus load` for a few seconds, runs
# `abacus top` in a detached tmux session, types keys with send-keys and asserts on what
# capture-pane shows: the service table, a sort change, the filter, the detail view, the
# help overlay, and a clean exit (alternate screen left, cursor shown, exit status 0).
# Installs tmux if missing. Loopback only; ~15 s after the build. Cleans up after itself.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d -t abacus-top-e2e.XXXXXX)"
SESSION="abacus-top-e2e-$$"
PIDS=()

cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

log() { printf '[top-e2e] %s\n' "$*" >&2; }
screen() { tmux capture-pane -p -t "$SESSION"; }
fail() {
    log "FAIL: $*"
    log "--- screen"; screen >&2 || true
    for f in "$WORK"/*.log; do [ -f "$f" ] && { log "--- $f"; tail -n 20 "$f" >&2; }; done
    exit 1
}
# wait_for TEXT [SECONDS]: polls the pane until it shows TEXT.
wait_for() {
    local text="$1" deadline=$((SECONDS + ${2:-10}))
    until screen | grep -qF -- "$text"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "screen never showed: $text"
        sleep 0.2
    done
}
# absent TEXT: the pane does not show TEXT now.
absent() { if screen | grep -qF -- "$1"; then fail "screen still shows: $1"; fi; }

command -v tmux >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends tmux >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends curl >/dev/null; }

log "building abacus"
cargo build -q -p abacus-cli --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/debug/abacus"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
"$BIN" serve --http-addr "127.0.0.1:$PORT" --otlp-http-addr off --otlp-grpc-addr off \
    --statsd-addr off --window-ms 1000 >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 20))
until curl -fsS "$URL/readyz" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "server not ready"
    sleep 0.2
done
log "server ready on $URL"

"$BIN" load --url "$URL" --duration 8 --peak 8 --herd 16 --no-progress >"$WORK/load.log" 2>&1 &
PIDS+=($!)

tmux new-session -d -s "$SESSION" -x 140 -y 30 \
    "$BIN top --url $URL --interval-ms 300; echo TOP_EXIT=\$?; sleep 30"
wait_for "abacus top" 10
wait_for "checkout" 15
wait_for "payments" 5
screen | grep -q "SERVICE.*REQ/S.*P99 ms.*MAX ms.*TREND" || fail "table header"
screen | grep -q "sort rate ↓" || fail "default sort"
[ "$(tmux display -p -t "$SESSION" '#{alternate_on}')" = 1 ] || fail "not on the alternate screen"
log "table ok"

tmux send-keys -t "$SESSION" s
wait_for "sort err% ↓" 5
tmux send-keys -t "$SESSION" r
wait_for "sort err% ↑" 5
log "sort ok"

tmux send-keys -t "$SESSION" / p a y
wait_for "filter: pay_" 5
sleep 0.5
absent "checkout"
tmux send-keys -t "$SESSION" Enter
wait_for "filter: pay" 5
log "filter ok"

tmux send-keys -t "$SESSION" Enter
wait_for "payments: p99 latency per window" 5
wait_for "payments: windows, newest first" 5
tmux send-keys -t "$SESSION" Escape
wait_for "services (last closed window)" 5
log "detail view ok"

tmux send-keys -t "$SESSION" '?'
wait_for "next sort key" 5
tmux send-keys -t "$SESSION" x
sleep 0.5
absent "next sort key"
log "help ok"

tmux send-keys -t "$SESSION" q
wait_for "TOP_EXIT=0" 5
[ "$(tmux display -p -t "$SESSION" '#{alternate_on}')" = 0 ] || fail "alternate screen not left"
[ "$(tmux display -p -t "$SESSION" '#{cursor_flag}')" = 1 ] || fail "cursor left hidden"
log "clean exit ok"
log "PASS"
