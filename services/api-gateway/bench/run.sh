#!/usr/bin/env bash
# Gateway benchmark: writes the `gateway` section of BENCHMARKS.md.
#
# Everything runs on loopback, started by this script and stopped at its end:
# discovery-server, identity-provider (keycloak/realm.json), echo-upstream
# instances (registered through the registry), the api-gateway (release
# build, JWT validated with the identity provider's keys, upstream chosen by
# the registry-fed balancer) and nginx (Debian's nginx-light, generated
# config: plain proxy_pass to a keepalive upstream).
#
# 1. Throughput and latency, same upstream instance, same load generator
#    (wrk), at fixed concurrency (1 and $CONNS): the upstream called directly,
#    through nginx, through the gateway on a public route (no token), with a
#    bearer token (verdict remembered, the default) and with a bearer token
#    whose RS256 signature is verified on every request (--token-cache-size 0,
#    a second gateway process). Besides wrk's figures, the CPU time the proxy
#    (or, for "direct", the upstream) spent per request is read from /proc:
#    on a shared 2-core machine it is steadier than req/s.
#    The paths take the load in turns, $ROUNDS rounds, the order reversed every
#    other round (direct, nginx, ..., then ..., nginx, direct): a host whose
#    speed drifts during the run then weighs on every path alike. Each figure
#    is the median over the rounds; the gateway-to-nginx ratios are the
#    medians of the rounds' own ratios (one run each, one after the other,
#    had nginx's req/s differ by a third between two runs of the script).
# 2. Failover: three instances behind the gateway, wrk at fixed concurrency,
#    one instance killed with kill -9 in the middle: time from the kill to its
#    ejection (the gateway's log), failed requests (wrk's non-2xx and socket
#    errors), and how many attempts were retried onto live instances.
#
# Usage: services/api-gateway/bench/run.sh   (DURATION=10s CONNS=32 ROUNDS=3 to change)
# Needs: wrk, nginx (nginx-light), curl, python3; builds the release binaries.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a whole number ≥ 1, not '$ROUNDS'" >&2; exit 2; }
FAIL_DURATION=${FAIL_DURATION:-8}

echo "building release binaries..." >&2
cargo build --release -q -p api-gateway -p echo-upstream -p discovery-server -p identity-provider
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release

BENCH_NAME=bench
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
GW=$(free_port); GW0=$(free_port); NGX=$(free_port)
UP=$(free_port); F1=$(free_port); F2=$(free_port); F3=$(free_port)
export RUST_LOG=warn
start_registry_and_idp

start upstream "$BIN/echo-upstream" --service-name bench-service --instance-id bench-0 --port "$UP" "${COMMON[@]}"
for k in 1 2 3; do
    port_var="F$k"
    start "fail-$k" "$BIN/echo-upstream" --service-name fail-service --instance-id "fail-$k" \
        --port "${!port_var}" "${COMMON[@]}" --lease-renewal-interval 1s --lease-duration 30s
done
for p in "$UP" "$F1" "$F2" "$F3"; do wait_http "http://127.0.0.1:$p/health/ready"; done

bench_routes
cat >>"$WORK/routes.toml" <<EOF

[[routes]]
id = "failover"
uri = "lb://fail-service"
predicates = ["Path=/api/fail/**"]
filters = ["StripPrefix=2"]
roles = ["user"]
EOF
start gateway env LOG_FORMAT=json "$BIN/api-gateway" --routes "$WORK/routes.toml" --port "$GW" "${COMMON[@]}" \
    --issuer-url "$ISSUER"
start gateway-nocache "$BIN/api-gateway" --routes "$WORK/routes.toml" --port "$GW0" "${COMMON[@]}" \
    --issuer-url "$ISSUER" --token-cache-size 0 --no-register
wait_http "http://127.0.0.1:$GW/health/ready"
wait_http "http://127.0.0.1:$GW0/health/ready"

TOKEN=$(token alice alice)
ADMIN=$(token admin admin)
for url in "$GW/api/bench" "$GW/api/fail" "$GW0/api/bench"; do
    until curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$url/hello"; do sleep 0.1; done
done

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    upstream up {
        server 127.0.0.1:$UP;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX;
        location /api/bench/ {
            proxy_pass http://up/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
start nginx nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;'
wait_http "http://127.0.0.1:$NGX/api/bench/hello"

cpu_ticks() { # pids... -> utime+stime in clock ticks (1/100 s)
    local sum=0 p
    for p in "$@"; do sum=$((sum + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
    echo "$sum"
}
run_wrk() { # label connections round pids url [header]
    local label=$1 conns=$2 round=$3 pids=$4 url=$5 threads=2
    ((conns < threads)) && threads=$conns
    local args=(-t"$threads" -c"$conns" --latency)
    [[ $# -ge 6 ]] && args+=(-H "$6")
    wrk "${args[@]}" -d2s "$url" >/dev/null # warm-up
    echo "wrk $label c=$conns (round $round of $ROUNDS)..." >&2
    local t0 t1
    t0=$(cpu_ticks $pids)
    wrk "${args[@]}" -d"$DURATION" "$url" >"$WORK/wrk-$label-$conns-$round.txt"
    t1=$(cpu_ticks $pids)
    echo "$((t1 - t0))" >"$WORK/cpu-$label-$conns-$round.txt"
}
UP_PID=$(cat "$WORK/upstream.pid"); GW_PID=$(cat "$WORK/gateway.pid"); GW0_PID=$(cat "$WORK/gateway-nocache.pid")
NGX_PIDS=$(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')
run_path() { # path connections round
    case $1 in
    direct) run_wrk direct "$2" "$3" "$UP_PID" "http://127.0.0.1:$UP/hello" ;;
    nginx) run_wrk nginx "$2" "$3" "$NGX_PIDS" "http://127.0.0.1:$NGX/api/bench/hello" ;;
    gateway-public) run_wrk gateway-public "$2" "$3" "$GW_PID" "http://127.0.0.1:$GW/api/public/hello" ;;
    gateway-jwt) run_wrk gateway-jwt "$2" "$3" "$GW_PID" "http://127.0.0.1:$GW/api/bench/hello" "Authorization: Bearer $TOKEN" ;;
    gateway-jwt-nocache) run_wrk gateway-jwt-nocache "$2" "$3" "$GW0_PID" "http://127.0.0.1:$GW0/api/bench/hello" "Authorization: Bearer $TOKEN" ;;
    esac
}
PATHS=(direct nginx gateway-public gateway-jwt gateway-jwt-nocache)
for ((round = 1; round <= ROUNDS; round++)); do
    TOKEN=$(token alice alice) # a fresh one each round: the realm's tokens live 5 minutes
    order=("${PATHS[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((k = ${#PATHS[@]} - 1; k >= 0; k--)); do order+=("${PATHS[k]}"); done
    fi
    for conns in 1 "$CONNS"; do
        for path in "${order[@]}"; do run_path "$path" "$conns" "$round"; done
    done
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$WORK/gateway.pid")/status")

# Failover: kill -9 one of three instances in the middle of the load.
TOKEN=$(token alice alice); ADMIN=$(token admin admin) # the first ones may have expired by now
curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$GW/admin/upstreams" >"$WORK/upstreams-before.json"
echo "failover run..." >&2
wrk -t2 -c"$CONNS" -d"${FAIL_DURATION}s" --latency -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$GW/api/fail/hello" >"$WORK/wrk-failover.txt" &
WRK_PID=$!
sleep $((FAIL_DURATION / 2))
KILLED_AT=$(date +%s.%N)
kill -9 "$(cat "$WORK/fail-2.pid")"
wait "$WRK_PID"
curl -sf -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$GW/admin/upstreams" >"$WORK/upstreams-after.json"

python3 - "$WORK" "$ROOT/BENCHMARKS.md" "$KILLED_AT" "$CONNS" "$DURATION" "$FAIL_DURATION" "$RSS_KB" "$LOADAVG" "$ROUNDS" <<'PY'
import json, re, sys, datetime, subprocess, statistics
work, bench_md, killed_at, conns, duration, fail_duration, rss_kb, loadavg, rounds = sys.argv[1:10]
rounds = int(rounds)
killed_at = float(killed_at)

def us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

def parse(path):
    t = open(path).read()
    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))}
    for p in ("50", "99"):
        out["p" + p] = us(re.search(rf"^\s+{p}%\s+(\S+)", t, re.M).group(1))
    out["requests"] = int(re.search(r"(\d+) requests in", t).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    out["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    out["socket_errors"] = sum(map(int, sock.groups())) if sock else 0
    return out

labels = [("direct", "upstream directly"), ("nginx", "nginx proxy_pass (keepalive upstream)"),
          ("gateway-public", "api-gateway, public route (no token)"),
          ("gateway-jwt", "api-gateway, JWT validated (verdict remembered, default)"),
          ("gateway-jwt-nocache", "api-gateway, JWT signature verified on every request")]
# runs[(key, c)]: one parsed wrk run per round, in round order.
runs = {}
for c in ("1", conns):
    for key, _ in labels:
        runs[(key, c)] = []
        for k in range(1, rounds + 1):
            r = parse(f"{work}/wrk-{key}-{c}-{k}.txt")
            ticks = int(open(f"{work}/cpu-{key}-{c}-{k}.txt").read())
            r["cpu_us"] = ticks * 10_000 / r["requests"]
            runs[(key, c)].append(r)

def med(key, c, field):
    return statistics.median(r[field] for r in runs[(key, c)])

def per_round(f):
    return [f(k) for k in range(rounds)]

rows, res = [], {}
for c in ("1", conns):
    for key, name in labels:
        res[(key, c)] = {f: med(key, c, f) for f in ("rps", "p50", "p99", "cpu_us")}
        r = res[(key, c)]
        errs = sum(x["non2xx"] + x["socket_errors"] for x in runs[(key, c)])
        rows.append(f"| {c} | {name} | {r['rps']:,.0f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['cpu_us']:.0f} | {errs} |")

def added_rounds(key, c):
    return per_round(lambda k: runs[(key, c)][k]["p50"] - runs[("direct", c)][k]["p50"])

def added(key, c):
    return statistics.median(added_rounds(key, c))

def listed(values, fmt):
    return ", ".join(format(v, fmt) for v in values)

rps_ratios = per_round(lambda k: runs[("gateway-jwt", conns)][k]["rps"] / runs[("nginx", conns)][k]["rps"])
cpu_ratios = per_round(lambda k: runs[("gateway-jwt", conns)][k]["cpu_us"] / runs[("nginx", conns)][k]["cpu_us"])

fo = parse(f"{work}/wrk-failover.txt")
before = json.load(open(f"{work}/upstreams-before.json"))["fail-service"]["instances"]
after = json.load(open(f"{work}/upstreams-after.json"))["fail-service"]["instances"]
victim = next(i for i in after if i["instanceId"] == "fail-2")
victim_before = next(i for i in before if i["instanceId"] == "fail-2")
ejected_at = None
for line in open(f"{work}/gateway.log"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if "ejected" in e.get("message", "") and e.get("instance_id") == "fail-2":
        ts = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
        if ts >= killed_at - 0.001:
            ejected_at = ts
            break
eject_ms = (ejected_at - killed_at) * 1000 if ejected_at else None
retried = victim["failures"] - victim_before["failures"]
failed = fo["non2xx"] + fo["socket_errors"]

gw_c = res[("gateway-jwt", conns)]
ngx_c = res[("nginx", conns)]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
lines = [
    "## api-gateway",
    "",
    f"Run `services/api-gateway/bench/run.sh` (measured {datetime.date.today()}, {cpu}, 2 cores shared by",
    "wrk, the proxy and the upstream; release builds; everything on loopback; load average before the run",
    f"{loadavg}: other work on the machine shares the cores). Same upstream instance (`echo-upstream`,",
    f"`GET /hello`, 13-byte body) behind every proxy; wrk with {duration} per run after a 2 s warm-up, 1 thread",
    "at c=1, 2 threads otherwise. Latencies are wrk's, in µs. CPU µs/req is the CPU time (user + system, from",
    "/proc) of the proxy's processes (for \"directly\": the upstream's) divided by the requests served.",
    f"The paths take the load in turns, {rounds} rounds, the order reversed every other round; every figure is",
    "the median over the rounds (errors: the sum), and each ratio the median of the rounds' own ratios.",
    "",
    "| conns | path | req/s | p50 µs | p99 µs | CPU µs/req | errors |",
    "|---:|---|---:|---:|---:|---:|---:|",
    *rows,
    "",
    f"- Added p50 over direct at c=1 (median of the rounds' differences): gateway with JWT {added('gateway-jwt', '1'):+.0f} µs "
    f"(rounds: {listed(added_rounds('gateway-jwt', '1'), '+.0f')}), public route "
    f"{added('gateway-public', '1'):+.0f} µs, nginx {added('nginx', '1'):+.0f} µs (goal: gateway ≤ +100 µs).",
    f"- At c={conns}: gateway with JWT {statistics.median(rps_ratios) * 100:.0f} % of nginx's req/s "
    f"(rounds: {listed([x * 100 for x in rps_ratios], '.0f')} %; goal: at least nginx's), "
    f"{statistics.median(cpu_ratios):.2f} times its CPU per request (rounds: {listed(cpu_ratios, '.2f')}). "
    f"Medians: gateway with JWT {gw_c['rps']:,.0f} req/s vs nginx {ngx_c['rps']:,.0f} req/s. CPU per request: gateway "
    f"{gw_c['cpu_us']:.0f} µs (public route {res[('gateway-public', conns)]['cpu_us']:.0f} µs, signature verified every time "
    f"{res[('gateway-jwt-nocache', conns)]['cpu_us']:.0f} µs), nginx {ngx_c['cpu_us']:.0f} µs, the upstream itself "
    f"{res[('direct', conns)]['cpu_us']:.0f} µs.",
    f"- Gateway peak RSS after all runs: {int(rss_kb) / 1024:.1f} MiB.",
    "",
    f"Failover: three `echo-upstream` instances registered as `fail-service`, wrk c={conns} for {fail_duration} s with a",
    "bearer token through the gateway; `kill -9` of one instance at half time (it stays in the registry: its",
    "lease has not expired).",
    "",
    f"- Time from the kill to its ejection (gateway log): "
    + (f"{eject_ms:.1f} ms" if eject_ms is not None else "not observed") + " (goal ≤ 1 s).",
    f"- Failed requests: {failed} of {fo['requests']:,} (non-2xx {fo['non2xx']}, socket errors {fo['socket_errors']}); "
    "goal: zero failed idempotent requests.",
    f"- Attempts that met the dead instance and were retried on another: {retried} (ejections of it: "
    f"{victim['ejections'] - victim_before['ejections']}; after each ejection ends, one probe meets it again).",
    f"- Latency during the failover run: p50 {fo['p50']:.0f} µs, p99 {fo['p99']:.0f} µs.",
]
section = "\n".join(lines)
md = open(bench_md).read()
new = re.sub(r"(<!-- BEGIN gateway -->\n).*?(<!-- END gateway -->)", lambda m: m.group(1) + section + "\n" + m.group(2), md, flags=re.S)
open(bench_md, "w").write(new)
print(section)
PY
