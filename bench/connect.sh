#!/usr/bin/env bash
# Connection figures of chatd and Mosquitto side by side (docs/benchmarks-connections.md):
# idle connections held and server memory per connection (plain, and with a presence
# subscription each), connects/s and CONNACK latency, and a reconnect storm (server restarted
# under SIGTERM while every client is connected).
#
# Usage: bench/connect.sh STEP...   (run from the repository root after
#        `cargo build --release -p chatd -p chatbench`)
#   accounts   start chatd once and log every benchmark user in with a JWT, which creates its
#              account (one argon2 hash each, ~30 ms of CPU per user on 2 cores; done once, the
#              store is kept in $WORK/data)
#   held       fresh chatd, CLIENTS idle connections for each SUBS mode (own, then presence)
#   mosq-held  the same against Mosquitto
#   storm      STORM_CLIENTS connected to chatd, chatd restarted (SIGTERM, start), all reconnect
#   mosq-storm the same against Mosquitto
#   all        every step above, RUNS times each (accounts once)
# Environment: CLIENTS (19900), STORM_CLIENTS (10000), RUNS (2), WORK (/tmp/chatd-connect),
#   CHATD_PORT (18830), MOSQ_PORT (18831), SUBS ("own presence"; or none),
#   EXTRA (more chatbench connect options).
# Each run appends one JSON line to $WORK/results.jsonl and its table to $WORK/tables.txt.
set -euo pipefail

CLIENTS=${CLIENTS:-19900}
STORM_CLIENTS=${STORM_CLIENTS:-10000}
RUNS=${RUNS:-2}
WORK=${WORK:-/tmp/chatd-connect}
CHATD_PORT=${CHATD_PORT:-18830}
MOSQ_PORT=${MOSQ_PORT:-18831}
EXTRA=${EXTRA:-}
SUBS=${SUBS:-own presence}
BIN=${BIN:-target/release}
export CHATBENCH_JWT_SECRET=${CHATBENCH_JWT_SECRET:-chatbench-connect-secret-0123456789}

CHATD_PID=
MOSQ_PID=
mkdir -p "$WORK"

cat >"$WORK/chatd.toml" <<EOF
[listen]
mqtt = "127.0.0.1:$CHATD_PORT"
ws = ""
http = "127.0.0.1:0"

[storage]
path = "$WORK/data"

[auth]
jwt_hs256_secret = "$CHATBENCH_JWT_SECRET"

[limits]
max_connections = 100000

[log]
level = "warn"
EOF

cat >"$WORK/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
connection_messages false
log_dest stderr
log_type error
log_type warning
listener $MOSQ_PORT 127.0.0.1
max_connections -1
EOF

log() { echo "== $(date +%T) $*" | tee -a "$WORK/tables.txt" >&2; }

# Waits until something accepts TCP connections on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

start_chatd() {
    "$BIN/chatd" --config "$WORK/chatd.toml" >>"$WORK/chatd.log" 2>&1 &
    CHATD_PID=$!
    wait_port "$CHATD_PORT"
}

stop_chatd() {
    [ -n "$CHATD_PID" ] || return 0
    kill -TERM "$CHATD_PID" 2>/dev/null || true
    wait "$CHATD_PID" || echo "chatd exited with $?" >&2
    CHATD_PID=
}

start_mosq() {
    mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
    MOSQ_PID=$!
    wait_port "$MOSQ_PORT"
}

stop_mosq() {
    [ -n "$MOSQ_PID" ] || return 0
    kill -TERM "$MOSQ_PID" 2>/dev/null || true
    wait "$MOSQ_PID" || echo "mosquitto exited with $?" >&2
    MOSQ_PID=
}

cleanup() { stop_chatd; stop_mosq; }
trap cleanup EXIT

# bench LABEL ARGS...: one chatbench connect run, JSON line tagged with LABEL.
bench() {
    local label=$1
    shift
    log "$label (load average $(cut -d" " -f1-3 /proc/loadavg)): chatbench connect $*"
    # shellcheck disable=SC2086
    "$BIN/chatbench" connect --json "$@" $EXTRA 2>>"$WORK/tables.txt" |
        sed "s/^{/{\"label\":\"$label\",/" | tee -a "$WORK/results.jsonl"
}

accounts() {
    start_chatd
    bench accounts --mqtt "127.0.0.1:$CHATD_PORT" --clients "$CLIENTS" --subscribe none \
        --auth jwt --settle 0 --connack-timeout 120 --duration-limit 3600
    stop_chatd
}

held() {
    for sub in $SUBS; do
        start_chatd
        sleep 2
        bench "chatd-held-$sub" --mqtt "127.0.0.1:$CHATD_PORT" --clients "$CLIENTS" \
            --subscribe "$sub" --auth jwt --pid "$CHATD_PID" --settle 10
        stop_chatd
    done
}

mosq_held() {
    for sub in $SUBS; do
        start_mosq
        sleep 2
        bench "mosquitto-held-$sub" --mqtt "127.0.0.1:$MOSQ_PORT" --clients "$CLIENTS" \
            --subscribe "$sub" --auth none --pid "$MOSQ_PID" --settle 10
        stop_mosq
    done
}

# storm_with START STOP PORT AUTH LABEL
storm_with() {
    local start=$1 stop=$2 port=$3 auth=$4 label=$5
    rm -f "$WORK/ready"
    $start
    sleep 2
    bench "$label" --mqtt "127.0.0.1:$port" --clients "$STORM_CLIENTS" --subscribe own \
        --auth "$auth" --storm --ready-file "$WORK/ready" --settle 2 &
    local bench_pid=$!
    while [ ! -e "$WORK/ready" ]; do
        if ! kill -0 "$bench_pid" 2>/dev/null; then
            wait "$bench_pid"
            return 1
        fi
        sleep 0.2
    done
    log "$label: restarting the server"
    $stop
    log "$label: server stopped"
    $start
    log "$label: server listening again"
    wait "$bench_pid"
    $stop
}

storm() { storm_with start_chatd stop_chatd "$CHATD_PORT" jwt chatd-storm; }
mosq_storm() { storm_with start_mosq stop_mosq "$MOSQ_PORT" none mosquitto-storm; }

log "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, open files soft $(ulimit -Sn) hard $(ulimit -Hn), $(uname -r)"
for step in "$@"; do
    case $step in
    accounts) accounts ;;
    held) held ;;
    mosq-held) mosq_held ;;
    storm) storm ;;
    mosq-storm) mosq_storm ;;
    all)
        accounts
        for _ in $(seq 1 "$RUNS"); do held; mosq_held; storm; mosq_storm; done
        ;;
    *)
        echo "unknown step $step" >&2
        exit 2
        ;;
    esac
done
