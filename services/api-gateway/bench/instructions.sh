#!/usr/bin/env bash
# CPU instructions per request of the api-gateway and of a plain kit service,
# counted by valgrind's callgrind: unlike req/s or CPU time, the count does
# not depend on what else runs on the machine, so it shows what a change to
# the per-request path saves even on a busy 2-core box.
#
# Everything runs on loopback, started by this script and stopped at its end:
# discovery-server, identity-provider, one echo-upstream (the upstream, a
# plain kit service) and the api-gateway with the benchmark's routes
# (bench/run.sh). The process measured runs under callgrind with collection
# off; after a warm-up, collection is switched on for a fixed wrk run and
# off again, and the instructions counted are divided by the requests that
# process answered in that window (its own `http_requests_total`).
#
# Measured, each at c=1 and c=$CONNS:
#   gateway-jwt     GET /api/bench/hello through the gateway with a bearer
#                   token (verdict remembered): the benchmark's main row;
#   gateway-public  the same on a public route (no token);
#   upstream        GET /hello on the echo-upstream itself (the kit's shared
#                   per-request cost: router, observe middleware, server).
#
# Usage: services/api-gateway/bench/instructions.sh [label]
#   BIN=dir          binaries to use (default: a release build with line
#                    tables in target/perf, built here: symbols for the
#                    profile; the instruction counts are those of release code)
#   DURATION=5s      length of each counted wrk run; CONNS=32
#   OUT=dir          where the callgrind profiles go (default /tmp/gw-instr.<label>)
# Prints one line per measurement: label, what, conns, requests, Ir/request
# (after subtracting the process's idle instructions, printed first).
# Needs: valgrind, wrk, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
LABEL=${1:-now}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
OUT=${OUT:-/tmp/gw-instr.$LABEL}
if [[ -z "${BIN:-}" ]]; then
    echo "building release binaries with line tables into target/perf..." >&2
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=none \
        cargo build --release -q --target-dir "$ROOT/target/perf" \
        -p api-gateway -p discovery-server -p identity-provider
    BIN=$ROOT/target/perf/release
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.out "$OUT"/*.out.*

BENCH_NAME=instr
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
under_callgrind() { # name command... ; profiles in $OUT/name.out.<dump>
    local name=$1; shift
    start "$name" env LOG_FORMAT=json valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$OUT/$name.out" "$@"
}

GW=$(free_port); UP=$(free_port)
export RUST_LOG=${RUST_LOG:-warn} # as bench/run.sh; RUST_LOG=info shows the default level's cost
start_registry_and_idp
TOKEN=$(token alice alice)
ADMIN=$(token admin admin)

bench_routes

requests_of() { # port -> http_requests_total summed over non-probe routes
    # The gateway's /metrics is private: an admin's token (the upstream's is open).
    curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$1/metrics" |
        awk '/^http_requests_total\{/ && !/route="\/(metrics|health)/ {s += $NF} END {printf "%d\n", s}'
}
# Each process's dumps are numbered from 1 ($OUT/<process>.out.<n>).
declare -A DUMPS
window() { # process dump-name command... ; sets IR and SECS
    local process=$1 name=$2 pid t0 t1 file
    shift 2
    pid=$(cat "$WORK/$process.pid")
    t0=$(date +%s.%N)
    callgrind_control -i on "$pid" >/dev/null
    "$@"
    callgrind_control -i off "$pid" >/dev/null
    t1=$(date +%s.%N)
    callgrind_control -d "$name" "$pid" >/dev/null
    DUMPS[$process]=$((${DUMPS[$process]:-0} + 1))
    file="$OUT/$process.out.${DUMPS[$process]}"
    until grep -q '^totals:' "$file" 2>/dev/null; do sleep 0.2; done
    IR=$(awk '/^totals:/ {print $2; exit}' "$file")
    SECS=$(python3 -c "print($t1 - $t0)")
}
# idle process: instructions per second the process spends with no request
# (timers, registry renewals and watch, JWKS refresh, the runtime's
# housekeeping), subtracted from the counted windows below so that a slower
# (busier) machine, which fits fewer requests in a window, does not inflate
# the per-request figure.
idle() {
    window "$1" "$1-idle" sleep "${DURATION%s}"
    IDLE_RATE=$(python3 -c "print($IR / $SECS)")
    printf '%s\t%s\t%s\t%s\t%.0f Ir/s\n' "$LABEL" "$1" idle - "$IDLE_RATE"
}
# measure what process port url [header]: one counted wrk run per concurrency.
measure() {
    local what=$1 process=$2 port=$3 url=$4 hdr=()
    [[ $# -ge 5 ]] && hdr=(-H "$5")
    wrk -t1 -c4 -d3s "${hdr[@]}" "$url" >/dev/null # warm-up (connections, pools, lazy inits)
    for conns in 1 "$CONNS"; do
        local threads=2 before after
        ((conns < threads)) && threads=$conns
        before=$(requests_of "$port")
        window "$process" "$what-c$conns" \
            wrk -t"$threads" -c"$conns" -d"$DURATION" "${hdr[@]}" "$url" >"$WORK/wrk.txt"
        after=$(requests_of "$port")
        python3 -c "
n = $after - $before
print('$LABEL\t$what\t$conns\t%d\t%.0f' % (n, ($IR - $IDLE_RATE * $SECS) / n))"
    done
}

# The upstream (a plain kit service) under callgrind; the gateway native.
under_callgrind upstream "$BIN/echo-upstream" --service-name bench-service \
    --instance-id bench-0 --port "$UP" "${COMMON[@]}"
wait_http "http://127.0.0.1:$UP/health/ready" 120
idle upstream
measure upstream upstream "$UP" "http://127.0.0.1:$UP/hello"

# The gateway under callgrind, in front of the same upstream.
under_callgrind gateway "$BIN/api-gateway" \
    --routes "$WORK/routes.toml" --port "$GW" "${COMMON[@]}" --issuer-url "$ISSUER"
wait_http "http://127.0.0.1:$GW/health/ready" 120
until curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW/api/bench/hello"; do sleep 0.2; done
idle gateway
measure gateway-public gateway "$GW" "http://127.0.0.1:$GW/api/public/hello"
measure gateway-jwt gateway "$GW" "http://127.0.0.1:$GW/api/bench/hello" "Authorization: Bearer $TOKEN"
