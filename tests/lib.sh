# Helpers shared by the end-to-end and reliability scripts. Source it after setting
# TAG (the log prefix), T0 (=$SECONDS at start), WORK (the script's temp dir) and PIDS;
# POLL_SLEEP sets poll's interval (default 0.3 s).

log() { printf '[%s %3ds] %s\n' "$TAG" "$((SECONDS - T0))" "$*" >&2; }

# Logs the failure and the tail of every log in $WORK, then exits 1.
fail() {
    log "FAIL: $*"
    for f in "$WORK"/*.log; do [ -f "$f" ] && { log "--- $f"; tail -n 25 "$f" >&2; }; done
    exit 1
}

# poll WHAT SECS CMD...: runs CMD until it succeeds, failing after SECS seconds.
poll() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
        sleep "${POLL_SLEEP:-0.3}"
    done
}

# Drops a pid (already waited for) from PIDS so cleanup does not signal a reused pid.
forget_pid() {
    local p="$1" i
    for i in "${!PIDS[@]}"; do
        if [ "${PIDS[$i]}" = "$p" ]; then unset 'PIDS[i]'; fi
    done
    return 0
}

# Puts the abacus binary at $WORK/abacus and sets ABACUS: a copy of $ABACUS_BIN when set,
# else a `cargo build -p abacus-cli` in $PROFILE (release or debug) from $ROOT into $TARGET.
# A private copy: the target dir may be shared with other checkouts building abacus.
build_abacus() {
    if [ -n "${ABACUS_BIN:-}" ]; then
        log "using $ABACUS_BIN (ABACUS_BIN set: no build)"
        cp "$ABACUS_BIN" "$WORK/abacus"
    else
        log "building abacus ($PROFILE)"
        if [ "$PROFILE" = release ]; then
            cargo build -q --release --manifest-path "$ROOT/Cargo.toml" -p abacus-cli
        else
            cargo build -q --manifest-path "$ROOT/Cargo.toml" -p abacus-cli
        fi
        cp "$TARGET/$PROFILE/abacus" "$WORK/abacus"
    fi
    ABACUS="$WORK/abacus"
}
